"""Cluster state through Ray's State API: nodes, actors, tasks, workers, placement groups.

Listings say when Ray truncated them (``truncated``, ``total``). Nodes are visible to every caller; actors,
tasks, workers and placement groups only where they belong to the caller's tenant's jobs. Jobs started around the
façade (plain drivers, jobs submitted straight to the dashboard) belong to no tenant: only cluster admins see them.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

from fastapi import APIRouter, Query

from ray_runtime.api.deps import ItemId, Reader, ServicesDep
from ray_runtime.api.jobs_access import job_tenant
from ray_runtime.api.services import Services
from ray_runtime.errors import InvalidArgumentError, NotFoundError
from ray_runtime.keys import Caller
from ray_runtime.models.api import ClusterListing

router = APIRouter(prefix="/api/v1/cluster", tags=["cluster"])


class Kind(enum.StrEnum):
    nodes = "nodes"
    actors = "actors"
    tasks = "tasks"
    workers = "workers"
    placement_groups = "placement_groups"


_ID_FIELD = {
    Kind.nodes: "node_id",
    Kind.actors: "actor_id",
    Kind.tasks: "task_id",
    Kind.workers: "worker_id",
    Kind.placement_groups: "placement_group_id",
}
_JOB_FIELD = {
    Kind.actors: "job_id",
    Kind.tasks: "job_id",
    Kind.workers: "job_id",
    Kind.placement_groups: "creator_job_id",
}
_FETCH_LIMIT = 10_000


def _filters(raw: list[str]) -> list[tuple[str, str, str]]:
    parsed = []
    for item in raw:
        key, op, value = (item.partition("!=")) if "!=" in item else item.partition("=")
        if not key or not op:
            raise InvalidArgumentError("filter", f"must look like key=value or key!=value; got {item!r}")
        parsed.append((key.strip(), op, value.strip()))
    return parsed


async def _list(services: Services, kind: Kind, filters: list[tuple[str, str, str]], limit: int, detail: bool) -> dict:
    from ray.util.state.api import StateApiClient
    from ray.util.state.common import ListApiOptions

    options = ListApiOptions(limit=limit, filters=filters, detail=detail, timeout=30)
    params = StateApiClient._make_param(options)
    reply = await services.dashboard.json("GET", f"/api/v0/{kind.value}", params=params)
    return reply["data"]["result"]


async def _tenant_job_ids(services: Services, caller: Caller) -> set[str]:
    jobs = await services.dashboard.all_jobs()
    return {
        job["job_id"]
        for job in jobs
        if job.get("job_id") and caller.owns(job_tenant(job) if job.get("submission_id") else None)
    }


@router.get("/{kind}")
async def list_state(
    kind: Kind,
    caller: Reader,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=_FETCH_LIMIT)] = 100,
    detail: bool = False,
    filter: Annotated[list[str], Query(description="key=value or key!=value; repeatable.")] = [],  # noqa: B006
) -> ClusterListing:
    """A listing, filtered by Ray; ``truncated`` is true whenever more matched than were returned."""
    scoped = kind in _JOB_FIELD
    reply = await _list(services, kind, _filters(filter), _FETCH_LIMIT if scoped else limit, detail)
    items: list[dict[str, Any]] = reply["result"]
    matched = reply.get("num_filtered", len(items))
    source_cut = reply.get("num_after_truncation", matched) < reply.get("total", matched)
    if scoped:
        jobs = await _tenant_job_ids(services, caller)
        items = [item for item in items if item.get(_JOB_FIELD[kind]) in jobs]
        matched = len(items) if not source_cut and matched <= _FETCH_LIMIT else max(matched, len(items))
    warnings = [w for w in (reply.get("partial_failure_warning"), *(reply.get("warnings") or [])) if w]
    return ClusterListing(
        kind=kind.value,
        items=items[:limit],
        total=matched,
        truncated=source_cut or len(items) > limit or matched > len(items[:limit]),
        warnings=[str(w) for w in warnings],
    )


@router.get("/{kind}/{item_id}")
async def get_state(kind: Kind, item_id: ItemId, caller: Reader, services: ServicesDep) -> dict[str, Any]:
    """One node, actor, task, worker or placement group by id (with details)."""
    reply = await _list(services, kind, [(_ID_FIELD[kind], "=", item_id)], 1, True)
    items = reply["result"]
    if items and kind in _JOB_FIELD:
        items = [i for i in items if i.get(_JOB_FIELD[kind]) in await _tenant_job_ids(services, caller)]
    if not items:
        raise NotFoundError(f"no {kind.value[:-1].replace('_', ' ')} {item_id!r}")
    return items[0]
