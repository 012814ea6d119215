"""The agent protocol: the typed messages between an agent session and its clients, over a WebSocket or as the
events of an HTTP stream. One module of pydantic models, shared by the server and every client; no Ray, no FastAPI.

Client → server: :class:`UserMessage` (text and/or JSON data, a client turn id), :class:`Cancel`, :class:`Ping`.
Server → client: :class:`Status` (on connect and on every change of state), :class:`Event` (one piece of a turn:
a text chunk, a tool call, a tool result, progress, or anything custom), :class:`End` (the turn's result and token
count), :class:`Error` (a stable code, whether the session is still usable), :class:`Bye` (the server is closing the
connection, and why), :class:`Pong`.

Every server message carries a per-session ``seq``, increasing across turns, pauses and resumes: a client that
reconnects with ``after_seq=N`` gets everything after N of the current and the last turn, then live messages.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

__all__ = [
    "AGENT_SUBPROTOCOL",
    "KEY_SUBPROTOCOL_PREFIX",
    "MAX_FRAME_BYTES",
    "PROTOCOL_VERSION",
    "REPLAYED_TYPES",
    "AgentEvent",
    "Bye",
    "Cancel",
    "ClientMessage",
    "Custom",
    "End",
    "Error",
    "Event",
    "Ping",
    "Pong",
    "Progress",
    "ServerMessage",
    "Status",
    "TextChunk",
    "ToolCall",
    "ToolResult",
    "UserMessage",
    "agent_event_adapter",
    "client_message_adapter",
    "error_of",
    "frame",
    "protocol_schema",
    "read_message",
    "server_message_adapter",
]

PROTOCOL_VERSION = "1.0"
REPLAYED_TYPES = frozenset({"event", "end", "error"})  # a turn's messages: replayed by seq, deduplicated by clients
AGENT_SUBPROTOCOL = "rr.agent.v1"  # the WebSocket subprotocol the server answers with
KEY_SUBPROTOCOL_PREFIX = "rr.key."  # a browser's key, offered as the subprotocol rr.key.<key> (never in the URL)
MAX_FRAME_BYTES = 1 << 20  # a bigger frame (either way) gets an error, and the socket stays open


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -------------------------------------------------------------------------------------------- agent events


class TextChunk(_Message):
    """A piece of the agent's text answer, as it is produced."""

    kind: Literal["text_chunk"] = "text_chunk"
    text: str


class ToolCall(_Message):
    """The agent calls a tool."""

    kind: Literal["tool_call"] = "tool_call"
    call_id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolResult(_Message):
    """What a tool call returned (``error`` when it failed)."""

    kind: Literal["tool_result"] = "tool_result"
    call_id: str
    result: Any = None
    error: str | None = None


class Progress(_Message):
    """How far a long step has come."""

    kind: Literal["progress"] = "progress"
    done: float
    total: float | None = None
    message: str = ""


class Custom(_Message):
    """Anything else the agent wants its clients to see."""

    kind: Literal["custom"] = "custom"
    name: str
    data: Any = None


AgentEvent = Annotated[TextChunk | ToolCall | ToolResult | Progress | Custom, Field(discriminator="kind")]
agent_event_adapter: TypeAdapter[TextChunk | ToolCall | ToolResult | Progress | Custom] = TypeAdapter(AgentEvent)


# ------------------------------------------------------------------------------------------ client → server


class UserMessage(_Message):
    """A turn: text and/or JSON data for the agent; ``turn_id`` is the client's (made up if left out)."""

    type: Literal["user_message"] = "user_message"
    turn_id: str | None = Field(default=None, max_length=128)
    text: str | None = None
    data: Any = None


class Cancel(_Message):
    """Ask the agent to stop a turn (cooperatively: it stops at its next chunk)."""

    type: Literal["cancel"] = "cancel"
    turn_id: str | None = Field(default=None, description="None: the turn in progress.")


class Ping(_Message):
    type: Literal["ping"] = "ping"
    nonce: str | None = None


ClientMessage = Annotated[UserMessage | Cancel | Ping, Field(discriminator="type")]
client_message_adapter: TypeAdapter[UserMessage | Cancel | Ping] = TypeAdapter(ClientMessage)


# ------------------------------------------------------------------------------------------ server → client


class _Sequenced(_Message):
    seq: int = Field(description="Per session, increasing across turns, pauses and resumes.")


class Status(_Sequenced):
    """The session as it is now: sent on connect and on every change of state."""

    type: Literal["status"] = "status"
    session_id: str
    state: str
    template: str
    protocol_version: str = PROTOCOL_VERSION
    turn_id: str | None = Field(default=None, description="The turn in progress, if any.")


class Event(_Sequenced):
    """One piece of a turn."""

    type: Literal["event"] = "event"
    turn_id: str
    event: AgentEvent


class End(_Sequenced):
    """A turn ended: its result, tokens used and duration; ``status`` is succeeded, failed or cancelled."""

    type: Literal["end"] = "end"
    turn_id: str
    status: Literal["succeeded", "failed", "cancelled"] = "succeeded"
    result: Any = None
    tokens_used: int = 0
    duration_s: float = 0.0
    error: dict[str, Any] | None = Field(default=None, description="The agent's error when it failed.")


class Error(_Sequenced):
    """Something went wrong: a stable ``code`` (the error classes' codes), and whether the session is usable."""

    type: Literal["error"] = "error"
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)
    turn_id: str | None = None
    usable: bool = True


class Bye(_Sequenced):
    """The server closes this connection, and why."""

    type: Literal["bye"] = "bye"
    reason: Literal["closed", "paused", "idle_timeout", "unloaded", "error", "server_shutdown"]


class Pong(_Sequenced):
    type: Literal["pong"] = "pong"
    nonce: str | None = None


ServerMessage = Annotated[Status | Event | End | Error | Bye | Pong, Field(discriminator="type")]
server_message_adapter: TypeAdapter[Status | Event | End | Error | Bye | Pong] = TypeAdapter(ServerMessage)


def protocol_schema() -> dict[str, Any]:
    """The JSON Schema of the protocol: both directions, with its version."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ray_runtime agent protocol",
        "version": PROTOCOL_VERSION,
        "max_frame_bytes": MAX_FRAME_BYTES,
        "client_to_server": client_message_adapter.json_schema(),
        "server_to_client": server_message_adapter.json_schema(),
    }


def frame(message: BaseModel) -> str:
    """A message as one WebSocket text frame."""
    return json.dumps(message.model_dump(mode="json", exclude_none=True), separators=(",", ":"))


def error_of(message: Error | dict[str, Any]) -> Exception:
    """The typed error an ``error`` message stands for (``InvocationError`` when the agent raised,
    ``HostLostError`` when its host went away, ...)."""
    from ray_runtime.errors import from_wire

    raw = message.model_dump() if isinstance(message, Error) else message
    return from_wire({"error": {k: raw[k] for k in ("code", "message", "details") if k in raw}}, 500)


def read_message(raw: dict[str, Any]) -> Status | Event | End | Error | Bye | Pong:
    """A server message as its model; an ``error`` message raises its typed error instead."""
    if raw.get("type") == "error":
        raise error_of(raw)
    return server_message_adapter.validate_python(raw)
