"""What installed plugins offer, learned without importing their code in this process.

A server (the façade) must not import plugin code: two plugins with a module of the same name would collide in its
``sys.modules``, and a plugin's import-time side effects would run inside it. So each plugin is described and its
parameters validated by a Ray task in the plugin's own runtime_env (its package as working_dir), on a worker process
that keeps the imported code warm. Descriptions are cached per package checksum: a changed file is a new package.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from cachetools import LRUCache

from ray_runtime._placement import Ask, await_placed, cancel_task
from ray_runtime.config import Settings
from ray_runtime.coordinator.calls import from_ray
from ray_runtime.errors import ServerError
from ray_runtime.models.plugins import ActionInfo, PluginInfo
from ray_runtime.plugins.action import LoadedAction
from ray_runtime.plugins.manifest import Plugin, PluginRegistry
from ray_runtime.plugins.prepare import PreparedAction, prepare

__all__ = ["PluginCatalog", "plugin_info"]


@functools.cache
def _loaded(plugin: str, action: str, entrypoint: str) -> LoadedAction:
    """The action imported once per worker process (its cwd is the plugin's working_dir)."""
    return LoadedAction.load(plugin, action, Path.cwd(), entrypoint)


DescribeSession = Callable[[str, str, Path, str], dict[str, Any]]  # (plugin, action, folder, entrypoint) -> info


@ray.remote(num_cpus=0, max_retries=0)
def _describe(
    plugin: str, entrypoints: dict[str, str], sessions: list[str], describe_session: DescribeSession | None
) -> dict[str, dict[str, Any]]:
    described: dict[str, dict[str, Any]] = {}
    for action, entrypoint in entrypoints.items():
        try:
            if action in sessions:
                if describe_session is not None:
                    described[action] = describe_session(plugin, action, Path.cwd(), entrypoint)
                continue
            signature = _loaded(plugin, action, entrypoint).signature
            result = signature.result_adapter.json_schema() if signature.result_adapter is not None else None
            described[action] = {
                "streaming": signature.streaming,
                "params_schema": signature.params_schema(),
                "result_schema": result,
            }
        except Exception as exc:  # one broken action does not hide the others
            described[action] = {"problem": f"{type(exc).__name__}: {exc}"[:1000]}
    return described


@ray.remote(num_cpus=0, max_retries=0)
def _validate(plugin: str, action: str, entrypoint: str, params: Any) -> Any:
    return _loaded(plugin, action, entrypoint).signature.validate(params).model_dump(mode="json")


def plugin_info(plugin: Plugin, described: dict[str, dict[str, Any]] | None = None) -> PluginInfo:
    """A plugin as its manifest says, with what describing its code found (if it was described)."""
    manifest = plugin.manifest
    actions = [
        ActionInfo(
            name=spec.name,
            description=spec.description,
            modes=list(spec.modes),
            queue=spec.queue if "worker" in spec.modes else None,
            **(described or {}).get(spec.name, {}),
        )
        for spec in manifest.actions.values()
    ]
    return PluginInfo(
        name=manifest.name,
        version=manifest.version,
        description=manifest.description,
        tags=list(manifest.tags),
        actions=actions,
    )


class PluginCatalog:
    """The plugins installed in one folder, as a server sees them: by manifest, and described by Ray tasks.

    Args:
        root: The folder holding one folder per plugin (rescanned on every call, so installs show at once).
        placement_timeout_s: How long a describe or validate task may wait to start (its runtime_env builds
            first); then it is cancelled and the call fails with ``InsufficientResourcesError``.
        describe_session: How a session template is described (its config schema, whether it streams), given
            by the sessions package above (``sessions.template.describe_template``); run in the describing task.
    """

    def __init__(
        self,
        root: Path,
        *,
        placement_timeout_s: float | None = None,
        describe_session: DescribeSession | None = None,
    ) -> None:
        self.root = root
        self.describe_session = describe_session
        self.placement_timeout_s = placement_timeout_s or Settings().placement_timeout_s
        self._described: LRUCache[str, dict[str, dict[str, Any]]] = LRUCache(maxsize=256)

    def registry(self) -> PluginRegistry:
        return PluginRegistry(self.root)

    def get(self, name: str) -> Plugin:
        """An installed plugin by name (``PluginNotFoundError`` names the ones there are)."""
        return self.registry().get(name)

    def list(self) -> list[PluginInfo]:
        """Every installed plugin, from the manifests alone (fast: no code runs)."""
        return [plugin_info(plugin) for plugin in self.registry()]

    async def describe(self, name: str) -> PluginInfo:
        """One plugin with the parameter and result schemas of each action, read in its own runtime_env."""
        plugin = self.get(name)
        prepared = await asyncio.to_thread(prepare, plugin, next(iter(plugin.manifest.actions)), None)
        described = self._described.get(prepared.package.sha256)
        if described is None:
            specs = plugin.manifest.actions.values()
            entrypoints = {spec.name: spec.entrypoint for spec in specs}
            sessions = [spec.name for spec in specs if "session" in spec.modes]
            ref = _describe.options(runtime_env=prepared.runtime_env).remote(
                plugin.name, entrypoints, sessions, self.describe_session
            )
            ask = Ask(f"the task describing plugin {plugin.name} (in its runtime_env)")
            described = await await_placed(ref, ask, self.placement_timeout_s, cancel_task(ref))
            self._described[prepared.package.sha256] = described
        return plugin_info(plugin, described)

    async def validate(self, prepared: PreparedAction, params: Any) -> Any:
        """The action's parameters as its own code validates them (JSON-ready), or its ``ValidationError``."""
        spec = prepared.spec
        ref = _validate.options(runtime_env=prepared.runtime_env).remote(
            prepared.plugin.name, spec.name, spec.entrypoint, params
        )
        ask = Ask(f"the task validating the parameters of {prepared.plugin.name}/{spec.name} (in its runtime_env)")
        what = f"validating the parameters of {prepared.plugin.name}/{spec.name}"
        try:
            return await await_placed(ref, ask, self.placement_timeout_s, cancel_task(ref))
        except ray.exceptions.RayError as exc:
            translated = from_ray(exc, what, failed=lambda cause: ServerError(f"{what} failed: {cause}"))
            if translated is exc:  # Ray's own: the worker or its runtime_env never started
                raise ServerError(
                    f"could not start {prepared.plugin.name}'s runtime_env to validate parameters "
                    f"({type(exc).__name__}); check the plugin's requirements"
                ) from exc
            raise translated from None
