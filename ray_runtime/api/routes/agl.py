"""Agent Lightning 1.0's server API under a prefix (``/agl``): rollouts, their events, model endpoints, the LLM
proxy and its pause state, with that server's paths, status codes and error bodies (``{"detail": ...}``, FastAPI's
422 list), so its trainers, controllers and agents work unchanged.

A rollout is a task of the tenant's ``agl.rollouts`` queue (``coord.rollouts``); its events are in the event store
beside the coordinator's state (``coordinator.rollout_events``), written by the façade, never through the
coordinator. Keys as everywhere (``Authorization: Bearer``, or AGL's ``x-api-key``), tenant-scoped: rollout ids are
per tenant and another tenant's rollout is missing.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse

from ray_runtime.api.agl_proxy import (
    ENDPOINT_PREFIX,
    AglProxy,
    NoServers,
    Upstream,
    endpoint_resources,
    model_request_event,
)
from ray_runtime.api.agl_trajectory import MODEL_REQUEST, drop_routes, routes_superseded, triplets
from ray_runtime.api.deps import admitted
from ray_runtime.errors import AuthenticationError, RateLimitError, RayRuntimeError
from ray_runtime.keys import Caller
from ray_runtime.models.agl import (
    DEFAULT_ATTEMPT,
    AglEvent,
    AglEventCreate,
    AglModel,
    PauseRequest,
    PauseState,
    Rollout,
    RolloutCreate,
    RolloutDetail,
    RolloutPatch,
    RolloutState,
    TerminalPage,
)
from ray_runtime.models.api import Scope

__all__ = ["agl_app"]


async def _caller(request: Request, scope: Scope) -> Caller:
    headers: Any = request.headers
    api_key = headers.get("x-api-key")
    if api_key and not headers.get("authorization"):
        headers = {**headers, "authorization": f"Bearer {api_key}"}
    caller = await admitted(request, headers)
    if not caller.scope.allows(scope):
        raise HTTPException(403, f"this needs a key with scope '{scope.value}' (yours: '{caller.scope.value}')")
    return caller


async def _reader(request: Request) -> Caller:
    return await _caller(request, Scope.READ)


async def _submitter(request: Request) -> Caller:
    return await _caller(request, Scope.SUBMIT)


Reader = Annotated[Caller, Depends(_reader)]
Submitter = Annotated[Caller, Depends(_submitter)]


def _rollouts(request: Request, caller: Caller) -> Any:
    return request.app.state.services.coordinator_for(caller).rollouts


def _resources(request: Request, caller: Caller) -> Any:
    return request.app.state.services.coordinator_for(caller).resources


def _services(request: Request) -> Any:
    return request.app.state.services


def _events(request: Request) -> Any:
    return _services(request).agl_events


def _proxy(request: Request) -> AglProxy:
    return request.app.state.services.agl_proxy


def _missing(rollout_id: str) -> HTTPException:
    return HTTPException(404, f"Rollout not found: {rollout_id}")


def _public(rollout: Any) -> Rollout:
    return Rollout.model_validate(rollout.model_dump(exclude={"task_id"}))


store = APIRouter(prefix="/api")


@store.post("/rollouts", status_code=201, response_model=list[Rollout])
async def create_rollouts(body: list[RolloutCreate], request: Request, caller: Submitter) -> list[Rollout]:
    """Enqueue rollouts; one whose ``rollout_id`` exists comes back unchanged (creation is idempotent)."""
    made = await _rollouts(request, caller).create(body)
    for rollout in made:
        _tasks(request)[(caller.tenant, rollout.rollout_id)] = rollout.task_id
    return [_public(r) for r in made]


@store.get("/rollouts", response_model=list[Rollout])
async def list_rollouts(
    request: Request, caller: Reader, state_in: Annotated[list[RolloutState], Query()], limit: int = 500
) -> list[Rollout]:
    return [_public(r) for r in await _rollouts(request, caller).list([s.value for s in state_in], limit)]


@store.get("/rollouts/terminal", response_model=TerminalPage)
async def terminal_rollouts(request: Request, caller: Reader, after: int = 0, limit: int = 1000) -> TerminalPage:
    """Ended rollouts in the order they ended; pass ``next_after`` back for the ones that ended since."""
    return await _rollouts(request, caller).ended(after, limit)


@store.get("/rollouts/{rollout_id}", response_model=RolloutDetail)
async def get_rollout(rollout_id: str, request: Request, caller: Reader) -> RolloutDetail:
    rollout = await _rollouts(request, caller).find(rollout_id)
    if rollout is None:
        raise _missing(rollout_id)
    attempts = await _services(request).in_background(_events(request).attempts, caller.tenant, rollout.task_id)
    return RolloutDetail(rollout=_public(rollout), attempts=attempts)


@store.patch("/rollouts/{rollout_id}", response_model=Rollout)
async def patch_rollout(rollout_id: str, body: RolloutPatch, request: Request, caller: Submitter) -> Rollout:
    changes = body.status.model_dump(exclude_unset=True, mode="json") if body.status is not None else {}
    return _public(await _rollouts(request, caller).patch(rollout_id, changes))


@store.delete("/rollouts/{rollout_id}", status_code=204)
async def delete_rollout(rollout_id: str, request: Request, caller: Submitter) -> Response:
    """Delete a rollout and its events; a missing one is no error."""
    task_id = await _rollouts(request, caller).delete(rollout_id)
    _tasks(request).pop((caller.tenant, rollout_id), None)
    if task_id is not None:
        await _services(request).in_background(_events(request).delete, caller.tenant, task_id)
    return Response(status_code=204)


def _tasks(request: Request) -> Any:
    return request.app.state.services.agl_tasks


async def _task_of(request: Request, caller: Caller, rollout_id: str) -> str:
    """The task carrying a rollout, for writing its events: remembered for a second (an agent posts many events
    and model calls; this replica forgets it at once when it deletes the rollout)."""
    key = (caller.tenant, rollout_id)
    task_id = _tasks(request).get(key)
    if task_id is None:
        rollout = await _rollouts(request, caller).find(rollout_id)
        if rollout is None:
            raise _missing(rollout_id)
        task_id = _tasks(request)[key] = rollout.task_id
    return task_id


async def record_event(
    request: Request, caller: Caller, rollout_id: str, attempt_id: str, event_type: str, data: dict[str, Any]
) -> AglEvent:
    task_id = await _task_of(request, caller, rollout_id)
    rewrite = routes_superseded(data) if event_type == MODEL_REQUEST else None
    stored = await _services(request).in_background(
        lambda: _events(request).append(caller.tenant, task_id, attempt_id, event_type, data, rewrite_previous=rewrite)
    )
    return AglEvent(
        event_type=event_type, rollout_id=rollout_id, attempt_id=attempt_id, timestamp=stored.timestamp, data=data
    )


@store.post("/rollouts/{rollout_id}/attempt/{attempt_id}/events", response_model=AglEvent)
async def post_event(
    rollout_id: str, attempt_id: str, body: AglEventCreate, request: Request, caller: Submitter
) -> AglEvent:
    """Append an event to a rollout's attempt (also after the rollout ended)."""
    return await record_event(request, caller, rollout_id, attempt_id, body.event_type, body.data)


@store.get("/rollouts/{rollout_id}/events", response_model=list[AglEvent])
async def query_events(
    rollout_id: str,
    request: Request,
    caller: Reader,
    event_type: str | None = None,
    format: str | None = Query(None, description="'triplet': trimmed for training"),
    include_routed_experts: bool = True,
) -> list[AglEvent]:
    """The events of the attempt ``status.last_attempt_id`` names (``"0"`` before any is named)."""
    rollout = await _rollouts(request, caller).find(rollout_id)
    if rollout is None:
        raise _missing(rollout_id)
    attempt = rollout.status.last_attempt_id or DEFAULT_ATTEMPT
    stored = await _services(request).in_background(
        _events(request).events, caller.tenant, rollout.task_id, attempt, event_type
    )
    pairs = [(event.event_type, event.data) for event in stored]
    kept = triplets(pairs) if format == "triplet" else list(enumerate(event.data for event in stored))
    return [
        AglEvent(
            event_type=stored[index].event_type,
            rollout_id=rollout_id,
            attempt_id=attempt,
            timestamp=stored[index].timestamp,
            data=data if include_routed_experts else drop_routes(stored[index].event_type, data),
        )
        for index, data in kept
    ]


@store.post("/models", status_code=201, response_model=list[AglModel])
async def register_models(body: list[AglModel], request: Request, caller: Submitter) -> list[AglModel]:
    """Register model endpoints (by model and endpoint; again replaces), for the proxy and as the tenant's
    resources (an ``LLM`` per endpoint, see :func:`endpoint_resources`)."""
    await _proxy(request).register(caller.tenant, body)
    await _resources(request, caller).update(endpoint_resources(body))
    return body


@store.delete("/models")
async def delete_models(request: Request, caller: Submitter) -> dict[str, str]:
    await _proxy(request).unregister_all(caller.tenant)
    await _resources(request, caller).update({}, replace_prefix=ENDPOINT_PREFIX)
    return {"status": "ok"}


proxy = APIRouter(prefix="/proxy")


async def _until_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


@proxy.post("/rollout/{rollout_id}/attempt/{attempt_id}/mode/{mode}/openai/v1/{upstream_path:path}")
async def llm_proxy(
    rollout_id: str, attempt_id: str, mode: str, upstream_path: str, request: Request, caller: Submitter
) -> Response:
    """An agent's model call: rewritten, sent to the rollout's endpoint, recorded as a ``model_request`` event."""
    if mode not in ("train", "val"):
        raise HTTPException(404, f"Unsupported proxy mode: {mode}")
    if upstream_path not in ("chat/completions", "completions"):
        raise HTTPException(404, f"Unsupported upstream path: {upstream_path}")
    await _task_of(request, caller, rollout_id)
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        raise HTTPException(400, "Invalid JSON in request body") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "Request body must be a JSON object")
    the_proxy = _proxy(request)
    try:
        server = await the_proxy.server_for(caller.tenant, rollout_id)
    except NoServers as exc:
        raise HTTPException(503, f"No servers available for model '{exc}'") from None
    rewritten = the_proxy.rewrite(body, mode)
    forwarding = asyncio.ensure_future(
        _forward(request, caller, rollout_id, attempt_id, server, rewritten, upstream_path)
    )
    hung_up = asyncio.ensure_future(_until_disconnect(request))
    try:
        done, _ = await asyncio.wait((forwarding, hung_up), return_when=asyncio.FIRST_COMPLETED)
        if forwarding in done:
            return forwarding.result()
        return Response(status_code=499)  # the agent hung up: the call is dropped, and no event recorded
    finally:
        for task in (forwarding, hung_up):
            task.cancel()
        await asyncio.gather(forwarding, hung_up, return_exceptions=True)


async def _forward(
    request: Request,
    caller: Caller,
    rollout_id: str,
    attempt_id: str,
    server: AglModel,
    body: dict[str, Any],
    upstream_path: str,
) -> Response:
    the_proxy = _proxy(request)
    refused = await the_proxy.admit(caller.tenant)
    if refused is not None:
        return JSONResponse(
            {"error": "gateway paused", "reason": refused["reason"]},
            status_code=429,
            headers={"Retry-After": str(refused["retry_after_seconds"]), "X-Agl-Paused": "true"},
        )
    try:
        if body.get("stream", False):
            raise HTTPException(400, "Streaming responses are not supported")
        started = time.perf_counter()
        try:
            response, retries = await the_proxy.send(f"{server.endpoint.rstrip('/')}/{upstream_path}", body)
        except Upstream as exc:
            raise HTTPException(exc.status, exc.detail) from None
        latency_ms = (time.perf_counter() - started) * 1000
        answer = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        event = model_request_event(server, body, response, answer, latency_ms, retries)
        await record_event(request, caller, rollout_id, attempt_id, MODEL_REQUEST, event)
        return JSONResponse(answer, status_code=response.status_code)
    finally:
        await the_proxy.release(caller.tenant)


@proxy.post("/pause", response_model=PauseState)
async def pause(body: PauseRequest, request: Request, caller: Submitter) -> PauseState:
    """Refuse new proxy calls (429 with Retry-After) on every replica while those in flight drain."""
    return await _proxy(request).set_pause(caller.tenant, body)


@proxy.post("/resume", response_model=PauseState)
async def resume(request: Request, caller: Submitter) -> PauseState:
    return await _proxy(request).set_pause(caller.tenant, None)


@proxy.get("/state", response_model=PauseState)
async def proxy_state(request: Request, caller: Reader) -> PauseState:
    return await _proxy(request).state(caller.tenant)


def agl_app(services: Any) -> FastAPI:
    """The AGL routes as an application of their own (mounted at the prefix), answering errors as AGL does."""
    app = FastAPI(title="Agent Lightning 1.0 on ray_runtime", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.exception_handler(RayRuntimeError)
    async def as_detail(request: Request, exc: RayRuntimeError) -> JSONResponse:
        headers = {}
        if isinstance(exc, RateLimitError):
            headers["Retry-After"] = str(max(1, math.ceil(exc.details.get("retry_after_s", 1))))
        message = "Invalid or missing API key" if isinstance(exc, AuthenticationError) else exc.message
        return JSONResponse({"detail": message}, status_code=exc.http_status, headers=headers)

    app.include_router(store)
    app.include_router(proxy)
    return app
