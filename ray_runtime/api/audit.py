"""The audit log: one JSON entry per mutating call (who, what, when, outcome); never bodies or secrets.

It goes where the coordinator's state is: a JSON-lines file beside the journal (``audit.jsonl``), or, with the
journal in PostgreSQL (``RAY_RUNTIME_JOURNAL_URL``), the ``audit`` table of the coordinator's schema, so losing
the head loses none of it. Entries reach PostgreSQL from a background thread, in batches, kept and sent again
while it is away.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["AuditLog"]

logger = logging.getLogger(__name__)
_BATCH = 500


class AuditLog:
    """Records audit entries through a sink (a file, or PostgreSQL); build one with :meth:`file` or
    :meth:`postgres`."""

    def __init__(
        self, sink: Callable[[float, str], None], location: str, close: Callable[[], None] = lambda: None
    ) -> None:
        self._sink = sink
        self.location = location
        self.close = close

    @classmethod
    def file(cls, path: Path) -> AuditLog:
        """Entries appended to a JSON-lines file (one writer lock per process). The file stays open, each entry
        written through at once; moved or removed (rotated), it is opened again by its name."""
        path = path.expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = threading.Lock()
        file: list[Any] = []

        def append(at: float, line: str) -> None:
            with lock:
                if not file or _replaced(path, file[0]):
                    if file:
                        file.pop().close()
                    file.append(path.open("a", buffering=1))
                file[0].write(line + "\n")

        def close() -> None:
            with lock:
                if file:
                    file.pop().close()

        return cls(append, str(path), close)

    @classmethod
    def postgres(cls, url: str, coordinator: str) -> AuditLog:
        """Entries inserted into the ``audit`` table of the coordinator's schema, in batches, by a thread."""
        from ray_runtime.coordinator.postgres import Database, redact, schema_name

        database = Database(url, schema_name(coordinator), synchronous_commit="on", retry_for_s=3600)
        pending: queue.Queue[tuple[float, str]] = queue.Queue()

        def insert_forever() -> None:
            while True:
                batch = [pending.get()]
                while len(batch) < _BATCH and not pending.empty():
                    batch.append(pending.get_nowait())
                try:
                    database.run(
                        lambda connection, rows=batch: connection.cursor().executemany(
                            "INSERT INTO audit (at, entry) VALUES (%s, %s)", rows
                        ),
                        "writing the audit log",
                    )
                except Exception:
                    logger.exception("could not write %d audit entries; they are dropped", len(batch))

        threading.Thread(target=insert_forever, name="audit-log", daemon=True).start()
        return cls(lambda at, line: pending.put((at, line)), f"{redact(url)} (table audit)")

    def record(
        self, *, key_id: str | None, tenant: str | None, method: str, path: str, status: int, **extra: Any
    ) -> None:
        at = round(time.time(), 3)
        entry = {
            "at": at,
            "key_id": key_id,
            "tenant": tenant,
            "action": f"{method} {path}",
            "status": status,
            "outcome": "ok" if status < 400 else "refused" if status < 500 else "error",
            **extra,
        }
        self._sink(at, json.dumps(entry, separators=(",", ":")))


def _replaced(path: Path, file: Any) -> bool:
    """Whether ``path`` no longer names the open ``file`` (it was moved or removed)."""
    try:
        return os.stat(path).st_ino != os.fstat(file.fileno()).st_ino
    except FileNotFoundError:
        return True
