"""The coordinator's driver handle: :func:`connect`, :class:`Coordinator` (blocking), :class:`AsyncCoordinator`.

A handle is the call layer (``calls``) over one actor, acting for one tenant, with its parts: the queue calls
(``queue_calls``), ``resources``, ``runs``, ``rollouts`` (Agent Lightning's), the system store ``kv``, the session
registry's calls, and parts supplied from above (``coord.sessions``, by ``ray_runtime.sessions``; see
``ray_runtime._parts``).
"""

from __future__ import annotations

import functools
import os
from typing import Any, ClassVar

import ray

from ray_runtime._parts import make
from ray_runtime._ray import init_ray
from ray_runtime._twins import awaitable, blocking
from ray_runtime.config import BOUND_TENANT_ENV, Settings
from ray_runtime.coordinator.actor import CoordinatorActor
from ray_runtime.coordinator.calls import Awaitable, Blocking, Handle
from ray_runtime.coordinator.kv_calls import AsyncSystemKV, SystemKV
from ray_runtime.coordinator.messages import POLL_GROUP
from ray_runtime.coordinator.queue_calls import QueueCalls
from ray_runtime.coordinator.resource_calls import AsyncResources, Resources
from ray_runtime.coordinator.rollout_calls import AsyncRollouts, Rollouts
from ray_runtime.coordinator.run_calls import AsyncRuns, Runs
from ray_runtime.coordinator.session_calls import AsyncSessionRegistryHandle, SessionRegistryHandle
from ray_runtime.errors import PermissionDeniedError

__all__ = [
    "AsyncCoordinator",
    "AsyncResources",
    "AsyncRuns",
    "Coordinator",
    "Resources",
    "Runs",
    "aconnect",
    "connect",
    "system_store",
]


class _Root(QueueCalls):
    """What both coordinator twins share: their parts (resources, runs, system store) and tenant switching."""

    _parts: ClassVar[dict[str, type[Handle]]]
    _kv_class: ClassVar[type[Handle]]

    def __init__(self, actor: Any, **options: Any) -> None:
        super().__init__(actor, **options)
        for name, part in self._parts.items():
            setattr(self, name, part(actor, **self.options()))

    def __getattr__(self, name: str) -> Any:
        """A part supplied from above (``sessions``: ``ray_runtime.sessions``), made once per handle."""
        if name.startswith("_"):
            raise AttributeError(name)
        value = self.__dict__[name] = make(name, self)
        return value

    @property
    def kv(self) -> Any:
        """The coordinator's system key-value store (the façade's records): not for code run for a tenant."""
        if self.bound:
            raise PermissionDeniedError(
                f"this code runs for tenant {self.tenant!r}: the coordinator's system store is not for it"
            )
        return self._kv_class(self._actor, **self.options())

    def for_tenant(self, tenant: str) -> Any:
        """The same coordinator, acting for another tenant (refused by a handle bound to its tenant)."""
        if self.bound and tenant != self.tenant:
            raise PermissionDeniedError(
                f"this code runs for tenant {self.tenant!r} and cannot act for {tenant!r}", tenant=self.tenant
            )
        return type(self)(self._actor, **{**self.options(), "tenant": tenant})


class Coordinator(_Root, Blocking):
    """The coordinator of a Ray cluster, for one tenant: blocking calls. Get one with :func:`connect`.

    ``coord.aio`` is the awaitable twin on the same actor; ``coord.resources``, ``coord.runs`` and ``coord.kv`` hold
    those calls, and ``coord.sessions`` the agent sessions (supplied by ``ray_runtime.sessions``).
    """

    _parts: ClassVar[dict[str, type[Handle]]] = {"resources": Resources, "runs": Runs, "rollouts": Rollouts}
    _kv_class = SystemKV
    resources: Resources
    runs: Runs
    rollouts: Rollouts
    sessions: Any  # ray_runtime.sessions.Sessions, supplied from above

    @functools.cached_property
    def aio(self) -> AsyncCoordinator:
        """The awaitable twin: same actor, same tenant."""
        return AsyncCoordinator(self._actor, **self.options())

    @functools.cached_property
    def session_registry(self) -> SessionRegistryHandle:
        """The session registry's bookkeeping calls (session hosts and ``coord.sessions`` use them)."""
        return SessionRegistryHandle(self._actor, **self.options())

    enqueue = blocking(QueueCalls._enqueue)
    enqueue_many = blocking(QueueCalls._enqueue_many)
    claim = blocking(QueueCalls._claim)
    heartbeat = blocking(QueueCalls._heartbeat)
    complete = blocking(QueueCalls._complete)
    complete_many = blocking(QueueCalls._complete_many)
    complete_many_and_claim = blocking(QueueCalls._complete_many_and_claim)
    complete_and_claim = blocking(QueueCalls._complete_and_claim)
    fail = blocking(QueueCalls._fail)
    cancel = blocking(QueueCalls._cancel)
    retry = blocking(QueueCalls._retry)
    purge = blocking(QueueCalls._purge)
    get = blocking(QueueCalls._get)
    query = blocking(QueueCalls._query)
    wait = blocking(QueueCalls._wait)
    stats = blocking(QueueCalls._stats)
    queues = blocking(QueueCalls._queues)
    workers = blocking(QueueCalls._workers)
    info = blocking(QueueCalls._info)


class AsyncCoordinator(_Root, Awaitable):
    """The coordinator of a Ray cluster, for one tenant: awaitable calls (``coord.aio``)."""

    _parts: ClassVar[dict[str, type[Handle]]] = {
        "resources": AsyncResources,
        "runs": AsyncRuns,
        "rollouts": AsyncRollouts,
    }
    _kv_class = AsyncSystemKV
    resources: AsyncResources
    runs: AsyncRuns
    rollouts: AsyncRollouts
    sessions: Any  # ray_runtime.sessions.AsyncSessions, supplied from above

    @functools.cached_property
    def session_registry(self) -> AsyncSessionRegistryHandle:
        """The session registry's bookkeeping calls (awaitable)."""
        return AsyncSessionRegistryHandle(self._actor, **self.options())

    enqueue = awaitable(QueueCalls._enqueue)
    enqueue_many = awaitable(QueueCalls._enqueue_many)
    claim = awaitable(QueueCalls._claim)
    heartbeat = awaitable(QueueCalls._heartbeat)
    complete = awaitable(QueueCalls._complete)
    complete_many = awaitable(QueueCalls._complete_many)
    complete_many_and_claim = awaitable(QueueCalls._complete_many_and_claim)
    complete_and_claim = awaitable(QueueCalls._complete_and_claim)
    fail = awaitable(QueueCalls._fail)
    cancel = awaitable(QueueCalls._cancel)
    retry = awaitable(QueueCalls._retry)
    purge = awaitable(QueueCalls._purge)
    get = awaitable(QueueCalls._get)
    query = awaitable(QueueCalls._query)
    wait = awaitable(QueueCalls._wait)
    stats = awaitable(QueueCalls._stats)
    queues = awaitable(QueueCalls._queues)
    workers = awaitable(QueueCalls._workers)
    info = awaitable(QueueCalls._info)


def system_store(coord: Coordinator | AsyncCoordinator) -> AsyncSystemKV:
    """The system store of the coordinator behind ``coord``, even from a process bound to a tenant.

    For ray_runtime's own services running inside a tenant's process (e.g. the API key check in front of a Serve
    endpoint); the code of plugins must not use it.
    """
    return AsyncSystemKV(coord.actor, **{**coord.options(), "bound": False})


# -------------------------------------------------------------------------------------------- connect


@functools.cache
def _remote_coordinator(max_pollers: int) -> Any:
    """The Ray actor class; long polls get their own group of threads so short calls never wait for one."""
    return ray.remote(concurrency_groups={POLL_GROUP: max_pollers})(CoordinatorActor)


def connect(
    address: str | None = None,
    *,
    tenant: str | None = None,
    name: str | None = None,
    namespace: str | None = None,
    call_timeout_s: float | None = None,
    max_pollers: int = 256,
    wait: bool = True,
    **coordinator_settings: Any,
) -> Coordinator:
    """Find the cluster's coordinator, creating it on first use; returns a blocking :class:`Coordinator`.

    The coordinator is a named, detached actor (namespace ``ray_runtime``), restarted without limit, replaying its
    journal on each start; with its journal in files it is pinned to the head node, with its journal in
    PostgreSQL (``RAY_RUNTIME_JOURNAL_URL``) it may run on any node. By default this call returns once it answers.

    Args:
        address: Ray address. By default: the cluster this process runs in, ``RAY_ADDRESS``, the local runtime
            ``ray-runtime up`` started, or the one cluster running on this machine (several: an error); with none
            at all, a private local Ray instance. Ignored when Ray is already initialised.
        tenant: Whose queues and resources to act on (default ``RAY_RUNTIME_TENANT`` or ``"default"``).
        name: Coordinator actor name, for running several side by side (default ``"coordinator"``).
        namespace: Ray namespace of the actor (default ``RAY_RUNTIME_NAMESPACE`` or ``"ray_runtime"``); its
            session hosts live there too.
        call_timeout_s: Deadline of each call, on top of any wait the call asks for.
        max_pollers: Long-poll claims and waits the coordinator serves at once (more queue up); set when
            this call creates the actor.
        wait: Return only once the coordinator answers (False: at once, e.g. inside an event loop; the first
            call then waits for it). Use :func:`aconnect` in async code.
        **coordinator_settings: ``CoordinatorSettings`` fields (``storage``, ``max_payload_bytes``, ...) used
            only when this call creates the actor; an existing coordinator keeps its own.

    Example:
        >>> import ray_runtime as rr
        >>> coord = rr.connect()
        >>> coord.enqueue("jobs", {"n": 1})
    """
    settings = Settings()
    bound = os.environ.get(BOUND_TENANT_ENV)
    if bound and tenant not in (None, bound):
        raise PermissionDeniedError(f"this code runs for tenant {bound!r} and cannot act for {tenant!r}", tenant=bound)
    init_ray(address or settings.ray_address, start_if_none=True)
    actor = (
        _remote_coordinator(max_pollers)
        .options(
            name=name or settings.coordinator_name,
            namespace=namespace or settings.namespace,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            max_task_retries=-1,
            max_concurrency=16,
            num_cpus=0,
            **_placement(settings, coordinator_settings),
        )
        .remote(name or settings.coordinator_name, coordinator_settings, namespace or settings.namespace)
    )
    coord = Coordinator(
        actor,
        tenant=tenant or bound or settings.tenant,
        call_timeout_s=call_timeout_s or settings.call_timeout_s,
        bound=bool(bound),
        namespace=namespace or settings.namespace,
    )
    if wait:
        coord.info()
    return coord


def _placement(settings: Settings, coordinator_settings: dict[str, Any]) -> dict[str, Any]:
    """Where the coordinator may run. Its journal in files on the head: the head only. Its journal in PostgreSQL
    (``RAY_RUNTIME_JOURNAL_URL``): any node, preferring ``RAY_RUNTIME_COORDINATOR_NODE`` (a soft affinity), else
    the nodes offering ``RAY_RUNTIME_COORDINATOR_RESOURCE``, else the head (a soft affinity): a lost node never
    leaves it waiting for that node to come back."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if not (coordinator_settings.get("journal_url") or settings.journal_url):
        return {"resources": {"node:__internal_head__": 0.001}}
    if settings.coordinator_resource:
        return {"resources": {settings.coordinator_resource: 0.001}}
    node = settings.coordinator_node or next(
        (n["NodeID"] for n in ray.nodes() if n.get("Alive") and "node:__internal_head__" in n["Resources"]), None
    )
    if node is None:
        return {}
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node, soft=True)}


async def aconnect(address: str | None = None, **options: Any) -> AsyncCoordinator:
    """:func:`connect` for async code: returns an :class:`AsyncCoordinator` once the coordinator answers."""
    coord = connect(address, wait=False, **options).aio
    await coord.info()
    return coord
