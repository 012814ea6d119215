"""Worker mode: consume a coordinator queue with a plugin action.

Each of ``concurrency`` slots claims a task (long poll), runs the action on the task's input while a heartbeat
keeps the lease alive, then hands the result in and claims the next task in one call. An exception fails the
attempt with its traceback, so retries and dead letters follow the queue's policy; input that does not fit the
action's parameters fails the task for good (retrying cannot fix it). Workers run in this process
(``ray-runtime worker``) or as Ray actors in the plugin's runtime_env (:func:`spawn_workers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from ray_runtime._placement import Ask, check_feasible, wait_placed
from ray_runtime.config import BOUND_TENANT_ENV, Settings
from ray_runtime.errors import (
    CallerError,
    InvalidArgumentError,
    StaleAttemptError,
    TaskFinishedError,
    ValidationError,
)
from ray_runtime.models.resources import ResourcesUpdate
from ray_runtime.models.tasks import Lease
from ray_runtime.plugins.action import Context, LoadedAction, Reporter
from ray_runtime.plugins.manifest import Plugin
from ray_runtime.plugins.prepare import prepare

__all__ = ["QueueWorker", "WorkerPool", "WorkerStats", "spawn_workers"]

logger = logging.getLogger("ray_runtime.worker")
_LOST = (StaleAttemptError, TaskFinishedError)  # the lease is gone: drop the work, keep going


@dataclass
class WorkerStats:
    """What a worker did."""

    succeeded: int = 0
    failed: int = 0
    lost: int = field(default=0, metadata={"doc": "results dropped because the lease was gone"})


class _LeaseReporter(Reporter):
    """Resources are the version the lease names (fetched before the action starts); progress is logged."""

    def __init__(self, resources: ResourcesUpdate | None) -> None:
        self.update = resources

    def resources(self, ctx: Context) -> ResourcesUpdate | None:
        return self.update


class QueueWorker:
    """Runs one action over one queue with ``concurrency`` slots.

    Args:
        loaded: The action.
        queue: The coordinator queue.
        coord: An ``AsyncCoordinator`` for the tenant whose queue it is.
        worker_id: How the coordinator knows this worker (default: host, pid and a random suffix).
        concurrency: Tasks run at once.
        lease_s: Lease length; heartbeats renew it every third of that.
        wait_s: Long-poll time of each claim.
    """

    def __init__(
        self,
        loaded: LoadedAction,
        queue: str,
        coord: Any,
        *,
        worker_id: str | None = None,
        concurrency: int = 1,
        lease_s: float = 60.0,
        wait_s: float = 10.0,
    ) -> None:
        if concurrency < 1:
            raise InvalidArgumentError("concurrency", f"must be >= 1; got {concurrency}")
        self.loaded = loaded
        self.queue = queue
        self.coord = coord
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.concurrency = concurrency
        self.lease_s = lease_s
        self.wait_s = wait_s
        self.stats = WorkerStats()

    async def run(self, *, stop: asyncio.Event | None = None, max_tasks: int | None = None) -> WorkerStats:
        """Work until ``stop`` is set, or ``max_tasks`` tasks ended (None: forever)."""
        stop = stop or asyncio.Event()
        budget = [max_tasks]
        slots = [asyncio.create_task(self._slot(n, stop, budget)) for n in range(self.concurrency)]
        try:
            await asyncio.gather(*slots)
        finally:
            for slot in slots:
                slot.cancel()
        return self.stats

    async def _slot(self, n: int, stop: asyncio.Event, budget: list[int | None]) -> None:
        worker_id = self.worker_id if self.concurrency == 1 else f"{self.worker_id}:{n}"
        leases: list[Lease] = []
        while not stop.is_set() and budget[0] != 0:
            if not leases:
                leases = await self._claim(worker_id, stop)
                continue
            if budget[0] is not None:
                budget[0] -= 1
            leases = await self._work(leases[0], worker_id, take_next=budget[0] != 0 and not stop.is_set())

    async def _claim(self, worker_id: str, stop: asyncio.Event) -> list[Lease]:
        claim = asyncio.create_task(self.coord.claim(self.queue, worker_id, lease_s=self.lease_s, wait_s=self.wait_s))
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({claim, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if claim in done:
            return claim.result()
        claim.cancel()  # an answer that arrives later holds a lease nobody works on: it expires and is retried
        return []

    async def _work(self, lease: Lease, worker_id: str, *, take_next: bool) -> list[Lease]:
        """Run one leased task and hand in its outcome; returns the next leases (if it claimed some)."""
        resources = await self.coord.resources.get(lease.resources_id) if lease.resources_id else None
        ctx = self.loaded.context("worker", run_id=lease.task.id, reporter=_LeaseReporter(resources))
        heartbeat = asyncio.create_task(self._heartbeat(lease))
        try:
            result = await self.loaded.arun(lease.task.input, ctx)
        except ValidationError as exc:
            return await self._fail(lease, exc, retryable=False)
        except Exception as exc:
            return await self._fail(lease, exc, retryable=not isinstance(exc, CallerError))
        finally:
            heartbeat.cancel()
        try:
            if take_next:
                _, leases = await self.coord.complete_and_claim(
                    lease.attempt_id, result, queue=self.queue, worker_id=worker_id, lease_s=self.lease_s
                )
            else:
                await self.coord.complete(lease.attempt_id, result)
                leases = []
        except _LOST:
            self.stats.lost += 1
            return []
        self.stats.succeeded += 1
        return leases

    async def _fail(self, lease: Lease, exc: Exception, *, retryable: bool) -> list[Lease]:
        logger.warning("task %s failed: %s: %s", lease.task.id, type(exc).__name__, exc)
        with contextlib.suppress(*_LOST):
            await self.coord.fail(lease.attempt_id, exc, retryable=retryable)
        self.stats.failed += 1
        return []

    async def _heartbeat(self, lease: Lease) -> None:
        with contextlib.suppress(*_LOST):
            while True:
                await asyncio.sleep(self.lease_s / 3)
                await self.coord.heartbeat(lease.attempt_id)


# ------------------------------------------------------------------------------------ workers as actors


class _WorkerActor:
    """A queue worker as a Ray actor in the plugin's runtime_env."""

    def __init__(
        self, plugin: str, action: str, entrypoint: str, queue: str, tenant: str | None, options: dict
    ) -> None:
        from ray_runtime.coordinator import connect

        loaded = LoadedAction.load(plugin, action, Path.cwd(), entrypoint)
        self.worker = QueueWorker(loaded, queue, connect(tenant=tenant, wait=False).aio, **options)
        self.stop_event = asyncio.Event()

    async def run(self, max_tasks: int | None = None) -> dict[str, int]:
        stats = await self.worker.run(stop=self.stop_event, max_tasks=max_tasks)
        return {"succeeded": stats.succeeded, "failed": stats.failed, "lost": stats.lost}

    async def stop(self) -> None:
        self.stop_event.set()

    async def worker_id(self) -> str:
        return self.worker.worker_id


@dataclass
class WorkerPool:
    """Workers started by :func:`spawn_workers`: their actors and their running ``run`` calls."""

    actors: list[Any]
    runs: list[Any]

    def stop(self, timeout_s: float = 60.0) -> list[dict[str, int] | None]:
        """Ask every worker to finish its current task and stop; returns each one's stats (None if it had died,
        e.g. with its node: its leased tasks were retried elsewhere)."""
        asked = [actor.stop.remote() for actor in self.actors]
        ray.wait(asked, num_returns=len(asked), timeout=timeout_s)
        stats: list[dict[str, int] | None] = []
        for run in self.runs:
            try:
                stats.append(ray.get(run, timeout=timeout_s))
            except ray.exceptions.RayActorError:
                stats.append(None)
        return stats

    def kill(self) -> None:
        """Stop at once (leased tasks are retried when their leases expire)."""
        for actor in self.actors:
            ray.kill(actor, no_restart=True)


def spawn_workers(
    plugin: Plugin | str | Path,
    action: str,
    *,
    queue: str | None = None,
    workers: int = 1,
    concurrency: int = 1,
    tenant: str | None = None,
    lease_s: float = 60.0,
    max_tasks: int | None = None,
    placement_timeout_s: float | None = None,
) -> WorkerPool:
    """Start ``workers`` Ray actors consuming ``queue`` (default: the action's queue in the manifest); returns once
    every one is placed and running.

    Each runs with the action's Ray resources in the plugin's runtime_env; ``max_tasks`` (each) ends them early.
    Workers are spread over the nodes that fit them, so losing a node loses only its share (its leases expire
    and those tasks go to the others).

    Raises:
        InsufficientResourcesError: No node could hold a worker, or not all were placed within
            ``placement_timeout_s`` (default ``RAY_RUNTIME_PLACEMENT_TIMEOUT_S``, 120 s); none is left behind.
    """
    prepared = prepare(plugin, action, "worker", env_vars={BOUND_TENANT_ENV: tenant} if tenant else None)
    spec = prepared.spec
    queue = queue or spec.queue
    if queue is None:
        raise InvalidArgumentError("queue", f"{prepared.plugin.name}/{action} names no queue; pass queue=")
    actor_class = ray.remote(_WorkerActor).options(
        **spec.resources.ray_options(),
        runtime_env=prepared.runtime_env,
        max_restarts=0,
        scheduling_strategy="SPREAD",
    )
    options = {"concurrency": concurrency, "lease_s": lease_s}
    ask = Ask.of(
        f"the queue workers of {prepared.plugin.name}/{action} ({workers}, each)", spec.resources.ray_options()
    )
    check_feasible(ask)
    actors = [
        actor_class.remote(prepared.plugin.name, action, spec.entrypoint, queue, tenant, options)
        for _ in range(workers)
    ]
    timeout = placement_timeout_s if placement_timeout_s is not None else Settings().placement_timeout_s
    wait_placed([actor.__ray_ready__.remote() for actor in actors], ask, timeout, WorkerPool(actors, []).kill)
    return WorkerPool(actors, [actor.run.remote(max_tasks) for actor in actors])
