"""Versioned resources of each tenant: immutable versions, the latest, and pruning of unreferenced old ones.

Part of the coordinator's pure state (no Ray, no I/O); :class:`CoordinatorState` composes it with the others.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ray_runtime._ids import new_id
from ray_runtime.checks import check_int, check_json, check_name
from ray_runtime.errors import ResourcesNotFoundError

__all__ = ["ResourceVersions", "ResourcesRecord"]

MAX_LISTING = 1000


@dataclass(slots=True)
class ResourcesRecord:
    """One immutable resources version; ``body`` is the JSON of the named resources."""

    id: str
    tenant: str
    version: int
    created_at: float
    body: str

    def wire(self) -> dict[str, Any]:
        return {"resources_id": self.id, "version": self.version, "created_at": self.created_at, "body": self.body}

    def row(self) -> tuple[str, str, int, float, str]:
        return self.id, self.tenant, self.version, self.created_at, self.body


@dataclass(slots=True)
class _ResourceSet:
    versions: dict[str, ResourcesRecord] = field(default_factory=dict)  # oldest first
    latest: ResourcesRecord | None = None
    next_version: int = 1


class ResourceVersions:
    """Every tenant's resources versions, with reference counts held by tasks that pin or use a version.

    Args:
        keep: Unreferenced versions kept beyond the latest ones.
        max_bytes: Cap on a version's JSON.
        clock: Wall-clock seconds.
    """

    def __init__(self, *, keep: int, max_bytes: int, clock: Callable[[], float]) -> None:
        self.keep = keep
        self.max_bytes = max_bytes
        self.clock = clock
        self._sets: dict[str, _ResourceSet] = {}
        self._refs: Counter[str] = Counter()
        self._added: list[ResourcesRecord] = []
        self._deleted: list[str] = []

    def add(self, tenant: str, body: str) -> ResourcesRecord:
        """Publish a new immutable version of the tenant's resources and make it the latest."""
        check_name("tenant", tenant)
        check_json("resources", body, max_bytes=self.max_bytes)
        rs = self._sets.setdefault(tenant, _ResourceSet())
        record = ResourcesRecord(new_id("res"), tenant, rs.next_version, self.clock(), body)
        self._store(record)
        self._added.append(record)
        self.prune(tenant)
        return record

    def get(self, tenant: str, resources_id: str) -> ResourcesRecord:
        """One version by id."""
        rs = self._sets.get(tenant)
        record = rs.versions.get(resources_id) if rs and isinstance(resources_id, str) else None
        if record is None:
            raise ResourcesNotFoundError(str(resources_id))
        return record

    def latest(self, tenant: str) -> ResourcesRecord:
        """The newest version."""
        rs = self._sets.get(tenant)
        if rs is None or rs.latest is None:
            raise ResourcesNotFoundError(None)
        return rs.latest

    def latest_id(self, tenant: str) -> str | None:
        """The newest version's id, or None when the tenant has none."""
        rs = self._sets.get(tenant)
        return rs.latest.id if rs is not None and rs.latest is not None else None

    def history(self, tenant: str, limit: int = 100) -> list[ResourcesRecord]:
        """Kept versions, newest first."""
        check_int("limit", limit, low=1, high=MAX_LISTING)
        rs = self._sets.get(tenant)
        return list(reversed(rs.versions.values()))[:limit] if rs else []

    # ------------------------------------------------------------------------------------------ references

    def ref(self, resources_id: str | None) -> None:
        """A task now pins or uses this version: keep it."""
        if resources_id is not None:
            self._refs[resources_id] += 1

    def unref(self, resources_id: str | None) -> None:
        if resources_id is not None:
            self._refs[resources_id] -= 1

    def prune(self, tenant: str) -> None:
        """Keep the newest ``keep`` versions, and older ones only while a task references them."""
        rs = self._sets.get(tenant)
        if rs is None:
            return
        for record in list(rs.versions.values())[: -self.keep]:
            if self._refs.get(record.id, 0) <= 0:
                del rs.versions[record.id]
                self._refs.pop(record.id, None)
                self._deleted.append(record.id)

    # ------------------------------------------------------------------------------------------ durability

    def _store(self, record: ResourcesRecord) -> None:
        rs = self._sets.setdefault(record.tenant, _ResourceSet())
        rs.versions[record.id] = record
        if rs.latest is None or record.version > rs.latest.version:
            rs.latest = record
        rs.next_version = max(rs.next_version, record.version + 1)

    def load(self, records: Iterable[ResourcesRecord]) -> None:
        """Rebuild from the journal (oldest version first)."""
        for record in records:
            self._store(record)

    def has_changes(self) -> bool:
        return bool(self._added or self._deleted)

    def take_changes(self) -> tuple[list[ResourcesRecord], list[str]]:
        """Versions added and deleted since the last call."""
        added, deleted = self._added, self._deleted
        self._added, self._deleted = [], []
        return added, deleted
