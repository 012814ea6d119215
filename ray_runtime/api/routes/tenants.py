"""Tenant limits: a cluster admin sets them; a tenant's admin reads its own."""

from __future__ import annotations

from fastapi import APIRouter

from ray_runtime.api.deps import Admin, ClusterAdmin, ServicesDep
from ray_runtime.checks import NAME
from ray_runtime.errors import NotFoundError
from ray_runtime.models.api import LIMITS_NAMESPACE, TenantLimits

router = APIRouter(prefix="/api/v1/tenants", tags=["tenants"])


@router.get("/{tenant}/limits")
async def get_limits(tenant: str, caller: Admin, services: ServicesDep) -> TenantLimits:
    """The tenant's limits (None: no limit)."""
    if not NAME.matches(tenant) or not (tenant == caller.tenant or caller.cluster_admin):
        raise NotFoundError(f"tenant {tenant!r} does not exist", tenant=tenant)
    return await services.limiter.limits(tenant)


@router.put("/{tenant}/limits")
async def set_limits(tenant: str, body: TenantLimits, caller: ClusterAdmin, services: ServicesDep) -> TenantLimits:
    """Replace the tenant's limits (fields left out: no limit). Each façade process sees them within seconds."""
    NAME.check("tenant", tenant)
    await services.coordinator.kv.put(LIMITS_NAMESPACE, tenant, body.model_dump(mode="json"))
    services.limiter.forget(tenant)
    return body
