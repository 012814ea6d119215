"""Traces of the caller's sessions and Agent Lightning rollouts, for trainers and trace viewers:
``?format=otlp`` (OTLP/JSON spans with the GenAI semantic conventions, the default) or ``?format=triplet``
(AGL's prompt, response, reward); and the recording proxy a session turn calls its models through (templates with
``model_proxy``), each call kept for the session's trace."""

from __future__ import annotations

import json
import time
from enum import StrEnum
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from ray_runtime.api.agl_proxy import Upstream, model_request_event
from ray_runtime.api.agl_trajectory import MODEL_REQUEST
from ray_runtime.api.deps import ItemId, Reader, ServicesDep, Submitter
from ray_runtime.api.traces import otlp_json, rollout_steps, rollout_triplets, session_steps, session_triplets
from ray_runtime.errors import InvalidArgumentError, NotFoundError, ResourcesNotFoundError, UnavailableError
from ray_runtime.models.agl import DEFAULT_ATTEMPT, AglModel
from ray_runtime.models.resources import LLM
from ray_runtime.sessions.model_calls import session_trace_id

router = APIRouter(prefix="/api/v1", tags=["traces"])


class TraceFormat(StrEnum):
    OTLP = "otlp"
    TRIPLET = "triplet"


@router.get("/sessions/{session_id}/trace")
async def session_trace(
    session_id: ItemId, caller: Reader, services: ServicesDep, format: TraceFormat = TraceFormat.OTLP
) -> Any:
    """A session's turns (the transcript's newest 500): one ``invoke_agent`` span per turn with its tool calls and
    events, or one triplet per turn."""
    sessions = services.sessions_for(caller)
    session = await sessions.get(session_id)
    turns = await sessions.transcript(session_id)
    if format is TraceFormat.TRIPLET:
        return session_triplets(turns)
    calls = await services.in_background(_model_calls, services.agl_events, caller.tenant, session_id, turns)
    seed = f"session:{session.tenant}:{session.id}"
    return await services.in_background(lambda: otlp_json(session_steps(session, turns, calls), seed=seed))


def _model_calls(events: Any, tenant: str, session_id: str, turns: list[Any]) -> dict[str, list[Any]]:
    """Each turn's model calls made through the proxy: turn id -> (time, data) of each."""
    kept = {t.turn_id for t in turns}
    calls: dict[str, list[Any]] = {}
    for event in events.events(tenant, session_trace_id(session_id), None, MODEL_REQUEST):  # one query, every turn
        if event.attempt_id in kept:
            calls.setdefault(event.attempt_id, []).append((event.timestamp, event.data))
    return calls


@router.post("/sessions/{session_id}/turns/{turn_id}/openai/v1/{upstream_path:path}")
async def session_model_call(
    session_id: ItemId, turn_id: str, upstream_path: str, request: Request, caller: Submitter, services: ServicesDep
) -> Response:
    """A session turn's OpenAI-compatible model call (``chat/completions`` or ``completions``), sent unchanged to
    the tenant's ``LLM`` resource serving the body's ``model`` (or its only one), and kept for the session's trace
    with the answer's token ids and log-probabilities when the server gives them."""
    if upstream_path not in ("chat/completions", "completions"):
        raise NotFoundError(f"no model route {upstream_path!r} (chat/completions or completions)")
    await services.sessions_for(caller).get(session_id)
    try:
        body = json.loads(await request.body() or b"{}")
    except json.JSONDecodeError:
        raise InvalidArgumentError("body", "is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidArgumentError("body", "must be a JSON object")
    if body.get("stream"):
        raise InvalidArgumentError("stream", "the recording proxy answers whole replies: leave stream unset")
    llm = await _llm_for(services, caller, body.get("model"))
    headers = {"authorization": f"Bearer {llm.api_key}"} if llm.api_key else {}
    started = time.perf_counter()
    try:
        response, retries = await services.agl_proxy.send(f"{llm.endpoint.rstrip('/')}/{upstream_path}", body, headers)
    except Upstream as exc:
        raise UnavailableError(f"the model server at {llm.endpoint}: {exc.detail}", endpoint=llm.endpoint) from None
    latency_ms = (time.perf_counter() - started) * 1000
    answer = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    server = AglModel(model=llm.model, endpoint=llm.endpoint)
    event = model_request_event(server, body, response, answer, latency_ms, retries)
    trace_id = session_trace_id(session_id)
    await services.in_background(services.agl_events.append, caller.tenant, trace_id, turn_id, MODEL_REQUEST, event)
    return JSONResponse(answer, status_code=response.status_code)


async def _llm_for(services: Any, caller: Any, model: Any) -> LLM:
    try:
        named = (await services.coordinator_for(caller).resources.latest()).resources
    except ResourcesNotFoundError:
        named = {}
    llms = sorted((r for r in named.values() if isinstance(r, LLM)), key=lambda r: (r.model, r.endpoint))
    serving = [r for r in llms if r.model == model] if model else llms[:1] if len(llms) == 1 else []
    if not serving:
        have = sorted({r.model for r in llms}) or "none"
        raise InvalidArgumentError("model", f"no LLM resource of this tenant serves {model!r} (models: {have})")
    return serving[0]


@router.get("/rollouts/{rollout_id}/trace")
async def rollout_trace(
    rollout_id: str,
    caller: Reader,
    services: ServicesDep,
    format: TraceFormat = TraceFormat.OTLP,
    attempt_id: str | None = None,
) -> Any:
    """An Agent Lightning rollout's attempt (by default the one its status names): its events as spans, model
    calls as GenAI client spans with their token ids, or its triplets."""
    rollout = await services.coordinator_for(caller).rollouts.find(rollout_id)
    if rollout is None:
        raise NotFoundError(f"no rollout {rollout_id!r}", rollout_id=rollout_id)
    attempt = attempt_id or rollout.status.last_attempt_id or DEFAULT_ATTEMPT
    stored = await services.in_background(services.agl_events.events, caller.tenant, rollout.task_id, attempt)
    events = [(e.event_type, e.timestamp, e.data) for e in stored]
    if format is TraceFormat.TRIPLET:
        return rollout_triplets(events)
    steps = rollout_steps(rollout.model_dump(mode="json"), attempt, events)
    seed = f"rollout:{caller.tenant}:{rollout_id}:{attempt}"
    return await services.in_background(lambda: otlp_json(steps, seed=seed))
