"""ray_runtime: plugins, a durable coordinator and one API façade, native to Ray.

Public names only; everything else lives in its own module::

    import ray_runtime as rr
    coord = rr.connect()
    task_id = coord.enqueue("work", {"n": 1})

Names that need Ray or the plugin machinery load on first use, so ``ray_runtime.client`` and the models
import with httpx and pydantic alone.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ray_runtime import _parts, errors
from ray_runtime._version import __version__
from ray_runtime.models import LLM, JSONResource, PromptTemplate, ResourcesUpdate, TaskSpec, TaskStatus

if TYPE_CHECKING:
    from ray_runtime.coordinator import AsyncCoordinator, Coordinator, aconnect, connect
    from ray_runtime.plugins.action import Context, action

__all__ = [
    "LLM",
    "AsyncCoordinator",
    "Context",
    "Coordinator",
    "JSONResource",
    "PromptTemplate",
    "ResourcesUpdate",
    "TaskSpec",
    "TaskStatus",
    "__version__",
    "aconnect",
    "action",
    "connect",
    "errors",
]

_LAZY = {
    "AsyncCoordinator": "ray_runtime.coordinator",
    "Coordinator": "ray_runtime.coordinator",
    "connect": "ray_runtime.coordinator",
    "aconnect": "ray_runtime.coordinator",
    "Context": "ray_runtime.plugins.action",
    "action": "ray_runtime.plugins.action",
}


def _sessions(coord: Any) -> Any:
    """``coord.sessions`` of every coordinator handle (the coordinator sits below the sessions package)."""
    from ray_runtime.sessions.manager import sessions_of

    return sessions_of(coord)


_parts.supply("sessions", _sessions)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ray_runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
