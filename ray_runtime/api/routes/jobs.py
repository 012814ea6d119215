"""Jobs: submit plugin actions or raw entrypoints, list, inspect (with the recorded run), stop, delete, and logs
as bounded ranges or live tails (NDJSON over HTTP, or a WebSocket) that resume exactly at a byte offset."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import Response, StreamingResponse

from ray_runtime.api.dashboard import reason_of
from ray_runtime.api.deps import Reader, ServicesDep, SubmissionId, Submitter
from ray_runtime.api.jobs_access import (
    ACTION,
    PLUGIN,
    SUBMITTED_BY,
    admit_job,
    job_tenant,
    owned_job,
    scoped_metadata,
    visible_jobs,
)
from ray_runtime.api.ray_checks import check_runtime_env
from ray_runtime.api.services import Services
from ray_runtime.api.settings import StreamLimits
from ray_runtime.api.sockets import LOGS_SUBPROTOCOL, accept, refuse, socket_headers
from ray_runtime.config import BOUND_TENANT_ENV
from ray_runtime.errors import (
    BadRequestError,
    ConflictError,
    InvalidArgumentError,
    PermissionDeniedError,
    RayRuntimeError,
)
from ray_runtime.keys import Caller
from ray_runtime.models.api import JobInfo, JobPage, JobStatus, JobSubmitRequest, LogRange

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])


def job_info(details: dict[str, Any], run: Any = None) -> JobInfo:
    """Ray's JobDetails (times in ms) as a JobInfo (times in s)."""
    metadata = details.get("metadata") or {}
    to_s = lambda ms: None if ms is None else ms / 1000  # noqa: E731
    return JobInfo(
        submission_id=details["submission_id"],
        job_id=details.get("job_id"),
        status=JobStatus(details["status"]),
        message=details.get("message"),
        entrypoint=details.get("entrypoint") or "",
        start_time=to_s(details.get("start_time")),
        end_time=to_s(details.get("end_time")),
        tenant=job_tenant(details),
        submitted_by=metadata.get(SUBMITTED_BY),
        plugin=metadata.get(PLUGIN),
        action=metadata.get(ACTION),
        metadata=metadata,
        run=run,
    )


async def _submit(services: Services, caller: Caller, body: JobSubmitRequest) -> str:
    from ray_runtime.plugins.prepare import prepare
    from ray_runtime.plugins.submit import job_client, submit_prepared

    metadata = scoped_metadata(caller, body.metadata)
    await admit_job(services, caller)
    try:
        if body.plugin is not None:
            plugin = services.catalog.get(body.plugin)
            bound = {BOUND_TENANT_ENV: caller.tenant}
            prepared = await asyncio.to_thread(prepare, plugin, body.action, "job", env_vars=bound)
            params = await services.catalog.validate(prepared, body.params)  # in the plugin's env, not here
            return await asyncio.to_thread(
                submit_prepared,
                prepared,
                params,
                address=services.dashboard.url,
                tenant=caller.tenant,
                submission_id=body.submission_id,
                metadata=metadata,
            )
        if not caller.run_code:
            raise PermissionDeniedError(
                "a raw entrypoint runs your own code: it needs a key a cluster admin granted run_code; "
                "submit an installed plugin (plugin, action, params) instead"
            )
        env = check_runtime_env("runtime_env", body.runtime_env) or {}
        env = {**env, "env_vars": {**env.get("env_vars", {}), BOUND_TENANT_ENV: caller.tenant}}
        return await asyncio.to_thread(
            job_client(services.dashboard.url).submit_job,
            entrypoint=body.entrypoint,
            runtime_env=env,
            submission_id=body.submission_id,
            metadata=metadata,
            entrypoint_num_cpus=body.entrypoint_num_cpus,
            entrypoint_num_gpus=body.entrypoint_num_gpus,
            entrypoint_memory=body.entrypoint_memory,
            entrypoint_resources=body.entrypoint_resources,
        )
    except RayRuntimeError:
        raise
    except RuntimeError as exc:  # what JobSubmissionClient raises for the dashboard's refusals
        if "already exists" in str(exc):
            raise ConflictError(f"submission id {body.submission_id!r} is taken; choose another") from None
        raise BadRequestError(f"Ray refused the job: {reason_of(str(exc))}") from None


@router.post("", status_code=201)
async def submit(body: JobSubmitRequest, caller: Submitter, services: ServicesDep) -> JobInfo:
    """Submit a plugin action (packed, uploaded, run in its runtime_env) or a raw entrypoint."""
    submission_id = await _submit(services, caller, body)
    services.dashboard.jobs_changed()
    return job_info(await services.dashboard.job_details(submission_id))


def _encode_cursor(job: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps([job.get("start_time") or 0, job["submission_id"]]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        start, submission_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError):
        start = submission_id = None
    if isinstance(start, bool) or not isinstance(start, int) or not isinstance(submission_id, str):
        raise InvalidArgumentError("cursor", "is not a cursor this API returned")
    return start, submission_id


@router.get("")
async def list_jobs(
    caller: Reader,
    services: ServicesDep,
    status: JobStatus | None = None,
    plugin: str | None = None,
    submitted_by: str | None = None,
    since: Annotated[float | None, Query(description="Started at or after (Unix seconds).")] = None,
    until: Annotated[float | None, Query(description="Started before (Unix seconds).")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> JobPage:
    """The tenant's jobs, newest first, filtered; ``next_cursor`` continues the listing."""
    jobs = [
        job
        for job in await visible_jobs(services, caller)
        if (status is None or job["status"] == status.value)
        and (plugin is None or (job.get("metadata") or {}).get(PLUGIN) == plugin)
        and (submitted_by is None or (job.get("metadata") or {}).get(SUBMITTED_BY) == submitted_by)
        and (since is None or (job.get("start_time") or 0) >= since * 1000)
        and (until is None or (job.get("start_time") or 0) < until * 1000)
    ]
    jobs.sort(key=lambda job: (job.get("start_time") or 0, job["submission_id"]), reverse=True)
    if cursor is not None:
        after = _decode_cursor(cursor)
        jobs = [job for job in jobs if (job.get("start_time") or 0, job["submission_id"]) < after]
    page = jobs[:limit]
    next_cursor = _encode_cursor(page[-1]) if len(jobs) > limit else None
    return JobPage(items=[job_info(job) for job in page], next_cursor=next_cursor)


@router.get("/{submission_id}")
async def get_job(submission_id: SubmissionId, caller: Reader, services: ServicesDep) -> JobInfo:
    """Ray's status and, for plugin jobs, the run's progress and typed result from the coordinator."""
    details, run = await asyncio.gather(
        owned_job(services, caller, submission_id), services.run_of(caller, submission_id)
    )
    return job_info(details, await _settled(services, caller, details, run))


async def _settled(services: Services, caller: Caller, details: dict[str, Any], run: Any) -> Any:
    """A run still marked running after its job ended (stopped, killed, its node lost) ends as failed, with why.

    The job's driver could not record that itself; writing it here makes it final for every reader.
    """
    status = JobStatus(details["status"])
    if run is None or run.status != "running" or not status.terminal:
        return run
    reason = (details.get("message") or "").strip().splitlines()
    error = {
        "type": f"Job{status.value.title()}",
        "message": f"the Ray job ended {status.value} before the action finished"
        + (f": {reason[0]}" if reason else ""),
    }
    runs = services.coordinator_for(caller).runs
    try:
        return await runs.finish(run.id, error=error)
    except ConflictError:  # it did finish meanwhile: that record wins
        return await runs.get(run.id)


@router.post("/{submission_id}/stop")
async def stop_job(submission_id: SubmissionId, caller: Submitter, services: ServicesDep) -> JobInfo:
    await owned_job(services, caller, submission_id)
    await services.dashboard.json("POST", f"/api/jobs/{submission_id}/stop")
    services.dashboard.jobs_changed(submission_id)
    return job_info(await services.dashboard.job_details(submission_id, fresh=True))


@router.delete("/{submission_id}", status_code=204)
async def delete_job(submission_id: SubmissionId, caller: Submitter, services: ServicesDep) -> Response:
    """Delete a finished job and its logs (409 while it runs: stop it first)."""
    details = await owned_job(services, caller, submission_id)
    if not JobStatus(details["status"]).terminal:
        raise ConflictError(f"job {submission_id!r} is {details['status']}; stop it before deleting it")
    await services.dashboard.json("DELETE", f"/api/jobs/{submission_id}")
    services.dashboard.jobs_changed(submission_id)
    return Response(status_code=204)


@router.get("/{submission_id}/logs")
async def logs(
    submission_id: SubmissionId,
    caller: Reader,
    services: ServicesDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> LogRange:
    """A bounded byte range of the job's log (default and maximum sizes are the façade's settings)."""
    await owned_job(services, caller, submission_id)
    size = min(limit or services.settings.log_range_default, services.settings.log_range_max)
    data, complete = await services.logs.read_range(submission_id, offset, size)
    return LogRange(
        submission_id=submission_id,
        offset=offset,
        next_offset=offset + len(data),
        data=data.decode("utf-8", errors="replace"),
        complete=complete,
    )


def _limits(services: Services, **requested: int | None) -> StreamLimits:
    return services.settings.stream_limits.narrowed(**requested)


LimitQuery = Annotated[int | None, Query(ge=1)]


@router.get("/{submission_id}/logs/stream", response_class=StreamingResponse)
async def stream_logs(
    submission_id: SubmissionId,
    caller: Reader,
    services: ServicesDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    max_lines: LimitQuery = None,
    max_bytes: LimitQuery = None,
    max_messages: LimitQuery = None,
    max_message_size: LimitQuery = None,
) -> StreamingResponse:
    """NDJSON frames (``lines``, ``heartbeat``, then ``end`` or ``limit``), each with the byte offset after it."""
    await owned_job(services, caller, submission_id)
    limits = _limits(
        services, max_lines=max_lines, max_bytes=max_bytes, max_messages=max_messages, max_message_size=max_message_size
    )

    async def frames() -> AsyncIterator[bytes]:
        async for frame in services.logs.follow(submission_id, offset, limits):
            yield frame.model_dump_json(exclude_none=True).encode() + b"\n"

    return StreamingResponse(frames(), media_type="application/x-ndjson")


@router.websocket("/{submission_id}/logs/ws")
async def websocket_logs(
    websocket: WebSocket,
    submission_id: SubmissionId,
    offset: Annotated[int, Query(ge=0)] = 0,
    max_lines: LimitQuery = None,
    max_bytes: LimitQuery = None,
    max_messages: LimitQuery = None,
    max_message_size: LimitQuery = None,
) -> None:
    """The same frames as the HTTP stream, one JSON message each; the socket closes after ``end``/``limit``."""
    services: Services = websocket.app.state.services
    try:
        caller = await services.auth.authenticate(socket_headers(websocket))
        await owned_job(services, caller, submission_id)
    except RayRuntimeError as exc:
        await refuse(websocket, exc)
        return
    await accept(websocket, LOGS_SUBPROTOCOL)
    limits = _limits(
        services, max_lines=max_lines, max_bytes=max_bytes, max_messages=max_messages, max_message_size=max_message_size
    )
    try:
        async for frame in services.logs.follow(submission_id, offset, limits):
            await websocket.send_text(frame.model_dump_json(exclude_none=True))
        await websocket.close(code=1000)
    except WebSocketDisconnect:
        return
