"""Coordinator queues, tasks, attempts and workers: the driver API over HTTP, for the caller's tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from ray_runtime.api.deps import Reader, ServicesDep, Submitter
from ray_runtime.checks import NAME
from ray_runtime.models.api import (
    ClaimRequest,
    CompleteRequest,
    CompleteResponse,
    EnqueueManyRequest,
    FailRequest,
    HeartbeatRequest,
    WaitRequest,
)
from ray_runtime.models.tasks import Lease, QueueStats, Task, TaskPage, TaskSpec, TaskStatus, WaitResult, WorkerInfo

router = APIRouter(prefix="/api/v1", tags=["queues"])
QueueName = Annotated[str, Path(pattern=NAME.pattern, description="Queue name.")]


@router.post("/queues/{queue}/tasks", status_code=201)
async def enqueue(queue: QueueName, spec: TaskSpec, caller: Submitter, services: ServicesDep) -> dict[str, str]:
    """Add a task; a repeated idempotency key returns the existing task's id."""
    options = spec.model_dump(exclude={"input"})
    task_id = await services.coordinator_for(caller).enqueue(queue, spec.input, **options)
    return {"task_id": task_id}


@router.post("/queues/{queue}/tasks/batch", status_code=201)
async def enqueue_many(
    queue: QueueName, body: EnqueueManyRequest, caller: Submitter, services: ServicesDep
) -> dict[str, list[str]]:
    """Add many tasks at once (all or nothing)."""
    return {"task_ids": await services.coordinator_for(caller).enqueue_many(queue, body.tasks)}


@router.post("/queues/{queue}/claim")
async def claim(queue: QueueName, body: ClaimRequest, caller: Submitter, services: ServicesDep) -> list[Lease]:
    """Lease up to ``max_tasks`` tasks; with ``wait_s`` the call returns as soon as one is claimable."""
    return await services.coordinator_for(caller).claim(
        queue, body.worker_id, max_tasks=body.max_tasks, lease_s=body.lease_s, wait_s=body.wait_s
    )


@router.get("/queues")
async def list_queues(caller: Reader, services: ServicesDep) -> list[str]:
    return await services.coordinator_for(caller).queues()


@router.get("/queues/{queue}/stats")
async def stats(queue: QueueName, caller: Reader, services: ServicesDep) -> QueueStats:
    return await services.coordinator_for(caller).stats(queue)


@router.post("/queues/{queue}/purge")
async def purge(queue: QueueName, caller: Submitter, services: ServicesDep) -> dict[str, int]:
    """Cancel every queued task of the queue (leased ones run on)."""
    return {"cancelled": await services.coordinator_for(caller).purge(queue)}


@router.post("/attempts/{attempt_id}/heartbeat")
async def heartbeat(attempt_id: str, body: HeartbeatRequest, caller: Submitter, services: ServicesDep) -> Lease:
    return await services.coordinator_for(caller).heartbeat(attempt_id, body.extend_s)


@router.post("/attempts/{attempt_id}/complete")
async def complete(
    attempt_id: str, body: CompleteRequest, caller: Submitter, services: ServicesDep
) -> CompleteResponse:
    """Hand in a result (fenced by the attempt); with ``next`` also claim the next task(s) in the same call."""
    coord = services.coordinator_for(caller)
    if body.next is None:
        return CompleteResponse(task=await coord.complete(attempt_id, body.result))
    nxt = body.next
    task, leases = await coord.complete_and_claim(
        attempt_id,
        body.result,
        queue=nxt.queue,
        worker_id=nxt.worker_id,
        max_tasks=nxt.max_tasks,
        lease_s=nxt.lease_s,
        wait_s=nxt.wait_s,
    )
    return CompleteResponse(task=task, leases=leases)


@router.post("/attempts/{attempt_id}/fail")
async def fail(attempt_id: str, body: FailRequest, caller: Submitter, services: ServicesDep) -> Task:
    return await services.coordinator_for(caller).fail(attempt_id, body.error, retryable=body.retryable)


@router.post("/tasks/wait")
async def wait(body: WaitRequest, caller: Reader, services: ServicesDep) -> WaitResult:
    """Return when all (or the first) of the tasks end, or after ``timeout_s``."""
    return await services.coordinator_for(caller).wait(
        body.task_ids, timeout_s=body.timeout_s, return_when=body.return_when
    )


@router.get("/tasks/{task_id}")
async def get_task(task_id: str, caller: Reader, services: ServicesDep) -> Task:
    return await services.coordinator_for(caller).get(task_id)


@router.get("/tasks")
async def query_tasks(
    caller: Reader,
    services: ServicesDep,
    queue: str | None = None,
    status: TaskStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
    resources_id: Annotated[
        str | None, Query(description="Tasks pinned to this resources version, or whose latest attempt used it.")
    ] = None,
) -> TaskPage:
    """Tasks in creation order; pass ``next_cursor`` for the next page."""
    coord = services.coordinator_for(caller)
    return await coord.query(queue=queue, status=status, limit=limit, cursor=cursor, resources_id=resources_id)


@router.post("/tasks/{task_id}/cancel")
async def cancel(task_id: str, caller: Submitter, services: ServicesDep) -> Task:
    return await services.coordinator_for(caller).cancel(task_id)


@router.post("/tasks/{task_id}/retry")
async def retry(task_id: str, caller: Submitter, services: ServicesDep) -> Task:
    return await services.coordinator_for(caller).retry(task_id)


@router.get("/workers")
async def workers(caller: Reader, services: ServicesDep) -> list[WorkerInfo]:
    return await services.coordinator_for(caller).workers()
