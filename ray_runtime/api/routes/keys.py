"""API keys of the caller's tenant (admin scope): create, list, revoke. Keys for a new tenant come from the
cluster operator's ``ray-runtime keys create``."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import Response

from ray_runtime.api.deps import Admin, ServicesDep
from ray_runtime.api.keys import KEYS_NAMESPACE, StoredKey, new_key
from ray_runtime.errors import NotFoundError, PermissionDeniedError
from ray_runtime.models.api import ApiKey, KeyCreated, KeyCreateRequest

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])


@router.post("", status_code=201)
async def create(body: KeyCreateRequest, caller: Admin, services: ServicesDep) -> KeyCreated:
    """A new key for your own tenant; the key is in this response only."""
    if body.tenant != caller.tenant:
        raise PermissionDeniedError("keys can be made for your own tenant only")
    key, record = new_key(body.tenant, body.scope, body.name)
    await services.coordinator.kv.put(KEYS_NAMESPACE, record.key_id, record.model_dump(mode="json"), if_absent=True)
    return KeyCreated(key=key, info=record.info())


@router.get("")
async def list_keys(caller: Admin, services: ServicesDep) -> list[ApiKey]:
    records = await services.coordinator.kv.items(KEYS_NAMESPACE)
    keys = (StoredKey.model_validate(raw).info() for raw in records.values())
    return [key for key in keys if key.tenant == caller.tenant]


@router.delete("/{key_id}", status_code=204)
async def revoke(key_id: str, caller: Admin, services: ServicesDep) -> Response:
    """Revoke a key of your tenant; it stops working within the façade's key cache time."""
    raw = await services.coordinator.kv.get(KEYS_NAMESPACE, key_id)
    record = StoredKey.model_validate(raw) if raw is not None else None
    if record is None or record.tenant != caller.tenant:
        raise NotFoundError(f"no API key {key_id!r}")
    revoked = record.model_copy(update={"revoked_at": record.revoked_at or time.time()})
    await services.coordinator.kv.put(KEYS_NAMESPACE, key_id, revoked.model_dump(mode="json"))
    services.keys.forget(key_id)
    return Response(status_code=204)
