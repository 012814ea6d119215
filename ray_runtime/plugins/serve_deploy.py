"""Deploying plugins on Serve without touching other applications, and keeping their resources current.

Serve's declarative API replaces the whole config at once, so every write here goes through one detached actor,
:class:`ServeManager`, which reads the live config, changes only the named applications, and writes it back:
concurrent deploys cannot drop each other's applications. The same actor watches the coordinator and, when a
tenant publishes a new resources version, updates ``user_config`` of that tenant's resource-using deployments;
Serve then calls ``reconfigure`` on the replicas, which keep running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import ray

from ray_runtime._placement import Ask, check_feasible, describe
from ray_runtime._ray import dashboard_url
from ray_runtime.config import BOUND_TENANT_ENV, NAMESPACE, Settings
from ray_runtime.errors import (
    InsufficientResourcesError,
    InvalidArgumentError,
    ResourcesNotFoundError,
    ServerError,
    TimeoutError,
)
from ray_runtime.plugins.manifest import Plugin, resolve
from ray_runtime.plugins.prepare import PreparedAction, prepare
from ray_runtime.plugins.serve import app_name, route_prefix

__all__ = [
    "ServeManager",
    "application_config",
    "declarative_config",
    "serve_manager",
    "serve_plugin",
    "unserve_plugin",
    "wait_for_apps",
]

logger = logging.getLogger("ray_runtime.serve_deploy")
MANAGER_NAME = "serve_manager"
IMPORT_PATH = "ray_runtime.plugins.serve:build_app"


def application_config(prepared: PreparedAction, *, tenant: str | None, resources_id: str | None) -> dict[str, Any]:
    """The Serve application config of one serve-mode action (as ``serve deploy`` files hold)."""
    plugin, spec = prepared.plugin, prepared.spec
    return {
        "name": app_name(plugin.name, spec.name),
        "route_prefix": route_prefix(plugin.name, spec.name),
        "import_path": IMPORT_PATH,
        "args": {"action": spec.name, "tenant": tenant},
        "runtime_env": prepared.runtime_env,
        "deployments": [
            {
                "name": spec.name,
                "user_config": {"tenant": tenant, "resources_id": resources_id, "uses_resources": spec.uses_resources},
            }
        ],
    }


class ServeManager:
    """The one writer of Serve's declarative config, and the resources watcher (one per cluster)."""

    def __init__(self, dashboard_url: str) -> None:
        from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

        self._client = ServeSubmissionClient(dashboard_url)
        self._lock = asyncio.Lock()
        self._watchers: dict[str, asyncio.Task[None]] = {}
        asyncio.get_running_loop().create_task(self._resume_watchers())

    async def apply(self, upserts: list[dict[str, Any]], deletes: list[str]) -> list[str]:
        """Add or replace ``upserts`` and remove ``deletes``; every other application stays as it is."""

        def change(apps: dict[str, dict[str, Any]]) -> None:
            for name in deletes:
                apps.pop(name, None)
            for config in upserts:
                apps[config["name"]] = config

        await self._write(change)
        self._watch_tenants_of(upserts)
        return sorted(config["name"] for config in upserts)

    async def applications(self) -> dict[str, dict[str, Any]]:
        """The declaratively deployed applications' configs, by name."""
        return _declared(await asyncio.to_thread(self._client.get_serve_details))

    async def _write(self, change: Callable[[dict[str, dict[str, Any]]], None]) -> None:
        async with self._lock:
            details = await asyncio.to_thread(self._client.get_serve_details)
            apps = _declared(details)
            change(apps)
            config: dict[str, Any] = {"applications": list(apps.values())}
            for key in ("proxy_location", "http_options"):
                if details.get(key):
                    config[key] = details[key]
            await asyncio.to_thread(self._client.deploy_applications, config)

    def _watch_tenants_of(self, configs: Iterable[dict[str, Any]]) -> None:
        for config in configs:
            for deployment in config.get("deployments", []):
                user_config = deployment.get("user_config") or {}
                tenant = user_config.get("tenant") or "default"
                if user_config.get("uses_resources") and tenant not in self._watchers:
                    self._watchers[tenant] = asyncio.get_running_loop().create_task(self._watch(tenant))

    async def _resume_watchers(self) -> None:
        try:
            self._watch_tenants_of((await self.applications()).values())
        except Exception:
            logger.exception("could not read the Serve config to resume resources watchers")

    async def _watch(self, tenant: str) -> None:
        """Push each new resources version of ``tenant`` into its resource-using deployments' user_config."""
        from ray_runtime.coordinator import aconnect

        coord = await aconnect(tenant=tenant)
        version = 0
        while True:
            try:
                update = await coord.resources.wait_newer(version, timeout_s=60)
                if update is None:
                    continue
                version = update.version
                await self._write(lambda apps, rid=update.resources_id: _set_resources(apps, tenant, rid))
            except Exception:
                logger.exception("resources watcher for tenant %s failed; retrying", tenant)
                await asyncio.sleep(2)


def _declared(details: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The configs of the declaratively deployed applications (imperative ones have none), by name."""
    return {
        name: app["deployed_app_config"]
        for name, app in (details.get("applications") or {}).items()
        if app.get("deployed_app_config") is not None
    }


def _set_resources(apps: dict[str, dict[str, Any]], tenant: str, resources_id: str) -> None:
    for config in apps.values():
        for deployment in config.get("deployments", []):
            user_config = deployment.get("user_config") or {}
            if user_config.get("uses_resources") and (user_config.get("tenant") or "default") == tenant:
                deployment["user_config"] = {**user_config, "resources_id": resources_id}


def declarative_config(plugins: Iterable[Plugin], *, tenant: str | None = None) -> dict[str, Any]:
    """A ``serve deploy`` config with every serve-mode action of ``plugins`` (content-addressed packages).

    The packages must be in the cluster first (``ray-runtime plugin upload``); the URIs change only when files do.
    """
    applications = [
        application_config(prepare(plugin, spec.name, "serve", upload=False), tenant=tenant, resources_id=None)
        for plugin in sorted(plugins, key=lambda p: p.name)
        for spec in plugin.manifest.actions.values()
        if "serve" in spec.modes
    ]
    return {"applications": applications}


def _dashboard_url(url: str | None) -> str:
    if url is None:
        return dashboard_url()
    return url if "://" in url else f"http://{url}"


def serve_manager(dashboard_url: str | None = None) -> Any:
    """The cluster's ServeManager actor, created on first use (detached, on the head node)."""
    url = _dashboard_url(dashboard_url)
    return (
        ray.remote(ServeManager)
        .options(
            name=MANAGER_NAME,
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            num_cpus=0,
            resources={"node:__internal_head__": 0.001},
        )
        .remote(url)
    )


def serve_plugin(
    plugin: Plugin | str | Path,
    *,
    tenant: str | None = None,
    actions: Iterable[str] | None = None,
    dashboard_url: str | None = None,
) -> list[str]:
    """Deploy (or replace) a plugin's serve-mode actions as Serve applications; returns their names.

    Other applications are not touched. Call :func:`wait_for_apps` to wait until they serve.
    """
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    resolved = resolve(plugin)
    names = actions or [spec.name for spec in resolved.manifest.actions.values() if "serve" in spec.modes]
    if not names:
        raise InvalidArgumentError("actions", f"plugin {resolved.name!r} has no serve-mode action to deploy")
    for name in names:  # a replica no node could ever hold would leave its app deploying forever: refuse it now
        spec = resolved.action(name)
        check_feasible(Ask.of(f"a Serve replica of {resolved.name}/{name}", spec.resources.ray_options()))
    url = _dashboard_url(dashboard_url)
    client = ServeSubmissionClient(url)
    env_vars = {BOUND_TENANT_ENV: tenant} if tenant else None
    prepared = [prepare(resolved, name, "serve", submission_client=client, env_vars=env_vars) for name in names]
    resources_id = _latest_resources(tenant) if any(p.spec.uses_resources for p in prepared) else None
    configs = [application_config(p, tenant=tenant, resources_id=resources_id) for p in prepared]
    return ray.get(serve_manager(url).apply.remote(configs, []))


def unserve_plugin(plugin: str, actions: Iterable[str], *, dashboard_url: str | None = None) -> None:
    """Remove a plugin's applications (the named actions); other applications stay."""
    names = [app_name(plugin, action) for action in actions]
    ray.get(serve_manager(dashboard_url).apply.remote([], names))


def _latest_resources(tenant: str | None) -> str | None:
    from ray_runtime.coordinator import connect

    try:
        return connect(tenant=tenant).resources.latest().resources_id
    except ResourcesNotFoundError:
        return None


def wait_for_apps(
    names: Iterable[str],
    *,
    dashboard_url: str | None = None,
    timeout_s: float | None = None,
    on_status: Callable[[dict[str, str]], None] | None = None,
) -> None:
    """Poll Serve until every named application is RUNNING.

    Args:
        timeout_s: How long to wait (default ``RAY_RUNTIME_PLACEMENT_TIMEOUT_S``, 120 s).

    Raises:
        ServerError: One failed to deploy (the message is Serve's).
        InsufficientResourcesError: Some were not running in time because Ray could not place their replicas;
            those applications are removed (their pending replicas with them).
        TimeoutError: Some were not running in time for another reason (the message has Serve's word on each).
    """
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    url = _dashboard_url(dashboard_url)
    client = ServeSubmissionClient(url)
    wanted = set(names)
    timeout_s = timeout_s if timeout_s is not None else Settings().placement_timeout_s
    started = time.monotonic()
    while True:
        apps = client.get_serve_details().get("applications") or {}
        statuses = {name: (apps.get(name) or {}).get("status", "NOT_STARTED") for name in wanted}
        if on_status is not None:
            on_status(statuses)
        for name in wanted:
            if statuses[name] == "DEPLOY_FAILED":
                raise ServerError(f"Serve application {name} failed to deploy: {apps[name].get('message', '')}")
        if all(status == "RUNNING" for status in statuses.values()):
            return
        waited = time.monotonic() - started
        if waited > timeout_s:
            waiting = sorted(name for name, status in statuses.items() if status != "RUNNING")
            unplaced = [name for name in waiting if _replicas_unplaced(name)]
            if unplaced:
                ray.get(serve_manager(url).apply.remote([], unplaced))
                raise InsufficientResourcesError(
                    f"Serve could not place the replicas of {', '.join(unplaced)} in {waited:.0f} s (Ray has "
                    f"{describe(ray.available_resources())} free); those applications were removed. Free some, "
                    "ask for less in the plugin's manifest (`resources`), or add nodes",
                    applications=unplaced,
                    waited_s=round(waited, 3),
                )
            said = {name: (apps.get(name) or {}).get("message", "") or statuses[name] for name in waiting}
            raise TimeoutError(f"Serve applications not running after {timeout_s:.0f}s: {said}")
        time.sleep(0.5)


def _replicas_unplaced(name: str) -> bool:
    """Whether a Serve application waits on replicas Ray has not placed (an actor of its not yet alive)."""
    from ray.util.state import list_actors

    waiting = list_actors(filters=[("state", "!=", "ALIVE"), ("state", "!=", "DEAD")], limit=10_000)
    return any((actor.name or "").startswith(f"SERVE_REPLICA::{name}#") for actor in waiting)
