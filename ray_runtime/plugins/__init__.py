"""Plugins: a folder with a ``plugin.yaml``; each action runs unchanged as a Ray job, a Ray task, a Serve
endpoint, or a queue worker.

    import ray_runtime.plugins as plugins
    hello = plugins.load("plugins/hello")
    plugins.run(hello, "greet", {"name": "Ada"})          # task mode

Names that need Ray (``run``, ``arun``, ``spawn_workers``, ``serve_plugin``, ``submit_job``) load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ray_runtime.plugins.action import Context, LoadedAction, action
from ray_runtime.plugins.manifest import ActionSpec, Plugin, PluginManifest, PluginRegistry, load, resolve

if TYPE_CHECKING:
    from ray_runtime.plugins.serve_deploy import serve_plugin, unserve_plugin, wait_for_apps
    from ray_runtime.plugins.submit import submit_job
    from ray_runtime.plugins.task import arun, run
    from ray_runtime.plugins.worker import QueueWorker, WorkerPool, spawn_workers

__all__ = [
    "ActionSpec",
    "Context",
    "LoadedAction",
    "Plugin",
    "PluginManifest",
    "PluginRegistry",
    "QueueWorker",
    "WorkerPool",
    "action",
    "arun",
    "load",
    "resolve",
    "run",
    "serve_plugin",
    "spawn_workers",
    "submit_job",
    "unserve_plugin",
    "wait_for_apps",
]

_LAZY = {
    "run": "ray_runtime.plugins.task",
    "arun": "ray_runtime.plugins.task",
    "spawn_workers": "ray_runtime.plugins.worker",
    "QueueWorker": "ray_runtime.plugins.worker",
    "WorkerPool": "ray_runtime.plugins.worker",
    "serve_plugin": "ray_runtime.plugins.serve_deploy",
    "unserve_plugin": "ray_runtime.plugins.serve_deploy",
    "wait_for_apps": "ray_runtime.plugins.serve_deploy",
    "submit_job": "ray_runtime.plugins.submit",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ray_runtime.plugins' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
