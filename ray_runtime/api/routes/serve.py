"""Serve applications of the caller's tenant: list, get, deploy or replace one, delete one; others stay untouched.

Writes go through the cluster's ServeManager, which merges one application into Serve's declarative config
(Ray's REST API replaces the whole config). Which tenant owns an application is kept in the coordinator's
system store; applications deployed around the façade belong to ``default``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from ray_runtime.api.deps import Admin, ItemId, Reader, ServicesDep
from ray_runtime.api.keys import Caller
from ray_runtime.api.services import Services
from ray_runtime.errors import ConflictError, InvalidArgumentError, NotFoundError
from ray_runtime.models.api import ServeApplication, ServeDeployRequest

router = APIRouter(prefix="/api/v1/serve/applications", tags=["serve"])
OWNERS = "serve_owners"


async def _details(services: Services) -> dict[str, Any]:
    return (await services.dashboard.json("GET", "/api/serve/applications/")).get("applications") or {}


def _model(name: str, app: dict[str, Any] | None, tenant: str) -> ServeApplication:
    app = app or {}
    return ServeApplication(
        name=name,
        tenant=tenant,
        status=app.get("status", "NOT_STARTED"),
        message=app.get("message", ""),
        route_prefix=app.get("route_prefix"),
        deployments={
            k: {"status": v.get("status"), "replicas": len(v.get("replicas", []))}
            for k, v in (app.get("deployments") or {}).items()
        },
        last_deployed_time_s=app.get("last_deployed_time_s"),
    )


async def _owners(services: Services) -> dict[str, str]:
    return await services.coordinator.kv.items(OWNERS)


@router.get("")
async def list_applications(caller: Reader, services: ServicesDep) -> list[ServeApplication]:
    details, owners = await asyncio.gather(_details(services), _owners(services))
    return [
        _model(name, app, caller.tenant)
        for name, app in sorted(details.items())
        if owners.get(name, "default") == caller.tenant
    ]


@router.get("/{name}")
async def get_application(name: ItemId, caller: Reader, services: ServicesDep) -> ServeApplication:
    details, owners = await asyncio.gather(_details(services), _owners(services))
    if name not in details or owners.get(name, "default") != caller.tenant:
        raise NotFoundError(f"no Serve application {name!r}")
    return _model(name, details[name], caller.tenant)


async def _claim_names(services: Services, caller: Caller, names: list[str]) -> None:
    owners = await _owners(services)
    details = await _details(services)
    for name in names:
        owner = owners.get(name) or ("default" if name in details else None)
        if owner not in (None, caller.tenant):
            raise ConflictError(f"the Serve application name {name!r} is taken")
    for name in names:
        await services.coordinator.kv.put(OWNERS, name, caller.tenant)


@router.put("/{name}")
async def deploy(
    name: ItemId, body: ServeDeployRequest, caller: Admin, services: ServicesDep
) -> list[ServeApplication]:
    """Deploy or replace: a plugin's serve actions (``name`` is the plugin) or one import-path application."""
    from ray_runtime.plugins.manifest import PluginRegistry
    from ray_runtime.plugins.serve import app_name
    from ray_runtime.plugins.serve_deploy import serve_manager, serve_plugin

    if body.plugin is not None:
        if body.plugin != name:
            raise InvalidArgumentError("plugin", f"must be the application name {name!r} for a plugin deployment")
        plugin = PluginRegistry(services.settings.plugins_dir).get(body.plugin)
        actions = body.actions or [s.name for s in plugin.manifest.actions.values() if "serve" in s.modes]
        await _claim_names(services, caller, [app_name(plugin.name, action) for action in actions])
        names = await asyncio.to_thread(
            serve_plugin, plugin, tenant=caller.tenant, actions=actions, dashboard_url=services.dashboard.url
        )
    else:
        config = {"name": name, "import_path": body.import_path}
        config |= {
            k: v
            for k, v in body.model_dump(include={"args", "runtime_env", "route_prefix", "deployments"}).items()
            if v is not None
        }
        await _claim_names(services, caller, [name])
        names = await serve_manager(services.dashboard.url).apply.remote([config], [])
    details = await _details(services)
    return [_model(n, details.get(n), caller.tenant) for n in names]


@router.delete("/{name}", status_code=204)
async def delete(name: ItemId, caller: Admin, services: ServicesDep) -> Response:
    """Delete one application (or, given a plugin name, all of that plugin's applications)."""
    from ray_runtime.plugins.serve_deploy import serve_manager

    owners = await _owners(services)
    details = await _details(services)
    names = [
        n for n in details if (n == name or n.startswith(f"{name}.")) and owners.get(n, "default") == caller.tenant
    ]
    if not names:
        raise NotFoundError(f"no Serve application {name!r}")
    await serve_manager(services.dashboard.url).apply.remote([], names)
    for n in names:
        await services.coordinator.kv.delete(OWNERS, n)
    return Response(status_code=204)
