"""Wire models of the HTTP API (façade and clients): requests, responses, log frames, keys, health."""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ray_runtime.checks import ID, NAME
from ray_runtime.models.numbers import Integer, Number
from ray_runtime.models.runs import Run
from ray_runtime.models.tasks import Lease, Task, TaskError, TaskSpec

__all__ = [
    "LIMITS_NAMESPACE",
    "TENANT_HEADER",
    "ApiKey",
    "ClaimRequest",
    "ClusterListing",
    "CompleteRequest",
    "CompleteResponse",
    "EnqueueManyRequest",
    "ErrorBody",
    "ErrorDetail",
    "FailRequest",
    "HealthCheck",
    "HealthReport",
    "HeartbeatRequest",
    "JobInfo",
    "JobPage",
    "JobStatus",
    "JobSubmitRequest",
    "KeyCreateRequest",
    "KeyCreated",
    "LogFrame",
    "LogRange",
    "Me",
    "NextClaim",
    "Scope",
    "ServeApplication",
    "ServeDeployRequest",
    "StreamLimits",
    "TenantLimits",
    "WaitRequest",
]

TENANT_HEADER = "x-ray-runtime-tenant"  # picks the tenant in dev mode; with a key, must match it


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ErrorDetail(BaseModel):
    """What went wrong: a stable code, a message saying what to do, and structured details."""

    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    """Every error response: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorDetail


# ------------------------------------------------------------------------------------------------ keys


class Scope(enum.StrEnum):
    """What a key may do; each scope includes the ones before it."""

    READ = "read"  # look at the tenant's jobs, logs, queues, tasks, resources, Serve apps, cluster
    SUBMIT = "submit"  # also submit and stop jobs, enqueue and work tasks, publish resources
    ADMIN = "admin"  # also deploy and delete Serve apps, manage API keys

    def allows(self, needed: Scope) -> bool:
        order = list(Scope)
        return order.index(self) >= order.index(needed)


class Me(BaseModel):
    """The caller as the façade sees it."""

    tenant: str
    scope: Scope
    key_id: str | None = Field(default=None, description="None in dev mode.")
    cluster_admin: bool = False
    run_code: bool = False
    dev_mode: bool = False


class ApiKey(BaseModel):
    """An API key as listed (never its secret)."""

    key_id: str
    tenant: str
    scope: Scope
    name: str = ""
    created_at: float
    revoked_at: float | None = None
    cluster_admin: bool = Field(default=False, description="Sees what belongs to no tenant; sets limits; grants.")
    run_code: bool = Field(default=False, description="May submit arbitrary code (granted by a cluster admin).")


class KeyCreateRequest(_Request):
    tenant: str = Field(pattern=NAME.pattern)
    scope: Scope = Scope.SUBMIT
    name: str = Field(default="", max_length=200)
    cluster_admin: bool = Field(default=False, description="Only a cluster admin may grant it.")
    run_code: bool = Field(default=False, description="Only a cluster admin may grant it.")


class KeyCreated(BaseModel):
    """A new key: ``key`` is shown this once and never stored."""

    key: str
    info: ApiKey


# --------------------------------------------------------------------------------------------- tenants


LIMITS_NAMESPACE = "tenant_limits"  # where each tenant's TenantLimits live, in the coordinator's system store


class TenantLimits(_Request):
    """What one tenant may hold or send at once; None: no limit. A cluster admin sets them; past one, 429."""

    max_queued_tasks: Integer | None = Field(default=None, ge=0, description="Tasks queued (not yet leased).")
    max_running_jobs: Integer | None = Field(default=None, ge=0, description="Ray jobs pending or running.")
    max_sessions: Integer | None = Field(default=None, ge=0, description="Sessions not closed.")
    requests_per_second: Number | None = Field(default=None, gt=0, description="API requests, per façade process.")


# ------------------------------------------------------------------------------------------------ jobs


class JobStatus(enum.StrEnum):
    """Ray's job states; the last three are terminal."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED)


class JobSubmitRequest(_Request):
    """Submit a plugin action (``plugin`` + ``action`` + ``params``) or a raw ``entrypoint`` with its runtime_env."""

    plugin: str | None = None
    action: str | None = None
    params: Any = None
    entrypoint: str | None = Field(default=None, min_length=1, max_length=100_000)
    runtime_env: dict[str, Any] | None = None
    submission_id: str | None = Field(default=None, pattern=ID.pattern)
    metadata: dict[str, str] = Field(default_factory=dict)
    entrypoint_num_cpus: Number | None = Field(default=None, ge=0)
    entrypoint_num_gpus: Number | None = Field(default=None, ge=0)
    entrypoint_memory: Integer | None = Field(default=None, ge=0)
    entrypoint_resources: dict[str, Number] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> JobSubmitRequest:
        plugin_job = self.plugin is not None or self.action is not None
        if plugin_job == (self.entrypoint is not None):
            raise ValueError("give either plugin and action, or an entrypoint")
        if plugin_job and (self.plugin is None or self.action is None):
            raise ValueError("a plugin job needs both plugin and action")
        if plugin_job and self.runtime_env is not None:
            raise ValueError("runtime_env comes from the plugin's manifest for plugin jobs")
        return self


class JobInfo(BaseModel):
    """A Ray job as the façade shows it: Ray's status plus, for plugin jobs, the recorded run."""

    submission_id: str
    job_id: str | None = None
    status: JobStatus
    message: str | None = None
    entrypoint: str = ""
    start_time: float | None = Field(default=None, description="Unix seconds.")
    end_time: float | None = None
    tenant: str | None = Field(description="None: submitted around the façade (seen by cluster admins only).")
    submitted_by: str | None = None
    plugin: str | None = None
    action: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    run: Run | None = None


class JobPage(BaseModel):
    """A page of jobs, newest first; pass ``next_cursor`` for the next page."""

    items: list[JobInfo]
    next_cursor: str | None = None


class LogRange(BaseModel):
    """A bounded byte range of a job's log."""

    submission_id: str
    offset: int
    next_offset: int
    data: str
    complete: bool = Field(description="True when next_offset was the end of the log when read.")


class StreamLimits(BaseModel):
    """Caps on one log stream; reaching one ends it with an explicit ``limit`` frame (or a StreamLimitError)."""

    max_lines: int = Field(default=1_000_000, ge=1)
    max_bytes: int = Field(default=256 * 2**20, ge=1)
    max_messages: int = Field(default=100_000, ge=1)
    max_message_size: int = Field(default=2**20, ge=1, description="Bytes of log data in one frame.")

    def narrowed(self, **requested: int | None) -> StreamLimits:
        """These limits, lowered (never raised) by what was asked for."""
        values = self.model_dump()
        for name, value in requested.items():
            if value is not None:
                values[name] = min(values[name], value)
        return StreamLimits(**values)


class LogFrame(BaseModel):
    """One frame of a log stream; ``offset`` is the byte offset after it (resume there with ``?offset=``)."""

    type: Literal["lines", "heartbeat", "end", "limit", "error"]
    offset: int
    data: str = ""
    status: JobStatus | None = None
    limit: str | None = None
    error: dict[str, Any] | None = None


# ----------------------------------------------------------------------------------------------- queues


class EnqueueManyRequest(_Request):
    tasks: list[TaskSpec] = Field(min_length=1, max_length=10_000)


class ClaimRequest(_Request):
    worker_id: str = Field(min_length=1, max_length=128)
    max_tasks: Integer = Field(default=1, ge=1, le=1000)
    lease_s: Number | None = Field(default=None, gt=0)
    wait_s: Number = Field(default=0.0, ge=0, le=60, description="Long poll: return as soon as a task is claimable.")


class NextClaim(ClaimRequest):
    """The claim that follows a completion in the same call."""

    queue: str = Field(pattern=NAME.pattern)


class HeartbeatRequest(_Request):
    extend_s: Number | None = Field(default=None, gt=0)


class CompleteRequest(_Request):
    result: Any = None
    next: NextClaim | None = Field(default=None, description="Claim the next task(s) in the same call.")


class CompleteResponse(BaseModel):
    task: Task
    leases: list[Lease] = Field(default_factory=list)


class FailRequest(_Request):
    error: TaskError | str
    retryable: bool = True


class WaitRequest(_Request):
    task_ids: list[str] = Field(min_length=1, max_length=1000)
    timeout_s: Number = Field(default=30.0, ge=0, le=60)
    return_when: Literal["all", "first"] = "all"


# ------------------------------------------------------------------------------------------ cluster, serve


class ClusterListing(BaseModel):
    """A State API listing; ``truncated`` says when Ray returned fewer than ``total``."""

    kind: str
    items: list[dict[str, Any]]
    total: int
    truncated: bool
    warnings: list[str] = Field(default_factory=list)


class ServeApplication(BaseModel):
    name: str
    tenant: str | None = None
    status: str
    message: str = ""
    route_prefix: str | None = None
    deployments: dict[str, Any] = Field(default_factory=dict)
    last_deployed_time_s: float | None = None


class ServeDeployRequest(_Request):
    """Deploy a plugin's serve actions, or one application from an import path (as in a Serve config)."""

    plugin: str | None = None
    actions: list[str] | None = None
    import_path: str | None = None
    args: dict[str, Any] | None = None
    runtime_env: dict[str, Any] | None = None
    route_prefix: str | None = None
    deployments: list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ServeDeployRequest:
        if (self.plugin is None) == (self.import_path is None):
            raise ValueError("give either plugin or import_path")
        return self


# ------------------------------------------------------------------------------------------------ health


class HealthCheck(BaseModel):
    ok: bool
    detail: str = ""


class HealthReport(BaseModel):
    status: Literal["live", "ready", "unavailable"]
    checks: dict[str, HealthCheck] = Field(default_factory=dict)
