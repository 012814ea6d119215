"""Durability for the coordinator: every change is written here before the call that made it is answered.

The durable journal has two parts:

* the **log** (:mod:`~ray_runtime.coordinator.changelog`): one record per change set (the rows of every task the
  change touched, marshalled), appended to a plain file with one ``write``. This is all a call waits for, and it
  shares no lock with anything.
* the **snapshot**: a SQLite database with one row per task, payload and resources version, in ordinary tables,
  and the log position it holds everything up to. A checkpoint (the checkpointer process) folds the log into it,
  writing each task once however many times it changed in between, moves that position in the same transaction,
  then deletes the log segments it has passed. Only the checkpointer writes the snapshot.

Replay reads the snapshot and folds the log after its position over it, so a restart never re-executes history.
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple, TypedDict

from ray_runtime.coordinator.changelog import START, ChangeLog, Position
from ray_runtime.coordinator.session_table import TURNS_KEPT
from ray_runtime.coordinator.state import (
    TASK_ROW_FIELDS,
    ChangeSet,
    ResourcesRecord,
    RunRecord,
    SessionRecord,
    TaskRecord,
)
from ray_runtime.models.tasks import TaskStatus

__all__ = [
    "FencedError",
    "Fold",
    "Journal",
    "JournalCapabilities",
    "MemoryJournal",
    "Replay",
    "SQLiteJournal",
    "Slice",
    "encode",
    "replay_over",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 4
# What each version added; a journal of an older version is brought up to date when it is opened. The tables are
# created with IF NOT EXISTS above, so a migration only has to say what else changes.
_MIGRATIONS: dict[int, str] = {
    2: "",  # sessions and their transcripts (the tables of _SCHEMA)
    3: "ALTER TABLE tasks ADD COLUMN history TEXT;",  # a task's ended attempts
    4: "",  # the log moved out of the database into segment files; the old log table is folded and dropped
}
_STATUS = {s.value: s for s in TaskStatus}
_RECORD_FIELDS = tuple(f.name for f in fields(TaskRecord))  # the snapshot's task columns, in this order
_PAYLOAD_AT = _RECORD_FIELDS.index("input")  # input and metadata sit side by side in TaskRecord
_STATUS_AT = _RECORD_FIELDS.index("status")
_ROW_LENGTH = len(TASK_ROW_FIELDS)
_BUSY_TIMEOUT_MS = 30_000  # how long a write waits for another connection's to end (a migration's)
_LOAD_ATTEMPTS = 100
_RESOURCE_COLUMNS = "id, tenant, version, created_at, body"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    {", ".join(_RECORD_FIELDS)}, PRIMARY KEY (id), CHECK (input IS NOT NULL)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, data TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (
    namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS resources (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, version INTEGER NOT NULL, created_at REAL NOT NULL, body TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, data TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS session_turns (n INTEGER PRIMARY KEY, session_id TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS session_turns_by_session ON session_turns (session_id, n);
"""
_INSERT_TASK = (
    f"INSERT OR REPLACE INTO tasks ({', '.join(_RECORD_FIELDS)}) VALUES ({', '.join('?' * len(_RECORD_FIELDS))})"
)
_UPDATE_TASK = f"UPDATE tasks SET {', '.join(f'{name} = ?' for name in TASK_ROW_FIELDS[1:])} WHERE id = ?"


class FencedError(RuntimeError):
    """A newer coordinator took the journal over (a higher epoch): this one must stop and never write again."""


class JournalCapabilities(TypedDict):
    """What a journal promises; ``info()`` reports it so operators know what a restart keeps."""

    durable: bool
    survives_power_loss: bool


class Replay(NamedTuple):
    """Everything a journal holds, to rebuild the state from (``CoordinatorState.load(*replay)``)."""

    tasks: list[TaskRecord]
    resources: list[ResourcesRecord]
    runs: list[RunRecord]
    kv: list[tuple[str, str, str]]
    sessions: list[SessionRecord]
    session_turns: list[tuple[str, str]]


class Journal:
    """Where the coordinator's state lives between restarts.

    Implementations must:
      1. make :meth:`write` atomic: after a crash, either all of a change set is there or none of it;
      2. return from :meth:`write` only once the change set would survive a kill of this process;
      3. return from :meth:`load` every task and resources version written and not deleted, payloads included,
         as of the last change set written.
    """

    capabilities: JournalCapabilities

    def load(self) -> Replay:
        """Every stored task, resources version, run, system key-value pair, session and transcript turn."""
        raise NotImplementedError

    def write(self, changes: ChangeSet) -> None:
        """Store a change set atomically and durably."""
        raise NotImplementedError

    def checkpoint(self, max_change_sets: int = 256) -> int:
        """Compact up to ``max_change_sets`` of what :meth:`write` appended (optional); returns how many."""
        piece = self.fold_slice(max_change_sets=max_change_sets)
        return 0 if piece is None else self.apply_slice(piece)

    def fold_slice(self, *, max_rows: int = 1 << 30, max_change_sets: int = 256) -> Slice | None:
        """The oldest log entries folded together, up to ``max_rows`` rows or ``max_change_sets`` entries (at least
        one); None when nothing is left to fold or the journal does not compact."""
        return None

    def apply_slice(self, piece: Slice) -> int:
        """Write a folded slice into the snapshot and move past its log entries, atomically; how many entries."""
        return 0

    def checkpointer_arguments(self) -> tuple[list[str], dict[str, str]] | None:
        """How a checkpointer process opens this journal: its command-line arguments and environment; None when
        there is nothing to fold."""
        return None

    def close(self) -> None:
        """Release files; the journal is not used afterwards."""

    def reopen(self) -> Journal:
        """A journal on the same storage, as a restarted coordinator opens it (this one is closed first)."""
        raise NotImplementedError


class MemoryJournal(Journal):
    """Change sets kept in this process only: a coordinator on it forgets everything when its process ends.

    It keeps the contract within its lifetime (``load`` returns what was written); it is not ``durable``.
    For scratch work and benchmarks.
    """

    capabilities = JournalCapabilities(durable=False, survives_power_loss=False)

    def __init__(self) -> None:
        self._fold = Fold()

    def load(self) -> Replay:
        return replay_over((), (), (), (), (), (), self._fold)

    def write(self, changes: ChangeSet) -> None:
        if changes:
            self._fold.add_entry(_entry(changes))

    def reopen(self) -> Journal:
        return self  # the memory is the storage: only this process holds it


class Slice(NamedTuple):
    """Log entries folded together, ready to write into the snapshot."""

    fold: Fold
    end: Any  # where the log continues after the slice (a file position, or a change-set number)
    entries: int
    rows: int


@dataclass
class Fold:
    """Change sets folded together: the last row of each task wins, deletions cancel earlier rows.

    ``created`` holds tasks first written by the folded change sets (with their payloads); ``updated`` holds
    new rows of tasks the snapshot already has (payloads never change, so they are not repeated).
    """

    created: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # id -> full row (TaskRecord order)
    updated: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # id -> row (TASK_ROW_FIELDS order)
    deleted: set[str] = field(default_factory=set)
    resources: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    resources_deleted: set[str] = field(default_factory=set)
    runs: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    runs_deleted: set[str] = field(default_factory=set)
    kv: dict[tuple[str, str], str | None] = field(default_factory=dict)  # None: deleted
    sessions: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    sessions_deleted: set[str] = field(default_factory=set)
    turns: list[tuple[str, str]] = field(default_factory=list)  # (session id, JSON), oldest first

    def add(self, body: bytes) -> int:
        """Fold one encoded change set (a log row) in; how many rows it held."""
        entry = marshal.loads(body)
        self.add_entry(entry)
        return sum(len(rows) for rows in entry.values())

    def add_entry(self, entry: dict[str, Any]) -> None:
        """Fold one change set (as :func:`_entry` makes it) in."""
        payloads, tasks, deleted = entry.get("payloads", ()), entry.get("tasks", ()), entry.get("deleted", ())
        resources, resources_deleted = entry.get("resources", ()), entry.get("resources_deleted", ())
        runs, runs_deleted = entry.get("runs", ()), entry.get("runs_deleted", ())
        for namespace, key, value in entry.get("kv", ()):
            self.kv[(namespace, key)] = value
        new = {task_id: (text, metadata) for task_id, text, metadata in payloads}
        for row in tasks:
            if len(row) < _ROW_LENGTH:  # written by an older release, before fields were added at the end
                row = (*row, *(None,) * (_ROW_LENGTH - len(row)))
            task_id = row[0]
            payload = new.get(task_id)
            if payload is None and task_id in self.created:
                payload = self.created[task_id][_PAYLOAD_AT : _PAYLOAD_AT + 2]
            if payload is None:
                self.updated[task_id] = row
            else:
                self.created[task_id] = (*row[:_PAYLOAD_AT], *payload, *row[_PAYLOAD_AT:])
        for task_id in deleted:
            self.created.pop(task_id, None)
            self.updated.pop(task_id, None)
            self.deleted.add(task_id)
        for row in resources:
            self.resources[row[0]] = row
        for resources_id in resources_deleted:
            self.resources.pop(resources_id, None)
            self.resources_deleted.add(resources_id)
        for row in runs:
            self.runs[row[0]] = row
        for run_id in runs_deleted:
            self.runs.pop(run_id, None)
            self.runs_deleted.add(run_id)
        for row in entry.get("sessions", ()):
            self.sessions[row[0]] = row
        self.turns.extend(entry.get("session_turns", ()))
        for session_id in entry.get("sessions_deleted", ()):
            self.sessions.pop(session_id, None)
            self.sessions_deleted.add(session_id)
            self.turns = [turn for turn in self.turns if turn[0] != session_id]


def _entry(changes: ChangeSet) -> dict[str, Any]:
    """A change set as plain data, without its empty parts."""
    resources = [r.row() for r in changes.resources_added]
    entry = {
        "payloads": changes.payloads,
        "tasks": changes.tasks,
        "deleted": changes.deleted,
        "resources": resources,
        "resources_deleted": changes.resources_deleted,
        "runs": changes.runs,
        "runs_deleted": changes.runs_deleted,
        "kv": changes.kv,
        "sessions": changes.sessions,
        "sessions_deleted": changes.sessions_deleted,
        "session_turns": changes.session_turns,
    }
    return {name: rows for name, rows in entry.items() if rows}


def encode(changes: ChangeSet) -> bytes:
    """A change set as one log record (what :meth:`Fold.add` reads)."""
    return marshal.dumps(_entry(changes))


def replay_over(
    tasks: Iterable[tuple[Any, ...]],
    resources: Iterable[tuple[Any, ...]],
    runs: Iterable[tuple[str, str, str]],
    kv: Iterable[tuple[str, str, str]],
    sessions: Iterable[tuple[str, str, str]],
    turns: Iterable[tuple[str, str]],
    fold: Fold,
) -> Replay:
    """A snapshot's rows (tasks in TaskRecord's order) with the log after it, folded, laid over them."""
    return Replay(
        list(_tasks(tasks, fold)),
        _resources(resources, fold),
        _runs(runs, fold),
        _kv(kv, fold),
        _sessions(sessions, fold),
        _turns(turns, fold),
    )


def _tasks(rows: Iterable[tuple[Any, ...]], fold: Fold) -> Iterator[TaskRecord]:
    if not (fold.updated or fold.deleted or fold.created):
        yield from map(_record, rows)
        return
    for row in rows:
        task_id = row[0]
        if task_id in fold.deleted:
            continue
        update = fold.updated.get(task_id)
        yield _record(row if update is None else _with_update(row, update))
    yield from map(_record, fold.created.values())  # created since the last checkpoint


def _kv(stored_rows: Iterable[tuple[str, str, str]], fold: Fold) -> list[tuple[str, str, str]]:
    stored: dict[tuple[str, str], str | None] = {(ns, key): value for ns, key, value in stored_rows}
    stored.update(fold.kv)
    return [(ns, key, value) for (ns, key), value in stored.items() if value is not None]


def _runs(stored_rows: Iterable[tuple[str, str, str]], fold: Fold) -> list[RunRecord]:
    stored = {row[0]: row for row in stored_rows if row[0] not in fold.runs_deleted}
    stored.update(fold.runs)
    return [RunRecord.from_row(data) for _, _, data in stored.values()]


def _sessions(stored_rows: Iterable[tuple[str, str, str]], fold: Fold) -> list[SessionRecord]:
    stored = {row[0]: row for row in stored_rows if row[0] not in fold.sessions_deleted}
    stored.update(fold.sessions)
    return [SessionRecord.from_row(data) for _, _, data in stored.values()]


def _turns(stored_rows: Iterable[tuple[str, str]], fold: Fold) -> list[tuple[str, str]]:
    kept = [row for row in stored_rows if row[0] not in fold.sessions_deleted]
    return [*kept, *fold.turns]


def _resources(stored_rows: Iterable[tuple[Any, ...]], fold: Fold) -> list[ResourcesRecord]:
    stored = {row[0]: row for row in stored_rows if row[0] not in fold.resources_deleted}
    stored.update(fold.resources)
    return sorted((ResourcesRecord(*row) for row in stored.values()), key=lambda r: (r.tenant, r.version))


def _record(row: tuple[Any, ...]) -> TaskRecord:
    record = TaskRecord(*row)
    record.status = _STATUS[row[_STATUS_AT]]
    return record


def _with_update(row: tuple[Any, ...], update: tuple[Any, ...]) -> tuple[Any, ...]:
    """A snapshot row (TaskRecord order) with a newer row of its changing fields laid over it."""
    return (*update[:_PAYLOAD_AT], *row[_PAYLOAD_AT : _PAYLOAD_AT + 2], *update[_PAYLOAD_AT:])


class SQLiteJournal(Journal):
    """A log of change sets in segment files beside a SQLite snapshot (WAL mode) that checkpoints fold it into.

    ``synchronous="NORMAL"`` survives a kill of the process (a log record is in the OS's hands when the append
    returns); ``"FULL"`` also survives power loss, at the price of an ``fsync`` per append (and per checkpoint).
    The log lives in ``<path>-log/``.
    """

    def __init__(self, path: Path | str, *, synchronous: str = "NORMAL") -> None:
        """
        Args:
            path: The snapshot database file.
            synchronous: ``NORMAL`` (survives a kill) or ``FULL`` (also power loss).
        """
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.capabilities = JournalCapabilities(durable=True, survives_power_loss=synchronous == "FULL")
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        pragmas = ("journal_mode=WAL", f"synchronous={synchronous}", "cache_size=-65536", "temp_store=MEMORY")
        for pragma in (*pragmas, f"busy_timeout={_BUSY_TIMEOUT_MS}"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.executescript(_SCHEMA)
        self._check_schema()
        self._folded = self._folded_position()
        self.log = ChangeLog(Path(f"{self.path}-log"), sync=synchronous == "FULL", after=self._folded.segment)

    @property
    def backlog(self) -> int:
        """Bytes of log not yet folded into the snapshot (what a replay would read after the snapshot)."""
        return self.log.unread_bytes(self._folded_position())

    def _folded_position(self) -> Position:
        """How far the snapshot holds the log (as of this connection's current view)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'folded'").fetchone()
        return START if row is None else Position.parse(row[0])  # nothing folded yet: all of it

    def _check_schema(self) -> None:
        """Stamp a new journal; bring an older one up to date (its data stays as it is); refuse a newer one."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            return
        found = int(row[0])
        if found > SCHEMA_VERSION:
            raise RuntimeError(
                f"journal {self.path} has schema {found}, newer than this ray_runtime understands "
                f"({SCHEMA_VERSION}); upgrade ray_runtime on the head node"
            )
        if found < SCHEMA_VERSION:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for version in range(found + 1, SCHEMA_VERSION + 1):
                    for statement in filter(str.strip, _MIGRATIONS[version].split(";")):
                        self._db.execute(statement)  # not executescript: it would commit the open transaction
                self._fold_log_table()
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            logger.info("journal %s migrated from schema %d to %d", self.path, found, SCHEMA_VERSION)

    def _fold_log_table(self) -> None:
        """Fold the log table of a journal from before schema 4 into the snapshot, and drop it."""
        db = self._db
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'log'").fetchone() is None:
            return
        fold = Fold()
        for (body,) in db.execute("SELECT body FROM log ORDER BY seq"):
            fold.add(body)
        self._write_fold(fold)
        db.execute("DROP TABLE log")

    def write(self, changes: ChangeSet) -> None:
        if changes:
            self.log.append(encode(changes))

    def fold_slice(self, *, max_rows: int = 1 << 30, max_change_sets: int = 256) -> Slice | None:
        start = self._folded
        fold, end, entries, rows = Fold(), start, 0, 0
        with contextlib.closing(self.log.read(start)) as records:
            for record in records:
                end = record.end
                if record.body is not None:
                    rows += fold.add(record.body)
                    entries += 1
                    if rows >= max_rows or entries >= max_change_sets:
                        break
        return None if end == start else Slice(fold, end, entries, rows)

    def apply_slice(self, piece: Slice) -> int:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            self._write_fold(piece.fold)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('folded', ?)", (str(piece.end),))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        self._folded = piece.end
        self.log.drop_before(piece.end.segment)  # the snapshot holds them now
        return piece.entries

    def _write_fold(self, fold: Fold) -> None:
        """Write folded change sets into the snapshot's tables (in the caller's transaction)."""
        db = self._db
        db.executemany(_INSERT_TASK, fold.created.values())
        db.executemany(_UPDATE_TASK, [(*row[1:], row[0]) for row in fold.updated.values()])
        db.executemany("DELETE FROM tasks WHERE id = ?", [(task_id,) for task_id in fold.deleted])
        db.executemany(
            f"INSERT OR REPLACE INTO resources ({_RESOURCE_COLUMNS}) VALUES (?, ?, ?, ?, ?)", fold.resources.values()
        )
        db.executemany("DELETE FROM resources WHERE id = ?", [(i,) for i in fold.resources_deleted])
        db.executemany("INSERT OR REPLACE INTO runs (id, tenant, data) VALUES (?, ?, ?)", fold.runs.values())
        db.executemany("DELETE FROM runs WHERE id = ?", [(i,) for i in fold.runs_deleted])
        db.executemany(
            "INSERT OR REPLACE INTO kv (namespace, key, value) VALUES (?, ?, ?)",
            [(ns, key, value) for (ns, key), value in fold.kv.items() if value is not None],
        )
        db.executemany(
            "DELETE FROM kv WHERE namespace = ? AND key = ?",
            [(ns, key) for (ns, key), value in fold.kv.items() if value is None],
        )
        db.executemany("INSERT OR REPLACE INTO sessions (id, tenant, data) VALUES (?, ?, ?)", fold.sessions.values())
        gone = [(session_id,) for session_id in fold.sessions_deleted]
        db.executemany("DELETE FROM sessions WHERE id = ?", gone)
        db.executemany("DELETE FROM session_turns WHERE session_id = ?", gone)
        db.executemany("INSERT INTO session_turns (session_id, data) VALUES (?, ?)", fold.turns)
        db.executemany(  # the registry keeps the newest TURNS_KEPT turns of a session: so does the snapshot
            "DELETE FROM session_turns WHERE session_id = ? AND n NOT IN "
            "(SELECT n FROM session_turns WHERE session_id = ? ORDER BY n DESC LIMIT ?)",
            [(session_id, session_id, TURNS_KEPT) for session_id in {s for s, _ in fold.turns}],
        )

    def load(self) -> Replay:
        for _ in range(_LOAD_ATTEMPTS):
            replay, folded = self._read_all()
            if self._folded_position() == folded:
                self._folded = folded
                return replay
            # A checkpointer (of a previous coordinator, on its way out) folded past where the read began and may
            # have deleted segments it read from: read again from the new position.
        raise RuntimeError(f"journal {self.path} kept moving while it was read; is another coordinator running?")

    def _read_all(self) -> tuple[Replay, Position]:
        """The snapshot and the log after it, and the position they were read at."""
        db = self._db
        db.execute("BEGIN")  # one read snapshot of the database: its tables agree with its position
        try:
            folded = self._folded_position()
            fold = Fold()
            for body, _ in self.log.read(folded):
                if body is not None:
                    fold.add(body)
            replay = replay_over(
                db.execute(f"SELECT {', '.join(_RECORD_FIELDS)} FROM tasks"),
                db.execute(f"SELECT {_RESOURCE_COLUMNS} FROM resources"),
                db.execute("SELECT id, tenant, data FROM runs"),
                db.execute("SELECT namespace, key, value FROM kv"),
                db.execute("SELECT id, tenant, data FROM sessions"),
                db.execute("SELECT session_id, data FROM session_turns ORDER BY n"),
                fold,
            )
        finally:
            db.execute("COMMIT")
        return replay, folded

    def close(self) -> None:
        self.log.close()
        self._db.close()

    def checkpointer_arguments(self) -> tuple[list[str], dict[str, str]]:
        return [str(self.path)], {}

    def reopen(self) -> Journal:
        self.close()
        return SQLiteJournal(self.path, synchronous="FULL" if self.capabilities["survives_power_loss"] else "NORMAL")

    @property
    def location(self) -> str:
        """Where it is, for people (``info()``)."""
        return str(self.path)
