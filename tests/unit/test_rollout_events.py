"""The rollout event store, on both backends (a SQLite file, a PostgreSQL table): events in order per attempt,
attempts by first event, a rewrite of the previous event in the same transaction, deletes per rollout, tenants
apart, and what a new store on the same place finds (a façade restart)."""

from __future__ import annotations

import threading

import psycopg
import pytest

from ray_runtime.coordinator.postgres import PostgresJournal, schema_name
from ray_runtime.coordinator.rollout_events import PostgresEventStore, SQLiteEventStore, open_event_store


@pytest.fixture(params=["sqlite", "postgres"])
def place(request, tmp_path):
    if request.param == "sqlite":
        return lambda: SQLiteEventStore(tmp_path / "events.sqlite3")
    url = request.getfixturevalue("postgres_url")
    return lambda: PostgresEventStore(url, "coordinator")


def test_events_come_back_in_order_per_attempt_and_attempts_by_their_first_event(place):
    store = place()
    store.append("t", "task_1", "a2", "note", {"n": 1})
    store.append("t", "task_1", "a1", "note", {"n": 2})
    store.append("t", "task_1", "a2", "reward", {"value": 1.0})
    store.append("t", "task_2", "a2", "note", {"n": 3})
    assert [e.data for e in store.events("t", "task_1", "a2")] == [{"n": 1}, {"value": 1.0}]
    assert [e.data for e in store.events("t", "task_1", "a2", "reward")] == [{"value": 1.0}]
    assert store.attempts("t", "task_1") == ["a2", "a1"]
    every = store.events("t", "task_1", None)  # every attempt's, in the order they came (a session's trace)
    assert [(e.attempt_id, e.data) for e in every] == [("a2", {"n": 1}), ("a1", {"n": 2}), ("a2", {"value": 1.0})]
    assert [e.attempt_id for e in store.events("t", "task_1", None, "reward")] == ["a2"]
    assert store.events("other", "task_1", "a2") == [] and store.attempts("other", "task_1") == []
    assert place().events("t", "task_1", "a1")[0].data == {"n": 2}  # another process opening the same place


def test_a_rewrite_changes_the_latest_event_of_the_type_in_the_same_transaction(place):
    store = place()
    store.append("t", "task_1", "a", "model_request", {"n": 1, "routes": [1]})
    store.append("t", "task_1", "a", "note", {})
    store.append(
        "t",
        "task_1",
        "a",
        "model_request",
        {"n": 2},
        rewrite_previous=lambda old: {k: v for k, v in old.items() if k != "routes"},
    )
    store.append("t", "task_1", "a", "model_request", {"n": 3}, rewrite_previous=lambda old: None)
    assert [e.data for e in store.events("t", "task_1", "a")] == [{"n": 1}, {}, {"n": 2}, {"n": 3}]


def test_concurrent_appends_with_rewrites_lose_nothing(place):
    store = place()

    def post(worker: int) -> None:
        for i in range(20):
            store.append(
                "t",
                "task_1",
                "a",
                "model_request",
                {"w": worker, "i": i},
                rewrite_previous=lambda old: {**old, "seen": True},
            )

    threads = [threading.Thread(target=post, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = store.events("t", "task_1", "a")
    assert len(events) == 80 and sum("seen" in e.data for e in events) == 79


def test_deleting_a_rollouts_events_leaves_the_others(place):
    store = place()
    store.append("t", "task_1", "a", "note", {})
    store.append("t", "task_2", "a", "note", {})
    assert store.delete("t", "task_1") == 1
    assert store.events("t", "task_1", "a") == [] and len(store.events("t", "task_2", "a")) == 1


def test_the_store_is_where_the_coordinators_state_is(postgres_url, tmp_path):
    in_files = open_event_store(journal_url=None, coordinator="c", storage=tmp_path)
    assert isinstance(in_files, SQLiteEventStore) and in_files.location.startswith(str(tmp_path))
    PostgresJournal(postgres_url, "c").close()
    in_postgres = open_event_store(journal_url=postgres_url, coordinator="c", storage=tmp_path)
    in_postgres.append("t", "task_1", "a", "note", {"n": 1})
    with psycopg.connect(postgres_url) as connection:  # in the coordinator's schema, beside its journal
        assert connection.execute(f"SELECT count(*) FROM {schema_name('c')}.agl_events").fetchone() == (1,)
