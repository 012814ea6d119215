"""The coordinator actor: a thin async shell around :class:`CoordinatorState` and its journal.

Each call applies itself to the state, then waits for the journal to hold the change before it answers.
Changes made by calls that arrive together are written in one transaction (group commit). Long polls and
``wait`` sleep on events from the state, never in a polling loop; a background sweeper expires leases.

This class is internal: reach it through :func:`ray_runtime.connect`, which creates it with unlimited restarts,
detached, pinned to the head node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ValidationError as PydanticValidationError

from ray_runtime.config import CoordinatorSettings
from ray_runtime.coordinator.journal import Journal, MemoryJournal, SQLiteJournal
from ray_runtime.coordinator.state import (
    CoordinatorState,
    Limits,
    NewTask,
    ResourcesRecord,
    TaskRecord,
    check_number,
)
from ray_runtime.errors import ResourcesNotFoundError, ValidationError
from ray_runtime.models.resources import named_resources_adapter

__all__ = ["CoordinatorActor"]

logger = logging.getLogger(__name__)
T = TypeVar("T")
_MAX_WAIT_S = 300.0


def _render_tasks(records: list[TaskRecord]) -> list[dict[str, Any]]:
    return [r.wire() for r in records]


def _render_leases(records: list[TaskRecord]) -> list[dict[str, Any]]:
    return [r.lease_wire() for r in records]


def _validate_resources(body: str) -> dict[str, Any]:
    try:
        return named_resources_adapter.validate_json(body)
    except PydanticValidationError as exc:
        raise ValidationError.from_pydantic("resources", exc) from None


class _Waiter:
    """One ``wait`` call: done when all (or the first) of its pending tasks finish."""

    __slots__ = ("first", "future", "pending")

    def __init__(self, pending: set[str], first: bool) -> None:
        self.pending = pending
        self.first = first
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def finished(self, task_id: str) -> None:
        self.pending.discard(task_id)
        if (self.first or not self.pending) and not self.future.done():
            self.future.set_result(None)


class CoordinatorActor:
    """Task queues and versioned resources, durable across restarts of this actor."""

    def __init__(self, name: str, overrides: dict[str, Any] | None = None) -> None:
        started = time.perf_counter()
        self.name = name
        self.settings = CoordinatorSettings(**(overrides or {}))
        self._loop = asyncio.get_running_loop()
        self._flush_future: asyncio.Future[None] | None = None
        self._queue_waiters: dict[tuple[str, str], set[asyncio.Future[None]]] = {}
        self._ready_generation: dict[tuple[str, str], int] = {}
        self._task_waiters: dict[str, list[_Waiter]] = {}
        self._journal = self._open_journal()
        self._state = CoordinatorState(
            Limits(
                max_payload_bytes=self.settings.max_payload_bytes,
                default_lease_s=self.settings.default_lease_s,
                max_lease_s=self.settings.max_lease_s,
                retry_backoff_s=self.settings.retry_backoff_s,
                retry_backoff_max_s=self.settings.retry_backoff_max_s,
                finished_retention=self.settings.finished_retention,
                finished_ttl_s=self.settings.finished_ttl_s,
                resources_keep=self.settings.resources_keep,
                worker_ttl_s=self.settings.worker_ttl_s,
            ),
            on_ready=self._wake_queue,
            on_finished=self._wake_waiters,
        )
        tasks, resources = self._journal.load()
        self._state.load(tasks, resources)
        self._replayed = len(tasks)
        self._replay_s = time.perf_counter() - started
        self._started_at = time.time()
        self._sweeper = self._loop.create_task(self._sweep_forever())
        logger.info("coordinator %s replayed %d tasks in %.2fs", name, self._replayed, self._replay_s)

    def _open_journal(self) -> Journal:
        if str(self.settings.storage) == ":memory:":
            return MemoryJournal()
        return SQLiteJournal(self.settings.journal_path(self.name), synchronous=self.settings.journal_synchronous)

    # ----------------------------------------------------------------------------------- durability

    async def _durable(self) -> None:
        """Return once every change made so far is in the journal (one write for all who wait together)."""
        if self._flush_future is None:
            if not self._state.has_changes():
                return
            self._flush_future = self._loop.create_future()
            self._loop.call_soon(self._flush)
        await asyncio.shield(self._flush_future)

    def _flush(self) -> None:
        future, self._flush_future = self._flush_future, None
        try:
            self._journal.write(self._state.take_changes())
        except BaseException:
            # The state is ahead of the journal now; only a replay makes them agree again. Ray restarts us.
            logger.critical("journal write failed; exiting so that the coordinator restarts and replays", exc_info=True)
            os._exit(70)
        if future is not None:
            future.set_result(None)

    async def _apply(self, render: Callable[[T], Any], fn: Callable[..., T], *args: Any, **kwargs: Any) -> Any:
        """Run one state call and answer once its changes are durable (also when it is refused)."""
        try:
            return render(fn(*args, **kwargs))
        finally:
            await self._durable()

    async def _read(self, render: Callable[[T], Any], fn: Callable[..., T], *args: Any, **kwargs: Any) -> Any:
        """Answer a read from committed state only: wait out any write still in flight."""
        await self._durable()
        return render(fn(*args, **kwargs))

    # ---------------------------------------------------------------------------------------- events

    def _wake_queue(self, tenant: str, queue: str) -> None:
        key = (tenant, queue)
        self._ready_generation[key] = self._ready_generation.get(key, 0) + 1
        for future in self._queue_waiters.pop(key, ()):
            if not future.done():
                future.set_result(None)

    def _wake_waiters(self, record: TaskRecord) -> None:
        for waiter in self._task_waiters.pop(record.id, ()):
            waiter.finished(record.id)

    async def _sweep_forever(self) -> None:
        interval = self.settings.sweep_interval_s
        while True:
            try:
                self._state.sweep()
                await self._durable()
            except Exception:
                logger.exception("coordinator sweep failed")
            deadline = self._state.next_deadline()
            delay = interval if deadline is None else min(interval, max(0.001, deadline - time.time()))
            await asyncio.sleep(delay)

    # ------------------------------------------------------------------------------------- producers

    async def enqueue(self, tenant: str, queue: str, tasks: list[NewTask]) -> list[str]:
        return await self._apply(list, self._state.enqueue, tenant, queue, [NewTask(*t) for t in tasks])

    # --------------------------------------------------------------------------------------- workers

    async def claim(
        self,
        tenant: str,
        queue: str,
        worker_id: str,
        max_tasks: int = 1,
        lease_s: float | None = None,
        wait_s: float = 0.0,
        node_id: str | None = None,
        request_id: str | None = None,
    ) -> list[dict[str, Any]]:
        check_number("wait_s", wait_s, low=0, high=_MAX_WAIT_S)
        key = (tenant, queue)
        deadline = self._loop.time() + wait_s
        while True:
            generation = self._ready_generation.get(key, 0)
            leases = await self._apply(
                _render_leases,
                self._state.claim,
                tenant,
                queue,
                worker_id,
                max_tasks=max_tasks,
                lease_s=lease_s,
                node_id=node_id,
                request_id=request_id,
            )
            remaining = deadline - self._loop.time()
            if leases or remaining <= 0:
                return leases
            if self._ready_generation.get(key, 0) == generation:
                await self._sleep_until_ready(key, remaining)

    async def _sleep_until_ready(self, key: tuple[str, str], timeout: float) -> None:
        future = self._loop.create_future()
        self._queue_waiters.setdefault(key, set()).add(future)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            pass
        finally:
            waiters = self._queue_waiters.get(key)
            if waiters is not None:
                waiters.discard(future)

    async def heartbeat(self, tenant: str, attempt_id: str, extend_s: float | None = None) -> dict[str, Any]:
        return await self._apply(TaskRecord.lease_wire, self._state.heartbeat, tenant, attempt_id, extend_s)

    async def complete(
        self, tenant: str, attempt_id: str, result: str, request_id: str | None = None
    ) -> dict[str, Any]:
        return await self._apply(
            TaskRecord.wire, self._state.complete, tenant, attempt_id, result, request_id=request_id
        )

    async def complete_many(self, tenant: str, items: list[tuple[str, str, str | None]]) -> list[dict[str, Any]]:
        """Complete several attempts in one call; each outcome is ``{"task": ...}`` or ``{"error": ...}``."""
        outcomes = []
        try:
            for attempt_id, result, request_id in items:
                try:
                    record = self._state.complete(tenant, attempt_id, result, request_id=request_id)
                    outcomes.append({"task": record.wire()})
                except Exception as exc:
                    outcomes.append({"error": exc})
        finally:
            await self._durable()
        return outcomes

    async def complete_and_claim(
        self,
        tenant: str,
        attempt_id: str,
        result: str,
        request_id: str | None,
        queue: str,
        worker_id: str,
        max_tasks: int = 1,
        lease_s: float | None = None,
        wait_s: float = 0.0,
        node_id: str | None = None,
        claim_request_id: str | None = None,
    ) -> dict[str, Any]:
        """Hand in a result and take the next task(s) in one round trip and one journal write."""
        check_number("wait_s", wait_s, low=0, high=_MAX_WAIT_S)
        self._state.check_claim(tenant, queue, worker_id, max_tasks, lease_s, claim_request_id)
        claim = dict(max_tasks=max_tasks, lease_s=lease_s, node_id=node_id, request_id=claim_request_id)
        try:
            task = self._state.complete(tenant, attempt_id, result, request_id=request_id).wire()
            leases = _render_leases(self._state.claim(tenant, queue, worker_id, **claim))
        finally:
            await self._durable()
        if not leases and wait_s > 0:
            leases = await self.claim(tenant, queue, worker_id, wait_s=wait_s, **claim)
        return {"task": task, "leases": leases}

    async def fail(
        self,
        tenant: str,
        attempt_id: str,
        error: str,
        retryable: bool = True,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        return await self._apply(
            TaskRecord.wire,
            self._state.fail,
            tenant,
            attempt_id,
            error,
            retryable=retryable,
            request_id=request_id,
        )

    # ------------------------------------------------------------------------------------- operators

    async def cancel(self, tenant: str, task_id: str) -> dict[str, Any]:
        return await self._apply(TaskRecord.wire, self._state.cancel, tenant, task_id)

    async def retry(self, tenant: str, task_id: str) -> dict[str, Any]:
        return await self._apply(TaskRecord.wire, self._state.retry, tenant, task_id)

    async def purge(self, tenant: str, queue: str) -> int:
        return await self._apply(int, self._state.purge, tenant, queue)

    # ----------------------------------------------------------------------------------------- reads

    async def get(self, tenant: str, task_id: str) -> dict[str, Any]:
        return await self._read(TaskRecord.wire, self._state.get, tenant, task_id)

    async def query(
        self,
        tenant: str,
        queue: str | None = None,
        status: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        def render(page: tuple[list[TaskRecord], str | None]) -> dict[str, Any]:
            return {"items": _render_tasks(page[0]), "next_cursor": page[1]}

        return await self._read(
            render, self._state.query, tenant, queue=queue, status=status, limit=limit, cursor=cursor
        )

    async def stats(self, tenant: str, queue: str) -> dict[str, Any]:
        return await self._read(dict, self._state.stats, tenant, queue)

    async def queues(self, tenant: str) -> list[str]:
        return await self._read(list, self._state.queues, tenant)

    async def workers(self, tenant: str) -> list[dict[str, Any]]:
        return await self._read(list, self._state.workers, tenant)

    async def wait(
        self, tenant: str, task_ids: list[str], timeout_s: float, return_when_first: bool = False
    ) -> dict[str, Any]:
        """Sleep until the tasks finish (all, or the first) or the timeout passes; then report."""
        await self._durable()
        records = [self._state.get(tenant, task_id) for task_id in task_ids]
        pending = {r.id for r in records if not r.status.terminal}
        any_done = len(pending) < len(records)
        if pending and timeout_s > 0 and not (return_when_first and any_done):
            waiter = _Waiter(pending, return_when_first)
            for task_id in pending:
                self._task_waiters.setdefault(task_id, []).append(waiter)
            try:
                await asyncio.wait_for(asyncio.shield(waiter.future), min(timeout_s, _MAX_WAIT_S))
            except TimeoutError:
                pass
            finally:
                self._forget_waiter(waiter)
            await self._durable()
        return {
            "done": [r.wire() for r in records if r.status.terminal],
            "pending": [r.id for r in records if not r.status.terminal],
        }

    def _forget_waiter(self, waiter: _Waiter) -> None:
        for task_id in waiter.pending:
            waiters = self._task_waiters.get(task_id)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._task_waiters[task_id]

    # ------------------------------------------------------------------------------------- resources

    async def add_resources(self, tenant: str, body: str, merge: bool = False) -> dict[str, Any]:
        """Validate and publish a version; with ``merge`` it is the latest version updated with ``body``."""
        named = _validate_resources(body)
        if merge:
            with contextlib.suppress(ResourcesNotFoundError):
                named = {**_validate_resources(self._state.latest_resources(tenant).body), **named}
        canonical = named_resources_adapter.dump_json(named).decode()
        return await self._apply(ResourcesRecord.wire, self._state.add_resources, tenant, canonical)

    async def get_resources(self, tenant: str, resources_id: str) -> dict[str, Any]:
        return await self._read(ResourcesRecord.wire, self._state.get_resources, tenant, resources_id)

    async def latest_resources(self, tenant: str) -> dict[str, Any]:
        return await self._read(ResourcesRecord.wire, self._state.latest_resources, tenant)

    async def resources_history(self, tenant: str, limit: int = 100) -> list[dict[str, Any]]:
        return await self._read(
            lambda records: [r.wire() for r in records], self._state.resources_history, tenant, limit
        )

    # ---------------------------------------------------------------------------------------- health

    async def info(self) -> dict[str, Any]:
        """Who and where this coordinator is, and how its last start went."""
        return {
            "name": self.name,
            "pid": os.getpid(),
            "started_at": self._started_at,
            "replayed_tasks": self._replayed,
            "replay_s": self._replay_s,
            "journal": str(getattr(self._journal, "path", ":memory:")),
            "durable": self._journal.capabilities["durable"],
            "counts": self._state.counts(),
        }
