"""Serve applications of the caller's tenant: list, get, deploy or replace one, delete one; others stay untouched.

Writes go through the cluster's ServeManager, which merges one application into Serve's declarative config
(Ray's REST API replaces the whole config; unchanged applications are not redeployed, though Serve stamps them
with the new deploy time). Which tenant owns an application is kept in the coordinator's system store;
applications deployed around the façade belong to no tenant and only cluster admins see them.

Application names (and route prefixes) are one namespace in Serve: choosing a name another tenant uses answers
409, the one bit of another tenant's existence a create reveals (reads never do).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from ray_runtime.api.deps import Admin, ItemId, Reader, ServicesDep
from ray_runtime.api.ray_checks import check_serve_application
from ray_runtime.api.services import Services
from ray_runtime.config import BOUND_TENANT_ENV
from ray_runtime.coordinator.calls import ray_errors
from ray_runtime.errors import (
    BadRequestError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from ray_runtime.keys import Caller
from ray_runtime.models.api import ServeApplication, ServeDeployRequest

router = APIRouter(prefix="/api/v1/serve/applications", tags=["serve"])
OWNERS = "serve_owners"


async def _details(services: Services) -> dict[str, Any]:
    return (await services.dashboard.json("GET", "/api/serve/applications/")).get("applications") or {}


def _model(name: str, app: dict[str, Any] | None, tenant: str | None) -> ServeApplication:
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


def no_application(name: str) -> NotFoundError:
    return NotFoundError(f"Serve application {name!r} does not exist", name=name)


async def visible_applications(services: Services, caller: Caller) -> tuple[dict[str, Any], dict[str, str]]:
    """The applications the caller may see, and every application's owner."""
    details, owners = await asyncio.gather(_details(services), services.coordinator.kv.items(OWNERS))
    return {name: app for name, app in details.items() if caller.owns(owners.get(name))}, owners


@router.get("")
async def list_applications(caller: Reader, services: ServicesDep) -> list[ServeApplication]:
    visible, owners = await visible_applications(services, caller)
    return [_model(name, app, owners.get(name)) for name, app in sorted(visible.items())]


@router.get("/{name}")
async def get_application(name: ItemId, caller: Reader, services: ServicesDep) -> ServeApplication:
    visible, owners = await visible_applications(services, caller)
    if name not in visible:
        raise no_application(name)
    return _model(name, visible[name], owners.get(name))


async def _check_free(services: Services, caller: Caller, names: list[str], route_prefixes: list[str]) -> None:
    """Refuse names and route prefixes another tenant (or nobody's app) holds: 409, the documented bit."""
    details, owners = await asyncio.gather(_details(services), services.coordinator.kv.items(OWNERS))
    for name in names:
        if name in details and owners.get(name) != caller.tenant:
            raise ConflictError(f"the Serve application name {name!r} is taken; choose another", name=name)
    taken = {app.get("route_prefix"): n for n, app in details.items() if n not in names}
    for prefix in route_prefixes:
        if prefix in taken and owners.get(taken[prefix]) != caller.tenant:
            raise ConflictError(f"the route prefix {prefix!r} is taken; choose another", route_prefix=prefix)


async def _apply(services: Services, upserts: list[dict[str, Any]], deletes: list[str]) -> list[str]:
    """Merge into Serve's config through the ServeManager; Serve's refusal is the caller's 400, not a 500."""
    from ray_runtime.plugins.serve_deploy import serve_manager

    def refused(cause: BaseException) -> BadRequestError:
        reason = str(cause).strip().splitlines()
        return BadRequestError(f"Serve refused the application: {reason[-1] if reason else cause}")

    with ray_errors("the Serve manager", failed=refused):
        return await serve_manager(services.dashboard.url).apply.remote(upserts, deletes)


async def _record_owner(services: Services, caller: Caller, names: list[str]) -> None:
    for name in names:
        await services.coordinator.kv.put(OWNERS, name, caller.tenant)


@router.put("/{name}")
async def deploy(
    name: ItemId, body: ServeDeployRequest, caller: Admin, services: ServicesDep
) -> list[ServeApplication]:
    """Deploy or replace: a plugin's serve actions (``name`` is the plugin), or one import-path application (an
    application of your own code: the key needs ``run_code``)."""
    from ray_runtime.plugins.serve import app_name, route_prefix
    from ray_runtime.plugins.serve_deploy import serve_plugin

    if body.plugin is not None:
        if body.plugin != name:
            raise InvalidArgumentError("plugin", f"must be the application name {name!r} for a plugin deployment")
        plugin = services.catalog.get(body.plugin)
        actions = body.actions or [s.name for s in plugin.manifest.actions.values() if "serve" in s.modes]
        for action in actions:
            plugin.action(action)
        names = [app_name(plugin.name, action) for action in actions]
        await _check_free(services, caller, names, [route_prefix(plugin.name, a) for a in actions])
        names = await asyncio.to_thread(
            serve_plugin, plugin, tenant=caller.tenant, actions=actions, dashboard_url=services.dashboard.url
        )
    else:
        if not caller.run_code:
            raise PermissionDeniedError(
                "deploying an import path runs your own code: it needs a key a cluster admin granted run_code; "
                "deploy an installed plugin instead"
            )
        fields = body.model_dump(include={"args", "runtime_env", "route_prefix", "deployments"}, exclude_none=True)
        config = check_serve_application({"name": name, "import_path": body.import_path, **fields})
        env = config.setdefault("runtime_env", {})
        env["env_vars"] = {**env.get("env_vars", {}), BOUND_TENANT_ENV: caller.tenant}
        await _check_free(services, caller, [name], [config.get("route_prefix") or f"/{name}"])
        names = await _apply(services, [config], [])
    await _record_owner(services, caller, names)
    details = await _details(services)
    return [_model(n, details.get(n), caller.tenant) for n in names]


@router.delete("/{name}", status_code=204)
async def delete(name: ItemId, caller: Admin, services: ServicesDep) -> Response:
    """Delete one application (or, given a plugin name, all of that plugin's applications)."""
    visible, _ = await visible_applications(services, caller)
    names = [n for n in visible if n == name or n.startswith(f"{name}.")]
    if not names:
        raise no_application(name)
    await _apply(services, [], names)
    for n in names:
        await services.coordinator.kv.delete(OWNERS, n)
    return Response(status_code=204)
