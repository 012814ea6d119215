"""The coordinator's system key-value store: put (if absent), get, delete, list; it survives a restart."""

from __future__ import annotations

import pytest

from ray_runtime.coordinator.journal import SQLiteJournal
from ray_runtime.coordinator.state import CoordinatorState
from ray_runtime.errors import InvalidArgumentError, PayloadTooLargeError


def test_put_if_absent_get_delete_and_list(state):
    assert state.kv.put("keys", "rrk_a", '{"tenant": "acme"}', if_absent=True)
    assert not state.kv.put("keys", "rrk_a", '{"tenant": "other"}', if_absent=True)
    assert state.kv.get("keys", "rrk_a") == '{"tenant": "acme"}'
    state.kv.put("keys", "rrk_b", "2")
    state.kv.put("owners", "hello.greet", '"acme"')
    assert state.kv.list("keys") == [("rrk_a", '{"tenant": "acme"}'), ("rrk_b", "2")]
    assert state.kv.list("keys", prefix="rrk_b") == [("rrk_b", "2")]
    assert state.kv.delete("keys", "rrk_a") and not state.kv.delete("keys", "rrk_a")
    assert state.kv.get("keys", "rrk_a") is None


def test_bad_keys_and_big_values_are_refused(state):
    with pytest.raises(InvalidArgumentError, match="key"):
        state.kv.put("keys", "has space", "1")
    with pytest.raises(PayloadTooLargeError):
        state.kv.put("keys", "k", '"' + "x" * 5000 + '"')
    assert not state.has_changes()


@pytest.mark.parametrize("checkpoint", [False, True])
def test_kv_survives_a_restart(tmp_path, state, limits, clock, checkpoint):
    journal = SQLiteJournal(tmp_path / "j.sqlite3")
    state.kv.put("keys", "gone", "1")
    state.kv.put("keys", "kept", '{"scope": "admin"}')
    journal.write(state.take_changes())
    if checkpoint:
        journal.checkpoint()
    state.kv.delete("keys", "gone")
    journal.write(state.take_changes())
    replayed = CoordinatorState(limits, clock=clock)
    replayed.load(*journal.load())
    assert replayed.kv.list("keys") == [("kept", '{"scope": "admin"}')]
    journal.close()
