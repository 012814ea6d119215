"""Waiting for Ray to place what ray_runtime asked for, with a deadline and an error that says why.

Ray keeps a request for resources no node has free waiting as long as it takes (with an autoscaler, until a node
that fits joins), and a request no node could ever hold waits forever. Everything ray_runtime asks Ray to place and
then waits on (session hosts, queue worker actors, the catalog's describe and validate tasks, Serve replicas) goes
through here: a request no node of the cluster (nor, with an autoscaler, of its node groups) could hold fails at
once; any other waits up to its deadline, after which it is withdrawn (the actor killed, the task cancelled), so no
demand stays behind, and the caller gets :class:`~ray_runtime.errors.InsufficientResourcesError` naming what was
asked and what the cluster has free.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ray

from ray_runtime.errors import InsufficientResourcesError

__all__ = ["Ask", "await_placed", "cancel_task", "check_feasible", "describe", "kill_actor", "wait_placed"]

_NOT_SCHEDULABLE = ("node:", "object_store_memory", "accelerator_type:")  # Ray's own bookkeeping resources
_UNITS = {"memory": 2**30}


@dataclass(frozen=True)
class Ask:
    """What was asked of Ray: a name for people (``session host rr-pool:…``) and its resources, by Ray's names
    (``CPU``, ``GPU``, ``memory`` in bytes, custom ones)."""

    what: str
    resources: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, what: str, options: Mapping[str, Any]) -> Ask:
        """From the keyword options of ``.options()`` on an actor or task (``num_cpus``, ``num_gpus``, ``memory``,
        ``resources``); Ray's defaults (1 CPU for a task, 0 for an actor's lifetime) are the caller's to pass."""
        resources: dict[str, float] = {}
        for option, name in (("num_cpus", "CPU"), ("num_gpus", "GPU"), ("memory", "memory")):
            if options.get(option):
                resources[name] = float(options[option])
        for name, amount in (options.get("resources") or {}).items():
            if amount:
                resources[name] = float(amount)
        return cls(what, resources)


def describe(resources: Mapping[str, float]) -> str:
    """Resources for people: ``0.5 CPU, 1 GPU, 2 GiB memory, slot: 1`` (``nothing`` when empty)."""
    parts = []
    for name, amount in sorted(resources.items(), key=lambda item: (item[0] not in ("CPU", "GPU", "memory"), item[0])):
        if name.startswith(_NOT_SCHEDULABLE):
            continue
        if name == "memory":
            parts.append(f"{amount / _UNITS['memory']:.3g} GiB memory")
        elif name in ("CPU", "GPU"):
            parts.append(f"{amount:g} {name}")
        else:
            parts.append(f"{name}: {amount:g}")
    return ", ".join(parts) or "nothing"


def _schedulable(resources: Mapping[str, float]) -> dict[str, float]:
    return {name: amount for name, amount in resources.items() if not name.startswith(_NOT_SCHEDULABLE)}


def _fits(ask: Mapping[str, float], offered: Mapping[str, float]) -> bool:
    return all(offered.get(name, 0.0) >= amount for name, amount in ask.items())


def _node_groups() -> list[dict[str, float]]:
    """What one node of each group an autoscaler may start offers (none when no autoscaler said, or Ray cannot
    tell: then only the nodes there are count)."""
    try:
        from ray._private.state import state  # the cluster config the autoscaler writes; no public reader yet

        config = state.get_cluster_config()
    except Exception:
        return []
    if config is None:
        return []
    return [dict(group.resources) for group in config.node_group_configs if group.max_count != 0]


def check_feasible(ask: Ask) -> None:
    """Fail at once if no node of the cluster, nor one an autoscaler could add, could ever hold ``ask``."""
    if not ask.resources:
        return
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    if any(_fits(ask.resources, offered) for offered in [*nodes, *_node_groups()]):
        return
    largest = max(nodes, key=lambda offered: offered.get("CPU", 0.0), default={})
    raise _refusal(ask, 0.0, f"no node of this cluster can ever hold it (the largest offers {describe(largest)})")


def _refusal(ask: Ask, waited_s: float, why: str) -> InsufficientResourcesError:
    free, total = _schedulable(ray.available_resources()), _schedulable(ray.cluster_resources())
    return InsufficientResourcesError(
        f"Ray could not place {ask.what} (it asks {describe(ask.resources)}): {why}; the cluster has "
        f"{describe(free)} free of {describe(total)}. Free some (close sessions, stop workers or apps), ask for "
        "less in the plugin's manifest (`resources`), or add nodes",
        asked=dict(ask.resources),
        free=free,
        total=total,
        waited_s=round(waited_s, 3),
    )


def _timed_out(ask: Ask, waited_s: float) -> InsufficientResourcesError:
    free = ray.available_resources()
    if _fits(ask.resources, free):  # it fits now: what held it was not (or is no longer) the resources
        why = f"it was not ready after {waited_s:.0f} s though it fits now (its runtime_env may still be building)"
    else:
        why = f"it waited {waited_s:.0f} s for resources to free up"
    return _refusal(ask, waited_s, why)


def wait_placed(ref: Any, ask: Ask, timeout_s: float, withdraw: Callable[[], None]) -> Any:
    """``ray.get(ref)`` within ``timeout_s``, else ``withdraw()`` the request and raise
    ``InsufficientResourcesError``. ``ref`` is the task's result, or an actor's ``__ray_ready__``."""
    started = time.monotonic()
    try:
        return ray.get(ref, timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        error = _timed_out(ask, time.monotonic() - started)
        with contextlib.suppress(Exception):
            withdraw()
        raise error from None


async def await_placed(ref: Any, ask: Ask, timeout_s: float, withdraw: Callable[[], None]) -> Any:
    """:func:`wait_placed` for async code."""
    started = time.monotonic()
    try:
        return await asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout_s)
    except TimeoutError:
        error = await asyncio.to_thread(_timed_out, ask, time.monotonic() - started)
        with contextlib.suppress(Exception):
            withdraw()
        raise error from None


def kill_actor(handle: Any) -> Callable[[], None]:
    """Withdrawing an actor: kill it (a pending one leaves the queue; no restart)."""
    return lambda: ray.kill(handle, no_restart=True)


def cancel_task(ref: Any) -> Callable[[], None]:
    """Withdrawing a task: cancel it (a pending one leaves the queue; a running one is stopped)."""
    return lambda: ray.cancel(ref, force=True)
