"""Ray Jobs compatibility: the dashboard's job REST API and log tail, with auth and tenant scoping applied.

So the stock tools work through the façade: ``ray job submit --address http://<façade> --headers
'{"Authorization": "Bearer <key>"}' --working-dir . -- python x.py``, ``ray job logs --follow``, ``ray job list``,
and ``JobSubmissionClient``. Requests go on to the dashboard with the cluster's own credentials (never the caller's
key); a tenant sees and touches only its own jobs, and its ``ray job list`` lists only those.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response

from ray_runtime.api.deps import Reader, ServicesDep, SubmissionId, Submitter
from ray_runtime.api.jobs_access import owned_job, scoped_metadata, visible_jobs
from ray_runtime.api.services import Services
from ray_runtime.errors import BadRequestError, RayRuntimeError

router = APIRouter(prefix="/api", tags=["ray jobs compatibility"])
Protocol = Annotated[Literal["gcs"], Path(description="Package store: Ray's job client uses gcs.")]
PackageName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,200}\.zip$", description="e.g. _ray_pkg_<hash>.zip")]


async def _forward(services: Services, method: str, path: str, **kwargs: Any) -> Response:
    """Send the request on to the dashboard and hand its answer back as it is."""
    status, body, media = await services.dashboard.request(method, path, **kwargs)
    return Response(content=body, status_code=status, media_type=media)


@router.get("/version")
async def version(caller: Reader, services: ServicesDep) -> Response:
    return await _forward(services, "GET", "/api/version")


@router.get("/packages/{protocol}/{package_name}")
async def package_exists(
    protocol: Protocol, package_name: PackageName, caller: Reader, services: ServicesDep
) -> Response:
    return await _forward(services, "GET", f"/api/packages/{protocol}/{package_name}")


@router.put("/packages/{protocol}/{package_name}")
async def upload_package(
    protocol: Protocol, package_name: PackageName, request: Request, caller: Submitter, services: ServicesDep
) -> Response:
    return await _forward(services, "PUT", f"/api/packages/{protocol}/{package_name}", data=await request.body())


@router.get("/jobs/")
async def list_jobs(caller: Reader, services: ServicesDep) -> list[dict[str, Any]]:
    """Ray's job list, only the caller's tenant's jobs."""
    return await visible_jobs(services, caller)


@router.post("/jobs/")
async def submit(request: Request, caller: Submitter, services: ServicesDep) -> Response:
    """Ray's job submission, with the caller's tenant (and key) written into the job's metadata."""
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise BadRequestError("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequestError("the request body must be a JSON object")
    body["metadata"] = scoped_metadata(caller, body.get("metadata"))
    services.dashboard.jobs_changed()
    return await _forward(services, "POST", "/api/jobs/", json=body)


@router.get("/jobs/{job_id}")
async def get_job(job_id: SubmissionId, caller: Reader, services: ServicesDep) -> JSONResponse:
    return JSONResponse(await owned_job(services, caller, job_id))


@router.delete("/jobs/{job_id}")
async def delete_job(job_id: SubmissionId, caller: Submitter, services: ServicesDep) -> Response:
    await owned_job(services, caller, job_id)
    services.dashboard.jobs_changed(job_id)
    return await _forward(services, "DELETE", f"/api/jobs/{job_id}")


@router.post("/jobs/{job_id}/stop")
async def stop_job(job_id: SubmissionId, caller: Submitter, services: ServicesDep) -> Response:
    await owned_job(services, caller, job_id)
    services.dashboard.jobs_changed(job_id)
    return await _forward(services, "POST", f"/api/jobs/{job_id}/stop")


@router.get("/jobs/{job_id}/logs")
async def job_logs(job_id: SubmissionId, caller: Reader, services: ServicesDep) -> Response:
    await owned_job(services, caller, job_id)
    return await _forward(services, "GET", f"/api/jobs/{job_id}/logs")


@router.websocket("/jobs/{job_id}/logs/tail")
async def tail(websocket: WebSocket, job_id: str) -> None:
    """Ray's log tail (text messages until the job ends), served from the façade's fast log follower."""
    services: Services = websocket.app.state.services
    try:
        caller = await services.auth.authenticate(websocket.headers)
        submission_id = (await owned_job(services, caller, job_id))["submission_id"]
    except RayRuntimeError as exc:
        await websocket.close(code=1008, reason=exc.code)
        return
    await websocket.accept()
    try:
        async for frame in services.logs.follow(submission_id, 0, services.settings.stream_limits):
            if frame.type == "lines":
                await websocket.send_text(frame.data)
            elif frame.type in ("end", "limit", "error"):
                break
        await websocket.close(code=1000)
    except WebSocketDisconnect:
        return
