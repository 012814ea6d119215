"""Versioned resources of the caller's tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from ray_runtime.api.deps import Reader, ServicesDep, Submitter
from ray_runtime.models.resources import NamedResources, ResourcesUpdate

router = APIRouter(prefix="/api/v1/resources", tags=["resources"])


class ResourcesBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resources: NamedResources


@router.post("", status_code=201)
async def add(body: ResourcesBody, caller: Submitter, services: ServicesDep) -> ResourcesUpdate:
    """Publish a new version made of exactly these resources; it becomes the latest."""
    return await services.coordinator_for(caller).resources.add(body.resources)


@router.patch("")
async def update(body: ResourcesBody, caller: Submitter, services: ServicesDep) -> ResourcesUpdate:
    """Publish a new version: the latest with these names added or replaced."""
    return await services.coordinator_for(caller).resources.update(body.resources)


@router.get("/latest")
async def latest(caller: Reader, services: ServicesDep) -> ResourcesUpdate:
    return await services.coordinator_for(caller).resources.latest()


@router.get("/{resources_id}")
async def get(resources_id: str, caller: Reader, services: ServicesDep) -> ResourcesUpdate:
    return await services.coordinator_for(caller).resources.get(resources_id)


@router.get("")
async def history(
    caller: Reader, services: ServicesDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[ResourcesUpdate]:
    """Kept versions, newest first."""
    return await services.coordinator_for(caller).resources.history(limit)
