"""Which Ray jobs a caller may see: jobs carry their tenant in Ray's own job metadata. Jobs submitted around the
façade (straight to the dashboard) carry none: they belong to no tenant, and only cluster admins see them."""

from __future__ import annotations

from typing import Any

from ray_runtime.api.services import Services
from ray_runtime.errors import NotFoundError
from ray_runtime.keys import Caller

__all__ = [
    "ACTION",
    "PLUGIN",
    "SUBMITTED_BY",
    "TENANT",
    "admit_job",
    "job_tenant",
    "no_job",
    "owned_job",
    "scoped_metadata",
    "visible_jobs",
]

TENANT, SUBMITTED_BY = "ray_runtime.tenant", "ray_runtime.submitted_by"
PLUGIN, ACTION = "ray_runtime.plugin", "ray_runtime.action"
_RESERVED_PREFIX = "ray_runtime."


def job_tenant(details: dict[str, Any]) -> str | None:
    """The tenant a job belongs to; None for jobs submitted around the façade."""
    return (details.get("metadata") or {}).get(TENANT) or None


def scoped_metadata(caller: Caller, metadata: dict[str, str] | None) -> dict[str, str]:
    """Client metadata minus reserved keys (no tenant spoofing), plus the caller's tenant and key."""
    kept = {k: v for k, v in (metadata or {}).items() if not k.startswith(_RESERVED_PREFIX)}
    kept[TENANT] = caller.tenant
    if caller.key_id:
        kept[SUBMITTED_BY] = caller.key_id
    return kept


def no_job(submission_id: str) -> NotFoundError:
    """The one answer for a job that is missing or not the caller's: the same code, message and details."""
    return NotFoundError(f"job {submission_id!r} does not exist", submission_id=submission_id)


async def owned_job(services: Services, caller: Caller, submission_id: str) -> dict[str, Any]:
    """Ray's JobDetails if the job is the caller's; another tenant's job is as absent as a missing one."""
    try:
        details = await services.dashboard.job_details(submission_id)
    except NotFoundError:
        raise no_job(submission_id) from None
    if not caller.owns(job_tenant(details)):
        raise no_job(submission_id)
    return details


async def admit_job(services: Services, caller: Caller) -> None:
    """Refuse a new job (429) while the tenant is at its ``max_running_jobs``."""
    if (await services.limiter.limits(caller.tenant)).max_running_jobs is None:
        return
    jobs = await services.dashboard.all_jobs()
    running = sum(1 for j in jobs if job_tenant(j) == caller.tenant and j.get("status") in ("PENDING", "RUNNING"))
    await services.limiter.check_running_jobs(caller.tenant, running)


async def visible_jobs(services: Services, caller: Caller) -> list[dict[str, Any]]:
    """Every job of the caller's tenant (and, for a cluster admin, those of no tenant), as Ray lists them."""
    jobs = await services.dashboard.all_jobs()
    return [job for job in jobs if job.get("submission_id") and caller.owns(job_tenant(job))]
