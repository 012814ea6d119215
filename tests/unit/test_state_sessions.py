"""The session registry as pure state: its life, listings, idle and lifetime, lost hosts, retention, limits."""

from __future__ import annotations

import json

import pytest

from ray_runtime._ids import new_id
from ray_runtime.errors import (
    ConflictError,
    InvalidArgumentError,
    RateLimitError,
    SessionClosedError,
    SessionNotFoundError,
)

T = "acme"


def create(state, template="chat.assistant", **options):
    session_id = new_id("ses")
    defaults = dict(
        isolation="shared", config="{}", metadata=None, idle_timeout_s=10.0, max_lifetime_s=100.0, on_idle="unload",
        recover="none",
    )  # fmt: skip
    return state.sessions.create(T, session_id, template, "0.1.0", **{**defaults, **options})


def test_a_session_moves_through_its_life_and_records_each_step(state, clock):
    record = create(state)
    state.sessions.opened(T, record.id, "host-1")
    state.sessions.rested(T, record.id, "paused", {"key": "k1", "bytes": 10, "at": 1.0}, 7, "paused")
    state.sessions.resuming(T, record.id)
    state.sessions.opened(T, record.id, "host-2", "resumed")
    state.sessions.closed(T, record.id)
    wire = state.sessions.get(T, record.id).wire()
    assert [t["to"] for t in wire["transitions"]] == ["creating", "active", "paused", "creating", "active", "closed"]
    assert wire["checkpoint_key"] == "k1" and wire["host"] is None
    with pytest.raises(SessionClosedError):
        state.sessions.opened(T, record.id, "host-3")


def test_bad_input_and_other_tenants_change_nothing(state):
    with pytest.raises(InvalidArgumentError):
        state.sessions.create(T, "not-an-id", "t", "1", isolation="shared", config="{}", metadata=None,
                              idle_timeout_s=None, max_lifetime_s=None, on_idle="unload", recover="none")  # fmt: skip
    record = create(state)
    state.take_changes()
    with pytest.raises(SessionNotFoundError):
        state.sessions.get("other", record.id)
    with pytest.raises(SessionNotFoundError):
        state.sessions.opened("other", record.id, "h")
    with pytest.raises(InvalidArgumentError):
        state.sessions.rested(T, record.id, "closed", None, 0, "x")
    with pytest.raises(InvalidArgumentError):
        create(state, config="[" * 100 + "]" * 100)
    assert not state.has_changes()


def test_idle_and_lifetime_are_due_once_and_retention_forgets_closed_ones(state, clock):
    idle, old = create(state), create(state, max_lifetime_s=5.0)
    for record in (idle, old):
        state.sessions.opened(T, record.id, "h")
    clock.advance(6)
    assert [(r.id, action) for r, action, _ in state.sessions.due()] == [(old.id, "close")]
    clock.advance(5)
    assert [(r.id, action) for r, action, _ in state.sessions.due()] == [(idle.id, "unload")]  # old: handed out
    assert state.sessions.due() == []
    state.sessions.closed(T, old.id, "its max_lifetime_s ran out")
    clock.advance(7 * 24 * 3600 + 1)
    assert state.sessions.retain() == [old.id]
    with pytest.raises(SessionNotFoundError):
        state.sessions.get(T, old.id)


def test_a_lost_host_recovers_what_can_be_recovered(state):
    plain, recoverable, bare = (
        create(state),
        create(state, recover="last_checkpoint"),
        create(state, recover="last_checkpoint"),
    )
    for record in (plain, recoverable, bare):
        state.sessions.opened(T, record.id, "doomed")
    state.sessions.checkpointed(T, recoverable.id, {"key": "k", "bytes": 1, "at": 1.0}, 3)
    lost = state.sessions.host_died("doomed", "its node died")
    assert {r.id for r in lost} == {plain.id, recoverable.id, bare.id}
    assert state.sessions.get(T, plain.id).status.value == "error"
    assert state.sessions.get(T, recoverable.id).status.value == "inactive"
    assert state.sessions.get(T, bare.id).status.value == "error"  # recoverable, but no checkpoint yet


def test_listings_page_newest_first_and_filter(state):
    made = [create(state, metadata=json.dumps({"n": n % 2})) for n in range(5)]
    page, cursor = state.sessions.list(T, limit=2)
    assert [r.id for r in page] == [made[4].id, made[3].id] and cursor is not None
    rest, end = state.sessions.list(T, limit=10, cursor=cursor)
    assert [r.id for r in rest] == [m.id for m in reversed(made[:3])] and end is None
    assert [r.id for r in state.sessions.list(T, metadata={"n": 1})[0]] == [made[3].id, made[1].id]
    with pytest.raises(InvalidArgumentError):
        state.sessions.list(T, cursor="nonsense")


def test_the_tenants_session_limit_counts_sessions_not_closed(state):
    state.kv.put("tenant_limits", T, json.dumps({"max_sessions": 2}))
    first, _ = create(state), create(state)
    with pytest.raises(RateLimitError):
        create(state)
    state.sessions.closed(T, first.id)
    create(state)


def test_the_same_id_again_is_the_same_session_and_another_tenants_is_taken(state):
    record = create(state)
    again = state.sessions.create(T, record.id, "chat.assistant", "0.1.0", isolation="shared", config="{}",
                                  metadata=None, idle_timeout_s=None, max_lifetime_s=None, on_idle="unload",
                                  recover="none")  # fmt: skip
    assert again is record
    with pytest.raises(ConflictError):
        state.sessions.create("other", record.id, "chat.assistant", "0.1.0", isolation="shared", config="{}",
                              metadata=None, idle_timeout_s=None, max_lifetime_s=None, on_idle="unload",
                              recover="none")  # fmt: skip


def test_reports_add_up_and_the_transcript_keeps_the_newest_turns(state):
    record = create(state)
    state.sessions.opened(T, record.id, "h")
    state.sessions.report(T, record.id, 2, 10, 5.0, 9)
    state.sessions.report(T, record.id, 1, 5, 6.0, 12)
    wire = state.sessions.get(T, record.id).wire()
    assert (wire["invocations"], wire["tokens"], wire["last_activity_at"] >= 6.0) == (3, 15, True)
    for n in range(510):
        state.sessions.add_turn(T, record.id, json.dumps({"turn_id": str(n)}))
    turns = state.sessions.transcript(T, record.id)
    assert len(turns) == 500 and json.loads(turns[0])["turn_id"] == "10"
