"""The audit log: one JSON line per mutating call (who, what, when, outcome); never bodies or secrets."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["AuditLog"]


class AuditLog:
    """Appends audit entries to a JSON-lines file (one writer lock per process)."""

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def record(
        self, *, key_id: str | None, tenant: str | None, method: str, path: str, status: int, **extra: Any
    ) -> None:
        entry = {
            "at": round(time.time(), 3),
            "key_id": key_id,
            "tenant": tenant,
            "action": f"{method} {path}",
            "status": status,
            "outcome": "ok" if status < 400 else "refused" if status < 500 else "error",
            **extra,
        }
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with self._lock, self.path.open("a") as file:
            file.write(line)
