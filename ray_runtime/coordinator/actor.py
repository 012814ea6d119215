"""The coordinator actor: a thin threaded shell around :class:`CoordinatorState` and its journal.

Each call applies itself to the state under one lock, then waits until the journal holds that change (and every
change before it) before it answers. Whoever reaches the journal first writes everything pending, so calls that
arrive together share one transaction (group commit). Long polls and ``wait`` sleep on conditions signalled by
the state, never in a polling loop; a background thread sweeps expired leases.

Why threads and not asyncio: on a small machine a Ray call into an async actor costs ~25% more than into a
threaded one, and the coordinator is all short calls. Long polls run in their own concurrency group so they
never starve short calls of threads.

Every method takes one ``bytes`` argument (the pickled arguments) and returns ``bytes`` (the pickled answer):
Ray moves one opaque buffer far faster than it serialises many arguments or nested results.

This class is internal: reach it through :func:`ray_runtime.connect`.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

from pydantic import ValidationError as PydanticValidationError

from ray_runtime.checks import check_number
from ray_runtime.config import NAMESPACE, CoordinatorSettings
from ray_runtime.coordinator.journal import Journal, MemoryJournal, SQLiteJournal
from ray_runtime.coordinator.messages import (
    AddResources,
    Claim,
    Complete,
    CompleteAndClaim,
    CompleteMany,
    CompleteManyAndClaim,
    Completion,
    Enqueue,
    Fail,
    Heartbeat,
    KvKey,
    KvList,
    KvPut,
    Query,
    QueueRef,
    ResourcesHistory,
    ResourcesRef,
    RolloutClaim,
    RolloutCreate,
    RolloutList,
    RolloutPatch,
    RolloutRef,
    RolloutsEnded,
    RunFinish,
    RunList,
    RunProgress,
    RunRef,
    RunStart,
    TaskRef,
    TenantRef,
    Wait,
    WaitResources,
)
from ray_runtime.coordinator.packing import pack as encode
from ray_runtime.coordinator.packing import read as decode
from ray_runtime.coordinator.postgres import FencedError
from ray_runtime.coordinator.session_methods import SessionMethods
from ray_runtime.coordinator.snapshots import SnapshotStore
from ray_runtime.coordinator.state import (
    CoordinatorState,
    Limits,
    ResourcesRecord,
    RunRecord,
    TaskRecord,
)
from ray_runtime.errors import CoordinatorUnavailableError, ResourcesNotFoundError, ValidationError
from ray_runtime.models.resources import RESOURCE_TYPES, named_resources_adapter

__all__ = ["CoordinatorActor", "pack", "read"]

logger = logging.getLogger(__name__)
T = TypeVar("T")
M = TypeVar("M")
_MAX_WAIT_S = 300.0
_SESSION_SWEEP_S = 1.0  # idle timeouts and lifetimes are checked this often


class CpuSplit:
    """Where this process's CPU goes, by part (seconds of thread CPU): decoding and encoding calls (``codec``),
    the state machine (``state``) and journal appends (``journal``). What the process used beyond their sum is
    Ray's call path and the rest; ``info()`` reports both, and the checkpointer process's own CPU."""

    def __init__(self) -> None:
        self.parts: dict[str, float] = dict.fromkeys(("codec", "state", "journal"), 0.0)

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        started = time.thread_time()
        try:
            yield
        finally:
            self.parts[name] += time.thread_time() - started


CPU = CpuSplit()


def pack(value: Any) -> bytes:
    """An answer for the trip back through Ray (its CPU counted as the codec's)."""
    with CPU.part("codec"):
        return encode(value)


def read(payload: bytes, kind: type[M]) -> M:
    """A call's message, checked to be ``kind`` (its CPU counted as the codec's)."""
    with CPU.part("codec"):
        return decode(payload, kind)


def _render_leases(records: list[TaskRecord]) -> list[dict[str, Any]]:
    return [r.lease_wire() for r in records]


def _validate_resources(body: str) -> dict[str, Any]:
    try:
        return named_resources_adapter.validate_json(body)
    except PydanticValidationError as exc:
        raise ValidationError.from_pydantic("resources", exc, tags=RESOURCE_TYPES) from None


class _Waiter:
    """One ``wait`` call: done when all (or the first) of its pending tasks finish."""

    __slots__ = ("done", "first", "pending", "wakeup")

    def __init__(self, pending: set[str], first: bool, lock: threading.Lock) -> None:
        self.pending = pending
        self.first = first
        self.done = False
        self.wakeup = threading.Condition(lock)

    def finished(self, task_id: str) -> None:
        self.pending.discard(task_id)
        if self.first or not self.pending:
            self.done = True
            self.wakeup.notify()


class _Wakeups:
    """Who sleeps on what: claims until a queue has tasks, ``wait`` calls until tasks finish. The state calls
    :meth:`queue_ready` and :meth:`finished` under the actor's lock, once per task: a plain object, so those calls
    skip the wrapper Ray puts around every method of an actor class."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._ready: dict[tuple[str, str], threading.Condition] = {}
        self._task_waiters: dict[str, list[_Waiter]] = {}

    def until_ready(self, tenant: str, queue: str, timeout_s: float) -> None:
        """Sleep (releasing the lock) until the queue may have claimable tasks, or ``timeout_s`` passes."""
        key = (tenant, queue)
        condition = self._ready.get(key)
        if condition is None:
            condition = self._ready[key] = threading.Condition(self._lock)
        condition.wait(timeout_s)

    def queue_ready(self, tenant: str, queue: str) -> None:
        condition = self._ready.get((tenant, queue))
        if condition is not None:
            condition.notify_all()

    def finished(self, record: TaskRecord) -> None:
        for waiter in self._task_waiters.pop(record.id, ()):
            waiter.finished(record.id)

    def until_finished(self, pending: set[str], first: bool, timeout_s: float) -> None:
        """Sleep (releasing the lock) until the pending tasks finish (all, or the first), or ``timeout_s`` passes."""
        waiter = _Waiter(pending, first, self._lock)
        for task_id in pending:
            self._task_waiters.setdefault(task_id, []).append(waiter)
        try:
            waiter.wakeup.wait_for(lambda: waiter.done, timeout_s)
        finally:
            for task_id in waiter.pending:
                waiters = self._task_waiters.get(task_id)
                if waiters is not None and waiter in waiters:
                    waiters.remove(waiter)
                    if not waiters:
                        del self._task_waiters[task_id]


class CoordinatorActor(SessionMethods):
    """Task queues, versioned resources, plugin runs and agent sessions, durable across restarts of this actor."""

    def __init__(self, name: str, overrides: dict[str, Any] | None = None, namespace: str = NAMESPACE) -> None:
        started = time.perf_counter()
        self._began_at = time.time()
        self._first_call_at: float | None = None
        self.name = name
        self.namespace = namespace  # its Ray namespace, where its session hosts live (not its creator's)
        self.settings = CoordinatorSettings(**(overrides or {}))
        self._lock = threading.Lock()  # guards the state and everything below
        self._journal_lock = threading.Lock()  # one journal writer at a time
        self._changed = 0  # number of change batches made so far
        self._written = 0  # number of change batches the journal holds
        self._wakeups = _Wakeups(self._lock)
        self._resources_published = threading.Condition(self._lock)
        self._journal = self._open_journal()
        self._events: Any = None  # the rollout event store, opened when the retention first removes a rollout
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
                runs_retention=self.settings.runs_retention,
                session_retention_s=self.settings.session_retention_s,
                rollout_retention_s=self.settings.rollout_retention_s,
            ),
            on_ready=self._wakeups.queue_ready,
            on_finished=self._wakeups.finished,
        )
        self._snapshots = self._open_snapshots()
        self._replayed = self._replay()
        self._replay_s = time.perf_counter() - started
        self._checkpointer = self._start_checkpointer()
        self._started_at = time.time()
        threading.Thread(target=self._sweep_forever, name="coordinator-sweeper", daemon=True).start()
        self._start_session_watch()
        logger.info("coordinator %s replayed %d tasks in %.2fs", name, self._replayed, self._replay_s)

    def _replay(self) -> int:
        """Load the journal into the state; returns how many tasks it held."""
        gc.disable()  # a million new objects would trigger ever longer collections that find nothing
        try:
            replay = self._journal.load()
            self._state.load(*replay)
        finally:
            gc.freeze()  # the replayed state lives as long as we do: keep it out of future collections
            gc.enable()
        return len(replay.tasks)

    def _start_checkpointer(self) -> Any:
        """The journal's checkpointer process (started once the replay is done), or None for a memory journal."""
        from ray_runtime.coordinator.checkpointer import start

        return start(self._journal, self.settings.checkpoint_interval_s, self.settings.journal_synchronous)

    def _checkpoint_cpu(self) -> float:
        """CPU seconds the checkpointer process has used."""
        if self._checkpointer is None:
            return 0.0
        try:
            import psutil

            times = psutil.Process(self._checkpointer.pid).cpu_times()
        except Exception:
            return 0.0
        return times.user + times.system

    def _in_memory(self) -> bool:
        return str(self.settings.storage) == ":memory:"

    def _open_journal(self) -> Journal:
        if self.settings.journal_url:
            from ray_runtime.coordinator.postgres import PostgresJournal

            return PostgresJournal(self.settings.journal_url, self.name, synchronous=self.settings.journal_synchronous)
        if self._in_memory():
            return MemoryJournal()
        path = self.settings.journal_path(self.name)
        return SQLiteJournal(path, synchronous=self.settings.journal_synchronous)

    def _forget_events(self, rollouts: list[tuple[str, str]]) -> None:
        """Drop the events of rollouts the retention removed (the façade writes them; nobody can read them now)."""
        if not rollouts or self._in_memory():
            return
        if self._events is None:
            from ray_runtime.coordinator.rollout_events import open_event_store

            self._events = open_event_store(
                journal_url=self.settings.journal_url, coordinator=self.name, storage=self.settings.storage
            )
        for tenant, task_id in rollouts:
            self._events.delete(tenant, task_id)

    def _open_snapshots(self) -> Any:
        """Where session snapshots go: the journal's database, else files beside it, else memory."""
        if self.settings.journal_url:
            from ray_runtime.coordinator.postgres import PostgresSnapshotStore

            return PostgresSnapshotStore(self.settings.journal_url, self.name)
        return SnapshotStore(None if self._in_memory() else self.settings.snapshot_dir(self.name))

    # ----------------------------------------------------------------------------------- durability

    def _mark(self) -> int:
        """Count the changes made so far as one batch (call with the lock held); returns the batch to await."""
        if self._state.has_changes():
            self._changed += 1
        return self._changed

    def _make_durable(self, batch: int) -> None:
        """Return once the journal holds ``batch`` and all before it; the first writer writes for everyone."""
        if self._written >= batch:
            return
        with self._journal_lock, CPU.part("journal"):
            if self._written >= batch:
                return
            with self._lock:
                changes = self._state.take_changes()
                upto = self._changed
            try:
                self._journal.write(changes)
            except FencedError as exc:
                self._stop_fenced(str(exc))
            except BaseException:
                # The state is ahead of the journal now; only a replay makes them agree again. Ray restarts us.
                logger.critical("journal write failed; exiting so the coordinator restarts and replays", exc_info=True)
                os._exit(70)
            self._written = upto

    def _stop_fenced(self, reason: str) -> NoReturn:
        """A newer coordinator owns the journal: answer nothing more, and exit for good (Ray must not restart this
        one: a restart would take the journal back from its successor)."""
        import ray

        logger.critical("%s", reason)
        with contextlib.suppress(BaseException):
            ray.actor.exit_actor()  # an intended exit, so not restarted; the calls in flight end first
        raise CoordinatorUnavailableError(f"{reason}; connect again to reach the coordinator that replaced it")

    @contextlib.contextmanager
    def _durably(self) -> Iterator[None]:
        """The one way to change the state: under the lock, and out only once the journal holds the change.

        Also when the body raises (a refused call may have changed something on the way, e.g. expired a lease),
        and also for reads: what a read reports is durable before it is reported.
        """
        batch = 0
        try:
            with self._lock:
                try:
                    yield
                finally:
                    batch = self._mark()
        finally:
            self._make_durable(batch)

    def _apply(self, render: Callable[[T], Any], fn: Callable[..., T], *args: Any, **kwargs: Any) -> Any:
        """Run one state call durably and render its answer."""
        with self._durably(), CPU.part("state"):
            return render(fn(*args, **kwargs))

    def _call(self, render: Callable[[T], Any], fn: Callable[..., T], *args: Any, **kwargs: Any) -> bytes:
        """:meth:`_apply`, answered as bytes for the trip back through Ray."""
        answer = pack(self._apply(render, fn, *args, **kwargs))
        if self._first_call_at is None:
            self._first_call_at = time.time()
        return answer

    def _sweep_forever(self) -> None:
        interval = self.settings.sweep_interval_s
        last_sessions_sweep = time.monotonic()
        while True:
            with self._durably():
                try:
                    self._state.sweep()
                except Exception:
                    logger.exception("coordinator sweep failed")
                deadline = self._state.next_deadline()
            if time.monotonic() - last_sessions_sweep >= _SESSION_SWEEP_S:
                try:
                    self._sweep_sessions()
                    with self._durably():
                        swept = self._state.rollouts.sweep()
                    self._forget_events(swept)
                except Exception:
                    logger.exception("session sweep failed")
                gc.freeze()  # what lived a second is state: keep full collections (77 ms at 50k tasks) off it
                last_sessions_sweep = time.monotonic()
            time.sleep(interval if deadline is None else min(interval, max(0.001, deadline - time.time())))

    # ------------------------------------------------------------------------------------- producers

    def enqueue(self, payload: bytes) -> bytes:
        message = read(payload, Enqueue)
        return self._call(list, self._state.tasks.enqueue, message.tenant, message.queue, message.tasks)

    # --------------------------------------------------------------------------------------- workers

    def claim(self, payload: bytes) -> bytes:
        """Lease tasks; with ``wait_s`` sleep until some are claimable (runs in the poll group then)."""
        message = read(payload, Claim)
        check_number("wait_s", message.wait_s, low=0, high=_MAX_WAIT_S)
        return pack(self._claim(*message))

    def _claim(
        self,
        tenant: str,
        queue: str,
        worker_id: str,
        max_tasks: int,
        lease_s: float | None,
        wait_s: float,
        node_id: str | None,
        request_id: str | None,
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + wait_s
        claim = dict(max_tasks=max_tasks, lease_s=lease_s, node_id=node_id, request_id=request_id)
        with self._durably():
            while True:
                with CPU.part("state"):
                    records = self._state.tasks.claim(tenant, queue, worker_id, **claim)
                    leases = _render_leases(records) if records else []
                remaining = deadline - time.monotonic()
                if records or remaining <= 0:
                    return leases
                self._wakeups.until_ready(tenant, queue, remaining)

    def heartbeat(self, payload: bytes) -> bytes:
        message = read(payload, Heartbeat)
        return self._call(TaskRecord.lease_wire, self._state.tasks.heartbeat, *message)

    def complete(self, payload: bytes) -> bytes:
        m = read(payload, Complete)
        return self._call(
            TaskRecord.wire, self._state.tasks.complete, m.tenant, m.attempt_id, m.result, request_id=m.request_id
        )

    def complete_many(self, payload: bytes) -> bytes:
        """Complete several attempts in one call; one outcome per item: None if accepted, else the error."""
        message = read(payload, CompleteMany)
        return self._call(list, self._complete_each, message.tenant, message.items)

    def _complete_each(self, tenant: str, items: list[Completion]) -> list[Exception | None]:
        outcomes: list[Exception | None] = []
        complete = self._state.tasks.complete
        for attempt_id, result, request_id in items:
            try:
                complete(tenant, attempt_id, result, request_id=request_id)
                outcomes.append(None)
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    def complete_many_and_claim(self, payload: bytes) -> bytes:
        """Complete several attempts, then claim more, in one call and one journal write (a batch worker's loop)."""
        m = read(payload, CompleteManyAndClaim)
        self._state.tasks.check_claim(m.tenant, m.queue, m.worker_id, m.max_tasks, m.lease_s, m.claim_id)
        claim = dict(max_tasks=m.max_tasks, lease_s=m.lease_s, node_id=m.node_id, request_id=m.claim_id)

        def complete_then_claim() -> dict[str, Any]:
            outcomes = self._complete_each(m.tenant, m.items)
            leases = _render_leases(self._state.tasks.claim(m.tenant, m.queue, m.worker_id, **claim))
            return {"outcomes": outcomes, "leases": leases}

        return self._call(dict, complete_then_claim)

    def complete_and_claim(self, payload: bytes) -> bytes:
        """Hand in a result and take the next task(s) in one round trip and one journal write."""
        m = read(payload, CompleteAndClaim)
        check_number("wait_s", m.wait_s, low=0, high=_MAX_WAIT_S)
        self._state.tasks.check_claim(m.tenant, m.queue, m.worker_id, m.max_tasks, m.lease_s, m.claim_id)
        claim = dict(max_tasks=m.max_tasks, lease_s=m.lease_s, node_id=m.node_id, request_id=m.claim_id)

        def complete_then_claim() -> dict[str, Any]:
            task = self._state.tasks.complete(m.tenant, m.attempt_id, m.result, request_id=m.request_id).wire()
            leases = _render_leases(self._state.tasks.claim(m.tenant, m.queue, m.worker_id, **claim))
            return {"task": task, "leases": leases}

        answer = self._apply(dict, complete_then_claim)
        if not answer["leases"] and m.wait_s > 0:
            answer["leases"] = self._claim(
                m.tenant, m.queue, m.worker_id, m.max_tasks, m.lease_s, m.wait_s, m.node_id, m.claim_id
            )
        return pack(answer)

    def fail(self, payload: bytes) -> bytes:
        m = read(payload, Fail)
        return self._call(
            TaskRecord.wire,
            self._state.tasks.fail,
            m.tenant,
            m.attempt_id,
            m.error,
            retryable=m.retryable,
            request_id=m.request_id,
        )

    # ------------------------------------------------------------------------------------- operators

    def cancel(self, payload: bytes) -> bytes:
        return self._call(TaskRecord.wire, self._state.tasks.cancel, *read(payload, TaskRef))

    def retry(self, payload: bytes) -> bytes:
        return self._call(TaskRecord.wire, self._state.tasks.retry, *read(payload, TaskRef))

    def purge(self, payload: bytes) -> bytes:
        return self._call(int, self._state.tasks.purge, *read(payload, QueueRef))

    # ----------------------------------------------------------------------------------------- reads

    def get(self, payload: bytes) -> bytes:
        return self._call(TaskRecord.wire, self._state.tasks.get, *read(payload, TaskRef))

    def query(self, payload: bytes) -> bytes:
        m = read(payload, Query)

        def render(page: tuple[list[TaskRecord], str | None]) -> dict[str, Any]:
            return {"items": [r.wire() for r in page[0]], "next_cursor": page[1]}

        filters = dict(queue=m.queue, status=m.status, limit=m.limit, cursor=m.cursor, resources_id=m.resources_id)
        return self._call(render, self._state.tasks.query, m.tenant, **filters)

    def stats(self, payload: bytes) -> bytes:
        return self._call(dict, self._state.tasks.stats, *read(payload, QueueRef))

    def queues(self, payload: bytes) -> bytes:
        return self._call(list, self._state.tasks.queues, *read(payload, TenantRef))

    def workers(self, payload: bytes) -> bytes:
        return self._call(list, self._state.tasks.workers, *read(payload, TenantRef))

    def wait(self, payload: bytes) -> bytes:
        """Sleep until the tasks finish (all, or the first) or the timeout passes; then report (poll group)."""
        tenant, task_ids, timeout_s, first = read(payload, Wait)
        check_number("timeout_s", timeout_s, low=0, high=_MAX_WAIT_S)
        with self._durably():  # what we report finished is durable before we say so
            records = [self._state.tasks.get(tenant, task_id) for task_id in task_ids]
            pending = {r.id for r in records if not r.status.terminal}
            if pending and timeout_s > 0 and not (first and len(pending) < len(records)):
                self._wakeups.until_finished(pending, first, timeout_s)
            return pack(
                {
                    "done": [r.wire() for r in records if r.status.terminal],
                    "pending": [r.id for r in records if not r.status.terminal],
                }
            )

    # ------------------------------------------------------------------------------------- resources

    def add_resources(self, payload: bytes) -> bytes:
        """Validate and publish a version; with ``merge`` it is the latest version updated with ``body``."""
        tenant, body, merge, replace_prefix = read(payload, AddResources)
        named = _validate_resources(body)

        def publish() -> ResourcesRecord:
            merged = named
            if merge:
                with contextlib.suppress(ResourcesNotFoundError):
                    latest = _validate_resources(self._state.resources.latest(tenant).body)
                    if replace_prefix:
                        latest = {k: v for k, v in latest.items() if not k.startswith(replace_prefix)}
                    merged = {**latest, **named}
            record = self._state.resources.add(tenant, named_resources_adapter.dump_json(merged).decode())
            self._resources_published.notify_all()
            return record

        return self._call(ResourcesRecord.wire, publish)

    def wait_resources(self, payload: bytes) -> bytes:
        """Sleep until the tenant has a resources version newer than ``after_version`` (poll group)."""
        tenant, after_version, timeout_s = read(payload, WaitResources)
        check_number("timeout_s", timeout_s, low=0, high=_MAX_WAIT_S)
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                try:
                    latest = self._state.resources.latest(tenant)
                    if latest.version > after_version:
                        return pack(latest.wire())
                except ResourcesNotFoundError:
                    pass
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return pack(None)
                self._resources_published.wait(remaining)

    def get_resources(self, payload: bytes) -> bytes:
        return self._call(ResourcesRecord.wire, self._state.resources.get, *read(payload, ResourcesRef))

    def latest_resources(self, payload: bytes) -> bytes:
        return self._call(ResourcesRecord.wire, self._state.resources.latest, *read(payload, TenantRef))

    def resources_history(self, payload: bytes) -> bytes:
        message = read(payload, ResourcesHistory)
        return self._call(lambda records: [r.wire() for r in records], self._state.resources.history, *message)

    # ------------------------------------------------------------------------------------------ runs

    def run_start(self, payload: bytes) -> bytes:
        return self._call(RunRecord.wire, self._state.runs.start, *read(payload, RunStart))

    def run_progress(self, payload: bytes) -> bytes:
        return self._call(RunRecord.wire, self._state.runs.progress, *read(payload, RunProgress))

    def run_finish(self, payload: bytes) -> bytes:
        tenant, run_id, result, error = read(payload, RunFinish)
        return self._call(RunRecord.wire, self._state.runs.finish, tenant, run_id, result=result, error=error)

    def run_get(self, payload: bytes) -> bytes:
        return self._call(RunRecord.wire, self._state.runs.get, *read(payload, RunRef))

    def run_find(self, payload: bytes) -> bytes:
        """``run_get`` that answers None for an unknown run (an exception through Ray costs milliseconds)."""
        return self._call(
            lambda record: None if record is None else record.wire(), self._state.runs.find, *read(payload, RunRef)
        )

    def runs(self, payload: bytes) -> bytes:
        tenant, plugin, limit = read(payload, RunList)
        return self._call(
            lambda records: [r.wire() for r in records], self._state.runs.list, tenant, plugin=plugin, limit=limit
        )

    # -------------------------------------------------------------------------------------- rollouts

    def rollout_create(self, payload: bytes) -> bytes:
        return self._call(list, self._state.rollouts.create, *read(payload, RolloutCreate))

    def rollout_get(self, payload: bytes) -> bytes:
        return self._call(dict, self._state.rollouts.get, *read(payload, RolloutRef))

    def rollout_find(self, payload: bytes) -> bytes:
        return self._call(lambda found: found, self._state.rollouts.find, *read(payload, RolloutRef))

    def rollout_list(self, payload: bytes) -> bytes:
        return self._call(list, self._state.rollouts.list, *read(payload, RolloutList))

    def rollouts_ended(self, payload: bytes) -> bytes:
        return self._call(dict, self._state.rollouts.ended, *read(payload, RolloutsEnded))

    def rollout_patch(self, payload: bytes) -> bytes:
        return self._call(dict, self._state.rollouts.patch, *read(payload, RolloutPatch))

    def rollout_delete(self, payload: bytes) -> bytes:
        return self._call(lambda task_id: task_id, self._state.rollouts.delete, *read(payload, RolloutRef))

    def rollout_claim(self, payload: bytes) -> bytes:
        return self._call(list, self._state.rollouts.claim, *read(payload, RolloutClaim))

    # -------------------------------------------------------------------------------------------- kv

    def kv_put(self, payload: bytes) -> bytes:
        namespace, key, value, if_absent = read(payload, KvPut)
        return self._call(bool, self._state.kv.put, namespace, key, value, if_absent=if_absent)

    def kv_get(self, payload: bytes) -> bytes:
        return self._call(lambda value: value, self._state.kv.get, *read(payload, KvKey))

    def kv_delete(self, payload: bytes) -> bytes:
        return self._call(bool, self._state.kv.delete, *read(payload, KvKey))

    def kv_list(self, payload: bytes) -> bytes:
        return self._call(list, self._state.kv.list, *read(payload, KvList))

    # ---------------------------------------------------------------------------------------- health

    def _start_figures(self) -> dict[str, float | None]:
        """How this start went, in seconds from the process's start: until this class was being built (Ray's
        worker and the imports), until it served (replay and the checkpointer included), until its first call
        was answered."""
        process = _process_started_at()
        return {
            "process_started_at": process,
            "imports_s": round(self._began_at - process, 3),
            "replay_s": round(self._replay_s, 3),
            "ready_s": round(self._started_at - process, 3),
            "first_call_s": None if self._first_call_at is None else round(self._first_call_at - process, 3),
        }

    def info(self, payload: bytes = b"") -> bytes:
        """Who and where this coordinator is, and how its last start went."""
        with self._lock:
            counts = self._state.tasks.counts()
        if self._first_call_at is None:
            self._first_call_at = time.time()
        return pack(
            {
                "name": self.name,
                "pid": os.getpid(),
                "node_id": _node_id(),
                "started_at": self._started_at,
                "replayed_tasks": self._replayed,
                "replay_s": self._replay_s,
                "start": self._start_figures(),
                "journal": getattr(self._journal, "location", ":memory:"),
                "durable": self._journal.capabilities["durable"],
                "journal_backlog_bytes": getattr(self._journal, "backlog", 0),
                "counts": counts,
                "cpu": {**CPU.parts, "process": sum(os.times()[:2]), "checkpointer": self._checkpoint_cpu()},
            }
        )


def _process_started_at() -> float:
    """When this process started (the kernel's word: Ray's worker start-up and imports count too)."""
    import psutil

    return psutil.Process().create_time()


def _node_id() -> str | None:
    """The Ray node this runs on (None outside Ray, as in unit tests of the actor class)."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
