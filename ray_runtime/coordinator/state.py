"""The coordinator's state: task queues, resources versions, plugin runs and the system store, composed.

Pure Python, no Ray and no I/O: the actor shell feeds it calls, journals what :meth:`CoordinatorState.take_changes`
returns before it answers, and wakes waiters through the two hooks. Each noun lives in its own module
(``queues``, ``resources``, ``runs``, ``kv``, ``sessions``); this one owns the clock, the limits and the
change set.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ray_runtime.coordinator.kv import SystemStore
from ray_runtime.coordinator.queues import TASK_ROW_FIELDS, NewTask, TaskQueues, TaskRecord
from ray_runtime.coordinator.resources import ResourcesRecord, ResourceVersions
from ray_runtime.coordinator.rollouts import AGL_QUEUE, Rollouts
from ray_runtime.coordinator.runs import RunRecord, RunRegistry
from ray_runtime.coordinator.session_table import SessionRecord, SessionTable
from ray_runtime.models.api import LIMITS_NAMESPACE

__all__ = [
    "TASK_ROW_FIELDS",
    "ChangeSet",
    "CoordinatorState",
    "Limits",
    "NewTask",
    "ResourcesRecord",
    "RunRecord",
    "SessionRecord",
    "TaskRecord",
]


@dataclass(frozen=True, slots=True)
class Limits:
    """The knobs of the state machine (a subset of ``CoordinatorSettings``)."""

    max_payload_bytes: int = 1 << 20
    default_lease_s: float = 30.0
    max_lease_s: float = 24 * 3600.0
    retry_backoff_s: float = 1.0
    retry_backoff_max_s: float = 60.0
    finished_retention: int = 100_000
    finished_ttl_s: float = 7 * 24 * 3600.0
    resources_keep: int = 20
    worker_ttl_s: float = 600.0
    runs_retention: int = 10_000
    session_retention_s: float = 7 * 24 * 3600.0
    rollout_retention_s: float = 7 * 24 * 3600.0


@dataclass(slots=True)
class ChangeSet:
    """What changed since the last ``take_changes``, as plain rows: the journal writes exactly this, atomically.

    Rows are copied out of the live records when the change set is taken, so a change set never sees a record
    half-way through a later call.
    """

    payloads: list[tuple[str, str, str | None]] = field(default_factory=list)  # (id, input, metadata)
    tasks: list[tuple[Any, ...]] = field(default_factory=list)  # rows in TASK_ROW_FIELDS order
    deleted: list[str] = field(default_factory=list)
    resources_added: list[ResourcesRecord] = field(default_factory=list)
    resources_deleted: list[str] = field(default_factory=list)
    runs: list[tuple[str, str, str]] = field(default_factory=list)  # (id, tenant, JSON)
    runs_deleted: list[str] = field(default_factory=list)
    kv: list[tuple[str, str, str | None]] = field(default_factory=list)  # (namespace, key, value; None: deleted)
    sessions: list[tuple[str, str, str]] = field(default_factory=list)  # (id, tenant, JSON)
    sessions_deleted: list[str] = field(default_factory=list)
    session_turns: list[tuple[str, str]] = field(default_factory=list)  # (session id, JSON of the turn)

    def __bool__(self) -> bool:
        return any(getattr(self, name) for name in self.__slots__)  # type: ignore[attr-defined]


class CoordinatorState:
    """Queues, leases, resources, runs and system records of every tenant, held in memory.

    Implementations of a shell around it must:
      1. journal ``take_changes()`` durably before answering the call that made them;
      2. call :meth:`sweep` periodically (lease expiry, delayed tasks, retention);
      3. replay the journal through :meth:`load` before serving any call.

    Args:
        limits: Size caps, lease bounds, backoff and retention.
        clock: Wall-clock seconds; leases and delays survive restarts, so this is not monotonic time.
        on_ready: Called with ``(tenant, queue)`` when tasks there become claimable.
        on_finished: Called with a record when its task reaches a terminal status.
    """

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        clock: Callable[[], float] = time.time,
        on_ready: Callable[[str, str], None] | None = None,
        on_finished: Callable[[TaskRecord], None] | None = None,
    ) -> None:
        self.limits = limits = limits or Limits()
        self.clock = clock
        max_bytes = limits.max_payload_bytes
        finished = on_finished or (lambda record: None)

        def on_task_finished(record: TaskRecord) -> None:
            if record.queue == AGL_QUEUE:
                self.rollouts.finished(record)
            finished(record)

        self.resources = ResourceVersions(keep=limits.resources_keep, max_bytes=max_bytes, clock=clock)
        self.tasks = TaskQueues(
            limits,
            self.resources,
            clock=clock,
            on_ready=on_ready or (lambda tenant, queue: None),
            on_finished=on_task_finished,
            max_queued=lambda tenant: self.tenant_limit(tenant, "max_queued_tasks"),
            retained_apart=frozenset({AGL_QUEUE}),
        )
        self.runs = RunRegistry(retention=limits.runs_retention, max_bytes=max_bytes, clock=clock)
        self.kv = SystemStore(max_bytes=max_bytes)
        self.rollouts = Rollouts(
            self.tasks,
            self.kv,
            clock=clock,
            retention_s=limits.rollout_retention_s,
            max_lease_s=limits.max_lease_s,
        )
        self.sessions = SessionTable(
            max_bytes=max_bytes,
            retention_s=limits.session_retention_s,
            clock=clock,
            max_sessions=lambda tenant: self.tenant_limit(tenant, "max_sessions"),
        )

    def tenant_limit(self, tenant: str, name: str) -> int | None:
        """One of the tenant's limits (``TenantLimits`` in the system store), or None when it has none."""
        raw = self.kv.get(LIMITS_NAMESPACE, tenant)
        value = json.loads(raw).get(name) if raw is not None else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def sweep(self) -> int:
        """Expire overdue leases, release due delayed tasks, drop old finished tasks; returns leases expired."""
        return self.tasks.sweep()

    def next_deadline(self) -> float | None:
        """When :meth:`sweep` next has something to do (possibly early), for the sweeper's sleep."""
        return self.tasks.next_deadline()

    def has_changes(self) -> bool:
        """Whether anything changed since the last :meth:`take_changes`."""
        parts = (self.tasks, self.resources, self.runs, self.kv, self.sessions)
        return any(part.has_changes() for part in parts)

    def take_changes(self) -> ChangeSet:
        """Everything changed since the last call, as rows; the caller must make it durable before acknowledging."""
        payloads, tasks, deleted = self.tasks.take_changes()
        resources_added, resources_deleted = self.resources.take_changes()
        runs, runs_deleted = self.runs.take_changes()
        sessions, sessions_deleted, session_turns = self.sessions.take_changes()
        return ChangeSet(
            payloads=payloads,
            tasks=tasks,
            deleted=deleted,
            resources_added=resources_added,
            resources_deleted=resources_deleted,
            runs=runs,
            runs_deleted=runs_deleted,
            kv=self.kv.take_changes(),
            sessions=sessions,
            sessions_deleted=sessions_deleted,
            session_turns=session_turns,
        )

    def load(
        self,
        tasks: Iterable[TaskRecord],
        resources: Iterable[ResourcesRecord],
        runs: Iterable[RunRecord] = (),
        kv: Iterable[tuple[str, str, str]] = (),
        sessions: Iterable[SessionRecord] = (),
        session_turns: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Rebuild from the journal (before any call): live leases stay leased until their deadlines."""
        self.kv.load(kv)
        self.resources.load(resources)
        self.runs.load(runs)
        self.tasks.load(tasks)
        self.sessions.load(sessions, session_turns)
