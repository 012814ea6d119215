"""Installed plugins: their actions, modes, and the JSON schemas of their parameters and results.

Listing reads the manifests only; describing one plugin runs a Ray task in the plugin's own runtime_env (cached
per package), so the façade never imports plugin code.
"""

from __future__ import annotations

from fastapi import APIRouter

from ray_runtime.api.deps import ItemId, Reader, ServicesDep
from ray_runtime.models.plugins import PluginInfo

router = APIRouter(prefix="/api/v1/plugins", tags=["plugins"])


@router.get("")
async def list_plugins(caller: Reader, services: ServicesDep) -> list[PluginInfo]:
    """Every installed plugin with its actions and modes (schemas: ``GET /api/v1/plugins/{name}``)."""
    return services.catalog.list()


@router.get("/{name}")
async def get_plugin(name: ItemId, caller: Reader, services: ServicesDep) -> PluginInfo:
    """One plugin, with the parameter and result schema of each action."""
    return await services.catalog.describe(name)
