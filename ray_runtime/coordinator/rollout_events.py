"""The events of Agent Lightning rollouts (model calls with their token ids, rewards, anything an agent posts),
kept where the coordinator's state is but never passed through its process: they can be megabytes each.

Two stores behind one interface: a SQLite file beside the journal (the embedded default; the façade processes that
write it share the head node's disk) and a table of the coordinator's PostgreSQL schema (with the journal there, so
losing the head loses none). Events belong to the coordinator task that carries the rollout, so a rollout created
again under a deleted one's id starts with none.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pydantic_core

__all__ = ["EventStore", "PostgresEventStore", "SQLiteEventStore", "StoredEvent", "open_event_store"]

Rewrite = Callable[[dict[str, Any]], dict[str, Any] | None]
"""Given the data of the attempt's latest event of the same type, its new data (or None to leave it)."""


class StoredEvent(NamedTuple):
    event_type: str
    attempt_id: str
    timestamp: float
    data: dict[str, Any]


class EventStore:
    """Append, read and delete rollout events; safe to use from several threads and processes."""

    location: str

    def append(
        self,
        tenant: str,
        task_id: str,
        attempt_id: str,
        event_type: str,
        data: dict[str, Any],
        *,
        rewrite_previous: Rewrite | None = None,
    ) -> StoredEvent:
        """Add an event at the end of its attempt; ``rewrite_previous`` may change the latest one of its type first,
        in the same transaction."""
        raise NotImplementedError

    def events(
        self, tenant: str, task_id: str, attempt_id: str | None, event_type: str | None = None
    ) -> list[StoredEvent]:
        """An attempt's events (None: every attempt's) in the order they were appended."""
        raise NotImplementedError

    def attempts(self, tenant: str, task_id: str) -> list[str]:
        """The attempts that have events, by their first event's time."""
        raise NotImplementedError

    def delete(self, tenant: str, task_id: str) -> int:
        """Drop a rollout's events; returns how many."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def _json(data: dict[str, Any]) -> str:
    """An event's data as JSON text (pydantic-core's encoder: twice as fast as ``json.dumps`` on 100 KB)."""
    return pydantic_core.to_json(data).decode()


def _row(event_type: str, attempt_id: str, timestamp: float, data: str) -> StoredEvent:
    return StoredEvent(event_type, attempt_id, timestamp, json.loads(data))


_LATEST = (
    "SELECT id, data FROM agl_events WHERE task_id = ? AND attempt_id = ? AND event_type = ? AND tenant = ?"
    " ORDER BY id DESC LIMIT 1"
)
_INSERT = "INSERT INTO agl_events (tenant, task_id, attempt_id, event_type, at, data) VALUES (?, ?, ?, ?, ?, ?)"


def _write(
    execute: Callable[[str, tuple[Any, ...]], Any], row: tuple[str, str, str, str, float, str], rewrite: Rewrite | None
) -> None:
    """Inside a transaction: rewrite the attempt's latest event of the type (if asked), then add ``row``
    (tenant, task, attempt, type, time, data); ``execute`` runs SQL written with ``?`` placeholders."""
    tenant, task_id, attempt_id, event_type = row[:4]
    if rewrite is not None:
        previous = execute(_LATEST, (task_id, attempt_id, event_type, tenant)).fetchone()
        changed = rewrite(json.loads(previous[1])) if previous is not None else None
        if changed is not None:
            execute("UPDATE agl_events SET data = ? WHERE id = ?", (_json(changed), previous[0]))
    execute(_INSERT, row)


class SQLiteEventStore(EventStore):
    """Events in a SQLite file (write-ahead log, so readers never wait for a writer)."""

    def __init__(self, path: Path) -> None:
        path = path.expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.location = str(path)
        self._path = path
        self._local = threading.local()
        with self._connection() as connection:
            connection.executescript(
                """
                CREATE TABLE IF NOT EXISTS agl_events (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    tenant TEXT NOT NULL, task_id TEXT NOT NULL, attempt_id TEXT NOT NULL,
                    event_type TEXT NOT NULL, at REAL NOT NULL, data TEXT NOT NULL);
                CREATE INDEX IF NOT EXISTS agl_events_by_attempt ON agl_events (task_id, attempt_id, id);
                """
            )

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self._path, timeout=60, isolation_level=None)
            connection.execute("PRAGMA page_size=16384")  # a new file's: events are ~100 KB, a page holds more
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            self._local.connection = connection
        return connection

    def append(
        self,
        tenant: str,
        task_id: str,
        attempt_id: str,
        event_type: str,
        data: dict[str, Any],
        *,
        rewrite_previous: Rewrite | None = None,
    ) -> StoredEvent:
        connection = self._connection()
        at = time.time()
        connection.execute("BEGIN IMMEDIATE")
        try:
            row = (tenant, task_id, attempt_id, event_type, at, _json(data))
            _write(connection.execute, row, rewrite_previous)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return StoredEvent(event_type, attempt_id, at, data)

    def events(
        self, tenant: str, task_id: str, attempt_id: str | None, event_type: str | None = None
    ) -> list[StoredEvent]:
        query = "SELECT event_type, attempt_id, at, data FROM agl_events WHERE task_id = ? AND tenant = ?"
        args: tuple[Any, ...] = (task_id, tenant)
        if attempt_id is not None:
            query, args = query + " AND attempt_id = ?", (*args, attempt_id)
        if event_type is not None:
            query, args = query + " AND event_type = ?", (*args, event_type)
        return [_row(*row) for row in self._connection().execute(query + " ORDER BY id", args)]

    def attempts(self, tenant: str, task_id: str) -> list[str]:
        rows = self._connection().execute(
            "SELECT attempt_id, MIN(id) FROM agl_events WHERE task_id = ? AND tenant = ? GROUP BY attempt_id"
            " ORDER BY MIN(id)",
            (task_id, tenant),
        )
        return [attempt_id for attempt_id, _ in rows]

    def delete(self, tenant: str, task_id: str) -> int:
        cursor = self._connection().execute(
            "DELETE FROM agl_events WHERE task_id = ? AND tenant = ?", (task_id, tenant)
        )
        return cursor.rowcount


class PostgresEventStore(EventStore):
    """Events in the ``agl_events`` table of the coordinator's PostgreSQL schema."""

    def __init__(self, url: str, coordinator: str) -> None:
        from ray_runtime.coordinator.postgres import Database, redact, schema_name

        self.location = f"{redact(url)} (table agl_events)"
        self._db = Database(url, schema_name(coordinator), synchronous_commit="on", retry_for_s=120)
        self._db.run(self._create, "creating the events table")

    @staticmethod
    def _create(connection: Any) -> None:
        from ray_runtime.coordinator.postgres import compress_quickly

        with connection.transaction(), connection.cursor() as cursor:
            cursor.execute(
                """
                CREATE TABLE IF NOT EXISTS agl_events (
                    id BIGSERIAL PRIMARY KEY,
                    tenant TEXT NOT NULL, task_id TEXT NOT NULL, attempt_id TEXT NOT NULL,
                    event_type TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, data TEXT NOT NULL);
                CREATE INDEX IF NOT EXISTS agl_events_by_attempt ON agl_events (task_id, attempt_id, id);
                """
            )
            compress_quickly(cursor, "agl_events", "data")

    def append(
        self,
        tenant: str,
        task_id: str,
        attempt_id: str,
        event_type: str,
        data: dict[str, Any],
        *,
        rewrite_previous: Rewrite | None = None,
    ) -> StoredEvent:
        at = time.time()
        text = _json(data)

        def write(connection: Any) -> None:
            with connection.transaction(), connection.cursor() as cursor:
                if rewrite_previous is not None:  # one rewrite of an attempt at a time
                    cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{task_id}/{attempt_id}",))

                def execute(sql: str, args: tuple[Any, ...]) -> Any:
                    return cursor.execute(sql.replace("?", "%s"), args)

                _write(execute, (tenant, task_id, attempt_id, event_type, at, text), rewrite_previous)

        self._db.run(write, "appending an event")
        return StoredEvent(event_type, attempt_id, at, data)

    def events(
        self, tenant: str, task_id: str, attempt_id: str | None, event_type: str | None = None
    ) -> list[StoredEvent]:
        query = "SELECT event_type, attempt_id, at, data FROM agl_events WHERE task_id = %s AND tenant = %s"
        args: tuple[Any, ...] = (task_id, tenant)
        if attempt_id is not None:
            query, args = query + " AND attempt_id = %s", (*args, attempt_id)
        if event_type is not None:
            query, args = query + " AND event_type = %s", (*args, event_type)
        return self._db.run(
            lambda connection: [_row(*row) for row in connection.execute(query + " ORDER BY id", args)],
            "reading events",
        )

    def attempts(self, tenant: str, task_id: str) -> list[str]:
        return self._db.run(
            lambda connection: [
                attempt_id
                for attempt_id, _ in connection.execute(
                    "SELECT attempt_id, MIN(id) FROM agl_events WHERE task_id = %s AND tenant = %s"
                    " GROUP BY attempt_id ORDER BY MIN(id)",
                    (task_id, tenant),
                )
            ],
            "reading attempts",
        )

    def delete(self, tenant: str, task_id: str) -> int:
        return self._db.run(
            lambda connection: (
                connection.execute(
                    "DELETE FROM agl_events WHERE task_id = %s AND tenant = %s", (task_id, tenant)
                ).rowcount
            ),
            "deleting events",
        )

    def close(self) -> None:
        self._db.close()


def open_event_store(*, journal_url: str | None, coordinator: str, storage: Path) -> EventStore:
    """The event store beside the coordinator's state: its PostgreSQL schema, else a file in ``storage``."""
    if journal_url:
        return PostgresEventStore(journal_url, coordinator)
    return SQLiteEventStore(storage / "coordinator" / f"{coordinator}-agl-events.sqlite3")
