"""Plugin runs: started under a submission id, progress kept (bounded), ended once, survive replay."""

from __future__ import annotations

import json

import pytest

from ray_runtime.coordinator.journal import SQLiteJournal
from ray_runtime.coordinator.state import CoordinatorState, Limits
from ray_runtime.errors import ConflictError, InvalidArgumentError, RunNotFoundError

T = "acme"


def test_a_run_records_progress_and_ends_once(state, clock):
    state.runs.start(T, "raysubmit_1", "hello", "greet", json.dumps({"name": "Ada"}))
    assert state.runs.start(T, "raysubmit_1", "hello", "greet", "{}").params == json.dumps({"name": "Ada"})
    for done in range(60):
        clock.advance(1)
        state.runs.progress(T, "raysubmit_1", done, 60, f"step {done}")
    record = state.runs.finish(T, "raysubmit_1", result=json.dumps({"message": "hi"}))
    assert record.status == "succeeded" and record.progress[1:] == [59, 60, "step 59"]
    assert len(record.events) == 50 and record.events[0][1] == 10
    assert state.runs.finish(T, "raysubmit_1", result="1") is record  # same outcome again: no-op
    with pytest.raises(ConflictError):
        state.runs.finish(T, "raysubmit_1", error='{"type": "E"}')
    with pytest.raises(ConflictError):
        state.runs.progress(T, "raysubmit_1", 1, 1, "late")


def test_runs_are_per_tenant_and_bounded(clock):
    state = CoordinatorState(Limits(runs_retention=2), clock=clock)
    for n in range(3):
        state.runs.start(T, f"r{n}", "p", "a", "{}")
        state.runs.finish(T, f"r{n}", result="null")
    with pytest.raises(RunNotFoundError):
        state.runs.get(T, "r0")
    with pytest.raises(RunNotFoundError):
        state.runs.get("other", "r1")
    assert [r.id for r in state.runs.list(T)] == ["r2", "r1"]
    with pytest.raises(InvalidArgumentError):
        state.runs.start(T, "bad id", "p", "a", "{}")


@pytest.mark.parametrize("checkpoint", [False, True])
def test_runs_survive_a_restart(tmp_path, state, limits, clock, checkpoint):
    journal = SQLiteJournal(tmp_path / "j.sqlite3")
    state.runs.start(T, "done", "p", "a", '{"x": 1}')
    state.runs.progress(T, "done", 1, 2, "half")
    state.runs.finish(T, "done", error='{"type": "E", "message": "boom"}')
    state.runs.start(T, "live", "p", "a", "{}")
    journal.write(state.take_changes())
    if checkpoint:
        journal.checkpoint()
    replayed = CoordinatorState(limits, clock=clock)
    replayed.load(*journal.load())
    assert replayed.runs.get(T, "done").wire() == state.runs.get(T, "done").wire()
    assert replayed.runs.get(T, "live").status == "running"
    journal.close()
