"""Task mode: run a plugin action as a Ray task from a driver and get its typed result back.

    result = ray_runtime.plugins.run("hello", "greet", {"name": "Ada"})

The low-latency path: the plugin is packed and uploaded once (again only when a file changes), then each run is
one Ray task in the plugin's runtime_env, on a worker that keeps the imported code warm. When the plugin imports
on the driver too, parameters are validated before anything is submitted and the result comes back as the
action's result type; otherwise the task validates and the result is JSON data.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from ray_runtime.config import BOUND_TENANT_ENV
from ray_runtime.coordinator.calls import from_ray
from ray_runtime.errors import ActionFailedError, RayRuntimeError, ServerError
from ray_runtime.models.resources import ResourcesUpdate
from ray_runtime.plugins.action import Context, LoadedAction, Reporter
from ray_runtime.plugins.manifest import Plugin
from ray_runtime.plugins.prepare import PreparedAction, prepare

__all__ = ["arun", "local_action", "run"]


class _TaskReporter(Reporter):
    """Task mode keeps no run record; resources come from the coordinator when the action asks."""

    def __init__(self, tenant: str | None, resources_id: str | None) -> None:
        self.tenant = tenant
        self.resources_id = resources_id

    def resources(self, ctx: Context) -> ResourcesUpdate | None:
        from ray_runtime.coordinator import connect
        from ray_runtime.errors import ResourcesNotFoundError

        coord = connect(tenant=self.tenant)
        try:
            return coord.resources.get(self.resources_id) if self.resources_id else coord.resources.latest()
        except ResourcesNotFoundError:
            return None


@functools.cache
def _remote_loaded(plugin: str, action: str, entrypoint: str) -> LoadedAction:
    """The action, imported once per worker process (the worker's cwd is the plugin's working_dir)."""
    return LoadedAction.load(plugin, action, Path.cwd(), entrypoint)


@ray.remote
def _run_action(
    plugin: str, action: str, entrypoint: str, params: Any, tenant: str | None, resources_id: str | None
) -> Any:
    loaded = _remote_loaded(plugin, action, entrypoint)
    ctx = loaded.context("task", reporter=_TaskReporter(tenant, resources_id))
    try:
        return loaded.run(params, ctx)
    except RayRuntimeError:
        raise
    except Exception as exc:
        raise ActionFailedError.from_exception(exc, plugin, action) from None


@dataclass(frozen=True)
class _Run:
    """A run ready to submit: the prepared action, its validated parameters, and how to type the result."""

    prepared: PreparedAction
    params: Any
    local: LoadedAction | None

    def submit(self, tenant: str | None, resources_id: str | None) -> Any:
        spec = self.prepared.spec
        options = {**spec.resources.ray_options(), "runtime_env": self.prepared.runtime_env}
        return _run_action.options(**options).remote(
            self.prepared.plugin.name, spec.name, spec.entrypoint, self.params, tenant, resources_id
        )

    def typed(self, result: Any) -> Any:
        if self.local is None or self.local.signature.result_adapter is None:
            return result
        if self.local.signature.streaming:
            return [self.local.signature.result_adapter.validate_python(item) for item in result]
        return self.local.signature.result_adapter.validate_python(result)


@functools.cache
def _importable(folder: Path, plugin: str, action: str, entrypoint: str) -> LoadedAction | None:
    loaded = sys.modules.get(entrypoint.split(":", 1)[0])
    where = getattr(loaded, "__file__", None)
    if where is not None and not Path(where).resolve().is_relative_to(folder.resolve()):
        return None  # another plugin's module of the same name is loaded here: let the task validate and type
    try:
        return LoadedAction.load(plugin, action, folder, entrypoint)
    except RayRuntimeError:
        return None  # not importable here (its requirements live in its runtime_env): the remote side validates


def local_action(prepared: PreparedAction) -> LoadedAction | None:
    """The action imported in this driver process, if its code imports here (cached); else None.

    Only for the user's own drivers and CLI: servers never import plugin code (see ``plugins.catalog``).
    """
    spec = prepared.spec
    return _importable(prepared.plugin.path, prepared.plugin.name, spec.name, spec.entrypoint)


def _prepare(plugin: Plugin | str | Path, action: str, params: Any, tenant: str | None) -> _Run:
    prepared = prepare(plugin, action, "task", env_vars={BOUND_TENANT_ENV: tenant} if tenant else None)
    local = local_action(prepared)
    validated = local.signature.validate(params).model_dump(mode="json") if local is not None else params
    return _Run(prepared, validated, local)


def _failure(exc: Exception) -> BaseException:
    translated = from_ray(exc, "the action's task", failed=lambda cause: _failed(cause))
    return translated if translated is not exc else _failed(exc)


def _failed(cause: BaseException) -> ServerError:
    return ServerError(f"the action's task failed: {type(cause).__name__}: {cause}")


def run(
    plugin: Plugin | str | Path,
    action: str,
    params: Any = None,
    *,
    tenant: str | None = None,
    resources_id: str | None = None,
    timeout_s: float | None = None,
) -> Any:
    """Run ``plugin``'s ``action`` as a Ray task and return its result.

    Args:
        plugin: A :class:`Plugin`, a plugin folder, or a plugin name under ``./plugins``.
        action: The action's name in the manifest (it must allow the ``task`` mode).
        params: A mapping, a pydantic model, or JSON text.
        tenant: Whose resources ``ctx.resources`` reads.
        resources_id: A resources version to use instead of the latest.
        timeout_s: Give up waiting after this long (the task is cancelled).

    Returns:
        The action's result, typed when the plugin imports on this driver; a streaming action's chunks as a list.

    Raises:
        ValidationError: ``params`` do not fit the action (every bad field named); nothing ran.
        ActionFailedError: The action raised.
        TimeoutError: ``timeout_s`` passed.
    """
    prepared = _prepare(plugin, action, params, tenant)
    ref = prepared.submit(tenant, resources_id)
    try:
        return prepared.typed(ray.get(ref, timeout=timeout_s))
    except (ray.exceptions.RayError, builtins.TimeoutError) as exc:
        if isinstance(exc, ray.exceptions.GetTimeoutError):
            ray.cancel(ref)
        raise _failure(exc) from None


async def arun(
    plugin: Plugin | str | Path,
    action: str,
    params: Any = None,
    *,
    tenant: str | None = None,
    resources_id: str | None = None,
    timeout_s: float | None = None,
) -> Any:
    """The awaitable twin of :func:`run`."""
    prepared = await asyncio.to_thread(_prepare, plugin, action, params, tenant)
    ref = prepared.submit(tenant, resources_id)
    try:
        return prepared.typed(await asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout_s))
    except (ray.exceptions.RayError, builtins.TimeoutError) as exc:
        if isinstance(exc, builtins.TimeoutError):
            ray.cancel(ref)
        raise _failure(exc) from None
