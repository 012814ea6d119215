"""Pydantic wire models shared by the coordinator, the façade and the clients (no Ray imports)."""

from ray_runtime.models.resources import (
    LLM,
    JSONResource,
    NamedResources,
    PromptTemplate,
    Resource,
    ResourcesUpdate,
    named_resources_adapter,
)
from ray_runtime.models.runs import Progress, Run, RunStatus
from ray_runtime.models.tasks import (
    Lease,
    QueueStats,
    Task,
    TaskError,
    TaskPage,
    TaskSpec,
    TaskStatus,
    WaitResult,
    WorkerInfo,
)

__all__ = [
    "LLM",
    "JSONResource",
    "Lease",
    "NamedResources",
    "Progress",
    "PromptTemplate",
    "QueueStats",
    "Resource",
    "ResourcesUpdate",
    "Run",
    "RunStatus",
    "Task",
    "TaskError",
    "TaskPage",
    "TaskSpec",
    "TaskStatus",
    "WaitResult",
    "WorkerInfo",
    "named_resources_adapter",
]
