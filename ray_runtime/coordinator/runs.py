"""Plugin runs: what a job-mode action reports about itself (start, progress, result or error), per tenant.

Part of the coordinator's pure state (no Ray, no I/O); :class:`CoordinatorState` composes it with the others.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ray_runtime.checks import ID, check_int, check_json, check_name, check_number
from ray_runtime.errors import ConflictError, RunNotFoundError

__all__ = ["RunRecord", "RunRegistry"]

EVENTS_KEPT = 50
MAX_LISTING = 1000


@dataclass(slots=True)
class RunRecord:
    """A plugin run (a Ray job) as reported by its driver; see ``models.Run``. Payloads stay JSON text."""

    id: str
    tenant: str
    plugin: str
    action: str
    status: str
    params: str
    metadata: str | None
    created_at: float
    updated_at: float
    finished_at: float | None = None
    progress: list[Any] | None = None  # [at, done, total, message]
    events: list[list[Any]] = field(default_factory=list)
    result: str | None = None
    error: str | None = None

    def wire(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]

    def row(self) -> tuple[str, str, str]:
        """The journal row: id, tenant and the record as JSON."""
        return self.id, self.tenant, json.dumps(self.wire(), separators=(",", ":"))

    @classmethod
    def from_row(cls, data: str) -> RunRecord:
        return cls(**json.loads(data))


class RunRegistry:
    """Runs of every tenant; the newest ``retention`` finished runs are kept.

    Args:
        retention: Finished runs kept (oldest dropped first).
        max_bytes: Cap on params, metadata, result and error JSON.
        clock: Wall-clock seconds.
    """

    def __init__(self, *, retention: int, max_bytes: int, clock: Callable[[], float]) -> None:
        self.retention = retention
        self.max_bytes = max_bytes
        self.clock = clock
        self._runs: dict[str, RunRecord] = {}
        self._finished: deque[str] = deque()
        self._changed: dict[str, RunRecord] = {}
        self._deleted: list[str] = []

    def start(
        self, tenant: str, run_id: str, plugin: str, action: str, params: str, metadata: str | None = None
    ) -> RunRecord:
        """Record that a run began; starting a run id again returns the existing record unchanged."""
        check_name("tenant", tenant)
        ID.check("run_id", run_id)
        check_name("plugin", plugin)
        check_name("action", action)
        existing = self._runs.get(run_id)
        if existing is not None:
            if existing.tenant != tenant:
                raise ConflictError(f"run id {run_id!r} is taken", run_id=run_id)
            return existing
        check_json("params", params, max_bytes=self.max_bytes)
        if metadata is not None:
            check_json("metadata", metadata, max_bytes=self.max_bytes)
        now = self.clock()
        record = RunRecord(run_id, tenant, plugin, action, "running", params, metadata, now, now)
        self._runs[run_id] = record
        self._changed[run_id] = record
        return record

    def progress(self, tenant: str, run_id: str, done: float, total: float | None, message: str) -> RunRecord:
        """Add a progress report to a running run (the latest 50 are kept)."""
        record = self.get(tenant, run_id)
        check_number("done", done, low=-1e18, high=1e18)
        if total is not None:
            check_number("total", total, low=-1e18, high=1e18)
        if record.status != "running":
            raise ConflictError(f"run {run_id!r} already ended as {record.status}", run_id=run_id)
        now = self.clock()
        record.progress = [now, done, total, str(message)[:1000]]
        record.events = [*record.events[-(EVENTS_KEPT - 1) :], record.progress]
        record.updated_at = now
        self._changed[run_id] = record
        return record

    def finish(self, tenant: str, run_id: str, *, result: str | None = None, error: str | None = None) -> RunRecord:
        """End a run with its result (succeeded) or its error (failed); ending it again the same way is a no-op."""
        record = self.get(tenant, run_id)
        status = "failed" if error is not None else "succeeded"
        if record.status != "running":
            if record.status == status:
                return record
            raise ConflictError(f"run {run_id!r} already ended as {record.status}", run_id=run_id)
        check_json("result" if error is None else "error", error or result or "null", max_bytes=self.max_bytes)
        now = self.clock()
        record.status, record.result, record.error = status, result, error
        record.finished_at = record.updated_at = now
        self._changed[run_id] = record
        self._finished.append(run_id)
        while len(self._finished) > self.retention:
            dropped = self._finished.popleft()
            self._runs.pop(dropped, None)
            self._changed.pop(dropped, None)
            self._deleted.append(dropped)
        return record

    def get(self, tenant: str, run_id: str) -> RunRecord:
        """One run by id."""
        record = self._runs.get(run_id) if isinstance(run_id, str) else None
        if record is None or record.tenant != tenant:
            raise RunNotFoundError(str(run_id))
        return record

    def find(self, tenant: str, run_id: str) -> RunRecord | None:
        """One run by id, or None."""
        record = self._runs.get(run_id) if isinstance(run_id, str) else None
        return record if record is not None and record.tenant == tenant else None

    def list(self, tenant: str, *, plugin: str | None = None, limit: int = 100) -> list[RunRecord]:
        """The tenant's runs, newest first."""
        check_int("limit", limit, low=1, high=MAX_LISTING)
        found = (r for r in reversed(self._runs.values()) if r.tenant == tenant and plugin in (None, r.plugin))
        return [r for _, r in zip(range(limit), found, strict=False)]

    def load(self, records: Iterable[RunRecord]) -> None:
        """Rebuild from the journal."""
        for run in sorted(records, key=lambda r: r.created_at):
            self._runs[run.id] = run
        self._finished.extend(
            r.id for r in sorted(self._runs.values(), key=lambda r: r.finished_at or 0.0) if r.finished_at
        )

    def has_changes(self) -> bool:
        return bool(self._changed or self._deleted)

    def take_changes(self) -> tuple[list[tuple[str, str, str]], list[str]]:
        """Journal rows of runs changed, and ids of runs dropped, since the last call."""
        changed, deleted = self._changed, self._deleted
        self._changed, self._deleted = {}, []
        return [record.row() for record in changed.values()], deleted
