"""Wire models of the task queues: tasks, leases, queue statistics, workers."""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ray_runtime.models.numbers import Integer, Number

__all__ = [
    "AttemptRecord",
    "Lease",
    "QueueStats",
    "Task",
    "TaskError",
    "TaskPage",
    "TaskSpec",
    "TaskStatus",
    "ThroughputPoint",
    "WaitResult",
    "WorkerInfo",
]


class TaskStatus(enum.StrEnum):
    """Where a task is in its life; the last four are terminal."""

    QUEUED = "queued"  # waiting for a worker (invisible to claim until its available_at)
    LEASED = "leased"  # held by one live attempt until its lease deadline
    SUCCEEDED = "succeeded"  # an attempt completed it; its result is final
    FAILED = "failed"  # an attempt failed it as not retryable
    CANCELLED = "cancelled"  # cancelled or purged before it finished
    DEAD = "dead"  # out of attempts: a dead letter until someone calls retry()

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.DEAD})


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskError(_Wire):
    """Why an attempt failed."""

    type: str = Field(description="Exception class name, or LeaseExpired.")
    message: str = ""
    traceback: str | None = None


class AttemptRecord(_Wire):
    """An attempt of a task that ended without a result."""

    attempt: int = Field(description="Its number in the retry cycle it belonged to.")
    attempt_id: str | None = None
    worker_id: str | None = None
    started_at: float | None = None
    ended_at: float
    outcome: Literal["failed", "expired", "cancelled"]
    error: TaskError | None = None


class TaskSpec(BaseModel):
    """One task to enqueue, for ``enqueue_many``; the same options as ``enqueue``."""

    model_config = ConfigDict(extra="forbid")

    input: Any = None
    priority: Integer = 0
    delay_s: Number = 0.0
    idempotency_key: str | None = None
    max_attempts: Integer = 3
    lease_s: Number | None = None
    resources_id: str | None = None
    metadata: dict[str, Any] | None = None


class Task(_Wire):
    """A task and everything known about it; times are Unix seconds."""

    id: str
    tenant: str
    queue: str
    status: TaskStatus
    input: Any = None
    priority: int = 0
    attempts: int = Field(0, description="Claims so far in this retry cycle.")
    max_attempts: int = 3
    lease_s: float | None = None
    resources_id: str | None = Field(None, description="The resources version pinned at enqueue, if any.")
    idempotency_key: str | None = None
    metadata: dict[str, Any] | None = None
    created_at: float
    updated_at: float
    available_at: float = Field(description="When the task becomes (or became) claimable.")
    finished_at: float | None = None
    attempt_id: str | None = Field(None, description="The latest attempt, live only while status is leased.")
    worker_id: str | None = None
    lease_deadline: float | None = None
    result: Any = None
    error: TaskError | None = None
    history: list[AttemptRecord] = Field(
        default_factory=list, description="Attempts that ended without a result (the newest 20), oldest first."
    )


class Lease(_Wire):
    """A claimed task: hand the result in with ``attempt_id`` before ``lease_deadline``."""

    attempt_id: str
    lease_deadline: float
    resources_id: str | None = Field(None, description="The resources version this attempt must use.")
    task: Task


class TaskPage(_Wire):
    """One page of a query; pass ``next_cursor`` to get the next (None when there is no more)."""

    items: list[Task]
    next_cursor: str | None = None


class WaitResult(_Wire):
    """What ``wait`` saw: the tasks that ended and the ids still running when it returned."""

    done: list[Task]
    pending: list[str]


class ThroughputPoint(_Wire):
    """Tasks of a queue that ended in one minute (``minute``: its start, Unix seconds)."""

    minute: int
    succeeded: int
    failed: int = Field(description="Failed for good or dead-lettered.")


class QueueStats(_Wire):
    """Depth of one queue per status, and what it got done lately."""

    tenant: str
    queue: str
    counts: dict[TaskStatus, int]
    delayed: int = Field(description="Queued tasks not yet claimable (delay or retry backoff).")
    oldest_queued_age_s: float | None = Field(description="How long the oldest claimable task has waited.")
    workers: int = Field(description="Workers that claimed from this queue and are still known.")
    throughput: list[ThroughputPoint] = Field(
        default_factory=list, description="Tasks ended per minute over the last 15 minutes (minutes with some)."
    )


class WorkerInfo(_Wire):
    """A worker as the coordinator last saw it."""

    worker_id: str
    tenant: str
    node_id: str | None = None
    queues: list[str]
    first_seen: float
    last_seen: float
    attempts: list[str] = Field(description="Live attempts this worker holds.")
