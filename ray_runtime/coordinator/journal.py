"""Durability for the coordinator: every change is written here before the call that made it is answered.

The journal keeps the current row of every task and resources version (a continuously maintained snapshot),
so replay is one ordered read, not a re-execution of history. Inputs and metadata, written once, live apart
from the small task rows that change on every claim, heartbeat and completion.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import fields
from operator import attrgetter
from pathlib import Path
from typing import TypedDict

from ray_runtime.coordinator.state import ChangeSet, ResourcesRecord, TaskRecord
from ray_runtime.models.tasks import TaskStatus

__all__ = ["Journal", "JournalCapabilities", "MemoryJournal", "SQLiteJournal"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_PAYLOAD_FIELDS = ("input", "metadata")
_ROW_FIELDS = tuple(f.name for f in fields(TaskRecord) if f.name not in _PAYLOAD_FIELDS)
_ROW = attrgetter(*_ROW_FIELDS)
_STATUS = {s.value: s for s in TaskStatus}
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks ({", ".join(_ROW_FIELDS)}, PRIMARY KEY (id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS payloads (id TEXT PRIMARY KEY, input TEXT NOT NULL, metadata TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS resources (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, version INTEGER NOT NULL, created_at REAL NOT NULL, body TEXT NOT NULL
) WITHOUT ROWID;
"""


class JournalCapabilities(TypedDict):
    """What a journal promises; the actor checks ``durable`` before it claims to survive restarts."""

    durable: bool
    survives_power_loss: bool


class Journal:
    """Where the coordinator's state lives between restarts.

    Implementations must:
      1. make :meth:`write` atomic: after a crash, either all of a change set is there or none of it;
      2. return from :meth:`write` only once the change set would survive a kill of this process;
      3. return from :meth:`load` every task and resources version written and not deleted, payloads included.
    """

    capabilities: JournalCapabilities

    def load(self) -> tuple[list[TaskRecord], list[ResourcesRecord]]:
        """Every stored task and resources version."""
        raise NotImplementedError

    def write(self, changes: ChangeSet) -> None:
        """Store a change set atomically and durably."""
        raise NotImplementedError

    def close(self) -> None:
        """Release files; the journal is not used afterwards."""


class MemoryJournal(Journal):
    """No durability: a coordinator that forgets everything on restart (tests, benchmarks, scratch work)."""

    capabilities = JournalCapabilities(durable=False, survives_power_loss=False)

    def load(self) -> tuple[list[TaskRecord], list[ResourcesRecord]]:
        return [], []

    def write(self, changes: ChangeSet) -> None:
        return None


class SQLiteJournal(Journal):
    """A SQLite database in WAL mode: one transaction per change set (group commit of concurrent calls).

    ``synchronous="NORMAL"`` survives a kill of the process (the WAL is in the OS's hands before commit returns);
    ``"FULL"`` also survives power loss, at the price of an fsync per commit.
    """

    def __init__(self, path: Path | str, *, synchronous: str = "NORMAL") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.capabilities = JournalCapabilities(durable=True, survives_power_loss=synchronous == "FULL")
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        for pragma in (
            "journal_mode=WAL",
            f"synchronous={synchronous}",
            "cache_size=-65536",
            "temp_store=MEMORY",
        ):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.executescript(_SCHEMA)
        self._check_schema()
        columns = ", ".join(_ROW_FIELDS)
        self._upsert_task = f"INSERT OR REPLACE INTO tasks ({columns}) VALUES ({', '.join('?' * len(_ROW_FIELDS))})"

    def _check_schema(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise RuntimeError(
                f"journal {self.path} has schema {row[0]}, newer than this ray_runtime understands "
                f"({SCHEMA_VERSION}); upgrade ray_runtime on the head node"
            )

    def load(self) -> tuple[list[TaskRecord], list[ResourcesRecord]]:
        select = ", ".join(
            f"p.{name}" if name in _PAYLOAD_FIELDS else f"t.{name}" for name in (f.name for f in fields(TaskRecord))
        )
        tasks = []
        for row in self._db.execute(f"SELECT {select} FROM tasks t JOIN payloads p ON p.id = t.id"):
            record = TaskRecord(*row)
            record.status = _STATUS[row[3]]
            tasks.append(record)
        resources = [
            ResourcesRecord(*row)
            for row in self._db.execute("SELECT id, tenant, version, created_at, body FROM resources ORDER BY version")
        ]
        return tasks, resources

    def write(self, changes: ChangeSet) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if changes.inserted:
                db.executemany(
                    "INSERT OR REPLACE INTO payloads (id, input, metadata) VALUES (?, ?, ?)",
                    [(r.id, r.input, r.metadata) for r in changes.inserted],
                )
                db.executemany(self._upsert_task, [_ROW(r) for r in changes.inserted])
            if changes.updated:
                db.executemany(self._upsert_task, [_ROW(r) for r in changes.updated.values()])
            if changes.deleted:
                ids = [(task_id,) for task_id in changes.deleted]
                db.executemany("DELETE FROM tasks WHERE id = ?", ids)
                db.executemany("DELETE FROM payloads WHERE id = ?", ids)
            if changes.resources_added:
                db.executemany(
                    "INSERT OR REPLACE INTO resources (id, tenant, version, created_at, body) VALUES (?, ?, ?, ?, ?)",
                    [(r.id, r.tenant, r.version, r.created_at, r.body) for r in changes.resources_added],
                )
            if changes.resources_deleted:
                db.executemany("DELETE FROM resources WHERE id = ?", [(i,) for i in changes.resources_deleted])
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()
