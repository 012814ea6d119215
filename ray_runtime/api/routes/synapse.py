"""synapse-sdk's agent server protocol, so its ``AgentClient`` works against the façade unchanged:
``AgentClient("http://<façade>/synapse", "<key>")``.

Served (mounted at ``ApiSettings.synapse_prefix``, default ``/synapse``): ``health/``; ``jobs/``, ``jobs/{id}/``,
``jobs/{id}/logs/``, ``jobs/{id}/stop/``, the log tail over ``WS jobs/{id}/logs/`` and as server-sent events at
``jobs/{id}/logs/stream/``; ``nodes/``, ``nodes/{id}/``, ``tasks/``, ``tasks/{id}/`` (Ray's State API entries);
``serve_applications/``, ``serve_applications/{name}/`` (Serve's application details) and deleting one. Bodies
keep Ray's field names. Not served: the agent server's GPU status, containers, plugin releases and resources.

Auth as the client sends it: ``Authorization: <key>`` (the raw key, accepted on these routes only), ``SYNAPSE-Tenant:
Token <tenant>`` (it may only repeat the key's tenant), and ``SYNAPSE-User: Token <user>``, recorded in the audit log
as the acting user. Tenants as everywhere: another tenant's job or application is a 404 like a missing one.

Log tails send one frame per line, ``{"type": "log", "message": line}`` (a line over the client's 10 KB frame limit
goes in pieces), ``{"type": "heartbeat"}`` while the job is quiet (the client drops frames without a message, and
gives up after 30 s of silence), and ``{"type": "complete"}`` when the job ends; the façade's stream limits end a
tail with an ``error`` frame naming the limit (the client raises it; only then, since in ``auto`` mode it answers an
error by starting over on HTTP).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.datastructures import Headers, MutableHeaders

from ray_runtime.api.deps import ItemId, ServicesDep, SubmissionId, admitted, require
from ray_runtime.api.jobs_access import owned_job, visible_jobs
from ray_runtime.api.routes import cluster, ray_jobs, serve
from ray_runtime.api.services import Services
from ray_runtime.api.sockets import refuse
from ray_runtime.errors import RayRuntimeError
from ray_runtime.keys import Caller
from ray_runtime.models.api import TENANT_HEADER, Scope

__all__ = ["router"]

router = APIRouter(tags=["synapse-sdk compatibility"])
FRAME_LIMIT = 10_000  # characters of a tail frame as JSON: under the client's 10,240 (it drops bigger ones silently)
_SCHEMES = ("bearer ", "basic ")


def synapse_headers(headers: Headers) -> tuple[MutableHeaders, str | None]:
    """The request's headers as the façade's auth reads them, and the acting user named by ``SYNAPSE-User``."""
    translated = MutableHeaders(raw=list(headers.raw))
    key = translated.get("authorization", "")
    if key and not key.lower().startswith(_SCHEMES):
        translated["authorization"] = f"Bearer {key.strip()}"
    tenant = _token(translated.get("synapse-tenant"))
    if tenant is not None:
        translated[TENANT_HEADER] = tenant
    return translated, _token(translated.get("synapse-user"))


def _token(value: str | None) -> str | None:
    if value is None:
        return None
    scheme, _, rest = value.strip().partition(" ")
    return (rest if scheme.lower() == "token" else value).strip()[:200] or None


async def synapse_caller(request: Request) -> Caller:
    """The caller of a synapse-sdk request; its ``SYNAPSE-User`` goes to the audit log."""
    headers, user = synapse_headers(request.headers)
    if user is not None:
        request.state.acting_user = user
    return await admitted(request, headers)


Reader = Annotated[Caller, Depends(require(Scope.READ, synapse_caller))]
Submitter = Annotated[Caller, Depends(require(Scope.SUBMIT, synapse_caller))]
Admin = Annotated[Caller, Depends(require(Scope.ADMIN, synapse_caller))]


@router.get("/health/")
async def health(caller: Reader, services: ServicesDep) -> dict[str, Any]:
    """The agent's health: ``ok`` when Ray, the dashboard and the coordinator answer."""
    from ray_runtime.api.routes.health import ready

    report = json.loads((await ready(services)).body)
    return {"status": "ok" if report["status"] == "ready" else "unavailable", "checks": report["checks"]}


@router.get("/jobs/")
async def list_jobs(caller: Reader, services: ServicesDep) -> list[dict[str, Any]]:
    """The tenant's jobs, as Ray's ``JobDetails``."""
    return await visible_jobs(services, caller)


@router.get("/jobs/{job_id}/")
async def get_job(job_id: SubmissionId, caller: Reader, services: ServicesDep) -> dict[str, Any]:
    return await owned_job(services, caller, job_id)


@router.get("/jobs/{job_id}/logs/")
async def job_logs(job_id: SubmissionId, caller: Reader, services: ServicesDep) -> JSONResponse:
    """The job's whole log, as a JSON string."""
    reply = await ray_jobs.job_logs(job_id, caller, services)
    return JSONResponse(json.loads(reply.body).get("logs", ""))


@router.post("/jobs/{job_id}/stop/")
async def stop_job(job_id: SubmissionId, caller: Submitter, services: ServicesDep) -> Response:
    return await ray_jobs.stop_job(job_id, caller, services)


def log_frames(lines: str) -> list[str]:
    """A tail's ``log`` frames for these lines, each under the client's frame limit."""
    frames = []
    for line in lines.splitlines():
        piece = FRAME_LIMIT // 2
        while line:
            text = json.dumps({"type": "log", "message": line[:piece]}, ensure_ascii=False)
            if len(text) > FRAME_LIMIT and piece > 1:  # escapes made it longer: a smaller piece
                piece //= 2
                continue
            frames.append(text)
            line = line[piece:]
    return frames


async def _tail(services: Services, submission_id: str) -> AsyncIterator[str]:
    """The frames of a job's tail, from its start to its end."""
    async for frame in services.logs.follow(submission_id, 0, services.settings.stream_limits):
        if frame.type == "lines":
            for text in log_frames(frame.data):
                yield text
        elif frame.type == "heartbeat":
            yield json.dumps({"type": "heartbeat"})
        elif frame.type == "end":
            yield json.dumps({"type": "complete", "status": frame.status.value if frame.status else None})
            return
        else:  # a stream limit, or the log could not be read
            reason = f"the log stream reached its {frame.limit} limit" if frame.type == "limit" else "log unavailable"
            yield json.dumps({"type": "error", "message": reason, "limit": frame.limit})
            return


@router.get("/jobs/{job_id}/logs/stream/")
async def stream_logs(job_id: SubmissionId, caller: Reader, services: ServicesDep) -> StreamingResponse:
    """The tail as server-sent events (``data:`` lines only, never comments: the client would print them)."""
    submission_id = (await owned_job(services, caller, job_id))["submission_id"]

    async def events() -> AsyncIterator[bytes]:
        async for text in _tail(services, submission_id):
            yield f"data: {text}\n\n".encode()

    return StreamingResponse(events(), media_type="text/event-stream")


@router.websocket("/jobs/{job_id}/logs/")
async def websocket_logs(websocket: WebSocket, job_id: str) -> None:
    """The tail over a WebSocket, one JSON frame per line; refused before the upgrade like the HTTP routes."""
    services: Services = websocket.app.state.services
    try:
        headers, _ = synapse_headers(websocket.headers)
        caller = await services.auth.authenticate(headers)
        submission_id = (await owned_job(services, caller, job_id))["submission_id"]
    except RayRuntimeError as exc:
        await refuse(websocket, exc)
        return
    await websocket.accept()
    try:
        async for text in _tail(services, submission_id):
            await websocket.send_text(text)
        await websocket.close(code=1000)
    except WebSocketDisconnect:
        return


@router.get("/nodes/")
async def list_nodes(caller: Reader, services: ServicesDep) -> list[dict[str, Any]]:
    """Ray's nodes, as the State API lists them."""
    return (await _listing(cluster.Kind.nodes, caller, services)).items


@router.get("/nodes/{node_id}/")
async def get_node(node_id: ItemId, caller: Reader, services: ServicesDep) -> dict[str, Any]:
    return await cluster.get_state(cluster.Kind.nodes, node_id, caller, services)


@router.get("/tasks/")
async def list_tasks(caller: Reader, services: ServicesDep) -> list[dict[str, Any]]:
    """Ray's tasks of the tenant's jobs, as the State API lists them."""
    return (await _listing(cluster.Kind.tasks, caller, services)).items


@router.get("/tasks/{task_id}/")
async def get_task(task_id: ItemId, caller: Reader, services: ServicesDep) -> dict[str, Any]:
    return await cluster.get_state(cluster.Kind.tasks, task_id, caller, services)


async def _listing(kind: cluster.Kind, caller: Caller, services: Services) -> Any:
    return await cluster.list_state(kind, caller, services, limit=1000, detail=False, filter=[])


@router.get("/serve_applications/")
async def list_serve_applications(caller: Reader, services: ServicesDep) -> list[dict[str, Any]]:
    """The tenant's Serve applications, as Serve details them."""
    visible, _ = await serve.visible_applications(services, caller)
    return [{"name": name, **details} for name, details in sorted(visible.items())]


@router.get("/serve_applications/{name}/")
async def get_serve_application(name: ItemId, caller: Reader, services: ServicesDep) -> dict[str, Any]:
    visible, _ = await serve.visible_applications(services, caller)
    if name not in visible:
        raise serve.no_application(name)
    return {"name": name, **visible[name]}


@router.delete("/serve_applications/{name}/", status_code=204)
async def delete_serve_application(name: ItemId, caller: Admin, services: ServicesDep) -> Response:
    return await serve.delete(name, caller, services)
