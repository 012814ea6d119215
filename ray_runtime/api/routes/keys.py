"""API keys: create, list, revoke. A tenant's admin manages its own tenant's keys; a cluster admin manages any
tenant's, and is the only one who may grant ``cluster_admin`` or ``run_code``."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import Response

from ray_runtime.api.deps import Admin, Reader, ServicesDep
from ray_runtime.checks import NAME
from ray_runtime.errors import NotFoundError, PermissionDeniedError
from ray_runtime.keys import KEYS_NAMESPACE, StoredKey, new_key
from ray_runtime.models.api import ApiKey, KeyCreated, KeyCreateRequest, Me

router = APIRouter(prefix="/api/v1", tags=["keys"])


@router.get("/me")
async def me(caller: Reader, services: ServicesDep) -> Me:
    """Who the key is: its tenant, scope and grants (the console shows what the key may do)."""
    return Me(**caller.model_dump(), dev_mode=services.dev_mode)


@router.post("/keys", status_code=201)
async def create(body: KeyCreateRequest, caller: Admin, services: ServicesDep) -> KeyCreated:
    """A new key; the key is in this response only."""
    if body.tenant != caller.tenant and not caller.cluster_admin:
        raise PermissionDeniedError("keys can be made for your own tenant only (a cluster admin can make any)")
    if (body.cluster_admin or body.run_code) and not caller.cluster_admin:
        raise PermissionDeniedError("only a cluster admin may grant cluster_admin or run_code")
    key, record = new_key(body.tenant, body.scope, body.name, cluster_admin=body.cluster_admin, run_code=body.run_code)
    await services.coordinator.kv.put(KEYS_NAMESPACE, record.key_id, record.model_dump(mode="json"), if_absent=True)
    return KeyCreated(key=key, info=record.info())


@router.get("/keys")
async def list_keys(caller: Admin, services: ServicesDep) -> list[ApiKey]:
    """Your tenant's keys (a cluster admin's listing has every tenant's)."""
    records = await services.coordinator.kv.items(KEYS_NAMESPACE)
    keys = (StoredKey.model_validate(raw).info() for raw in records.values())
    return [key for key in keys if key.tenant == caller.tenant or caller.cluster_admin]


@router.delete("/keys/{key_id}", status_code=204)
async def revoke(key_id: str, caller: Admin, services: ServicesDep) -> Response:
    """Revoke a key; it stops working within the façade's key cache time."""
    raw = await services.coordinator.kv.get(KEYS_NAMESPACE, key_id) if NAME.matches(key_id) else None
    record = StoredKey.model_validate(raw) if raw is not None else None
    if record is None or (record.tenant != caller.tenant and not caller.cluster_admin):
        raise NotFoundError(f"no API key {key_id!r}", key_id=key_id)
    revoked = record.model_copy(update={"revoked_at": record.revoked_at or time.time()})
    await services.coordinator.kv.put(KEYS_NAMESPACE, key_id, revoked.model_dump(mode="json"))
    services.keys.forget(key_id)
    return Response(status_code=204)
