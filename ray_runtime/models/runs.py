"""Wire models of plugin runs: what a job-mode run reports to the coordinator under its submission id."""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ray_runtime.models.tasks import TaskError

__all__ = ["Progress", "Run", "RunStatus"]


class RunStatus(enum.StrEnum):
    """Where a run is; the last two are terminal."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Progress(BaseModel):
    """One progress report: ``done`` of ``total`` units at ``at`` (Unix seconds)."""

    model_config = ConfigDict(frozen=True)

    at: float
    done: float
    total: float | None = None
    message: str = ""


class Run(BaseModel):
    """A plugin action run as a Ray job: its parameters, progress, and typed result or error."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="The Ray submission id (or a local run id outside Ray jobs).")
    tenant: str
    plugin: str
    action: str
    status: RunStatus
    params: Any = None
    metadata: dict[str, Any] | None = None
    progress: Progress | None = None
    events: list[Progress] = Field(default_factory=list, description="The latest progress reports, oldest first.")
    result: Any = None
    error: TaskError | None = None
    created_at: float
    updated_at: float
    finished_at: float | None = None
