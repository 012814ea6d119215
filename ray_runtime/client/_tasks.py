"""``TaskClient``: a worker outside Ray that takes tasks from a queue over HTTP, as Agent Lightning's client does.

Differences that matter: errors are raised, never swallowed into ``None``; resources versions (immutable) are kept
in a bounded cache; and while a task is held its lease is renewed in the background, so a slow rollout is not
handed to another worker behind its back.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from cachetools import LRUCache

from ray_runtime.client._clients import AsyncRuntimeClient, RuntimeClient
from ray_runtime.client._http import ClientConfig
from ray_runtime.errors import ConflictError, InvalidArgumentError, NotFoundError, RayRuntimeError
from ray_runtime.models.resources import ResourcesUpdate
from ray_runtime.models.tasks import Lease, Task

__all__ = ["TaskClient"]

log = logging.getLogger(__name__)


class TaskClient:
    """Poll tasks of one queue, read their resources, post their results; sync methods and ``_async`` twins.

    Example:
        >>> with TaskClient("http://head:8080", api_key, queue="rollouts") as tasks:
        ...     while (lease := tasks.poll_next_task()) is not None:
        ...         resources = tasks.get_resources_by_id(lease.resources_id)
        ...         tasks.post_rollout(lease.attempt_id, {"final_reward": 1.0})

    Args:
        queue: The queue to take tasks from.
        worker_id: How this worker shows up in ``workers()`` (default: a fresh id).
        lease_s: Lease length asked for; the background heartbeat renews it every third of that.
        poll_wait_s: How long one ``poll_next_task`` waits for a task before returning ``None`` (at most 60).
        resource_cache_size: Resources versions kept in memory.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        queue: str = "rollouts",
        worker_id: str | None = None,
        tenant: str | None = None,
        config: ClientConfig | None = None,
        lease_s: float = 60.0,
        poll_wait_s: float = 10.0,
        resource_cache_size: int = 32,
    ) -> None:
        if lease_s <= 0 or not 0 <= poll_wait_s <= 60 or resource_cache_size < 1:
            raise InvalidArgumentError(
                "lease_s/poll_wait_s/resource_cache_size", "need lease_s > 0, 0 <= poll_wait_s <= 60, cache size >= 1"
            )
        self.queue = queue
        self.worker_id = worker_id or f"task-client-{uuid.uuid4().hex[:12]}"
        self.lease_s = lease_s
        self.poll_wait_s = poll_wait_s
        self._args = (base_url, api_key)
        self._options: dict[str, Any] = {"tenant": tenant, "config": config}
        self._client = RuntimeClient(base_url, api_key, **self._options)
        self._aclient: AsyncRuntimeClient | None = None
        self._cache: LRUCache[str, ResourcesUpdate] = LRUCache(maxsize=resource_cache_size)
        self._held: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeats = threading.Thread(target=self._renew_leases, name="task-client-heartbeat", daemon=True)
        self._heartbeats.start()

    # ------------------------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> TaskClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> TaskClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def close(self) -> None:
        """Stop renewing leases (held tasks then expire and are retried elsewhere) and close connections."""
        self._stop.set()
        self._heartbeats.join(timeout=5)
        self._client.close()

    async def aclose(self) -> None:
        self.close()
        if self._aclient is not None:
            await self._aclient.aclose()

    @property
    def held(self) -> list[Lease]:
        """Leases taken and not yet posted or failed."""
        with self._lock:
            return list(self._held.values())

    def _async(self) -> AsyncRuntimeClient:
        if self._aclient is None:
            self._aclient = AsyncRuntimeClient(*self._args, **self._options)
        return self._aclient

    # ----------------------------------------------------------------------------------------------- tasks

    def poll_next_task(self, *, wait_s: float | None = None) -> Lease | None:
        """The next task of the queue, or None if none came within ``wait_s`` (default ``poll_wait_s``)."""
        leases = self._client.claim(self.queue, self.worker_id, lease_s=self.lease_s, wait_s=self._wait(wait_s))
        return self._hold(leases)

    async def poll_next_task_async(self, *, wait_s: float | None = None) -> Lease | None:
        """Awaitable ``poll_next_task``."""
        leases = await self._async().claim(self.queue, self.worker_id, lease_s=self.lease_s, wait_s=self._wait(wait_s))
        return self._hold(leases)

    def post_rollout(self, attempt_id: str, rollout: Any) -> Task:
        """Hand in the result of a held task; raises ``ConflictError`` if its lease was lost meanwhile."""
        try:
            return self._client.complete(attempt_id, rollout)
        finally:
            self._release(attempt_id)

    async def post_rollout_async(self, attempt_id: str, rollout: Any) -> Task:
        """Awaitable ``post_rollout``."""
        try:
            return await self._async().complete(attempt_id, rollout)
        finally:
            self._release(attempt_id)

    def fail_task(self, attempt_id: str, error: str, *, retryable: bool = True) -> Task:
        """Give a held task back as failed (retried while attempts remain, unless ``retryable=False``)."""
        try:
            return self._client.fail(attempt_id, error, retryable=retryable)
        finally:
            self._release(attempt_id)

    async def fail_task_async(self, attempt_id: str, error: str, *, retryable: bool = True) -> Task:
        """Awaitable ``fail_task``."""
        try:
            return await self._async().fail(attempt_id, error, retryable=retryable)
        finally:
            self._release(attempt_id)

    def _wait(self, wait_s: float | None) -> float:
        return self.poll_wait_s if wait_s is None else wait_s

    def _hold(self, leases: list[Lease]) -> Lease | None:
        if not leases:
            return None
        with self._lock:
            self._held[leases[0].attempt_id] = leases[0]
        return leases[0]

    def _release(self, attempt_id: str) -> None:
        with self._lock:
            self._held.pop(attempt_id, None)

    def _renew_leases(self) -> None:
        """Heartbeat every held lease each third of ``lease_s``; a lost lease is dropped (posting it would fail)."""
        while not self._stop.wait(self.lease_s / 3):
            for lease in self.held:
                try:
                    self._client.heartbeat(lease.attempt_id, self.lease_s)
                except (ConflictError, NotFoundError) as exc:
                    log.warning("lease %s of task %s is lost: %s", lease.attempt_id, lease.task.id, exc.message)
                    self._release(lease.attempt_id)
                except RayRuntimeError as exc:  # the façade is away: try again next round, the lease may still hold
                    log.warning("could not renew lease %s: %s", lease.attempt_id, exc.message)

    # ------------------------------------------------------------------------------------------- resources

    def get_resources_by_id(self, resources_id: str) -> ResourcesUpdate:
        """One resources version (from the cache when seen before: versions never change)."""
        cached = self._cached(resources_id)
        return cached if cached is not None else self._remember(self._client.get_resources(resources_id))

    async def get_resources_by_id_async(self, resources_id: str) -> ResourcesUpdate:
        """Awaitable ``get_resources_by_id``."""
        cached = self._cached(resources_id)
        return cached if cached is not None else self._remember(await self._async().get_resources(resources_id))

    def get_latest_resources(self) -> ResourcesUpdate:
        """The newest resources version (always asked: it moves)."""
        return self._remember(self._client.latest_resources())

    async def get_latest_resources_async(self) -> ResourcesUpdate:
        """Awaitable ``get_latest_resources``."""
        return self._remember(await self._async().latest_resources())

    def _cached(self, resources_id: str) -> ResourcesUpdate | None:
        with self._lock:
            return self._cache.get(resources_id)

    def _remember(self, update: ResourcesUpdate) -> ResourcesUpdate:
        with self._lock:
            self._cache[update.resources_id] = update
        return update
