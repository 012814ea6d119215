"""Agent sessions and their templates, for the caller's tenant: create, list, read, turns (JSON, or NDJSON / SSE by
``Accept``), pause, resume, fork, refresh, cancel, close, the transcript, and one-shot invocations. The agent
protocol's WebSocket (``/api/v1/sessions/{id}/ws``) is in ``routes.agent_socket``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ray_runtime.api.deps import ItemId, Reader, ServicesDep, Submitter
from ray_runtime.errors import BadRequestError, RayRuntimeError
from ray_runtime.models.sessions import (
    Invocation,
    SessionCreateRequest,
    SessionInfo,
    SessionPage,
    SessionStatus,
    Template,
    TurnRecord,
    TurnRequest,
)

router = APIRouter(prefix="/api/v1", tags=["sessions"])
NDJSON, SSE = "application/x-ndjson", "text/event-stream"


@router.get("/templates")
async def list_templates(
    caller: Reader,
    services: ServicesDep,
    tags: Annotated[list[str], Query(description="Only templates with all of these tags.")] = [],  # noqa: B006
    name: Annotated[str | None, Query(description="Only templates whose id contains this.")] = None,
) -> list[Template]:
    """Session templates: the plugin actions of mode ``session`` (id ``<plugin>.<action>``)."""
    return await services.sessions_for(caller).list_templates(tags=tags or None, name=name)


@router.get("/templates/{template_id}")
async def get_template(template_id: ItemId, caller: Reader, services: ServicesDep) -> Template:
    """One template, with its config's JSON Schema (read in the template's own runtime_env)."""
    sessions = services.sessions_for(caller)
    template = await sessions.get_template(template_id)
    described = await services.catalog.describe(template.plugin)
    action = next(a for a in described.actions if a.name == template.action)
    return template.model_copy(update={"config_schema": action.config_schema})


@router.post("/sessions", status_code=201)
async def create_session(body: SessionCreateRequest, caller: Submitter, services: ServicesDep) -> SessionInfo:
    """A new session, active when this answers (a bad config: 422 naming the field, and nothing is created)."""
    options: dict[str, Any] = {"config": body.config, "metadata": body.metadata}
    if body.idle_timeout_s is not None:
        options["idle_timeout_s"] = body.idle_timeout_s
    return await services.sessions_for(caller).create(body.template, **options)


@router.get("/sessions")
async def list_sessions(
    caller: Reader,
    services: ServicesDep,
    status: SessionStatus | None = None,
    template: str | None = None,
    metadata: Annotated[
        str | None,
        Query(description='A JSON object: sessions whose metadata has these keys and values, e.g. {"user": "ada"}.'),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> SessionPage:
    """The tenant's sessions, newest first; ``next_cursor`` continues."""
    wanted = _metadata(metadata)
    value = status.value if status is not None else None
    return await services.sessions_for(caller).list(
        status=value, template=template, metadata=wanted, limit=limit, cursor=cursor
    )


def _metadata(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        wanted = json.loads(text)
    except ValueError:
        wanted = None
    if not isinstance(wanted, dict):
        raise BadRequestError('metadata: must be a JSON object, e.g. {"user": "ada"}', field="metadata")
    return wanted


@router.get("/sessions/{session_id}")
async def get_session(session_id: ItemId, caller: Reader, services: ServicesDep) -> SessionInfo:
    """A session: its status, counters (at most a second stale), host, last checkpoint and transitions."""
    return await services.sessions_for(caller).get(session_id)


@router.delete("/sessions/{session_id}")
async def close_session(session_id: ItemId, caller: Submitter, services: ServicesDep) -> SessionInfo:
    """Close a session for good (its record and snapshots go after the retention period)."""
    return await services.sessions_for(caller).close(session_id)


@router.get("/sessions/{session_id}/transcript")
async def transcript(session_id: ItemId, caller: Reader, services: ServicesDep) -> list[TurnRecord]:
    """Its turns, oldest first (the newest 500): request, text, tool calls, result, tokens, duration."""
    return await services.sessions_for(caller).transcript(session_id)


@router.post("/sessions/{session_id}/invoke", response_model=Invocation)
async def invoke(
    session_id: ItemId, body: TurnRequest, request: Request, caller: Submitter, services: ServicesDep
) -> Response:
    """Run one turn: its result as JSON, or its messages as NDJSON (``Accept: application/x-ndjson``) or
    server-sent events (``Accept: text/event-stream``): ``event``s, then ``end`` (or ``error``)."""
    sessions = services.sessions_for(caller)
    accept = request.headers.get("accept", "")
    if NDJSON in accept or SSE in accept:
        return await _streamed(sessions.stream_messages(session_id, body), accept)
    invocation = await sessions.invoke(session_id, body)
    return Response(invocation.model_dump_json(), media_type="application/json")


async def _streamed(messages: AsyncIterator[dict[str, Any]], accept: str) -> StreamingResponse:
    """A stream whose first message is already here: an error before the turn starts is a plain JSON error."""
    first = await anext(messages)

    async def lines() -> AsyncIterator[bytes]:
        message: dict[str, Any] | None = first
        while message is not None:
            text = json.dumps(message, separators=(",", ":"))
            yield (f"data: {text}\n\n" if SSE in accept else f"{text}\n").encode()
            try:
                message = await anext(messages)
            except StopAsyncIteration:
                message = None
            except RayRuntimeError as exc:  # the host went away mid-turn: say so as the stream's last message
                message = {"type": "error", "usable": False, **exc.to_wire()["error"]}
                yield (f"data: {json.dumps(message)}\n\n" if SSE in accept else f"{json.dumps(message)}\n").encode()
                return

    return StreamingResponse(lines(), media_type=SSE if SSE in accept else NDJSON)


@router.post("/sessions/{session_id}/pause")
async def pause(session_id: ItemId, caller: Submitter, services: ServicesDep) -> SessionInfo:
    """Checkpoint and unload: PAUSED until resumed (a snapshot over the cap: 413, it stays active)."""
    return await services.sessions_for(caller).pause(session_id)


@router.post("/sessions/{session_id}/resume")
async def resume(session_id: ItemId, caller: Submitter, services: ServicesDep) -> SessionInfo:
    """Bring a paused (or inactive) session back, memory intact."""
    return await services.sessions_for(caller).resume(session_id)


class ForkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metadata: dict[str, Any] | None = Field(default=None, description="The fork's (default: the parent's).")


@router.post("/sessions/{session_id}/fork", status_code=201)
async def fork(
    session_id: ItemId, caller: Submitter, services: ServicesDep, body: ForkRequest | None = None
) -> SessionInfo:
    """A new session from this one's state now (active) or its last checkpoint (paused, inactive)."""
    return await services.sessions_for(caller).fork(session_id, metadata=body.metadata if body else None)


@router.post("/sessions/{session_id}/refresh")
async def refresh(session_id: ItemId, caller: Submitter, services: ServicesDep) -> SessionInfo:
    """Reset the idle timer."""
    return await services.sessions_for(caller).refresh(session_id)


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    turn_id: str | None = Field(default=None, description="None: whichever turn runs.")


@router.post("/sessions/{session_id}/cancel")
async def cancel(
    session_id: ItemId, caller: Submitter, services: ServicesDep, body: CancelRequest | None = None
) -> dict[str, bool]:
    """Ask the running turn to stop (cooperatively: at its next chunk)."""
    return {"cancelled": await services.sessions_for(caller).cancel(session_id, body.turn_id if body else None)}


class OneShotRequest(BaseModel):
    """Create a session, run one turn, close it."""

    model_config = ConfigDict(extra="forbid")

    template: str
    config: dict[str, Any] = Field(default_factory=dict)
    request: TurnRequest


@router.post("/invocations")
async def invoke_agent(body: OneShotRequest, caller: Submitter, services: ServicesDep) -> Invocation:
    """One turn of a fresh session of ``template``, which is closed afterwards."""
    return await services.sessions_for(caller).invoke_agent(body.template, body.request, config=body.config)
