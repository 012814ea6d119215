"""Wire models of Agent Lightning 1.0's server API (rollouts, events, models, the proxy's pause state).

Field for field what ``agentlightning`` 1.0.2's clients send and parse; written here from its protocol. A rollout's
lifecycle is ``queuing`` → ``running`` | ``failed``, ``running`` → ``succeeded`` | ``failed``; the last two are final.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DEFAULT_ATTEMPT",
    "AglEvent",
    "AglEventCreate",
    "AglModel",
    "PauseRequest",
    "PauseState",
    "Rollout",
    "RolloutConfig",
    "RolloutCreate",
    "RolloutDetail",
    "RolloutLocalConfig",
    "RolloutMetadata",
    "RolloutPatch",
    "RolloutState",
    "RolloutStatus",
    "RolloutStatusPatch",
    "TerminalPage",
    "TerminalRollout",
    "next_states",
]

DEFAULT_ATTEMPT = "0"  # the attempt whose events a rollout shows before any attempt is named


class RolloutState(enum.StrEnum):
    QUEUING = "queuing"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (RolloutState.SUCCEEDED, RolloutState.FAILED)


_NEXT = {
    RolloutState.QUEUING: (RolloutState.RUNNING, RolloutState.FAILED),
    RolloutState.RUNNING: (RolloutState.SUCCEEDED, RolloutState.FAILED),
    RolloutState.SUCCEEDED: (),
    RolloutState.FAILED: (),
}


def next_states(state: RolloutState) -> tuple[RolloutState, ...]:
    """The states a rollout in ``state`` may move to (none from a terminal one)."""
    return _NEXT[state]


class RolloutLocalConfig(BaseModel):
    agent_class: str | None = None
    env_map: dict[str, str] = Field(default_factory=dict)


class RolloutK8sConfig(BaseModel):
    job_template: str | None = None


class RolloutConfig(BaseModel):
    timeout_seconds: int = 3600
    local: RolloutLocalConfig | None = None
    k8s: RolloutK8sConfig | None = None


class RolloutMetadata(BaseModel):
    """The trainer's batch context; any other fields ride along."""

    model_config = ConfigDict(extra="allow")

    batch_idx: int | None = None
    sample_idx_in_batch: int | None = None


class RolloutCreate(BaseModel):
    input: Any
    is_train: bool = True
    config: RolloutConfig | None = None
    metadata: RolloutMetadata | dict[str, Any] | None = None
    rollout_id: str | None = None  # chosen by the caller: creating it again returns the first one


class RolloutStatus(BaseModel):
    state: RolloutState = RolloutState.QUEUING
    k8s_job_name: str | None = None
    last_attempt_id: str | None = None
    error_message: str | None = None
    version: int = 1
    created_at: float
    updated_at: float


class RolloutStatusPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: RolloutState | None = None
    k8s_job_name: str | None = None
    last_attempt_id: str | None = None
    error_message: str | None = None


class RolloutPatch(BaseModel):
    status: RolloutStatusPatch | None = None


class Rollout(BaseModel):
    rollout_id: str
    input: Any
    is_train: bool = True
    config: RolloutConfig
    metadata: RolloutMetadata = Field(default_factory=RolloutMetadata)
    status: RolloutStatus


class RolloutDetail(BaseModel):
    rollout: Rollout
    attempts: list[str]


class TerminalRollout(BaseModel):
    rollout_id: str
    state: RolloutState
    data_id: str
    is_train: bool


class TerminalPage(BaseModel):
    items: list[TerminalRollout]
    next_after: int
    total_terminal: int


class AglEventCreate(BaseModel):
    event_type: str
    data: dict[str, Any] = Field(default_factory=dict)


class AglEvent(BaseModel):
    event_type: str
    rollout_id: str
    attempt_id: str
    timestamp: float
    data: dict[str, Any]


class AglModel(BaseModel):
    """A model inference endpoint (an OpenAI-compatible base URL), keyed by (model, endpoint)."""

    model: str
    endpoint: str
    version: int = 0


class PauseRequest(BaseModel):
    retry_after_seconds: int = 5
    reason: str | None = None


class PauseState(BaseModel):
    paused: bool
    retry_after_seconds: int
    reason: str | None
    inflight: int
