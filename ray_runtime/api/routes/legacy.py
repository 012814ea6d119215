"""Agent Lightning's legacy HTTP protocol at the root, over the coordinator's default queue.

``GET /task`` leases a task (its ``rollout_id`` is the attempt id), ``POST /rollout`` completes it with the rollout as
the result, ``GET /resources/latest`` and ``GET /resources/{id}`` serve resources versions. Wire-compatible with that
project's ``TaskIfAny``, ``Task``, ``ResourcesUpdate`` and ``RolloutLegacy``. Its client sends no auth header, so
the key can also be the password of HTTP Basic auth (``http://user:KEY@host:port``).

That client's parser knows two resource types, ``llm`` and ``prompt_template``; one resource of another type
(``json``) would make it reject the whole update, so such resources are left out of what these routes serve.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from ray_runtime.api.deps import Reader, ServicesDep, Submitter
from ray_runtime.models.resources import ResourcesUpdate

router = APIRouter(tags=["agent lightning legacy"])


class LegacyTask(BaseModel):
    rollout_id: str
    input: Any = None
    mode: str | None = None
    resources_id: str | None = None
    create_time: float | None = None
    last_claim_time: float | None = None
    num_claims: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class TaskIfAny(BaseModel):
    is_available: bool
    task: LegacyTask | None = None


class RolloutLegacy(BaseModel):
    model_config = ConfigDict(extra="allow")

    rollout_id: str
    task: dict[str, Any] | None = None
    final_reward: float | None = None
    triplets: list[Any] | None = None
    trace: list[dict[str, Any]] | None = None
    logs: list[str] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class GenericResponse(BaseModel):
    status: str = "success"
    message: str | None = None
    data: dict[str, Any] | None = None


class LegacyResourcesUpdate(BaseModel):
    resources_id: str
    resources: dict[str, Any]
    create_time: float
    update_time: float
    version: int


_LEGACY_TYPES = frozenset({"llm", "prompt_template"})  # what Agent Lightning's legacy parser accepts


def _legacy(update: ResourcesUpdate) -> LegacyResourcesUpdate:
    return LegacyResourcesUpdate(
        resources_id=update.resources_id,
        resources={
            name: resource.model_dump(mode="json")
            for name, resource in update.resources.items()
            if resource.resource_type in _LEGACY_TYPES
        },
        create_time=update.created_at,
        update_time=update.created_at,
        version=update.version,
    )


@router.get("/task")
async def next_task(request: Request, caller: Submitter, services: ServicesDep) -> TaskIfAny:
    """Lease the next task of the legacy queue, if any."""
    worker = request.headers.get("x-worker-id") or f"legacy-{request.client.host if request.client else 'client'}"
    leases = await services.coordinator_for(caller).claim(
        services.settings.legacy_queue, worker.replace(" ", "-")[:100], lease_s=services.settings.legacy_lease_s
    )
    if not leases:
        return TaskIfAny(is_available=False)
    lease, task = leases[0], leases[0].task
    metadata = task.metadata or {}
    return TaskIfAny(
        is_available=True,
        task=LegacyTask(
            rollout_id=lease.attempt_id,
            input=task.input,
            mode=metadata.get("mode"),
            resources_id=lease.resources_id,
            create_time=task.created_at,
            last_claim_time=time.time(),
            num_claims=task.attempts,
            metadata=metadata,
        ),
    )


@router.post("/rollout")
async def post_rollout(rollout: RolloutLegacy, caller: Submitter, services: ServicesDep) -> GenericResponse:
    """Complete the leased task whose attempt is ``rollout_id`` with this rollout as its result."""
    await services.coordinator_for(caller).complete(rollout.rollout_id, rollout.model_dump(mode="json"))
    return GenericResponse(status="ok", message=f"Rollout {rollout.rollout_id} received and stored.")


@router.get("/resources/latest")
async def latest_resources(caller: Reader, services: ServicesDep) -> LegacyResourcesUpdate:
    return _legacy(await services.coordinator_for(caller).resources.latest())


@router.get("/resources/{resource_id}")
async def resources_by_id(resource_id: str, caller: Reader, services: ServicesDep) -> LegacyResourcesUpdate:
    return _legacy(await services.coordinator_for(caller).resources.get(resource_id))
