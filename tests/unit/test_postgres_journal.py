"""What the PostgreSQL journal promises beyond the contract suite (test_journal runs that on it too): a write whose
connection drops is stored exactly once, an older coordinator is fenced off, the schema is versioned, TLS options
in the URL are honoured, and the URL's password shows nowhere."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from ray_runtime._ids import new_id
from ray_runtime.coordinator.postgres import SCHEMA_VERSION, FencedError, PostgresJournal, redact, schema_name
from ray_runtime.coordinator.state import CoordinatorState

from .conftest import new_task

T = "acme"


SESSION = new_id("ses")


def a_turn(state: CoordinatorState, text: str):
    """A change set holding one transcript turn: an append-only row, so a change set applied twice shows twice."""
    if SESSION not in {record.id for record in state.sessions.list(T)[0]}:
        state.sessions.create(
            T,
            SESSION,
            "t.a",
            "1",
            isolation="shared",
            config="{}",
            metadata=None,
            idle_timeout_s=None,
            max_lifetime_s=None,
            on_idle="unload",
            recover="none",
        )
    state.sessions.add_turn(T, SESSION, json.dumps({"turn_id": text}))
    return state.take_changes()


def lose_the_answer(journal: PostgresJournal, before_commit: bool):
    """Make the next write's connection drop once: before its commit, or after it committed (the answer lost)."""
    apply, dropped = journal._apply, []

    def flaky(connection, changes, seq):
        if not dropped:
            dropped.append(seq)
            if not before_commit:
                apply(connection, changes, seq)
            connection.close()
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return apply(connection, changes, seq)

    journal._apply = flaky
    return dropped


@pytest.mark.parametrize("before_commit", [True, False])
def test_a_write_whose_connection_drops_is_stored_exactly_once(postgres_url, state, before_commit):
    journal = PostgresJournal(postgres_url, "exactly-once")
    journal.write(a_turn(state, "first"))
    dropped = lose_the_answer(journal, before_commit)
    journal.write(a_turn(state, "second"))
    assert dropped == [2]  # the second change set's connection dropped, and the write was tried again
    turns = [json.loads(data)["turn_id"] for _, data in journal.reopen().load().session_turns]
    assert turns == ["first", "second"]


def test_a_coordinator_whose_successor_started_can_never_write_again(postgres_url, state):
    older = PostgresJournal(postgres_url, "fenced")
    older.write(a_turn(state, "before"))
    newer = PostgresJournal(postgres_url, "fenced")  # a successor started: it takes a new epoch
    assert newer.epoch == older.epoch + 1
    state.tasks.enqueue(T, "q", [new_task("late")])
    with pytest.raises(FencedError, match="newer coordinator"):
        older.write(state.take_changes())
    with pytest.raises(FencedError):
        older.write(a_turn(state, "still late"))  # and it stays fenced
    assert newer.load().tasks == []  # nothing of the older one's reached the journal after the takeover
    newer.write(a_turn(state, "the successor writes"))
    assert [json.loads(d)["turn_id"] for _, d in newer.load().session_turns][-1] == "the successor writes"
    older.close()
    newer.close()


def test_the_urls_password_shows_nowhere(postgres_server, postgres_url):
    password = postgres_server.password
    journal = PostgresJournal(postgres_url, "secret")
    assert password not in journal.location and postgres_server.user in journal.location
    assert password not in redact(postgres_url) and "***" not in redact(postgres_url)
    journal.close()
    unreachable = postgres_url.replace(f":{postgres_server.port}/", ":1/")
    with pytest.raises(RuntimeError) as refused:
        PostgresJournal(unreachable, "secret", retry_for_s=0.5)
    assert password not in str(refused.value) and "did not answer" in str(refused.value)


def test_tls_options_in_the_url_are_honoured(postgres_server):
    url = postgres_server.new_database()
    journal = PostgresJournal(f"{url}?sslmode=disable", "tls")  # the test server has no certificate
    assert "sslmode=disable" in journal.location
    journal.close()
    with pytest.raises(RuntimeError, match="SSL") as refused:
        PostgresJournal(f"{url}?sslmode=require", "tls", retry_for_s=0.5)
    assert postgres_server.password not in str(refused.value)


def test_the_schema_is_versioned_brought_up_to_date_and_a_newer_one_refused(postgres_url, state):
    journal = PostgresJournal(postgres_url, "versions")
    state.tasks.enqueue(T, "q", [new_task("kept")])
    journal.write(state.take_changes())
    journal.close()
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f"UPDATE {schema_name('versions')}.state SET schema_version = 0")
    reopened = PostgresJournal(postgres_url, "versions")  # an older release's journal: migrated, data intact
    assert [json.loads(t.input) for t in reopened.load().tasks] == ["kept"]
    reopened.close()
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        assert connection.execute(f"SELECT schema_version FROM {schema_name('versions')}.state").fetchone() == (
            SCHEMA_VERSION,
        )
        connection.execute(f"UPDATE {schema_name('versions')}.state SET schema_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="newer than this ray_runtime understands"):
        PostgresJournal(postgres_url, "versions")


def test_coordinators_sharing_a_database_keep_their_state_apart(postgres_url, state, limits, clock):
    first, second = PostgresJournal(postgres_url, "first"), PostgresJournal(postgres_url, "second")
    state.tasks.enqueue(T, "q", [new_task("mine")])
    first.write(state.take_changes())
    assert len(first.load().tasks) == 1 and second.load().tasks == []
    first.close()
    second.close()


def test_the_audit_log_goes_to_the_journals_database(postgres_server, postgres_url):
    from ray_runtime.api.audit import AuditLog

    from ..waiting import wait_until

    audit = AuditLog.postgres(postgres_url, "audited")
    assert postgres_server.password not in audit.location
    PostgresJournal(postgres_url, "audited").close()  # the coordinator made its schema
    audit.record(key_id="k1", tenant=T, method="POST", path="/api/v1/queues/q/tasks", status=201)
    audit.record(key_id=None, tenant=None, method="POST", path="/api/v1/queues/q/tasks", status=401)

    def entries() -> list[dict]:
        with psycopg.connect(postgres_url) as connection:
            rows = connection.execute(f"SELECT entry FROM {schema_name('audited')}.audit ORDER BY n").fetchall()
        return [json.loads(entry) for (entry,) in rows]

    written = wait_until(lambda: len(entries()) == 2 and entries(), 30, what="the audit entries")
    assert [(e["tenant"], e["status"], e["outcome"]) for e in written] == [(T, 201, "ok"), (None, 401, "refused")]


def test_a_journal_of_schema_1_keeps_its_tables_and_appends_after_them(postgres_url, state):
    """Version 1 wrote change sets straight into the tables (no log): they are what the tables hold, and the log
    begins after the sequence it reached."""
    journal = PostgresJournal(postgres_url, "schema-one")
    state.tasks.enqueue(T, "q", [new_task("old")])
    journal.write(state.take_changes())
    while journal.checkpoint():
        pass
    journal.close()
    schema = schema_name("schema-one")
    with psycopg.connect(postgres_url, autocommit=True) as connection:  # what version 1 left: tables, no log
        connection.execute(f"DROP TABLE {schema}.log, {schema}.folded")
        connection.execute(f"UPDATE {schema}.state SET schema_version = 1")
    reopened = PostgresJournal(postgres_url, "schema-one")
    state.tasks.enqueue(T, "q", [new_task("new")])
    reopened.write(state.take_changes())
    assert sorted(json.loads(t.input) for t in reopened.reopen().load().tasks) == ["new", "old"]


def test_two_checkpointers_folding_the_same_records_write_them_once(postgres_url, state):
    journal = PostgresJournal(postgres_url, "two-folds")
    for i in range(5):
        state.tasks.enqueue(T, "q", [new_task(i)])
        journal.write(state.take_changes())
    first, second = (PostgresJournal(postgres_url, "two-folds", take_over=False) for _ in range(2))
    mine, theirs = first.fold_slice(), second.fold_slice()
    assert (mine.entries, theirs.entries) == (5, 5)
    assert second.apply_slice(theirs) == 5
    assert first.apply_slice(mine) == 0  # the position moved: its fold is not written over the tables again
    assert journal.backlog == 0 and len(journal.load().tasks) == 5
    with pytest.raises(FencedError, match="to fold its log"):
        first.write(state.take_changes() or a_turn(state, "a checkpointer never writes"))
    assert journal.epoch == 1  # opening them took no epoch: the coordinator still writes
    journal.write(a_turn(state, "still mine"))


def test_the_checkpointer_process_folds_the_log_and_never_shows_the_password(postgres_server, postgres_url, state):
    from ray_runtime.coordinator.checkpointer import start

    from ..waiting import wait_until

    journal = PostgresJournal(postgres_url, "folded-by-process")
    for i in range(20):
        state.tasks.enqueue(T, "q", [new_task(i)])
        journal.write(state.take_changes())
    assert journal.backlog > 0
    process = start(journal, interval_s=0.05)
    try:
        assert postgres_server.password not in Path(f"/proc/{process.pid}/cmdline").read_text()
        wait_until(lambda: journal.backlog == 0, 60, what="the checkpointer to fold the log")
        assert len(journal.reopen().load().tasks) == 20
    finally:
        process.terminate()
        process.wait(timeout=30)
