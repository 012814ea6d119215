"""The journal contract, one suite over every backend: ``load`` returns everything written (rule 3), replay
restores queues, leases, resources, runs and the system store; durable backends keep it across a reopen whether or
not a checkpoint folded the log."""

from __future__ import annotations

import json
import sqlite3

import psycopg
import pytest

from ray_runtime.coordinator.journal import SCHEMA_VERSION, MemoryJournal, SQLiteJournal
from ray_runtime.coordinator.postgres import PostgresJournal
from ray_runtime.coordinator.state import ChangeSet, CoordinatorState
from ray_runtime.models import TaskStatus

from .conftest import new_task

T = "acme"


BACKENDS = {
    "sqlite": lambda request, path: SQLiteJournal(path / "j.sqlite3"),
    "sqlite_full": lambda request, path: SQLiteJournal(path / "j.sqlite3", synchronous="FULL"),
    "memory": lambda request, path: MemoryJournal(),
    "postgres": lambda request, path: PostgresJournal(request.getfixturevalue("postgres_url"), "contract"),
}
DURABLE = ["postgres", "sqlite", "sqlite_full"]
FOLDING = ["postgres", "sqlite", "sqlite_full"]  # a log that checkpoints fold into tables


@pytest.fixture(params=sorted(BACKENDS))
def journal(request, tmp_path):
    """Each backend in turn: the contract holds for all of them."""
    journal = BACKENDS[request.param](request, tmp_path)
    yield journal
    journal.close()


@pytest.fixture(params=DURABLE)
def durable_journal(request, tmp_path):
    """The backends that promise durability (see test_backends_declare_what_they_promise)."""
    journal = BACKENDS[request.param](request, tmp_path)
    yield journal
    journal.close()


@pytest.fixture(params=FOLDING)
def folding_journal(request, tmp_path):
    """The backends whose log checkpoints fold into a snapshot."""
    journal = BACKENDS[request.param](request, tmp_path)
    yield journal
    journal.close()


def test_backends_declare_what_they_promise(request, tmp_path):
    durable = {name for name, make in BACKENDS.items() if make(request, tmp_path).capabilities["durable"]}
    assert durable == set(DURABLE)  # the durable_journal fixture covers exactly these


def fold(journal: SQLiteJournal, policy: str) -> None:
    if policy == "all":
        while journal.checkpoint():
            pass
    elif policy == "partial":
        journal.checkpoint(max_change_sets=1)


def restart(journal, limits, clock) -> CoordinatorState:
    """A new state replayed from the journal: reopened from disk when durable, else loaded from the same one."""
    source = journal.reopen()
    state = CoordinatorState(limits, clock=clock)
    state.load(*source.load())
    if source is not journal:
        source.close()
    return state


def busy_history(state, journal) -> dict:
    """Writes several change sets covering every kind of change; returns what a replay must show."""
    resources = state.resources.add(T, json.dumps({"p": {"resource_type": "prompt_template", "template": "hi"}}))
    ids = state.tasks.enqueue(T, "q", [new_task(i, priority=i % 2, metadata={"i": i}) for i in range(6)])
    leased = state.tasks.claim(T, "q", "w1", node_id="n1")[0]
    attempt_id = leased.attempt_id
    dead_id = state.tasks.enqueue(T, "q", [new_task("doomed", max_attempts=1, priority=9)])[0]
    journal.write(state.take_changes())
    state.tasks.fail(T, state.tasks.claim(T, "q", "w2")[0].attempt_id, '{"type": "E"}')
    journal.write(state.take_changes())
    for record in state.tasks.query(T, status="queued")[0][:2]:
        state.tasks.cancel(T, record.id)
    journal.write(state.take_changes())
    return {
        "resources_id": resources.id,
        "ids": ids,
        "leased_id": leased.id,
        "attempt_id": attempt_id,
        "dead_id": dead_id,
        "tasks": [r.wire() for r in state.tasks.query(T, limit=100)[0]],
    }


@pytest.mark.parametrize("policy", ["none", "partial", "all"])
def test_replay_restores_everything_whether_or_not_the_log_was_folded(journal, state, limits, clock, policy):
    expected = busy_history(state, journal)
    fold(journal, policy)
    replayed = restart(journal, limits, clock)
    assert [r.wire() for r in replayed.tasks.query(T, limit=100)[0]] == expected["tasks"]
    assert replayed.tasks.get(T, expected["dead_id"]).status is TaskStatus.DEAD
    assert replayed.resources.latest(T).id == expected["resources_id"]
    assert replayed.tasks.workers(T)[0]["attempts"] == [expected["attempt_id"]]
    # the lease held at the "crash" is honoured: its attempt can still complete
    assert replayed.tasks.complete(T, expected["attempt_id"], '"ok"').status is TaskStatus.SUCCEEDED


def test_load_returns_runs_and_system_records_written(journal, state, limits, clock):
    state.runs.start(T, "raysubmit_1", "p", "a", "{}")
    state.runs.finish(T, "raysubmit_1", result='"done"')
    state.kv.put("keys", "k1", '{"scope": "admin"}')
    state.kv.put("keys", "k2", "1")
    journal.write(state.take_changes())
    state.kv.delete("keys", "k2")
    journal.write(state.take_changes())
    replayed = restart(journal, limits, clock)
    assert replayed.runs.get(T, "raysubmit_1").result == '"done"'
    assert replayed.kv.list("keys") == [("k1", '{"scope": "admin"}')]


def test_checkpoint_writes_each_task_once_and_empties_the_log(folding_journal, state):
    journal = folding_journal
    ids = state.tasks.enqueue(T, "q", [new_task(i) for i in range(3)])
    journal.write(state.take_changes())
    leases = state.tasks.claim(T, "q", "w", max_tasks=3)
    journal.write(state.take_changes())
    for lease in leases:
        state.tasks.complete(T, lease.attempt_id, "1")
        journal.write(state.take_changes())
    assert journal.backlog > 0
    assert journal.checkpoint() == 5  # each task changed three times
    assert journal.backlog == 0
    assert folded_statuses(journal) == sorted((i, "succeeded") for i in ids)


def folded_statuses(journal) -> list[tuple[str, str]]:
    """The tasks' statuses as the journal's tables hold them (not the log)."""
    if isinstance(journal, PostgresJournal):
        with psycopg.connect(journal.url) as connection:
            return sorted(connection.execute(f"SELECT id, status FROM {journal.schema}.tasks").fetchall())
    return sorted(sqlite3.connect(journal.path).execute("SELECT id, status FROM tasks"))


def test_a_checkpoint_slice_is_bounded_by_rows_and_keeps_what_is_written_meanwhile(
    folding_journal, state, limits, clock
):
    journal = folding_journal
    for batch in range(6):
        state.tasks.enqueue(T, "q", [new_task(batch * 100 + i) for i in range(100)])
        journal.write(state.take_changes())  # 200 rows each: 100 payloads and 100 task rows
    piece = journal.fold_slice(max_rows=450)
    assert (piece.entries, piece.rows) == (3, 600)  # it stops at the first entry that reaches the bound
    state.tasks.enqueue(T, "q", [new_task(10_000)])
    journal.write(state.take_changes())  # appended while the slice was folded, before it is applied
    assert journal.apply_slice(piece) == 3
    assert len(journal.load().tasks) == 601
    assert journal.checkpoint(max_change_sets=1_000) == 4  # the three left, and the one written meanwhile
    assert journal.backlog == 0 and len(journal.load().tasks) == 601
    assert len(restart(journal, limits, clock).tasks.query(T, limit=1000)[0]) == 601


def test_deleted_tasks_stay_deleted_across_log_and_snapshot(journal, limits, clock):
    from ray_runtime.coordinator.state import Limits

    state = CoordinatorState(Limits(finished_retention=0), clock=clock)
    kept, dropped = state.tasks.enqueue(T, "q", [new_task(1), new_task(2)])
    journal.write(state.take_changes())
    journal.checkpoint()
    lease = state.tasks.claim(T, "q", "w")[0]
    state.tasks.complete(T, lease.attempt_id, "1")
    state.sweep()  # retention 0: the finished task is deleted
    journal.write(state.take_changes())
    replayed = restart(journal, limits, clock)
    assert [r.id for r in replayed.tasks.query(T)[0]] == [dropped if lease.id == kept else kept]


def test_replay_keeps_priority_and_fifo_order(journal, state, limits, clock):
    ids = state.tasks.enqueue(T, "q", [new_task(i, priority=(i * 7) % 3) for i in range(30)])
    journal.write(state.take_changes())
    expected = [r.id for r in state.tasks.claim(T, "q", "w", max_tasks=30)]
    replayed = restart(journal, limits, clock)
    assert [r.id for r in replayed.tasks.claim(T, "q", "w", max_tasks=30)] == expected
    assert sorted(expected) == sorted(ids)


def test_new_attempt_ids_after_replay_do_not_collide(journal, state, limits, clock):
    state.tasks.enqueue(T, "q", [new_task(1)])
    first = state.tasks.claim(T, "q", "w")[0].attempt_id
    clock.advance(11)
    state.sweep()
    journal.write(state.take_changes())
    replayed = restart(journal, limits, clock)
    clock.advance(2)
    assert replayed.tasks.claim(T, "q", "w")[0].attempt_id != first


def test_a_failed_checkpoint_changes_nothing(folding_journal, state, limits, clock):
    journal = folding_journal
    state.tasks.enqueue(T, "q", [new_task(1)])
    good = state.take_changes()
    journal.write(good)
    bad_row = ("task_bad", *good.tasks[0][1:])
    bad = ChangeSet(payloads=[("task_bad", None, None)], tasks=[bad_row])  # a task without input: refused
    journal.write(bad)
    before, backlog = journal.load(), journal.backlog
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):
        journal.checkpoint()
    assert journal.backlog == backlog
    assert [r.wire() for r in journal.load()[0]] == [r.wire() for r in before[0]]


def test_a_journal_of_the_previous_release_opens_with_its_queues_intact(tmp_path, limits, clock):
    """tests/fixtures/journals/v1.sqlite3 was written by the release before sessions (schema 1), part folded into
    the snapshot and part still in the log."""
    import shutil
    from pathlib import Path

    path = tmp_path / "v1.sqlite3"
    shutil.copy(Path(__file__).parent.parent / "fixtures" / "journals" / "v1.sqlite3", path)
    journal = SQLiteJournal(path)
    state = CoordinatorState(limits, clock=clock)
    state.load(*journal.load())
    counts = state.tasks.stats("acme", "orders")["counts"]
    assert (counts["queued"], counts["succeeded"]) == (4, 1)
    assert json.loads(state.resources.latest("acme").body)["cfg"]["value"] == 1
    assert state.kv.get("api_keys", "K1") == '{"tenant": "acme"}'
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'log'").fetchone() is None  # folded, dropped
    state.sessions.create(
        "acme", "ses_01m8rxfs2x9g413km7z5s8w050", "chat.assistant", "0.1.0", isolation="shared",
        config="{}", metadata=None, idle_timeout_s=None, max_lifetime_s=None, on_idle="unload", recover="none",
    )  # fmt: skip
    journal.write(state.take_changes())
    while journal.checkpoint():  # the old release's log rows (shorter task rows) fold into the new columns
        pass
    journal.close()
    replayed = restart(SQLiteJournal(path), limits, clock)
    assert replayed.sessions.get("acme", "ses_01m8rxfs2x9g413km7z5s8w050").template == "chat.assistant"
    assert replayed.tasks.stats("acme", "orders")["counts"]["queued"] == 4
