"""Moving a coordinator's state between journals: files to PostgreSQL and back, exactly, verified by counts and
checksums; a target that is not empty, or a source a coordinator runs on, is refused."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path

import pytest

from ray_runtime._ids import new_id
from ray_runtime.coordinator.migration import migrate, open_store
from ray_runtime.coordinator.state import CoordinatorState
from ray_runtime.errors import ConflictError

from .conftest import new_task

T = "acme"


def a_busy_file_journal(storage: Path, state: CoordinatorState, tasks: int) -> dict:
    """A file journal holding every kind of state, snapshots included; what it holds, for comparing."""
    store = open_store(str(storage))
    state.resources.add(T, json.dumps({"p": {"resource_type": "prompt_template", "template": "hi"}}))
    for start in range(0, tasks, 10_000):
        batch = range(start, min(start + 10_000, tasks))
        state.tasks.enqueue(T, "q", [new_task(i, priority=i % 3, metadata={"i": i}) for i in batch])
    leased = state.tasks.claim(T, "q", "w1", max_tasks=5, node_id="n1")
    state.tasks.complete(T, leased[0].attempt_id, json.dumps("done"))
    state.runs.start(T, "raysubmit_x", "wordcount", "count", "{}", None)
    state.kv.put("api_keys", "key1", json.dumps({"tenant": T, "scope": "admin", "hash": "abc"}))
    sessions = []
    for n in range(3):
        session_id = new_id("ses")
        state.sessions.create(
            T,
            session_id,
            "chat.assistant",
            "0.1.0",
            isolation="shared",
            config="{}",
            metadata=None,
            idle_timeout_s=None,
            max_lifetime_s=None,
            on_idle="unload",
            recover="none",
        )
        state.sessions.add_turn(T, session_id, json.dumps({"turn_id": f"t{n}", "text": "hello"}))
        checkpoint = store.snapshots.put(session_id, f"memory of session {n}".encode() * 100)
        state.sessions.rested(T, session_id, "paused", checkpoint, n, "paused")
        sessions.append(session_id)
    store.journal.write(state.take_changes())
    store.close()
    return {"sessions": sessions, "leased": leased[1].attempt_id}


def test_files_to_postgres_and_back_round_trip_everything_exactly(tmp_path, state, postgres_url):
    held = a_busy_file_journal(tmp_path / "before", state, tasks=100_000)

    there = migrate(str(tmp_path / "before"), postgres_url)
    assert there.verified and there.counts["tasks"] == 100_000 and there.counts["snapshots"] == 3
    assert there.counts["sessions"] == 3 and there.counts["kv"] == 1 and there.counts["runs"] == 1
    assert "password" not in there.target and "@" in there.target  # the user is shown, never the password

    back = migrate(postgres_url, str(tmp_path / "after"))
    assert back.verified and back.counts == there.counts and back.checksums == there.checksums

    restored = open_store(str(tmp_path / "after"))
    replay = restored.journal.load()
    session = next(s for s in replay.sessions if s.id == held["sessions"][1])
    assert restored.snapshots.get(session.id, session.checkpoint["key"]) == b"memory of session 1" * 100
    leased = next(t for t in replay.tasks if t.attempt_id == held["leased"])
    assert leased.status.value == "leased" and leased.node_id == "n1"  # live leases cross too
    restored.close()


def test_a_target_that_holds_state_or_a_source_in_use_is_refused(tmp_path, state, postgres_url):
    a_busy_file_journal(tmp_path / "one", state, tasks=10)
    migrate(str(tmp_path / "one"), postgres_url)
    with pytest.raises(ConflictError, match="holds a coordinator's state already"):
        migrate(str(tmp_path / "one"), postgres_url)
    journal = tmp_path / "one" / "coordinator" / "coordinator.sqlite3"
    with open(f"{journal}.checkpointer.lock", "w") as lock:  # what a running coordinator's checkpointer holds
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(ConflictError, match="stop it first"):
            migrate(str(tmp_path / "one"), str(tmp_path / "two"))


def test_the_cli_migrates_and_says_what_it_copied(tmp_path, state, postgres_server, postgres_url):
    from typer.testing import CliRunner

    from ray_runtime.cli import app

    a_busy_file_journal(tmp_path / "cli", state, tasks=20)
    done = CliRunner().invoke(
        app, ["coordinator", "migrate", "--from", str(tmp_path / "cli"), "--to", postgres_url, "--json"]
    )
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["verified"] and report["counts"]["tasks"] == 20
    assert postgres_server.password not in done.output  # the URL is shown without its password
