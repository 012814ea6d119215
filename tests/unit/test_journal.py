"""The SQLite journal: atomic change sets, and a replay that restores queues, leases and resources."""

from __future__ import annotations

import json

import pytest

from ray_runtime.coordinator.journal import SQLiteJournal
from ray_runtime.coordinator.state import ChangeSet, CoordinatorState, ResourcesRecord
from ray_runtime.models import TaskStatus

from .conftest import new_task

T = "acme"


@pytest.fixture
def journal(tmp_path):
    journal = SQLiteJournal(tmp_path / "j.sqlite3")
    yield journal
    journal.close()


def restart(journal, limits, clock) -> CoordinatorState:
    path = journal.path
    journal.close()
    reopened = SQLiteJournal(path)
    state = CoordinatorState(limits, clock=clock)
    state.load(*reopened.load())
    reopened.close()
    return state


def test_replay_restores_order_leases_dead_letters_and_resources(journal, state, limits, clock):
    resources = state.add_resources(T, json.dumps({"p": {"resource_type": "prompt_template", "template": "hi"}}))
    ids = state.enqueue(T, "q", [new_task(i, priority=i % 2, metadata={"i": i}) for i in range(6)])
    leased = state.claim(T, "q", "w1", node_id="n1")[0]
    attempt_id = leased.attempt_id
    dead_id = state.enqueue(T, "q", [new_task("doomed", max_attempts=1, priority=-1)])[0]
    state.claim(T, "q2", "w1")
    journal.write(state.take_changes())
    doomed = next(r for r in state.claim(T, "q", "w2", max_tasks=10) if r.id == dead_id)
    state.fail(T, doomed.attempt_id, '{"type": "E"}')
    for record in state.query(T, status="leased")[0]:
        if record.id not in (leased.id,):
            state.cancel(T, record.id)
    for record in state.query(T, status="cancelled")[0]:
        state.retry(T, record.id)
    journal.write(state.take_changes())
    expected = [r.wire() for r in state.query(T, limit=100)[0]]

    replayed = restart(journal, limits, clock)
    assert [r.wire() for r in replayed.query(T, limit=100)[0]] == expected
    assert replayed.get(T, dead_id).status is TaskStatus.DEAD
    assert replayed.latest_resources(T).id == resources.id
    assert replayed.workers(T)[0]["attempts"] == [attempt_id]
    # the lease held at the "crash" is honoured: its attempt can still complete
    assert replayed.complete(T, attempt_id, '"ok"').status is TaskStatus.SUCCEEDED
    reclaimed = {r.id for r in replayed.claim(T, "q", "w3", max_tasks=10)}
    assert reclaimed == set(ids) - {leased.id}


def test_replay_keeps_priority_and_fifo_order(journal, state, limits, clock):
    ids = state.enqueue(T, "q", [new_task(i, priority=(i * 7) % 3) for i in range(30)])
    journal.write(state.take_changes())
    expected = [r.id for r in state.claim(T, "q", "w", max_tasks=30)]
    replayed = restart(journal, limits, clock)
    assert [r.id for r in replayed.claim(T, "q", "w", max_tasks=30)] == expected
    assert sorted(expected) == sorted(ids)


def test_new_attempt_ids_after_replay_do_not_collide(journal, state, limits, clock):
    state.enqueue(T, "q", [new_task(1)])
    first = state.claim(T, "q", "w")[0].attempt_id
    clock.advance(11)
    state.sweep()
    journal.write(state.take_changes())
    replayed = restart(journal, limits, clock)
    clock.advance(2)
    assert replayed.claim(T, "q", "w")[0].attempt_id != first


def test_a_change_set_is_written_all_or_nothing(journal, state):
    state.enqueue(T, "q", [new_task(1)])
    changes = state.take_changes()
    changes.resources_added.append(ResourcesRecord("res_x", None, 1, 0.0, "{}"))  # violates NOT NULL
    with pytest.raises(Exception, match="NOT NULL"):
        journal.write(changes)
    assert journal.load() == ([], [])
    journal.write(ChangeSet(inserted=changes.inserted))
    assert [r.id for r in journal.load()[0]] == [changes.inserted[0].id]
