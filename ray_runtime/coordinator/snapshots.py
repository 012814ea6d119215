"""Where session snapshots live: files on the coordinator's node (the head), next to its journal.

``<storage>/sessions/<session id>/<key>.snap``, each written to a temporary file, flushed and renamed into place, so
a snapshot is either whole or absent. The registry records the key of a session's latest checkpoint; the newest two
are kept (a fork may be reading the one before). With the memory journal they are kept in memory instead.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ray_runtime.errors import NotFoundError

__all__ = ["SnapshotStore"]

KEPT_PER_SESSION = 2


class SnapshotStore:
    """Snapshots by session and key, in a folder (or in memory when ``root`` is None)."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self._memory: dict[str, dict[str, bytes]] = {}
        self._lock = threading.Lock()

    def put(self, session_id: str, data: bytes) -> dict[str, Any]:
        """Store a snapshot; returns its checkpoint record (key, bytes, at)."""
        key = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        self.store(session_id, key, data)
        return {"key": key, "bytes": len(data), "at": time.time()}

    def store(self, session_id: str, key: str, data: bytes) -> None:
        """Store a snapshot under a key it already has (a migration); the newest two of a session are kept."""
        if self.root is None:
            with self._lock:
                self._memory.setdefault(session_id, {})[key] = data
        else:
            folder = self.root / session_id
            folder.mkdir(parents=True, exist_ok=True)
            temporary = folder / f".{key}.tmp"
            with temporary.open("wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            temporary.rename(folder / f"{key}.snap")
        self._prune(session_id)

    def get(self, session_id: str, key: str) -> bytes:
        """One snapshot's bytes."""
        if self.root is None:
            with self._lock:
                data = self._memory.get(session_id, {}).get(key)
        else:
            path = self.root / session_id / f"{key}.snap"
            data = path.read_bytes() if "/" not in key and path.is_file() else None
        if data is None:
            raise NotFoundError(f"session {session_id!r} has no snapshot {key!r}", session_id=session_id)
        return data

    def delete(self, session_id: str) -> None:
        """Every snapshot of a session."""
        if self.root is None:
            with self._lock:
                self._memory.pop(session_id, None)
        else:
            shutil.rmtree(self.root / session_id, ignore_errors=True)

    def _prune(self, session_id: str) -> None:
        if self.root is None:
            with self._lock:
                kept = self._memory.get(session_id, {})
                for key in sorted(kept)[:-KEPT_PER_SESSION]:
                    del kept[key]
            return
        for old in sorted((self.root / session_id).glob("*.snap"))[:-KEPT_PER_SESSION]:
            old.unlink(missing_ok=True)
