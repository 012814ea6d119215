"""Wire models of agent sessions and their templates: what the registry holds, what a turn returns, what the
transcript keeps. No Ray, no FastAPI."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from ray_runtime.checks import NAME
from ray_runtime.errors import ValidationError
from ray_runtime.models.numbers import Number

__all__ = [
    "Invocation",
    "SessionCreateRequest",
    "SessionInfo",
    "SessionPage",
    "SessionStatus",
    "Template",
    "Transition",
    "TurnRecord",
    "TurnRequest",
]


class SessionStatus(enum.StrEnum):
    """Where a session is in its life."""

    CREATING = "creating"  # recorded; its agent is being built on a host
    ACTIVE = "active"  # its agent is loaded on a host and takes turns
    PAUSED = "paused"  # checkpointed and unloaded by an explicit pause; only an explicit resume brings it back
    INACTIVE = "inactive"  # checkpointed and unloaded when idle (or after its host died): the next turn resumes it
    CLOSED = "closed"  # ended for good (its record and snapshots are deleted after the retention period)
    ERROR = "error"  # could not go on (its host died with no checkpoint to come back from, ...): see ``error``

    @property
    def final(self) -> bool:
        return self in (SessionStatus.CLOSED, SessionStatus.ERROR)


class Template(BaseModel):
    """A session template: a plugin action of mode ``session`` (id ``<plugin>.<action>``)."""

    id: str
    plugin: str
    action: str
    version: str = Field(description="The plugin's version; a session records the one it was created with.")
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    isolation: Literal["dedicated", "shared"]
    idle_timeout_s: float | None
    max_lifetime_s: float | None
    on_idle: Literal["unload", "close"]
    checkpoint: Literal["on_pause", "every_turn"]
    busy: Literal["reject", "queue"]
    recover: Literal["none", "last_checkpoint"]
    resources: dict[str, Any] = Field(default_factory=dict)
    config_schema: dict[str, Any] | None = Field(default=None, description="JSON Schema of the config (when read).")


class Transition(BaseModel):
    """One change of a session's status, with when and why."""

    at: float
    to: SessionStatus
    cause: str


class SessionInfo(BaseModel):
    """A session as the registry holds it. Counters and last activity are reported by its host at most a second
    late."""

    model_config = ConfigDict(frozen=True)

    id: str
    tenant: str
    template: str
    version: str
    status: SessionStatus
    isolation: Literal["dedicated", "shared"]
    config: Any = None
    metadata: dict[str, Any] | None = None
    created_at: float
    last_activity_at: float
    expires_at: float | None = Field(description="When its max_lifetime_s runs out (None: never).")
    idle_timeout_s: float | None
    invocations: int = 0
    tokens: int = 0
    host: str | None = Field(default=None, description="The host actor holding it while active.")
    checkpoint_key: str | None = Field(default=None, description="The latest checkpoint's key, if any.")
    checkpoint_at: float | None = None
    checkpoint_bytes: int | None = None
    error: str | None = None
    parent_id: str | None = Field(default=None, description="The session it was forked from.")
    waiting_for: str | None = Field(
        default=None, description="While creating: what it waits for (its host to be placed by Ray)."
    )
    transitions: list[Transition] = Field(default_factory=list)


class SessionPage(BaseModel):
    """A page of sessions, newest first; pass ``next_cursor`` for the next page."""

    items: list[SessionInfo]
    next_cursor: str | None = None


class SessionCreateRequest(BaseModel):
    """Create a session from a template."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    template: str = Field(pattern=NAME.pattern, description="<plugin>.<action>")
    config: dict[str, Any] = Field(default_factory=dict, description="Validated by the template's config model.")
    metadata: dict[str, Any] | None = None
    idle_timeout_s: Number | None = Field(default=None, gt=0, description="Override the template's (None: keep it).")


class TurnRequest(BaseModel):
    """One turn's input: text and/or JSON data."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    data: Any = None
    turn_id: str | None = Field(default=None, max_length=128)

    @classmethod
    def of(cls, value: Any) -> TurnRequest:
        """A turn's input however a caller gave it, read one way everywhere (driver API, clients, hosts): a
        ``TurnRequest``; a string (its text); a non-empty dict of ``text``/``data``/``turn_id`` (a turn request);
        anything else, an empty dict included, is the turn's JSON data.

        Raises:
            ValidationError: A turn request's field is of the wrong type (named).
        """
        if isinstance(value, TurnRequest):
            return value
        if isinstance(value, str):
            return cls(text=value)
        if isinstance(value, Mapping) and value and set(value) <= _TURN_FIELDS:
            try:
                return cls.model_validate(dict(value))
            except PydanticValidationError as exc:
                raise ValidationError.from_pydantic("request", exc) from None
        return cls(data=value)

    def body(self) -> dict[str, Any]:
        """As JSON goes on the wire (fields left unset are left out)."""
        return self.model_dump(mode="json", exclude_none=True)


_TURN_FIELDS = frozenset(TurnRequest.model_fields)


class Invocation(BaseModel):
    """What a turn returned."""

    session_id: str
    turn_id: str
    status: Literal["succeeded", "failed", "cancelled"]
    result: Any = None
    tokens_used: int = 0
    duration_s: float = 0.0


class TurnRecord(BaseModel):
    """One turn in a session's transcript: the request, what happened (text joined, tools called), the result."""

    turn_id: str
    at: float
    request: dict[str, Any]
    status: str
    text: str = ""
    events: list[dict[str, Any]] = Field(default_factory=list, description="Tool calls, tool results, custom.")
    result: Any = None
    tokens_used: int = 0
    duration_s: float = 0.0
    error: dict[str, Any] | None = None
