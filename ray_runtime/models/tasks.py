"""Wire models of the task queues: tasks, leases, queue statistics, workers."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from ray_runtime.errors import ValidationError
from ray_runtime.models.numbers import Integer, Number

__all__ = [
    "AttemptRecord",
    "Lease",
    "QueueStats",
    "Task",
    "TaskError",
    "TaskOptions",
    "TaskPage",
    "TaskSpec",
    "TaskStatus",
    "ThroughputPoint",
    "WaitResult",
    "WorkerInfo",
    "task_specs",
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
    """One task to enqueue, with its options: the one place their defaults are said (``enqueue(queue, input,
    **options)`` takes the same options as keywords, :class:`TaskOptions`)."""

    model_config = ConfigDict(extra="forbid")

    input: Any = None
    priority: Integer = Field(default=0, description="Higher is claimed first; FIFO within a priority.")
    delay_s: Number = Field(default=0.0, description="Invisible to claims until this many seconds from now.")
    idempotency_key: str | None = Field(
        default=None, description="A task with this key already in the queue is returned instead of a new one."
    )
    max_attempts: Integer = Field(default=3, description="Claims before the task becomes a dead letter.")
    lease_s: Number | None = Field(default=None, description="Its lease length, over the claimer's.")
    resources_id: str | None = Field(default=None, description="The resources version its attempts use.")
    metadata: dict[str, Any] | None = None


class TaskOptions(TypedDict, total=False):
    """A task's options as keywords (the fields of :class:`TaskSpec` but its input; defaults and checks are its)."""

    priority: int
    delay_s: float
    idempotency_key: str | None
    max_attempts: int
    lease_s: float | None
    resources_id: str | None
    metadata: dict[str, Any] | None


def task_specs(items: Iterable[Any], options: Mapping[str, Any], *, field: str = "items") -> list[TaskSpec]:
    """The tasks of an enqueue: each item a ``TaskSpec`` (its own options), or an input given ``options``.

    Raises:
        ValidationError: An option is unknown or out of range (each bad field named).
    """
    try:
        return [item if isinstance(item, TaskSpec) else TaskSpec(input=item, **options) for item in items]
    except PydanticValidationError as exc:
        raise ValidationError.from_pydantic(field, exc) from None


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
