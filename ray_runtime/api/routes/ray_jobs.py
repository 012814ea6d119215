"""Ray Jobs compatibility: the dashboard's job REST API and log tail, with auth and tenant scoping applied.

So the stock tools work through the façade: ``ray job submit --address http://<façade> --headers
'{"Authorization": "Bearer <key>"}' --working-dir . -- python x.py``, ``ray job logs --follow``, ``ray job list``,
and ``JobSubmissionClient``. Requests go on to the dashboard with the cluster's own credentials (never the caller's
key); a tenant sees and touches only its own jobs, and its ``ray job list`` lists only those. Submitting a job or
uploading a package here runs the caller's own code, so it needs a key with ``run_code``.

Packages are content-addressed: a package's name is a hash of its content. An upload whose content does not match
its name is refused, and an existing package is never overwritten (the same content again is a no-op), so one
tenant cannot swap the code another tenant's next job runs.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import zipfile
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt

from ray_runtime.api.dashboard import dashboard_error
from ray_runtime.api.deps import CodeRunner, Reader, ServicesDep, SubmissionId, Submitter
from ray_runtime.api.jobs_access import admit_job, owned_job, scoped_metadata, visible_jobs
from ray_runtime.api.ray_checks import check_runtime_env
from ray_runtime.api.services import Services
from ray_runtime.api.sockets import LOGS_SUBPROTOCOL, accept, refuse, socket_headers
from ray_runtime.checks import ID
from ray_runtime.config import BOUND_TENANT_ENV
from ray_runtime.errors import BadRequestError, PayloadTooLargeError, RayRuntimeError

router = APIRouter(prefix="/api", tags=["ray jobs compatibility"])
Protocol = Annotated[Literal["gcs"], PathParam(description="Package store: Ray's job client uses gcs.")]
PackageName = Annotated[
    str, PathParam(pattern=r"^_ray_pkg_[0-9a-f]{16,64}\.zip$", description="e.g. _ray_pkg_<hash>.zip")
]
MAX_PACKAGE_BYTES = 100 * 2**20  # Ray's own limit for a package in GCS: refused here first, with the façade's error


class RayJobSubmission(BaseModel):
    """The body of Ray's ``POST /api/jobs/`` (its ``JobSubmitRequest``), checked strictly before Ray sees it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    entrypoint: str = Field(min_length=1, max_length=100_000)
    submission_id: str | None = Field(default=None, pattern=ID.pattern)
    job_id: str | None = Field(default=None, pattern=ID.pattern, description="Deprecated by Ray; as submission_id.")
    runtime_env: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    entrypoint_num_cpus: NonNegativeFloat | None = None
    entrypoint_num_gpus: NonNegativeFloat | None = None
    entrypoint_memory: NonNegativeInt | None = None
    entrypoint_resources: dict[str, NonNegativeFloat] | None = None
    entrypoint_label_selector: dict[str, str] | None = None


async def _forward(services: Services, method: str, path: str, **kwargs: Any) -> Response:
    """Send the request on to the dashboard; its answer as it is when it succeeded, else our typed error."""
    status, body, media = await services.dashboard.request(method, path, **kwargs)
    if status >= 400:
        raise dashboard_error(status, body, path)
    return Response(content=body, status_code=status, media_type=media if body else None)


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
    protocol: Protocol, package_name: PackageName, request: Request, caller: CodeRunner, services: ServicesDep
) -> Response:
    """Store a package under its content-addressed name: refused if the content does not match the name; never
    overwrites a package that exists (the same content again is a no-op)."""
    data = await request.body()
    if len(data) > MAX_PACKAGE_BYTES:
        raise PayloadTooLargeError("package", len(data), MAX_PACKAGE_BYTES)
    if not _matches_its_name(package_name, data):
        raise BadRequestError(
            f"the content of {package_name} does not match its name (packages are named by the hash of their "
            "content); upload it as Ray's job client names it",
            package=package_name,
        )
    path = f"/api/packages/{protocol}/{package_name}"
    exists, _, _ = await services.dashboard.request("GET", path)
    if exists == 200:
        return Response(status_code=200)  # same name, so the same content: nothing to do
    return await _forward(services, "PUT", path, content=data)


def _matches_its_name(name: str, data: bytes) -> bool:
    """Whether ``data`` is what ``name`` promises, under any of the naming schemes of Ray and ray_runtime."""
    digest = name.removeprefix("_ray_pkg_").removesuffix(".zip")
    if digest in (hashlib.sha256(data).hexdigest()[: len(digest)], hashlib.sha1(data).hexdigest()):
        return True  # ray_runtime's plugin packages; a prebuilt zip named by Ray's package hash
    return _directory_uri(data) == f"gcs://{name}"  # a folder Ray zipped, named by the hash of its files


def _directory_uri(data: bytes) -> str | None:
    """The URI Ray gives the folder this zip holds (Ray hashes the files, not the zip), or None if not a zip."""
    from ray._private.runtime_env.packaging import get_uri_for_directory  # the hash Ray names packages by

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        return None
    with archive, tempfile.TemporaryDirectory() as folder:
        root = Path(folder).resolve()
        for member in archive.namelist():
            if not (root / member).resolve().is_relative_to(root):
                return None  # a path that escapes the folder: not something Ray made
        archive.extractall(root)
        return get_uri_for_directory(str(root), include_gitignore=False)


@router.get("/jobs/")
async def list_jobs(caller: Reader, services: ServicesDep) -> list[dict[str, Any]]:
    """Ray's job list, only the caller's tenant's jobs."""
    return await visible_jobs(services, caller)


@router.post("/jobs/")
async def submit(body: RayJobSubmission, caller: CodeRunner, services: ServicesDep) -> Response:
    """Ray's job submission, with the caller's tenant (and key) written into the job's metadata."""
    submission = body.model_dump(exclude_none=True)
    env = check_runtime_env("runtime_env", body.runtime_env) or {}
    submission["runtime_env"] = {**env, "env_vars": {**env.get("env_vars", {}), BOUND_TENANT_ENV: caller.tenant}}
    submission["metadata"] = scoped_metadata(caller, body.metadata)
    await admit_job(services, caller)
    services.dashboard.jobs_changed()
    return await _forward(services, "POST", "/api/jobs/", json=submission)


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
        caller = await services.auth.authenticate(socket_headers(websocket))
        submission_id = (await owned_job(services, caller, job_id))["submission_id"]
    except RayRuntimeError as exc:
        await refuse(websocket, exc)
        return
    await accept(websocket, LOGS_SUBPROTOCOL)
    try:
        async for frame in services.logs.follow(submission_id, 0, services.settings.stream_limits):
            if frame.type == "lines":
                await websocket.send_text(frame.data)
            elif frame.type in ("end", "limit", "error"):
                break
        await websocket.close(code=1000)
    except WebSocketDisconnect:
        return
