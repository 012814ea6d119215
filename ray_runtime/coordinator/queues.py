"""Task queues: tasks with leases, retries and dead letters, per (tenant, queue); the workers that claim them.

Part of the coordinator's pure state (no Ray, no I/O); :class:`CoordinatorState` composes it with the others.
Payloads (inputs, results, metadata, errors) stay JSON text end to end; this module never parses them.

A task's life (``TaskStatus``)::

    enqueue ─► QUEUED ─claim─► LEASED ─complete─────────────────► SUCCEEDED
                 ▲  │            │  ├─fail(retryable=False)──────► FAILED
                 │  │            │  ├─fail / lease expiry, attempts left ─► QUEUED (after backoff)
                 │  │            │  └─fail / lease expiry, none left ─────► DEAD
                 │  └─cancel/purge─► CANCELLED ◄─cancel─┘
                 └──────── retry ◄── DEAD, FAILED, CANCELLED

Every attempt has its own id; ``complete``/``fail``/``heartbeat`` are fenced by it: only the live attempt of a
leased task is accepted, and a lease whose deadline has passed is expired on the spot, not only by the sweeper.
Within a queue, higher priority is claimed first and FIFO order (by when a task became claimable) holds within a
priority. Calls that a retrying client may repeat carry a ``request_id`` and are answered again, not re-applied.
"""

from __future__ import annotations

import bisect
import heapq
import json
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, NamedTuple

from ray_runtime._ids import is_id
from ray_runtime.checks import check_int, check_json, check_name, check_number, check_optional_text
from ray_runtime.coordinator.resources import ResourceVersions
from ray_runtime.errors import (
    AttemptNotFoundError,
    ConflictError,
    InvalidArgumentError,
    RateLimitError,
    StaleAttemptError,
    TaskFinishedError,
    TaskNotFoundError,
)
from ray_runtime.models.tasks import TaskStatus

__all__ = ["TASK_ROW_FIELDS", "NewTask", "TaskQueues", "TaskRecord", "attempt_task_id", "task_row"]

QUEUED, LEASED = TaskStatus.QUEUED, TaskStatus.LEASED
SUCCEEDED, FAILED, CANCELLED, DEAD = (
    TaskStatus.SUCCEEDED,
    TaskStatus.FAILED,
    TaskStatus.CANCELLED,
    TaskStatus.DEAD,
)
_RETRYABLE_FROM = frozenset({DEAD, FAILED, CANCELLED})
_STATUS_VALUES = frozenset(s.value for s in TaskStatus)
_MAX_DELAY_S = 30 * 24 * 3600.0
_MAX_TASKS_PER_CLAIM = 1000
_MAX_QUERY_LIMIT = 1000
HISTORY_KEPT = 20  # ended attempts a task remembers
_RETAIN_PER_SWEEP = 5_000  # finished tasks one sweep drops at most
_RETAIN_SLACK = 1_000  # past retention by this many, each finish drops two old ones as well
THROUGHPUT_WINDOW_S = 15 * 60  # how far back a queue's throughput history goes
_QUERY_SCAN_BUDGET = 100_000


class NewTask(NamedTuple):
    """One task to enqueue, as it crosses from the handle to the actor (payloads already JSON text)."""

    task_id: str
    input: str
    priority: int
    delay_s: float
    idempotency_key: str | None
    max_attempts: int
    lease_s: float | None
    resources_id: str | None
    metadata: str | None


@dataclass(slots=True, eq=False)
class TaskRecord:
    """A task as the state machine holds it; one row of the journal."""

    id: str
    tenant: str
    queue: str
    status: TaskStatus
    priority: int
    input: str
    metadata: str | None
    idempotency_key: str | None
    max_attempts: int
    lease_s: float | None
    resources_id: str | None
    created_seq: int
    ready_seq: int  # FIFO position while queued; the attempt's sequence number while leased
    created_at: float
    updated_at: float
    available_at: float
    attempts: int = 0
    attempt_id: str | None = None  # the latest attempt; live only while LEASED
    attempt_resources_id: str | None = None
    worker_id: str | None = None
    node_id: str | None = None
    lease_deadline: float | None = None
    lease_span: float | None = None
    claim_request_id: str | None = None
    finish_request_id: str | None = None
    result: str | None = None
    error: str | None = None
    finished_at: float | None = None
    history: str | None = None  # JSON: the attempts that ended without a result (failed, expired, cancelled)

    def wire(self) -> dict[str, Any]:
        """The fields a client sees (payloads still JSON text); see ``models.Task``."""
        return {
            "id": self.id,
            "tenant": self.tenant,
            "queue": self.queue,
            "status": self.status.value,
            "input": self.input,
            "priority": self.priority,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "lease_s": self.lease_s,
            "resources_id": self.resources_id,
            "idempotency_key": self.idempotency_key,
            "metadata": self.metadata,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "available_at": self.available_at,
            "finished_at": self.finished_at,
            "attempt_id": self.attempt_id,
            "worker_id": self.worker_id,
            "lease_deadline": self.lease_deadline,
            "result": self.result,
            "error": self.error,
            "history": self.history,
        }

    def lease_wire(self) -> dict[str, Any]:
        """What ``claim`` hands a worker for this (leased) task."""
        return {
            "attempt_id": self.attempt_id,
            "lease_deadline": self.lease_deadline,
            "resources_id": self.attempt_resources_id,
            "task": self.wire(),
        }


TASK_ROW_FIELDS = tuple(name for name in TaskRecord.__dataclass_fields__ if name not in ("input", "metadata"))
_row_values = attrgetter(*TASK_ROW_FIELDS)
_STATUS_AT = TASK_ROW_FIELDS.index("status")


def task_row(record: TaskRecord) -> tuple[Any, ...]:
    """The journal row of a record: plain values only (the status as its string)."""
    row = _row_values(record)
    return (*row[:_STATUS_AT], record.status.value, *row[_STATUS_AT + 1 :])


class _Queue:
    """One (tenant, queue): ready tasks by priority, delayed tasks by due time, idempotency keys, counts."""

    __slots__ = (
        "counts",
        "delayed",
        "finished_by_minute",
        "idempotency",
        "index",
        "levels",
        "name",
        "ready",
        "tenant",
        "workers",
    )

    def __init__(self, tenant: str, name: str) -> None:
        self.tenant = tenant
        self.name = name
        self.finished_by_minute: dict[int, list[int]] = {}  # minute -> [succeeded, failed or dead]
        self.ready: dict[int, deque[tuple[int, TaskRecord]]] = {}
        self.levels: list[int] = []  # negated priorities, ascending: levels[0] is the highest priority
        self.delayed: list[tuple[float, int, TaskRecord]] = []
        self.idempotency: dict[str, str] = {}
        self.counts: Counter[TaskStatus] = Counter()
        self.index = _CreationIndex()
        self.workers: set[str] = set()

    def count_finished(self, record: TaskRecord) -> None:
        """Count a task that ended (in the minute it ended) for the queue's throughput history."""
        if record.status is CANCELLED or record.finished_at is None:
            return
        minute = int(record.finished_at // 60) * 60
        counts = self.finished_by_minute.get(minute)
        if counts is None:
            counts = self.finished_by_minute[minute] = [0, 0]
            for old in [m for m in self.finished_by_minute if m < minute - THROUGHPUT_WINDOW_S]:
                del self.finished_by_minute[old]
        counts[record.status is not SUCCEEDED] += 1

    def throughput(self, now: float) -> list[dict[str, int]]:
        since = now - THROUGHPUT_WINDOW_S
        return [
            {"minute": minute, "succeeded": counts[0], "failed": counts[1]}
            for minute, counts in sorted(self.finished_by_minute.items())
            if minute >= since
        ]

    def push_ready(self, record: TaskRecord) -> None:
        lane = self.ready.get(record.priority)
        if lane is None:
            lane = self.ready[record.priority] = deque()
            bisect.insort(self.levels, -record.priority)
        lane.append((record.ready_seq, record))

    def pop_ready(self) -> TaskRecord | None:
        """The next claimable task, dropping entries made stale by cancel, purge or requeue."""
        while self.levels:
            priority = -self.levels[0]
            lane = self.ready[priority]
            while lane:
                seq, record = lane.popleft()
                if record.status is QUEUED and record.ready_seq == seq:
                    return record
            del self.ready[priority]
            self.levels.pop(0)
        return None

    def oldest_ready(self) -> TaskRecord | None:
        oldest = None
        for lane in self.ready.values():
            while lane and not (lane[0][1].status is QUEUED and lane[0][1].ready_seq == lane[0][0]):
                lane.popleft()
            if lane and (oldest is None or lane[0][1].available_at < oldest.available_at):
                oldest = lane[0][1]
        return oldest

    def live_delayed(self) -> int:
        return sum(1 for _, seq, record in self.delayed if record.status is QUEUED and record.ready_seq == seq)


class _CreationIndex:
    """Records in creation order for stable cursor pagination; deletions leave holes. Old tasks go first (retention
    drops the oldest finished), so dead records at the front are cut off cheaply as they pile up; holes elsewhere
    are compacted in bulk when they are half the index."""

    __slots__ = ("dead_front", "holes", "records", "seqs")

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.records: list[TaskRecord] = []
        self.holes = 0
        self.dead_front = 0  # how many records at the front are known dead

    def add(self, record: TaskRecord) -> None:
        if self.seqs and record.created_seq < self.seqs[-1]:  # only during replay of an unsorted journal
            at = bisect.bisect(self.seqs, record.created_seq)
            self.seqs.insert(at, record.created_seq)
            self.records.insert(at, record)
        else:
            self.seqs.append(record.created_seq)
            self.records.append(record)

    def forget(self, live: dict[str, TaskRecord]) -> None:
        self.holes += 1
        records, front = self.records, self.dead_front
        while front < len(records) and live.get(records[front].id) is not records[front]:
            front += 1  # each record is stepped over once, however many calls it takes
        if front >= 1024:
            del records[:front], self.seqs[:front]  # one memmove, not a rebuild
            self.holes, front = self.holes - front, 0
        self.dead_front = front
        if self.holes > 1024 and self.holes * 2 > len(records):
            kept = [r for r in records if live.get(r.id) is r]
            self.records, self.seqs, self.holes, self.dead_front = kept, [r.created_seq for r in kept], 0, 0

    def scan(self, after_seq: int) -> Iterable[TaskRecord]:
        start = bisect.bisect_right(self.seqs, after_seq)
        return (self.records[i] for i in range(start, len(self.records)))


@dataclass(slots=True)
class _Worker:
    worker_id: str
    tenant: str
    node_id: str | None
    first_seen: float
    last_seen: float
    queues: set[str] = field(default_factory=set)
    attempts: set[str] = field(default_factory=set)


def attempt_task_id(attempt_id: object) -> str | None:
    """The task an attempt id belongs to (``att_<task body>_<seq>``), or None if it is malformed."""
    if not isinstance(attempt_id, str) or not attempt_id.startswith("att_"):
        return None
    body, _, seq = attempt_id[4:].rpartition("_")
    task_id = f"task_{body}"
    return task_id if seq.isdigit() and is_id(task_id, "task") else None


class TaskQueues:
    """Every tenant's queues, tasks, leases and workers, changed only through these methods.

    Args:
        limits: Size caps, lease bounds, backoff and retention (see ``state.Limits``).
        resources: The resources versions tasks pin and attempts use.
        clock: Wall-clock seconds; leases and delays survive restarts, so this is not monotonic time.
        on_ready: Called with ``(tenant, queue)`` when tasks there become claimable.
        on_finished: Called with a record when its task reaches a terminal status.
    """

    def __init__(
        self,
        limits: Any,
        resources: ResourceVersions,
        *,
        clock: Callable[[], float],
        on_ready: Callable[[str, str], None],
        on_finished: Callable[[TaskRecord], None],
        max_queued: Callable[[str], int | None] = lambda tenant: None,
        retained_apart: frozenset[str] = frozenset(),
    ) -> None:
        self.limits = limits
        self.retained_apart = retained_apart  # queues whose finished tasks another part retains (and deletes)
        self.max_queued = max_queued
        self.resources = resources
        self.clock = clock
        self.on_ready = on_ready
        self.on_finished = on_finished
        self._seq = 0
        self._tasks: dict[str, TaskRecord] = {}
        self._queues: dict[tuple[str, str], _Queue] = {}
        self._tenant_index: dict[str, _CreationIndex] = {}
        self._leases: list[tuple[float, str, TaskRecord]] = []  # heap of (deadline, attempt id, record)
        self._finished: deque[tuple[float, TaskRecord]] = deque()  # in order of finishing, for retention
        self._finished_count = 0
        self._claims: dict[str, list[TaskRecord]] = {}  # claim request id -> records it leased
        self._workers: dict[tuple[str, str], _Worker] = {}
        self._queued: Counter[str] = Counter()  # queued tasks per tenant, for its max_queued_tasks
        self._inserted: list[TaskRecord] = []  # since the last take_changes (live records, copied on take)
        self._updated: dict[str, TaskRecord] = {}
        self._deleted: list[str] = []

    # ----------------------------------------------------------------------------------------- producers

    def enqueue(self, tenant: str, queue: str, tasks: list[NewTask]) -> list[str]:
        """Add tasks to a queue (created on first use); returns their ids, existing ones for repeated keys.

        A task id or idempotency key the queue already holds enqueues nothing and returns the existing id;
        the whole batch is validated before anything is added.
        """
        check_name("tenant", tenant)
        check_name("queue", queue)
        for position, task in enumerate(tasks):
            self._check_new_task(tenant, task, position if len(tasks) > 1 else None)
        self._check_quota(tenant, queue, tasks)
        q = self._queue(tenant, queue)
        return [self._insert(q, task) for task in tasks]

    def _check_quota(self, tenant: str, queue: str, tasks: list[NewTask]) -> None:
        limit = self.max_queued(tenant)
        if limit is None:
            return
        q = self._queues.get((tenant, queue))
        known = q.idempotency if q is not None else {}
        new = sum(1 for t in tasks if t.task_id not in self._tasks and t.idempotency_key not in known)
        if new and self._queued[tenant] + new > limit:
            raise RateLimitError(
                f"tenant {tenant!r} has {self._queued[tenant]} tasks queued and may hold {limit}; "
                f"{new} more would be over: wait for workers to drain its queues",
                retry_after_s=1.0,
                limit="max_queued_tasks",
            )

    def _check_new_task(self, tenant: str, task: NewTask, position: int | None) -> None:
        def name(field_name: str) -> str:
            return field_name if position is None else f"tasks[{position}].{field_name}"

        if not is_id(task.task_id, "task"):
            raise InvalidArgumentError(name("task_id"), f"is not a task id: {task.task_id!r}")
        check_json(name("input"), task.input, max_bytes=self.limits.max_payload_bytes)
        if task.metadata is not None:
            check_json(name("metadata"), task.metadata, max_bytes=self.limits.max_payload_bytes)
        check_int(name("priority"), task.priority, low=-(2**31), high=2**31 - 1)
        check_number(name("delay_s"), task.delay_s, low=0, high=_MAX_DELAY_S)
        check_optional_text(name("idempotency_key"), task.idempotency_key)
        check_int(name("max_attempts"), task.max_attempts, low=1, high=1000)
        if task.lease_s is not None:
            check_number(name("lease_s"), task.lease_s, low=0, high=self.limits.max_lease_s, low_open=True)
        if task.resources_id is not None:
            self.resources.get(tenant, task.resources_id)

    def _insert(self, q: _Queue, task: NewTask) -> str:
        existing = self._tasks.get(task.task_id)
        if existing is not None:
            if existing.tenant != q.tenant:
                raise ConflictError(f"task id {task.task_id!r} is taken", task_id=task.task_id)
            return existing.id
        if task.idempotency_key is not None and task.idempotency_key in q.idempotency:
            return q.idempotency[task.idempotency_key]
        now = self.clock()
        seq = self._next_seq()
        record = TaskRecord(
            id=task.task_id,
            tenant=q.tenant,
            queue=q.name,
            status=QUEUED,
            priority=task.priority,
            input=task.input,
            metadata=task.metadata,
            idempotency_key=task.idempotency_key,
            max_attempts=task.max_attempts,
            lease_s=task.lease_s,
            resources_id=task.resources_id,
            created_seq=seq,
            ready_seq=seq,
            created_at=now,
            updated_at=now,
            available_at=now + task.delay_s,
        )
        self._add(record, q)
        self._inserted.append(record)
        self._make_available(q, record, now)
        return record.id

    def _add(self, record: TaskRecord, q: _Queue) -> None:
        self._tasks[record.id] = record
        q.counts[record.status] += 1
        if record.status is QUEUED:
            self._queued[record.tenant] += 1
        q.index.add(record)
        self._tenant_index_of(record.tenant).add(record)
        if record.idempotency_key is not None:
            q.idempotency[record.idempotency_key] = record.id
        self.resources.ref(record.resources_id)
        self.resources.ref(record.attempt_resources_id)

    def _tenant_index_of(self, tenant: str) -> _CreationIndex:
        index = self._tenant_index.get(tenant)
        if index is None:
            index = self._tenant_index[tenant] = _CreationIndex()
        return index

    def _make_available(self, q: _Queue, record: TaskRecord, now: float) -> None:
        if record.available_at > now:
            heapq.heappush(q.delayed, (record.available_at, record.ready_seq, record))
        else:
            q.push_ready(record)
            self.on_ready(q.tenant, q.name)

    # ------------------------------------------------------------------------------------------- workers

    def claim(
        self,
        tenant: str,
        queue: str,
        worker_id: str,
        *,
        max_tasks: int = 1,
        lease_s: float | None = None,
        node_id: str | None = None,
        request_id: str | None = None,
    ) -> list[TaskRecord]:
        """Lease up to ``max_tasks`` claimable tasks to a worker; an empty list if none are claimable now.

        A repeated ``request_id`` returns the leases that request already made (if still live).
        """
        self.check_claim(tenant, queue, worker_id, max_tasks, lease_s, request_id)
        now = self.clock()
        worker = self._see_worker(tenant, worker_id, node_id, now)
        worker.queues.add(queue)
        if request_id is not None and request_id in self._claims:
            return [r for r in self._claims[request_id] if r.status is LEASED and r.claim_request_id == request_id]
        q = self._queues.get((tenant, queue))
        if q is None:
            return []
        q.workers.add(worker_id)
        self._promote_due(q, now)
        leased: list[TaskRecord] = []
        while len(leased) < max_tasks:
            record = q.pop_ready()
            if record is None:
                break
            self._lease(record, worker, lease_s, request_id, now)
            leased.append(record)
        if request_id is not None and leased:
            self._claims[request_id] = leased
        return leased

    def check_claim(
        self,
        tenant: str,
        queue: str,
        worker_id: str,
        max_tasks: int,
        lease_s: float | None,
        request_id: str | None,
    ) -> None:
        """Raise what :meth:`claim` would raise for these arguments, changing nothing."""
        check_name("tenant", tenant)
        check_name("queue", queue)
        check_name("worker_id", worker_id)
        check_int("max_tasks", max_tasks, low=1, high=_MAX_TASKS_PER_CLAIM)
        if lease_s is not None:
            check_number("lease_s", lease_s, low=0, high=self.limits.max_lease_s, low_open=True)
        check_optional_text("request_id", request_id)

    def _lease(
        self, record: TaskRecord, worker: _Worker, lease_s: float | None, request_id: str | None, now: float
    ) -> None:
        span = record.lease_s or lease_s or self.limits.default_lease_s
        seq = self._next_seq()
        record.attempts += 1
        record.ready_seq = seq
        record.attempt_id = f"att_{record.id[5:]}_{seq}"
        self._ref_resources(record, self._effective_resources(record))
        record.worker_id = worker.worker_id
        record.node_id = worker.node_id
        record.lease_span = span
        record.lease_deadline = now + span
        record.claim_request_id = request_id
        record.finish_request_id = None
        self._set_status(record, LEASED, now)
        heapq.heappush(self._leases, (record.lease_deadline, record.attempt_id, record))
        worker.attempts.add(record.attempt_id)

    def _effective_resources(self, record: TaskRecord) -> str | None:
        return record.resources_id if record.resources_id is not None else self.resources.latest_id(record.tenant)

    def _ref_resources(self, record: TaskRecord, resources_id: str | None) -> None:
        self.resources.unref(record.attempt_resources_id)
        record.attempt_resources_id = resources_id
        self.resources.ref(resources_id)

    def heartbeat(self, tenant: str, attempt_id: str, extend_s: float | None = None) -> TaskRecord:
        """Extend a live lease by ``extend_s`` (default: the lease's own length) from now."""
        if extend_s is not None:
            check_number("extend_s", extend_s, low=0, high=self.limits.max_lease_s, low_open=True)
        now = self.clock()
        record = self._live_attempt(tenant, attempt_id, "heartbeat", None, now)
        record.lease_deadline = now + (extend_s or record.lease_span or self.limits.default_lease_s)
        self._touch(record, now)
        heapq.heappush(self._leases, (record.lease_deadline, attempt_id, record))
        self._see_worker(tenant, record.worker_id or "", record.node_id, now)
        return record

    def complete(self, tenant: str, attempt_id: str, result: str, *, request_id: str | None = None) -> TaskRecord:
        """Hand in the live attempt's result: the task succeeds, finally."""
        check_optional_text("request_id", request_id)
        now = self.clock()
        record = self._live_attempt(tenant, attempt_id, "complete", request_id, now)
        if record.status is not LEASED:  # the same request again: already applied
            return record
        check_json("result", result, max_bytes=self.limits.max_payload_bytes)
        record.result = result
        record.finish_request_id = request_id
        self._finish(record, SUCCEEDED, now)
        return record

    def fail(
        self,
        tenant: str,
        attempt_id: str,
        error: str,
        *,
        retryable: bool = True,
        request_id: str | None = None,
    ) -> TaskRecord:
        """Fail the live attempt: retry after backoff while attempts remain, else ``dead``; or ``failed`` at once."""
        check_optional_text("request_id", request_id)
        now = self.clock()
        record = self._live_attempt(tenant, attempt_id, "fail", request_id, now)
        if record.status is not LEASED:  # the same request again: already applied
            return record
        check_json("error", error, max_bytes=self.limits.max_payload_bytes)
        record.error = error
        record.finish_request_id = request_id
        _remember_attempt(record, "failed", now)
        if not retryable:
            self._finish(record, FAILED, now)
        else:
            self._retry_or_bury(record, now)
        return record

    def _live_attempt(
        self, tenant: str, attempt_id: str, action: str, request_id: str | None, now: float
    ) -> TaskRecord:
        """The task this attempt is live on, or a fencing error (an overdue lease is expired first).

        A repeated ``request_id`` whose first copy already ended the attempt gets the task back unchanged.
        """
        task_id = attempt_task_id(attempt_id)
        record = self._tasks.get(task_id) if task_id else None
        if record is None or record.tenant != tenant:
            raise AttemptNotFoundError(str(attempt_id))
        if record.attempt_id != attempt_id:
            live = record.attempt_id if record.status is LEASED else None
            raise StaleAttemptError(attempt_id, record.id, record.status.value, live)
        if record.status is LEASED:
            if record.lease_deadline is not None and record.lease_deadline > now:
                return record
            self._expire(record, now)
        elif request_id is not None and record.finish_request_id == request_id:
            return record
        if record.status is QUEUED:
            raise StaleAttemptError(attempt_id, record.id, record.status.value, None)
        raise TaskFinishedError(record.id, record.status.value, action)

    def _retry_or_bury(self, record: TaskRecord, now: float) -> None:
        if record.attempts >= record.max_attempts:
            self._finish(record, DEAD, now)
            return
        backoff = min(self.limits.retry_backoff_s * 2 ** (record.attempts - 1), self.limits.retry_backoff_max_s)
        self._release_lease(record)
        record.available_at = now + backoff
        record.ready_seq = self._next_seq()
        self._set_status(record, QUEUED, now)
        self._make_available(self._queues[(record.tenant, record.queue)], record, now)

    def _expire(self, record: TaskRecord, now: float) -> None:
        record.error = _lease_expired_error(record)
        record.finish_request_id = None
        _remember_attempt(record, "expired", now)
        self._retry_or_bury(record, now)

    def _release_lease(self, record: TaskRecord) -> None:
        worker = self._workers.get((record.tenant, record.worker_id or ""))
        if worker is not None and record.attempt_id is not None:
            worker.attempts.discard(record.attempt_id)
        if record.claim_request_id is not None:
            self._claims.pop(record.claim_request_id, None)
        record.lease_deadline = None

    def _finish(self, record: TaskRecord, status: TaskStatus, now: float) -> None:
        if record.status is LEASED:
            self._release_lease(record)
        record.finished_at = now
        self._set_status(record, status, now)
        self._queues[(record.tenant, record.queue)].count_finished(record)
        if record.queue not in self.retained_apart:
            self._finished.append((now, record))
            self._finished_count += 1
        self.on_finished(record)
        if self._finished_count > self.limits.finished_retention + _RETAIN_SLACK:  # the sweeper fell behind
            self._retain(now, 2, prune=False)

    # ------------------------------------------------------------------------------------------ operators

    def cancel(self, tenant: str, task_id: str) -> TaskRecord:
        """Cancel a queued or leased task (a leased one's attempt is then stale); finished tasks stay as they are."""
        record = self._task(tenant, task_id)
        if record.status.terminal:
            raise TaskFinishedError(task_id, record.status.value, "cancel")
        now = self.clock()
        if record.status is LEASED:
            _remember_attempt(record, "cancelled", now)
        self._finish(record, CANCELLED, now)
        return record

    def retry(self, tenant: str, task_id: str) -> TaskRecord:
        """Queue a dead, failed or cancelled task again with a fresh budget of attempts."""
        record = self._task(tenant, task_id)
        if record.queue in self.retained_apart:
            raise ConflictError(f"task {task_id!r} is a rollout: rollouts end once", task_id=task_id)
        if record.status not in _RETRYABLE_FROM:
            if record.status.terminal:
                raise TaskFinishedError(task_id, record.status.value, "retry")
            raise ConflictError(
                f"task {task_id!r} is {record.status.value}; only dead, failed or cancelled tasks can be retried",
                task_id=task_id,
                status=record.status.value,
            )
        now = self.clock()
        self._finished_count -= 1
        record.attempts = 0
        record.finished_at = None
        record.result = None
        record.finish_request_id = None
        record.available_at = now
        record.ready_seq = self._next_seq()
        self._set_status(record, QUEUED, now)
        self._make_available(self._queues[(tenant, record.queue)], record, now)
        return record

    def purge(self, tenant: str, queue: str) -> int:
        """Cancel every queued task of a queue (leased ones run on); returns how many were cancelled."""
        check_name("tenant", tenant)
        check_name("queue", queue)
        q = self._queues.get((tenant, queue))
        if q is None:
            return 0
        now = self.clock()
        doomed = [r for r in q.index.scan(-1) if r.status is QUEUED and self._tasks.get(r.id) is r]
        for record in doomed:
            self._finish(record, CANCELLED, now)
        q.ready.clear()
        q.levels.clear()
        q.delayed.clear()
        return len(doomed)

    def lease_task(self, tenant: str, task_id: str, worker_id: str, lease_s: float | None = None) -> TaskRecord:
        """Lease this queued task (not the next in line) to a worker, as if it had claimed it."""
        record = self._task(tenant, task_id)
        if record.status is not QUEUED:
            raise ConflictError(f"task {task_id!r} is {record.status.value}, not queued", task_id=task_id)
        now = self.clock()
        worker = self._see_worker(tenant, worker_id, None, now)
        worker.queues.add(record.queue)
        self._queues[(tenant, record.queue)].workers.add(worker_id)
        self._lease(record, worker, lease_s, None, now)
        return record

    def end(
        self, tenant: str, task_id: str, status: TaskStatus, *, result: str | None = None, error: str | None = None
    ) -> TaskRecord:
        """End a queued or leased task with a terminal status, whatever its lease (an operator's or protocol's
        verdict, not a worker's: a live attempt becomes stale)."""
        record = self._task(tenant, task_id)
        if record.status.terminal:
            raise TaskFinishedError(task_id, record.status.value, "end")
        now = self.clock()
        if record.status is LEASED and status is not SUCCEEDED:
            _remember_attempt(record, status.value, now)
        record.result, record.error = result, error
        self._finish(record, status, now)
        return record

    def remove(self, tenant: str, task_id: str) -> TaskRecord:
        """Delete a task now, whatever its status (a leased one's attempt is then unknown)."""
        record = self._task(tenant, task_id)
        if record.status is QUEUED:
            self._queued[tenant] -= 1
            record.ready_seq = -1  # its places in the ready lanes and the delayed heap go stale
        self._delete(record)
        return record

    def keyed(self, tenant: str, queue: str, key: str) -> TaskRecord | None:
        """The live task of a queue with this idempotency key, or None."""
        q = self._queues.get((tenant, queue))
        task_id = q.idempotency.get(key) if q is not None else None
        return self._tasks.get(task_id) if task_id is not None else None

    def find(self, task_id: str) -> TaskRecord | None:
        """A live task by id, whoever's it is, or None."""
        return self._tasks.get(task_id)

    def finished_in(self, queue: str) -> list[TaskRecord]:
        """The finished tasks of every tenant's queue of this name."""
        return [
            record
            for (_, name), q in self._queues.items()
            if name == queue
            for record in q.index.scan(-1)
            if record.status.terminal and self._tasks.get(record.id) is record
        ]

    def scan(self, tenant: str, queue: str) -> Iterable[TaskRecord]:
        """The queue's live tasks in creation order."""
        q = self._queues.get((tenant, queue))
        if q is None:
            return
        for record in q.index.scan(-1):
            if self._tasks.get(record.id) is record:
                yield record

    # --------------------------------------------------------------------------------------------- reads

    def get(self, tenant: str, task_id: str) -> TaskRecord:
        """One task by id."""
        return self._task(tenant, task_id)

    def query(
        self,
        tenant: str,
        *,
        queue: str | None = None,
        status: TaskStatus | str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        resources_id: str | None = None,
    ) -> tuple[list[TaskRecord], str | None]:
        """Tasks in creation order, filtered (``resources_id``: tasks pinned to that version, or whose latest attempt
        used it); returns a page and the cursor of the next one (None at the end).

        Pages are stable: a task created later never shifts earlier pages. A scan that filters out very many
        tasks returns a short (even empty) page with a cursor to go on from.
        """
        check_name("tenant", tenant)
        check_int("limit", limit, low=1, high=_MAX_QUERY_LIMIT)
        if queue is not None:
            check_name("queue", queue)
        if status is not None and status not in _STATUS_VALUES:
            raise InvalidArgumentError("status", f"must be one of {sorted(_STATUS_VALUES)}; got {status!r}")
        status = TaskStatus(status) if status is not None else None
        check_optional_text("resources_id", resources_id)
        after = _decode_cursor(cursor)
        if queue is not None:
            q = self._queues.get((tenant, queue))
            index = q.index if q is not None else _CreationIndex()
        else:
            index = self._tenant_index.get(tenant) or _CreationIndex()
        page: list[TaskRecord] = []
        last_seq = after
        for scanned, record in enumerate(index.scan(after)):
            if len(page) == limit or scanned == _QUERY_SCAN_BUDGET:
                return page, _encode_cursor(last_seq)
            last_seq = record.created_seq
            if self._tasks.get(record.id) is not record or (status is not None and record.status is not status):
                continue
            if resources_id is None or resources_id in (record.resources_id, record.attempt_resources_id):
                page.append(record)
        return page, None

    def stats(self, tenant: str, queue: str) -> dict[str, Any]:
        """Depth per status, delayed count, age of the oldest claimable task, and known workers."""
        check_name("tenant", tenant)
        check_name("queue", queue)
        q = self._queues.get((tenant, queue)) or _Queue(tenant, queue)
        now = self.clock()
        self._promote_due(q, now)
        oldest = q.oldest_ready()
        return {
            "tenant": tenant,
            "queue": queue,
            "counts": {status.value: q.counts.get(status, 0) for status in TaskStatus},
            "delayed": q.live_delayed(),
            "oldest_queued_age_s": max(0.0, now - oldest.available_at) if oldest is not None else None,
            "workers": sum(1 for w in q.workers if (tenant, w) in self._workers),
            "throughput": q.throughput(now),
        }

    def queues(self, tenant: str) -> list[str]:
        """Names of the tenant's queues."""
        return sorted(name for t, name in self._queues if t == tenant)

    def workers(self, tenant: str) -> list[dict[str, Any]]:
        """Workers seen by claim or heartbeat within the worker TTL."""
        return [
            {
                "worker_id": w.worker_id,
                "tenant": w.tenant,
                "node_id": w.node_id,
                "queues": sorted(w.queues),
                "first_seen": w.first_seen,
                "last_seen": w.last_seen,
                "attempts": sorted(w.attempts),
            }
            for (t, _), w in sorted(self._workers.items())
            if t == tenant
        ]

    def counts(self) -> dict[str, int]:
        """Totals over every tenant, for metrics and benchmarks."""
        totals: Counter[str] = Counter()
        for q in self._queues.values():
            for status, n in q.counts.items():
                totals[status.value] += n
        return dict(totals)

    # ------------------------------------------------------------------------------------- housekeeping

    def sweep(self) -> int:
        """Expire overdue leases, release due delayed tasks, drop old finished tasks; returns leases expired."""
        now = self.clock()
        expired = 0
        while self._leases and self._leases[0][0] <= now:
            deadline, attempt_id, record = heapq.heappop(self._leases)
            if record.status is LEASED and record.attempt_id == attempt_id and record.lease_deadline == deadline:
                self._expire(record, now)
                expired += 1
        for q in self._queues.values():
            self._promote_due(q, now)
        self._retain(now)
        self._forget_idle_workers(now)
        return expired

    def next_deadline(self) -> float | None:
        """The earliest lease deadline or delayed task due time (possibly stale), for the sweeper's sleep."""
        candidates = [self._leases[0][0]] if self._leases else []
        candidates.extend(q.delayed[0][0] for q in self._queues.values() if q.delayed)
        return min(candidates, default=None)

    def _promote_due(self, q: _Queue, now: float) -> None:
        promoted = False
        while q.delayed and q.delayed[0][0] <= now:
            _, seq, record = heapq.heappop(q.delayed)
            if record.status is QUEUED and record.ready_seq == seq:
                q.push_ready(record)
                promoted = True
        if promoted:
            self.on_ready(q.tenant, q.name)

    def _retain(self, now: float, budget: int = _RETAIN_PER_SWEEP, *, prune: bool = True) -> None:
        """Drop the oldest finished tasks past the retention count or age, at most ``budget`` of them (a sweep that
        finds a big backlog spreads it over the next sweeps instead of holding the state for long)."""
        horizon = now - self.limits.finished_ttl_s
        touched: set[str] = set()
        while (
            budget > 0
            and self._finished
            and (self._finished_count > self.limits.finished_retention or self._finished[0][0] < horizon)
        ):
            budget -= 1
            finished_at, record = self._finished.popleft()
            if record.status.terminal and record.finished_at == finished_at and self._tasks.get(record.id) is record:
                self._delete(record)
                touched.add(record.tenant)
        for tenant in touched if prune else ():
            self.resources.prune(tenant)

    def _delete(self, record: TaskRecord) -> None:
        del self._tasks[record.id]
        if record.status.terminal and record.queue not in self.retained_apart:
            self._finished_count -= 1
        elif record.status is LEASED:
            self._release_lease(record)
        q = self._queues[(record.tenant, record.queue)]
        q.counts[record.status] -= 1
        q.index.forget(self._tasks)
        self._tenant_index[record.tenant].forget(self._tasks)
        if record.idempotency_key is not None and q.idempotency.get(record.idempotency_key) == record.id:
            del q.idempotency[record.idempotency_key]
        self.resources.unref(record.resources_id)
        self.resources.unref(record.attempt_resources_id)
        self._updated.pop(record.id, None)
        self._deleted.append(record.id)

    def _forget_idle_workers(self, now: float) -> None:
        horizon = now - self.limits.worker_ttl_s
        for key, worker in list(self._workers.items()):
            if worker.last_seen < horizon and not worker.attempts:
                del self._workers[key]

    # --------------------------------------------------------------------------------------- durability
    def load(self, tasks: Iterable[TaskRecord]) -> None:
        """Rebuild from the journal (before any call): live leases stay leased until their deadlines."""
        now = self.clock()
        queued: list[TaskRecord] = []
        finished: list[TaskRecord] = []
        q: _Queue | None = None
        for record in sorted(tasks, key=_by_creation):
            if q is None or q.tenant != record.tenant or q.name != record.queue:
                q = self._queue(record.tenant, record.queue)
            self._add(record, q)
            self._seq = max(self._seq, record.created_seq, record.ready_seq)
            if record.status is QUEUED:
                queued.append(record)
            elif record.status is LEASED:
                self._restore_lease(record, now)
            else:
                finished.append(record)
                if record.finished_at is not None and record.finished_at > now - THROUGHPUT_WINDOW_S:
                    q.count_finished(record)
        finished = [record for record in finished if record.queue not in self.retained_apart]
        finished.sort(key=_by_finish)
        self._finished.extend((record.finished_at or 0.0, record) for record in finished)
        self._finished_count += len(finished)
        queued.sort(key=_by_ready)
        for record in queued:
            q = self._queues[(record.tenant, record.queue)]
            if record.available_at > now:
                heapq.heappush(q.delayed, (record.available_at, record.ready_seq, record))
            else:
                q.push_ready(record)

    def has_changes(self) -> bool:
        return bool(self._inserted or self._updated or self._deleted)

    def take_changes(self) -> tuple[list[tuple[str, str, str | None]], list[tuple[Any, ...]], list[str]]:
        """What changed since the last call, as rows: new payloads, task rows, deleted task ids."""
        inserted, updated, deleted = self._inserted, self._updated, self._deleted
        self._inserted, self._updated, self._deleted = [], {}, []
        gone = set(deleted)
        for record in inserted:
            updated.pop(record.id, None)
        inserted = [r for r in inserted if r.id not in gone]
        payloads = [(r.id, r.input, r.metadata) for r in inserted]
        rows = [task_row(r) for r in inserted] + [task_row(r) for r in updated.values()]
        return payloads, rows, deleted

    def _restore_lease(self, record: TaskRecord, now: float) -> None:
        heapq.heappush(self._leases, (record.lease_deadline or now, record.attempt_id or "", record))
        worker = self._see_worker(record.tenant, record.worker_id or "unknown", record.node_id, now)
        worker.queues.add(record.queue)
        worker.attempts.add(record.attempt_id or "")
        self._queues[(record.tenant, record.queue)].workers.add(worker.worker_id)
        if record.claim_request_id is not None:
            self._claims.setdefault(record.claim_request_id, []).append(record)

    # ------------------------------------------------------------------------------------------ helpers

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _queue(self, tenant: str, name: str) -> _Queue:
        q = self._queues.get((tenant, name))
        if q is None:
            q = self._queues[(tenant, name)] = _Queue(tenant, name)
        return q

    def _task(self, tenant: str, task_id: str) -> TaskRecord:
        record = self._tasks.get(task_id) if isinstance(task_id, str) else None
        if record is None or record.tenant != tenant:
            raise TaskNotFoundError(str(task_id))
        return record

    def _set_status(self, record: TaskRecord, status: TaskStatus, now: float) -> None:
        counts = self._queues[(record.tenant, record.queue)].counts
        counts[record.status] -= 1
        counts[status] += 1
        self._queued[record.tenant] += (status is QUEUED) - (record.status is QUEUED)
        record.status = status
        self._touch(record, now)

    def _touch(self, record: TaskRecord, now: float) -> None:
        record.updated_at = now
        self._updated[record.id] = record

    def _see_worker(self, tenant: str, worker_id: str, node_id: str | None, now: float) -> _Worker:
        worker = self._workers.get((tenant, worker_id))
        if worker is None:
            worker = self._workers[(tenant, worker_id)] = _Worker(worker_id, tenant, node_id, now, now)
        worker.last_seen = now
        worker.node_id = node_id or worker.node_id
        return worker


_by_creation = attrgetter("created_seq")
_by_ready = attrgetter("ready_seq")


def _by_finish(record: TaskRecord) -> float:
    return record.finished_at or 0.0


def _remember_attempt(record: TaskRecord, outcome: str, now: float) -> None:
    """Add the live attempt, ending now without a result, to the task's history (the newest are kept)."""
    started = None
    if record.lease_deadline is not None and record.lease_span is not None:
        started = record.lease_deadline - record.lease_span
    entry = {
        "attempt": record.attempts,
        "attempt_id": record.attempt_id,
        "worker_id": record.worker_id,
        "started_at": started,
        "ended_at": now,
        "outcome": outcome,
        "error": json.loads(record.error) if record.error and outcome != "cancelled" else None,
    }
    history = json.loads(record.history) if record.history else []
    record.history = json.dumps([*history[-(HISTORY_KEPT - 1) :], entry])


def _lease_expired_error(record: TaskRecord) -> str:
    message = f"attempt {record.attempt_id} by worker {record.worker_id} held its lease past the deadline"
    return json.dumps({"type": "LeaseExpired", "message": message, "traceback": None})


def _encode_cursor(seq: int) -> str:
    return f"cur_{seq:x}"


def _decode_cursor(cursor: str | None) -> int:
    if cursor is None:
        return -1
    try:
        if isinstance(cursor, str) and cursor.startswith("cur_"):
            return int(cursor[4:], 16)
    except ValueError:
        pass
    raise InvalidArgumentError("cursor", f"is not a cursor returned by query: {cursor!r}")
