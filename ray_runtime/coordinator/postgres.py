"""The coordinator's state in PostgreSQL: a journal, a snapshot store and a fencing epoch in one database, so
losing the node that runs the coordinator (the head included) loses nothing, and the coordinator can run anywhere.

One schema per coordinator (``rr_<name>``), created and migrated here. A write is what the file journal's is: one
record per change set, appended to a log (table ``log``: its sequence number and the change set, marshalled), in
one statement that is its own transaction. Calls that arrive together share that record (the actor's group commit),
and the commit waits for PostgreSQL's WAL flush (``synchronous_commit = on``): an acknowledged change survives a
crash of PostgreSQL, not only of the coordinator. The checkpointer process folds the log into ordinary tables (each
task written once however often it changed) and deletes what it folded, in one transaction; a replay reads the
tables and folds the log after them over them, in one read snapshot. Applying each change set to the tables in the
write itself (upserts, pipelined) cost a batch of calls one statement per row: a batched enqueue ran at 0.41x of
the file journal; a record costs it one row.

**Exactly once.** Every change set carries the next number of the coordinator's sequence, and its statement
moves the stored sequence from the number before it to its own as it inserts the record. If the connection drops
before the commit is confirmed, the write is retried on a new connection: a sequence already at its number says the
first try landed, and it is not applied again.

**Fencing.** A coordinator that opens the journal takes a new epoch (``epoch + 1``), and every write moves the
sequence only where the epoch is still its own. A coordinator that was partitioned away and comes back after its
successor started finds the epoch moved: its write fails with :class:`FencedError`, and it stops; nothing it
answered afterwards is lost, because it can answer nothing that needs a write.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from ray_runtime.coordinator.journal import (
    FencedError,
    Fold,
    Journal,
    JournalCapabilities,
    Replay,
    Slice,
    encode,
    replay_over,
)
from ray_runtime.coordinator.queues import TaskRecord
from ray_runtime.coordinator.session_table import TURNS_KEPT
from ray_runtime.coordinator.state import TASK_ROW_FIELDS, ChangeSet
from ray_runtime.errors import NotFoundError

__all__ = [
    "SCHEMA_VERSION",
    "URL_VARIABLE",
    "Database",
    "FencedError",
    "PostgresJournal",
    "PostgresSnapshotStore",
    "compress_quickly",
    "is_postgres_url",
    "journal_location",
    "redact",
    "schema_name",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA_VERSION = 2
KEPT_PER_SESSION = 2  # snapshots kept per session (a fork may be reading the one before the newest)
_RECORD_FIELDS = tuple(f.name for f in fields(TaskRecord))
_TYPES = {"str": "TEXT", "int": "BIGINT", "float": "DOUBLE PRECISION", "TaskStatus": "TEXT"}
URL_VARIABLE = "RAY_RUNTIME_JOURNAL_URL"  # where a checkpointer finds the URL: never on a command line
_RETRY_FOR_S = 120.0  # how long a write (and a read) keeps trying while PostgreSQL is away
_LOG_PAGE = 256  # log records a fold reads per query
_SCHEMA_LOCK = 0x72725F73636801  # an advisory lock held while a schema is created or migrated


def is_postgres_url(location: object) -> bool:
    """Whether a journal location is a PostgreSQL URL (``postgresql://`` or ``postgres://``)."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """A connection URL fit to show: user, host, port and database, never the password (nor other secrets)."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(an unreadable URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    shown = f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"
    safe = {key: value for key, value in parts.items() if key in ("sslmode", "target_session_attrs")}
    return shown + ("?" + "&".join(f"{k}={v}" for k, v in safe.items()) if safe else "")


def compress_quickly(cursor: psycopg.Cursor, table: str, column: str) -> None:
    """Compress a column's large values with LZ4 rather than PostgreSQL's default (pglz): a log record or an event
    of 100 KB is written a third faster. A server built without LZ4 keeps its default."""
    try:
        with cursor.connection.transaction():  # a savepoint: a refusal leaves the caller's transaction usable
            cursor.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET COMPRESSION lz4").format(
                    sql.Identifier(table), sql.Identifier(column)
                )
            )
    except psycopg.errors.FeatureNotSupported:
        logger.info("this PostgreSQL has no LZ4: %s.%s keeps its default compression", table, column)


def schema_name(coordinator: str) -> str:
    """The schema a coordinator keeps its state in (several coordinators may share one database)."""
    return "rr_" + re.sub(r"[^a-z0-9_]", "_", coordinator.lower())[:50]


def journal_location(url: str, coordinator: str) -> str:
    """Where a coordinator's PostgreSQL journal is, fit to show (its ``info()["journal"]``): the redacted URL and
    the schema."""
    return f"{redact(url)} (schema {schema_name(coordinator)})"


def _column_type(annotation: str) -> str:
    kind = annotation.split("|")[0].strip()
    return _TYPES[kind]


_TASK_COLUMNS = {f.name: _column_type(str(f.type)) for f in fields(TaskRecord)}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    schema_version INTEGER NOT NULL, epoch BIGINT NOT NULL, seq BIGINT NOT NULL, taken_at DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS resources (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, version BIGINT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS kv (namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (namespace, key));
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS session_turns (n BIGSERIAL PRIMARY KEY, session_id TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS session_turns_by_session ON session_turns (session_id, n);
CREATE TABLE IF NOT EXISTS snapshots (
    session_id TEXT NOT NULL, key TEXT NOT NULL, data BYTEA NOT NULL, at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (session_id, key)
);
CREATE TABLE IF NOT EXISTS audit (n BIGSERIAL PRIMARY KEY, at DOUBLE PRECISION NOT NULL, entry TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS log (seq BIGINT PRIMARY KEY, body BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS folded (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row), seq BIGINT NOT NULL
);
"""
# What each version changed beyond the tables above (created IF NOT EXISTS) and the task columns (added when
# missing, from TaskRecord's fields): a journal of an older version is brought up to date when it is opened.
_MIGRATIONS: dict[int, str] = {
    1: "",
    2: "",  # writes append to the log table; the tables hold what is folded (version 1 wrote them directly)
}
_APPEND = """
WITH moved AS (UPDATE state SET seq = %(seq)s WHERE epoch = %(epoch)s AND seq = %(seq)s - 1 RETURNING seq)
INSERT INTO log (seq, body) SELECT seq, %(body)s FROM moved
"""


class Database:
    """One connection to the journal's schema, made again when it drops: statements that fail because PostgreSQL
    is away (restarting, failing over) are tried again on a new connection for up to ``retry_for_s``."""

    def __init__(self, url: str, schema: str, *, synchronous_commit: str, retry_for_s: float) -> None:
        self.url = url
        self.schema = schema
        self.synchronous_commit = synchronous_commit
        self.retry_for_s = retry_for_s
        self.lock = threading.RLock()
        self._connection: psycopg.Connection | None = None

    def connection(self) -> psycopg.Connection:
        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            with self._connection.cursor() as cursor:
                cursor.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
                cursor.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
                cursor.execute(sql.SQL("SET synchronous_commit TO {}").format(sql.Literal(self.synchronous_commit)))
        return self._connection

    def run(self, work: Callable[[psycopg.Connection], T], what: str) -> T:
        """``work(connection)`` (one transaction, or a read), again on a new connection while PostgreSQL is away."""
        deadline = time.monotonic() + self.retry_for_s
        delay = 0.05
        with self.lock:
            while True:
                try:
                    return work(self.connection())
                except psycopg.OperationalError as exc:
                    self.drop()
                    if time.monotonic() + delay > deadline:
                        raise RuntimeError(
                            f"PostgreSQL did not answer for {self.retry_for_s:.0f} s ({what}): {exc}"
                        ) from None
                    logger.warning("PostgreSQL is away (%s): %s; trying again", what, str(exc).splitlines()[0])
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)

    def drop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
        self._connection = None

    def close(self) -> None:
        with self.lock:
            self.drop()


class PostgresJournal(Journal):
    """The coordinator's journal in a PostgreSQL database (see the module docstring).

    Args:
        url: ``postgresql://user:password@host:port/db?sslmode=...``; its password is never shown.
        name: The coordinator's name: its state lives in schema ``rr_<name>``.
        synchronous: ``NORMAL`` or ``FULL``: both commit with ``synchronous_commit = on`` (an acknowledged write
            survives a crash of PostgreSQL, as the file journal's ``FULL`` survives power loss).
        retry_for_s: How long writes and reads keep trying while PostgreSQL is away before they fail.
        take_over: Take a new epoch (a coordinator); False for a checkpointer, which only folds the log.
    """

    def __init__(
        self,
        url: str,
        name: str,
        *,
        synchronous: str = "NORMAL",
        retry_for_s: float = _RETRY_FOR_S,
        take_over: bool = True,
    ) -> None:
        self.url = url
        self.name = name
        self.schema = schema_name(name)
        self.location = journal_location(url, name)
        self.capabilities = JournalCapabilities(durable=True, survives_power_loss=True)
        self.db = Database(url, self.schema, synchronous_commit="on", retry_for_s=retry_for_s)
        self.fenced: str | None = None
        if take_over:
            self.db.run(self._create, "creating the schema")
            self.epoch, self.seq = self.db.run(self._take_over, "taking the journal over")
        else:  # a checkpointer's (its coordinator made the schema): it folds the log, it never writes a change set
            self.epoch, self.seq = -1, -1
            self.fenced = f"journal {self.location} was opened to fold its log, not to write"

    # ------------------------------------------------------------------------------------------- schema

    def _create(self, connection: psycopg.Connection) -> None:
        """Create the schema's tables, or bring an older one up to date; refuse a newer one."""
        with connection.transaction(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            cursor.execute(_SCHEMA)
            for column, kind in _TASK_COLUMNS.items():  # the task columns, added as TaskRecord gains fields
                if column != "id":
                    cursor.execute(
                        sql.SQL("ALTER TABLE tasks ADD COLUMN IF NOT EXISTS {} {}").format(
                            sql.Identifier(column), sql.SQL(kind)
                        )
                    )
            cursor.execute("ALTER TABLE tasks ALTER COLUMN input SET NOT NULL")  # a no-op once it is set
            compress_quickly(cursor, "log", "body")
            row = cursor.execute("SELECT schema_version FROM state").fetchone()
            if row is None:
                cursor.execute("INSERT INTO state (schema_version, epoch, seq) VALUES (%s, 0, 0)", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise RuntimeError(
                    f"journal {self.location} has schema {row[0]}, newer than this ray_runtime understands "
                    f"({SCHEMA_VERSION}); upgrade ray_runtime"
                )
            else:
                for version in range(row[0] + 1, SCHEMA_VERSION + 1):
                    for statement in filter(str.strip, _MIGRATIONS[version].split(";")):
                        cursor.execute(statement)
                cursor.execute("UPDATE state SET schema_version = %s", (SCHEMA_VERSION,))
            # The tables hold every change set up to here (a new journal: none; version 1: all it wrote).
            cursor.execute("INSERT INTO folded (seq) SELECT seq FROM state ON CONFLICT DO NOTHING")

    def _take_over(self, connection: psycopg.Connection) -> tuple[int, int]:
        """A new epoch for this coordinator: from now on, writes of any earlier one are refused."""
        with connection.transaction(), connection.cursor() as cursor:
            epoch, seq = cursor.execute(
                "UPDATE state SET epoch = epoch + 1, taken_at = %s RETURNING epoch, seq", (time.time(),)
            ).fetchone()
        logger.info("journal %s taken over at epoch %d (sequence %d)", self.location, epoch, seq)
        return epoch, seq

    # -------------------------------------------------------------------------------------------- write

    def write(self, changes: ChangeSet) -> None:
        if not changes:
            return
        if self.fenced is not None:
            raise FencedError(self.fenced)
        seq = self.seq + 1
        self.db.run(lambda connection: self._apply(connection, changes, seq), f"writing change set {seq}")
        self.seq = seq

    def _apply(self, connection: psycopg.Connection, changes: ChangeSet, seq: int) -> None:
        """One change set appended to the log in one statement, fenced by the epoch and numbered by the sequence."""
        appended = connection.execute(_APPEND, {"seq": seq, "epoch": self.epoch, "body": encode(changes)}).rowcount
        if appended == 1:
            return
        epoch, stored = connection.execute("SELECT epoch, seq FROM state").fetchone()
        if epoch != self.epoch:
            self.fenced = (
                f"a newer coordinator took journal {self.location} over (epoch {epoch}, this one's "
                f"{self.epoch}): this coordinator stops"
            )
            raise FencedError(self.fenced)
        if stored < seq:
            raise RuntimeError(f"journal {self.location} is at sequence {stored}, this write is {seq}")
        # else an earlier try committed, and its confirmation was lost: it is not applied twice

    # ------------------------------------------------------------------------------------------ folding

    @property
    def backlog(self) -> int:
        """Bytes of log not yet folded into the tables (what a replay would read after them)."""
        row = self.db.run(
            lambda connection: connection.execute("SELECT coalesce(sum(octet_length(body)), 0) FROM log").fetchone(),
            "measuring the log",
        )
        return int(row[0])

    def fold_slice(self, *, max_rows: int = 1 << 30, max_change_sets: int = 256) -> Slice | None:
        return self.db.run(lambda connection: self._fold(connection, max_rows, max_change_sets), "reading the log")

    def _fold(self, connection: psycopg.Connection, max_rows: int, max_change_sets: int) -> Slice | None:
        (start,) = connection.execute("SELECT seq FROM folded").fetchone()
        fold, end, entries, rows = Fold(), start, 0, 0
        while rows < max_rows and entries < max_change_sets:
            page = connection.execute(
                "SELECT seq, body FROM log WHERE seq > %s ORDER BY seq LIMIT %s",
                (end, min(_LOG_PAGE, max_change_sets - entries)),
            ).fetchall()
            for seq, body in page:
                rows += fold.add(body)
                entries += 1
                end = seq
                if rows >= max_rows:
                    break
            if len(page) < _LOG_PAGE:
                break
        return None if entries == 0 else Slice(fold, (start, end), entries, rows)

    def apply_slice(self, piece: Slice) -> int:
        """Write a folded slice into the tables and delete its log records, in one transaction; a slice another
        checkpointer applied first changes nothing (its records are the same, and the position says so)."""
        start, end = piece.end

        def apply(connection: psycopg.Connection) -> int:
            with connection.transaction(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO off")  # lost whole or kept whole: the log stays
                cursor.execute("UPDATE folded SET seq = %s WHERE seq = %s", (end, start))
                if cursor.rowcount != 1:
                    return 0
                _write_fold(cursor, piece.fold)
                cursor.execute("DELETE FROM log WHERE seq <= %s", (end,))
            return piece.entries

        return self.db.run(apply, "folding the log")

    # --------------------------------------------------------------------------------------------- load

    def load(self) -> Replay:
        return self.db.run(self._read_all, "reading the journal")

    def _read_all(self, connection: psycopg.Connection) -> Replay:
        """The tables and the log after them, in one read snapshot (a fold running meanwhile is not seen)."""
        with connection.transaction(), connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            (folded,) = cursor.execute("SELECT seq FROM folded").fetchone()
            fold = Fold()
            for (body,) in cursor.execute("SELECT body FROM log WHERE seq > %s ORDER BY seq", (folded,)):
                fold.add(body)
            columns = sql.SQL(", ").join(map(sql.Identifier, _RECORD_FIELDS))
            tasks = cursor.execute(sql.SQL("SELECT {} FROM tasks").format(columns)).fetchall()
            return replay_over(
                tasks,
                cursor.execute("SELECT id, tenant, version, created_at, body FROM resources").fetchall(),
                cursor.execute("SELECT id, tenant, data FROM runs").fetchall(),
                cursor.execute("SELECT namespace, key, value FROM kv").fetchall(),
                cursor.execute("SELECT id, tenant, data FROM sessions").fetchall(),
                cursor.execute("SELECT session_id, data FROM session_turns ORDER BY n").fetchall(),
                fold,
            )

    def checkpointer_arguments(self) -> tuple[list[str], dict[str, str]]:
        return ["--postgres", self.name], {URL_VARIABLE: self.url}

    def close(self) -> None:
        self.db.close()

    def reopen(self) -> Journal:
        self.close()
        return PostgresJournal(self.url, self.name, retry_for_s=self.db.retry_for_s)


_COLUMNS = sql.SQL(", ").join(map(sql.Identifier, _RECORD_FIELDS))
_CHANGING = sql.SQL(", ").join(map(sql.Identifier, TASK_ROW_FIELDS))
_FOLD_TABLES = sql.SQL(
    "CREATE TEMPORARY TABLE folded_new ON COMMIT DROP AS SELECT {columns} FROM tasks WITH NO DATA; "
    "CREATE TEMPORARY TABLE folded_changed ON COMMIT DROP AS SELECT {changing} FROM tasks WITH NO DATA"
).format(columns=_COLUMNS, changing=_CHANGING)
_UPSERT = sql.SQL(
    "INSERT INTO tasks ({columns}) SELECT {columns} FROM folded_new ON CONFLICT (id) DO UPDATE SET {updates}"
).format(
    columns=_COLUMNS,
    updates=sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name)) for name in _RECORD_FIELDS[1:]
    ),
)
_UPDATE = sql.SQL("UPDATE tasks t SET {} FROM folded_changed c WHERE t.id = c.id").format(
    sql.SQL(", ").join(sql.SQL("{0} = c.{0}").format(sql.Identifier(name)) for name in TASK_ROW_FIELDS[1:])
)


def _copy(cursor: psycopg.Cursor, table: str, columns: sql.Composable, rows: Any) -> None:
    with cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table), columns)) as copy:
        for row in rows:
            copy.write_row(row)


def _write_fold(cursor: psycopg.Cursor, fold: Fold) -> None:
    """Folded change sets into the tables, as upserts and deletes (in the caller's transaction). Task rows, the
    bulk of a fold, are copied into temporary tables and merged by one statement each: a statement per row cost
    the server three times as much."""
    if fold.created or fold.updated:
        cursor.execute(_FOLD_TABLES)
        if fold.created:
            _copy(cursor, "folded_new", _COLUMNS, fold.created.values())
            cursor.execute(_UPSERT)
        if fold.updated:
            _copy(cursor, "folded_changed", _CHANGING, fold.updated.values())
            cursor.execute(_UPDATE)
    if fold.deleted:
        cursor.execute("DELETE FROM tasks WHERE id = ANY(%s)", (list(fold.deleted),))
    if fold.resources:
        cursor.executemany(
            "INSERT INTO resources (id, tenant, version, created_at, body) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body",
            list(fold.resources.values()),
        )
    if fold.resources_deleted:
        cursor.execute("DELETE FROM resources WHERE id = ANY(%s)", (list(fold.resources_deleted),))
    if fold.runs:
        cursor.executemany(
            "INSERT INTO runs (id, tenant, data) VALUES (%s, %s, %s) ON CONFLICT (id) DO UPDATE SET data = "
            "EXCLUDED.data",
            list(fold.runs.values()),
        )
    if fold.runs_deleted:
        cursor.execute("DELETE FROM runs WHERE id = ANY(%s)", (list(fold.runs_deleted),))
    stored = [(ns, key, value) for (ns, key), value in fold.kv.items() if value is not None]
    if stored:
        cursor.executemany(
            "INSERT INTO kv (namespace, key, value) VALUES (%s, %s, %s) ON CONFLICT (namespace, key) "
            "DO UPDATE SET value = EXCLUDED.value",
            stored,
        )
    gone = [(ns, key) for (ns, key), value in fold.kv.items() if value is None]
    if gone:
        cursor.executemany("DELETE FROM kv WHERE namespace = %s AND key = %s", gone)
    if fold.sessions:
        cursor.executemany(
            "INSERT INTO sessions (id, tenant, data) VALUES (%s, %s, %s) ON CONFLICT (id) DO UPDATE SET data = "
            "EXCLUDED.data",
            list(fold.sessions.values()),
        )
    if fold.sessions_deleted:
        closed = list(fold.sessions_deleted)
        cursor.execute("DELETE FROM sessions WHERE id = ANY(%s)", (closed,))
        cursor.execute("DELETE FROM session_turns WHERE session_id = ANY(%s)", (closed,))
        cursor.execute("DELETE FROM snapshots WHERE session_id = ANY(%s)", (closed,))
    if fold.turns:
        cursor.executemany("INSERT INTO session_turns (session_id, data) VALUES (%s, %s)", fold.turns)
        cursor.execute(  # the registry keeps the newest TURNS_KEPT turns of a session: so do the tables
            "DELETE FROM session_turns t USING (SELECT n, row_number() OVER (PARTITION BY session_id ORDER BY n "
            "DESC) AS newer FROM session_turns WHERE session_id = ANY(%s)) old WHERE t.n = old.n AND old.newer > %s",
            (list({session_id for session_id, _ in fold.turns}), TURNS_KEPT),
        )


# ------------------------------------------------------------------------------------------- snapshots


class PostgresSnapshotStore:
    """Session snapshots in the journal's database (table ``snapshots``), beside the registry that names them.

    A table of ``bytea`` rather than large objects: a snapshot is written and deleted in ordinary transactions (a
    closed session's rows go with it, nothing is left for ``vacuumlo``), ``pg_dump`` of the schema carries them,
    and TOAST compresses them; at the default cap (64 MiB) a value is far below ``bytea``'s 1 GB.
    """

    def __init__(self, url: str, name: str, *, retry_for_s: float = _RETRY_FOR_S) -> None:
        self.db = Database(url, schema_name(name), synchronous_commit="on", retry_for_s=retry_for_s)

    def put(self, session_id: str, data: bytes) -> dict[str, Any]:
        """Store a snapshot; returns its checkpoint record (key, bytes, at). The newest two are kept."""
        key, at = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}", time.time()
        self.store(session_id, key, data, at)
        return {"key": key, "bytes": len(data), "at": at}

    def store(self, session_id: str, key: str, data: bytes, at: float | None = None) -> None:
        """Store a snapshot under a key it already has (a migration); the newest two of a session are kept."""
        at = time.time() if at is None else at

        def store(connection: psycopg.Connection) -> None:
            with connection.transaction(), connection.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO snapshots (session_id, key, data, at) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (session_id, key, data, at),
                )
                cursor.execute(
                    "DELETE FROM snapshots WHERE session_id = %s AND key NOT IN (SELECT key FROM snapshots WHERE "
                    "session_id = %s ORDER BY key DESC LIMIT %s)",
                    (session_id, session_id, KEPT_PER_SESSION),
                )

        self.db.run(store, "storing a snapshot")

    def get(self, session_id: str, key: str) -> bytes:
        """One snapshot's bytes."""
        row = self.db.run(
            lambda connection: connection.execute(
                "SELECT data FROM snapshots WHERE session_id = %s AND key = %s", (session_id, key)
            ).fetchone(),
            "reading a snapshot",
        )
        if row is None:
            raise NotFoundError(f"session {session_id!r} has no snapshot {key!r}", session_id=session_id)
        return bytes(row[0])

    def delete(self, session_id: str) -> None:
        """Every snapshot of a session."""
        self.db.run(
            lambda connection: connection.execute("DELETE FROM snapshots WHERE session_id = %s", (session_id,)),
            "deleting snapshots",
        )

    def items(self) -> Iterator[tuple[str, str, bytes]]:
        """Every snapshot: (session id, key, bytes), for a migration."""
        rows = self.db.run(
            lambda connection: connection.execute(
                "SELECT session_id, key, data FROM snapshots ORDER BY 1, 2"
            ).fetchall(),
            "reading snapshots",
        )
        for session_id, key, data in rows:
            yield session_id, key, bytes(data)

    def close(self) -> None:
        self.db.close()
