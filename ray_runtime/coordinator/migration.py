"""Moving a coordinator's state between journals, offline: files (SQLite snapshot and log) to PostgreSQL and back.

Everything is copied: tasks with their payloads and attempts, resources versions, plugin runs, the system store
(API keys, tenant limits), sessions with their transcripts, and the session snapshots their checkpoints name. The
target must be empty. What was copied is then read back from the target afresh and compared with the source, kind
by kind, by count and by a SHA-256 over every row, so a migration either proves itself or says what differs.

Offline: stop the coordinator first. A source file journal whose checkpointer lock is held (a coordinator runs on
it) is refused; a source in PostgreSQL is taken over (a new epoch), so a coordinator still running on it can write
nothing more.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
from collections.abc import Iterator
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

from ray_runtime.coordinator.journal import Journal, Replay, SQLiteJournal
from ray_runtime.coordinator.queues import task_row
from ray_runtime.coordinator.snapshots import SnapshotStore
from ray_runtime.coordinator.state import ChangeSet
from ray_runtime.errors import ConflictError, InvalidArgumentError

__all__ = ["Migration", "Store", "migrate", "open_store"]


@dataclass
class Store:
    """A coordinator's state where it lives: its journal and its session snapshots."""

    location: str  # for people: a path, or a URL without its password
    journal: Journal
    snapshots: Any  # SnapshotStore or PostgresSnapshotStore

    def close(self) -> None:
        self.journal.close()
        closing = getattr(self.snapshots, "close", None)
        if closing is not None:
            closing()


@dataclass
class Migration:
    """What a migration copied, kind by kind (counts), and whether the target read back the same."""

    source: str
    target: str
    counts: dict[str, int]
    checksums: dict[str, str]
    verified: bool


def open_store(location: str, name: str = "coordinator") -> Store:
    """The store at ``location``: ``postgresql://...``, a journal file (``<name>.sqlite3``), or a storage folder
    (``RAY_RUNTIME_STORAGE``: its ``coordinator/<name>.sqlite3``)."""
    from ray_runtime.coordinator.postgres import PostgresJournal, PostgresSnapshotStore, is_postgres_url, redact

    if is_postgres_url(location):
        journal = PostgresJournal(location, name)
        return Store(redact(location), journal, PostgresSnapshotStore(location, name))
    path = Path(location).expanduser()
    if path.suffix != ".sqlite3":
        path = path / "coordinator" / f"{name}.sqlite3"
    path = path.resolve()
    return Store(str(path), SQLiteJournal(path), SnapshotStore(path.with_name(f"{path.stem}-sessions")))


@contextlib.contextmanager
def _offline(location: str, name: str) -> Iterator[None]:
    """Hold a file journal's checkpointer lock for the migration (refusing one a coordinator runs on)."""
    from ray_runtime.coordinator.postgres import is_postgres_url

    if is_postgres_url(location):
        yield
        return
    path = Path(location).expanduser()
    if path.suffix != ".sqlite3":
        path = path / "coordinator" / f"{name}.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path.resolve()}.checkpointer.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConflictError(
                f"a coordinator runs on {path} (its checkpointer holds the journal): stop it first "
                "(`ray-runtime down`, or kill the coordinator actor) and migrate offline"
            ) from None
        yield


def migrate(source: str, target: str, *, name: str = "coordinator") -> Migration:
    """Copy the coordinator ``name``'s state from ``source`` to ``target`` (both locations as
    :func:`open_store` takes them), then verify the copy. Raises ``ConflictError`` if the target is not empty
    or a coordinator runs on the source."""
    if source == target:
        raise InvalidArgumentError("target", "is the source")
    with _offline(source, name), _offline(target, name):
        origin, destination = open_store(source, name), open_store(target, name)
        try:
            replay = origin.journal.load()
            if any(destination.journal.load()):
                raise ConflictError(f"the target {destination.location} holds a coordinator's state already")
            destination.journal.write(_change_set(replay))
            snapshots = _copy_snapshots(origin, destination, replay)
            while destination.journal.checkpoint():  # fold the copy into the tables it is read from
                pass
            counts, checksums = _fingerprint(replay, snapshots)
            copied = destination.journal.reopen()
            destination.journal = copied
            check_counts, check_sums = _fingerprint(copied.load(), _read_snapshots(destination, replay))
        finally:
            origin.close()
            destination.close()
    return Migration(
        source=origin.location,
        target=destination.location,
        counts=counts,
        checksums=checksums,
        verified=check_counts == counts and check_sums == checksums,
    )


def _change_set(replay: Replay) -> ChangeSet:
    """Everything in a replay as one change set (what the journal's own writes carry)."""
    return ChangeSet(
        payloads=[(t.id, t.input, t.metadata) for t in replay.tasks],
        tasks=[task_row(t) for t in replay.tasks],
        resources_added=list(replay.resources),
        runs=[r.row() for r in replay.runs],
        kv=list(replay.kv),
        sessions=[s.row() for s in replay.sessions],
        session_turns=list(replay.session_turns),
    )


def _snapshot_keys(replay: Replay) -> list[tuple[str, str]]:
    """The snapshots the sessions' checkpoints name (what a resume or a fork reads)."""
    return sorted((s.id, s.checkpoint["key"]) for s in replay.sessions if s.checkpoint)


def _copy_snapshots(origin: Store, destination: Store, replay: Replay) -> dict[tuple[str, str], bytes]:
    copied = {}
    for session_id, key in _snapshot_keys(replay):
        data = origin.snapshots.get(session_id, key)
        destination.snapshots.store(session_id, key, data)
        copied[(session_id, key)] = data
    return copied


def _read_snapshots(store: Store, replay: Replay) -> dict[tuple[str, str], bytes]:
    return {(session_id, key): store.snapshots.get(session_id, key) for session_id, key in _snapshot_keys(replay)}


def _fingerprint(replay: Replay, snapshots: dict[tuple[str, str], bytes]) -> tuple[dict[str, int], dict[str, str]]:
    """Counts and a SHA-256 per kind, over rows in a fixed order (the same state gives the same fingerprint)."""
    kinds: dict[str, list[Any]] = {
        "tasks": sorted((astuple(t)[:3], str(t.status.value), astuple(t)[4:]) for t in replay.tasks),
        "resources": sorted(astuple(r) for r in replay.resources),
        "runs": sorted(r.row() for r in replay.runs),
        "kv": sorted(replay.kv),
        "sessions": sorted(s.row() for s in replay.sessions),
        "session_turns": list(replay.session_turns),
        "snapshots": sorted((key, hashlib.sha256(data).hexdigest()) for key, data in snapshots.items()),
    }
    counts = {kind: len(rows) for kind, rows in kinds.items()}
    checksums = {
        kind: hashlib.sha256(json.dumps(rows, default=str, separators=(",", ":")).encode()).hexdigest()
        for kind, rows in kinds.items()
    }
    return counts, checksums
