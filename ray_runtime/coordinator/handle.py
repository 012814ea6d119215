"""Driver API of the coordinator: :func:`connect`, :class:`Coordinator` (blocking), :class:`AsyncCoordinator`.

Every method is written once, as a builder that validates and encodes its arguments and says how to decode
the answer (a :class:`_Call`). The twins differ only in how they run a call: ``ray.get`` with a deadline, or
``await``. Ray's own failures are translated into :mod:`ray_runtime.errors` in one place.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import json
import os
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

import ray
from cachetools import LRUCache
from pydantic import BaseModel, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from ray_runtime._ids import new_id
from ray_runtime._ray import init_ray
from ray_runtime._twins import awaitable as _awaitable
from ray_runtime._twins import blocking as _blocking
from ray_runtime.config import BOUND_TENANT_ENV, Settings
from ray_runtime.coordinator.actor import POLL_GROUP, CoordinatorActor
from ray_runtime.coordinator.packing import pack, unpack
from ray_runtime.coordinator.state import NewTask
from ray_runtime.errors import (
    CoordinatorUnavailableError,
    InternalError,
    InvalidArgumentError,
    PermissionDeniedError,
    RayRuntimeError,
    TimeoutError,
    ValidationError,
)
from ray_runtime.models import (
    Lease,
    NamedResources,
    QueueStats,
    ResourcesUpdate,
    Run,
    Task,
    TaskError,
    TaskPage,
    TaskSpec,
    TaskStatus,
    WaitResult,
    WorkerInfo,
    named_resources_adapter,
)
from ray_runtime.models.resources import (
    RESOURCE_TYPES,
)

if TYPE_CHECKING:
    from ray_runtime.sessions.manager import AsyncSessions, Sessions
    from ray_runtime.sessions.registry import AsyncSessionRegistry, SessionRegistry

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

R = TypeVar("R")

_RESOURCE_CACHE_SIZE = 64


# ------------------------------------------------------------------------------------------- encoding


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=_json_default)  # one, not one per call


def _to_json(field_name: str, value: Any) -> str:
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(field_name, f"is not JSON-serialisable ({exc})") from None


def _from_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _decoded(wire: dict[str, Any]) -> dict[str, Any]:
    """A task as the actor sent it (a dict of the call's answer, changed in place), its JSON payloads parsed."""
    wire["input"] = json.loads(wire["input"])
    for name in ("metadata", "result", "error"):
        if wire[name] is not None:
            wire[name] = json.loads(wire[name])
    history = wire.get("history")
    wire["history"] = json.loads(history) if history else []
    return wire


def _task(wire: dict[str, Any]) -> Task:
    return Task.model_validate(_decoded(wire))


def _lease(wire: dict[str, Any]) -> Lease:
    _decoded(wire["task"])
    return Lease.model_validate(wire)


_LEASES: TypeAdapter[list[Lease]] = TypeAdapter(list[Lease])


def _leases(wires: list[dict[str, Any]]) -> list[Lease]:
    for wire in wires:
        _decoded(wire["task"])
    return _LEASES.validate_python(wires)


def _resources_update(wire: dict[str, Any]) -> ResourcesUpdate:
    return ResourcesUpdate(
        resources_id=wire["resources_id"],
        version=wire["version"],
        created_at=wire["created_at"],
        resources=named_resources_adapter.validate_json(wire["body"]),
    )


def _error_json(error: BaseException | TaskError | Mapping[str, Any] | str) -> str:
    if isinstance(error, BaseException):
        tb = "".join(traceback.format_exception(error))
        error = TaskError(type=type(error).__name__, message=str(error), traceback=tb)
    elif isinstance(error, str):
        error = TaskError(type="Error", message=error)
    elif not isinstance(error, TaskError):
        try:
            error = TaskError.model_validate(error)
        except PydanticValidationError as exc:
            raise InvalidArgumentError("error", f"is not a TaskError: {exc.errors()[0]['msg']}") from None
    return error.model_dump_json()


def _new_task(value: Any, options: Mapping[str, Any], position: str = "") -> NewTask:
    spec = value if isinstance(value, TaskSpec) else TaskSpec(input=value, **options)
    return NewTask(
        task_id=new_id("task"),
        input=_to_json(f"{position}input", spec.input),
        priority=spec.priority,
        delay_s=spec.delay_s,
        idempotency_key=spec.idempotency_key,
        max_attempts=spec.max_attempts,
        lease_s=spec.lease_s,
        resources_id=spec.resources_id,
        metadata=None if spec.metadata is None else _to_json(f"{position}metadata", spec.metadata),
    )


def _request_id() -> str:
    return uuid.uuid4().hex


# ------------------------------------------------------------------------------------------ the calls


@dataclass(frozen=True, slots=True)
class _Call(Generic[R]):
    """One actor call: method name, arguments, how to decode the answer, and how long it may sleep.

    A call that may sleep (long poll, wait) goes to the actor's poll concurrency group.
    """

    method: str | None  # None: answered locally (e.g. from a cache) without calling the actor
    args: tuple[Any, ...]
    parse: Callable[[Any], R]
    sleeps_s: float = 0.0

    def submit(self, actor: Any) -> Any:
        """Send the call; returns the ObjectRef of its packed answer."""
        method = getattr(actor, self.method)  # type: ignore[arg-type]
        if self.sleeps_s > 0:
            method = method.options(concurrency_group=POLL_GROUP)
        return method.remote(pack(self.args))


class _Handle:
    """What both twins hold: the actor, the tenant acted for, and the per-call deadline.

    A ``bound`` handle belongs to code ray_runtime started for one tenant: it refuses to act for another tenant
    and has no system store. A guard against mistakes, not a boundary (see the README's trust model).
    """

    def __init__(
        self, actor: Any, *, tenant: str = "default", call_timeout_s: float = 60.0, bound: bool = False
    ) -> None:
        self._actor = actor
        self.tenant = tenant
        self.call_timeout_s = call_timeout_s
        self.bound = bound
        self._node_id: str | None = None

    def _options(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "call_timeout_s": self.call_timeout_s, "bound": self.bound}

    @property
    def actor(self) -> Any:
        """The Ray actor handle behind this coordinator."""
        return self._actor

    def _node(self) -> str | None:
        if self._node_id is None:
            with contextlib.suppress(Exception):
                self._node_id = ray.get_runtime_context().get_node_id()
        return self._node_id

    def _deadline(self, call: _Call[Any]) -> float:
        return self.call_timeout_s + call.sleeps_s


@contextlib.contextmanager
def _ray_errors(call: _Call[Any], timeout_s: float) -> Iterator[None]:
    """Translate what Ray raises into ray_runtime errors; foreign types never reach the caller."""
    try:
        yield
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, RayRuntimeError):
            raise cause from None
        raise InternalError(f"coordinator.{call.method} failed: {type(cause).__name__}: {cause}") from exc
    except RayRuntimeError:
        raise
    except (ray.exceptions.GetTimeoutError, builtins.TimeoutError) as exc:
        raise TimeoutError(
            f"coordinator.{call.method} did not answer within {timeout_s:.0f}s; "
            "check `ray status` and the coordinator actor's logs",
            method=call.method,
        ) from exc
    except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
        raise CoordinatorUnavailableError(
            f"the coordinator actor is unavailable ({type(exc).__name__}); it restarts on its own "
            "unless it was killed with no_restart=True: retry, or run connect() again",
            method=call.method,
        ) from exc


class _Blocking(_Handle):
    def _run(self, call: _Call[R]) -> R:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                f"{type(self).__name__}.{call.method}() blocks, and an event loop is running in this thread; "
                "use the awaitable twin instead (coord.aio / AsyncCoordinator)"
            )
        if call.method is None:
            return call.parse(None)
        timeout = self._deadline(call)
        with _ray_errors(call, timeout):
            raw = ray.get(call.submit(self._actor), timeout=timeout)
        return call.parse(unpack(raw))


class _Awaitable(_Handle):
    async def _run(self, call: _Call[R]) -> R:
        if call.method is None:
            return call.parse(None)
        timeout = self._deadline(call)
        with _ray_errors(call, timeout):
            raw = await asyncio.wait_for(asyncio.wrap_future(call.submit(self._actor).future()), timeout)
        return call.parse(unpack(raw))


class _QueueCalls(_Handle):
    """Builders of the queue calls; their docstrings are the public methods' docstrings."""

    def _enqueue(
        self,
        queue: str,
        input: Any = None,
        *,
        priority: int = 0,
        delay_s: float = 0.0,
        idempotency_key: str | None = None,
        max_attempts: int = 3,
        lease_s: float | None = None,
        resources_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> _Call[str]:
        """Add a task to ``queue`` (created on first use) and return its id.

        Args:
            queue: 1-128 letters, digits, ``._:-``.
            input: Any JSON-serialisable value (pydantic models too), at most ``max_payload_bytes`` as JSON.
            priority: Higher is claimed first; FIFO within a priority.
            delay_s: Invisible to ``claim`` until this many seconds from now.
            idempotency_key: If the queue already holds a task with this key, nothing is enqueued and that
                task's id is returned.
            max_attempts: Claims before the task becomes a dead letter (lease expiry and retryable failures count).
            lease_s: Lease length for this task, overriding the claimer's.
            resources_id: Pin a resources version; otherwise each attempt gets the latest at claim.
            metadata: Free JSON kept with the task.

        Raises:
            InvalidArgumentError: A bad name, number or id (the message names the field).
            PayloadTooLargeError: ``input`` or ``metadata`` is over the cap.
            ResourcesNotFoundError: ``resources_id`` does not exist.

        Example:
            >>> task_id = coord.enqueue("emails", {"to": "a@example.com"}, priority=5)
        """
        options = dict(
            priority=priority,
            delay_s=delay_s,
            idempotency_key=idempotency_key,
            max_attempts=max_attempts,
            lease_s=lease_s,
            resources_id=resources_id,
            metadata=metadata,
        )
        task = _new_task(input, options)
        return _Call("enqueue", (self.tenant, queue, [task]), lambda ids: ids[0])

    def _enqueue_many(
        self,
        queue: str,
        items: Iterable[Any],
        *,
        priority: int = 0,
        delay_s: float = 0.0,
        max_attempts: int = 3,
        lease_s: float | None = None,
        resources_id: str | None = None,
    ) -> _Call[list[str]]:
        """Add many tasks in one call and one journal write; returns their ids in order.

        Each item is a task's input, or a :class:`TaskSpec` carrying its own options (the keyword options
        apply to plain inputs). The batch is validated as a whole: on any error nothing is enqueued.
        """
        options = dict(
            priority=priority, delay_s=delay_s, max_attempts=max_attempts, lease_s=lease_s, resources_id=resources_id
        )
        tasks = [_new_task(item, options, f"items[{i}].") for i, item in enumerate(items)]
        return _Call("enqueue", (self.tenant, queue, tasks), list)

    def _claim(
        self,
        queue: str,
        worker_id: str,
        *,
        max_tasks: int = 1,
        lease_s: float | None = None,
        wait_s: float = 0.0,
    ) -> _Call[list[Lease]]:
        """Lease up to ``max_tasks`` tasks; returns them (possibly none).

        Highest priority first, FIFO within a priority; delayed tasks stay invisible until due. With
        ``wait_s > 0`` the call long-polls: it returns as soon as a task is claimable, or empty after ``wait_s``.
        Each lease names the resources version its attempt must use.
        """
        args = (self.tenant, queue, worker_id, max_tasks, lease_s, wait_s, self._node(), _request_id())
        return _Call("claim", args, _leases, sleeps_s=wait_s)

    def _heartbeat(self, attempt_id: str, extend_s: float | None = None) -> _Call[Lease]:
        """Extend a live lease by ``extend_s`` (default: its own length) from now; returns the new lease.

        Raises:
            StaleAttemptError: The lease expired or another attempt holds the task: stop working on it.
            TaskFinishedError: The task was cancelled (or finished otherwise): stop working on it.
        """
        return _Call("heartbeat", (self.tenant, attempt_id, extend_s), _lease)

    def _complete(self, attempt_id: str, result: Any = None) -> _Call[Task]:
        """Hand in the result of a live attempt; the task succeeds for good.

        Raises:
            StaleAttemptError: The attempt is not the task's live attempt any more; the result is dropped.
            TaskFinishedError: The task already ended (e.g. completed twice, or cancelled).
            PayloadTooLargeError: ``result`` is over the cap.
        """
        return _Call("complete", (self.tenant, attempt_id, _to_json("result", result), _request_id()), _task)

    def _complete_many(self, results: Iterable[tuple[str, Any]]) -> _Call[list[RayRuntimeError | None]]:
        """Complete many ``(attempt_id, result)`` pairs in one call and one journal write.

        Returns one outcome per pair, in order: None where the result was accepted, else the error that pair got
        (returned, not raised, so one stale attempt does not hide the others' outcomes).
        """
        batch = _request_id()
        items = [
            (attempt_id, _to_json(f"results[{i}]", result), f"{batch}.{i}")
            for i, (attempt_id, result) in enumerate(results)
        ]
        return _Call("complete_many", (self.tenant, items), list)

    def _complete_many_and_claim(
        self,
        results: Iterable[tuple[str, Any]],
        *,
        queue: str,
        worker_id: str,
        max_tasks: int = 100,
        lease_s: float | None = None,
    ) -> _Call[tuple[list[RayRuntimeError | None], list[Lease]]]:
        """:meth:`complete_many`, then claim up to ``max_tasks`` more, in one round trip and one journal write:
        a batch worker's loop. Returns ``(outcomes, leases)``; the claim happens whatever the outcomes."""
        batch = _request_id()
        items = [
            (attempt_id, _to_json(f"results[{i}]", result), f"{batch}.{i}")
            for i, (attempt_id, result) in enumerate(results)
        ]
        args = (self.tenant, items, queue, worker_id, max_tasks, lease_s, self._node(), _request_id())

        def parse(raw: dict[str, Any]) -> tuple[list[RayRuntimeError | None], list[Lease]]:
            return raw["outcomes"], _leases(raw["leases"])

        return _Call("complete_many_and_claim", args, parse)

    def _complete_and_claim(
        self,
        attempt_id: str,
        result: Any = None,
        *,
        queue: str,
        worker_id: str,
        max_tasks: int = 1,
        lease_s: float | None = None,
        wait_s: float = 0.0,
    ) -> _Call[tuple[Task, list[Lease]]]:
        """Complete an attempt and claim the next task(s) in one round trip; returns ``(task, leases)``.

        Raises what :meth:`complete` raises; then nothing is claimed.
        """
        args = (
            self.tenant,
            attempt_id,
            _to_json("result", result),
            _request_id(),
            queue,
            worker_id,
            max_tasks,
            lease_s,
            wait_s,
            self._node(),
            _request_id(),
        )

        def parse(raw: dict[str, Any]) -> tuple[Task, list[Lease]]:
            return _task(raw["task"]), _leases(raw["leases"])

        return _Call("complete_and_claim", args, parse, sleeps_s=wait_s)

    def _fail(
        self,
        attempt_id: str,
        error: BaseException | TaskError | Mapping[str, Any] | str,
        *,
        retryable: bool = True,
    ) -> _Call[Task]:
        """Fail a live attempt: retried after exponential backoff while attempts remain, else a dead letter.

        With ``retryable=False`` the task fails at once, for good. An exception is recorded with its traceback.
        """
        args = (self.tenant, attempt_id, _error_json(error), bool(retryable), _request_id())
        return _Call("fail", args, _task)

    def _cancel(self, task_id: str) -> _Call[Task]:
        """Cancel a queued or leased task (the leased attempt becomes stale).

        Raises:
            TaskFinishedError: The task already ended; terminal states are final.
        """
        return _Call("cancel", (self.tenant, task_id), _task)

    def _retry(self, task_id: str) -> _Call[Task]:
        """Queue a dead, failed or cancelled task again, with a fresh budget of attempts."""
        return _Call("retry", (self.tenant, task_id), _task)

    def _purge(self, queue: str) -> _Call[int]:
        """Cancel every queued task of ``queue`` (leased ones run on); returns how many."""
        return _Call("purge", (self.tenant, queue), int)

    def _get(self, task_id: str) -> _Call[Task]:
        """One task, with its input, and its result or error once it has one."""
        return _Call("get", (self.tenant, task_id), _task)

    def _query(
        self,
        *,
        queue: str | None = None,
        status: TaskStatus | str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        resources_id: str | None = None,
    ) -> _Call[TaskPage]:
        """A page of tasks in creation order; pass the page's ``next_cursor`` to get the next one.
        ``resources_id``: only tasks pinned to that resources version, or whose latest attempt used it."""
        status_value = status.value if isinstance(status, TaskStatus) else status

        def parse(raw: dict[str, Any]) -> TaskPage:
            return TaskPage(items=[_task(w) for w in raw["items"]], next_cursor=raw["next_cursor"])

        return _Call("query", (self.tenant, queue, status_value, limit, cursor, resources_id), parse)

    def _wait(
        self,
        task_ids: Iterable[str],
        *,
        timeout_s: float = 60.0,
        return_when: Literal["all", "first"] = "all",
    ) -> _Call[WaitResult]:
        """Wait until all (or the first) of the tasks end, or ``timeout_s`` passes; returns done and pending.

        The coordinator wakes the call on each completion; nothing polls.
        """
        ids = [task_ids] if isinstance(task_ids, str) else list(task_ids)
        if return_when not in ("all", "first"):
            raise InvalidArgumentError("return_when", f"must be 'all' or 'first'; got {return_when!r}")

        def parse(raw: dict[str, Any]) -> WaitResult:
            return WaitResult(done=[_task(w) for w in raw["done"]], pending=raw["pending"])

        args = (self.tenant, ids, timeout_s, return_when == "first")
        return _Call("wait", args, parse, sleeps_s=max(0.0, timeout_s))

    def _stats(self, queue: str) -> _Call[QueueStats]:
        """Depth of ``queue`` per status, delayed count, oldest claimable age, and known workers."""
        return _Call("stats", (self.tenant, queue), QueueStats.model_validate)

    def _queues(self) -> _Call[list[str]]:
        """Names of this tenant's queues."""
        return _Call("queues", (self.tenant,), list)

    def _workers(self) -> _Call[list[WorkerInfo]]:
        """Workers seen by claim or heartbeat recently, with the attempts each holds."""
        return _Call("workers", (self.tenant,), lambda raw: [WorkerInfo.model_validate(w) for w in raw])

    def _info(self) -> _Call[dict[str, Any]]:
        """The coordinator's name, pid, journal, replay figures and task counts (also a liveness probe)."""
        return _Call("info", (), dict)


class _ResourceCalls(_Handle):
    """Builders of the resources calls, with a cache of versions (they are immutable)."""

    def __init__(self, actor: Any, **options: Any) -> None:
        super().__init__(actor, **options)
        self._cache: LRUCache[str, ResourcesUpdate] = LRUCache(maxsize=_RESOURCE_CACHE_SIZE)

    def _remember(self, wire: dict[str, Any]) -> ResourcesUpdate:
        update = self._cache.get(wire["resources_id"]) or _resources_update(wire)
        self._cache[update.resources_id] = update
        return update

    def _body(self, named: Mapping[str, Any]) -> str:
        try:
            return named_resources_adapter.dump_json(named_resources_adapter.validate_python(dict(named))).decode()
        except PydanticValidationError as exc:
            raise ValidationError.from_pydantic("resources", exc, tags=RESOURCE_TYPES) from None

    def _add(self, named: NamedResources | Mapping[str, Any]) -> _Call[ResourcesUpdate]:
        """Publish a new immutable version made of exactly these named resources; it becomes the latest.

        Example:
            >>> coord.resources.add({"llm": LLM(endpoint="http://vllm:8000/v1", model="qwen"),
            ...                      "prompt": PromptTemplate(template="Solve: {question}")})
        """
        return _Call("add_resources", (self.tenant, self._body(named), False), self._remember)

    def _update(self, named: NamedResources | Mapping[str, Any]) -> _Call[ResourcesUpdate]:
        """Publish a new version: the latest one with these names added or replaced (atomic on the actor)."""
        return _Call("add_resources", (self.tenant, self._body(named), True), self._remember)

    def _get(self, resources_id: str) -> _Call[ResourcesUpdate]:
        """One version by id (served from a local cache when seen before)."""
        cached = self._cache.get(resources_id)
        if cached is not None:
            return _Call(None, (), lambda _: cached)
        return _Call("get_resources", (self.tenant, resources_id), self._remember)

    def _latest(self) -> _Call[ResourcesUpdate]:
        """The newest version."""
        return _Call("latest_resources", (self.tenant,), self._remember)

    def _wait_newer(self, after_version: int = 0, *, timeout_s: float = 30.0) -> _Call[ResourcesUpdate | None]:
        """Wait until a version newer than ``after_version`` is published; it, or None after ``timeout_s``."""
        return _Call(
            "wait_resources",
            (self.tenant, after_version, timeout_s),
            lambda raw: None if raw is None else self._remember(raw),
            sleeps_s=max(timeout_s, 0.001),
        )

    def _history(self, limit: int = 100) -> _Call[list[ResourcesUpdate]]:
        """Kept versions, newest first."""
        return _Call("resources_history", (self.tenant, limit), lambda raw: [self._remember(w) for w in raw])


def _run(wire: dict[str, Any]) -> Run:
    error = wire["error"]
    return Run.model_validate(
        {
            **wire,
            "params": json.loads(wire["params"]),
            "metadata": _from_json(wire["metadata"]),
            "result": _from_json(wire["result"]),
            "error": None if error is None else json.loads(error),
            "progress": _progress(wire["progress"]),
            "events": [_progress(event) for event in wire["events"]],
        }
    )


def _progress(event: list[Any] | None) -> dict[str, Any] | None:
    if event is None:
        return None
    at, done, total, message = event
    return {"at": at, "done": done, "total": total, "message": message}


class _RunCalls(_Handle):
    """Builders of the run calls: job-mode plugin runs report here under their submission id."""

    def _start(
        self, run_id: str, *, plugin: str, action: str, params: Any = None, metadata: Mapping[str, Any] | None = None
    ) -> _Call[Run]:
        """Record that a run began (again: returns the existing record)."""
        args = (
            self.tenant,
            run_id,
            plugin,
            action,
            _to_json("params", params),
            None if metadata is None else _to_json("metadata", metadata),
        )
        return _Call("run_start", args, _run)

    def _progress(self, run_id: str, done: float, total: float | None = None, message: str = "") -> _Call[Run]:
        """Add a progress report to a running run."""
        return _Call("run_progress", (self.tenant, run_id, done, total, message), _run)

    def _finish(
        self,
        run_id: str,
        *,
        result: Any = None,
        error: BaseException | TaskError | Mapping[str, Any] | str | None = None,
    ) -> _Call[Run]:
        """End a run with its result, or with an error (then it failed)."""
        encoded_error = None if error is None else _error_json(error)
        encoded_result = None if error is not None else _to_json("result", result)
        return _Call("run_finish", (self.tenant, run_id, encoded_result, encoded_error), _run)

    def _get(self, run_id: str) -> _Call[Run]:
        """One run by id (a Ray submission id for jobs)."""
        return _Call("run_get", (self.tenant, run_id), _run)

    def _find(self, run_id: str) -> _Call[Run | None]:
        """One run by id, or None if none is recorded under it."""
        return _Call("run_find", (self.tenant, run_id), lambda raw: None if raw is None else _run(raw))

    def _list(self, *, plugin: str | None = None, limit: int = 100) -> _Call[list[Run]]:
        """The tenant's runs, newest first."""
        return _Call("runs", (self.tenant, plugin, limit), lambda raw: [_run(w) for w in raw])


class _KVCalls(_Handle):
    """Builders of the system key-value calls (JSON values; not tenant-scoped: for the façade's own records)."""

    def _put(self, namespace: str, key: str, value: Any, *, if_absent: bool = False) -> _Call[bool]:
        """Store a JSON value; with ``if_absent`` only when the key is free. Returns whether it was written."""
        return _Call("kv_put", (namespace, key, _to_json("value", value), if_absent), bool)

    def _get(self, namespace: str, key: str) -> _Call[Any]:
        """The value, or None."""
        return _Call("kv_get", (namespace, key), _from_json)

    def _delete(self, namespace: str, key: str) -> _Call[bool]:
        """Remove a key; returns whether it was there."""
        return _Call("kv_delete", (namespace, key), bool)

    def _items(self, namespace: str, prefix: str = "") -> _Call[dict[str, Any]]:
        """The namespace's keys starting with ``prefix`` and their values."""
        return _Call("kv_list", (namespace, prefix), lambda raw: {key: json.loads(value) for key, value in raw})


# ------------------------------------------------------------------------------------------- the twins


class SystemKV(_KVCalls, _Blocking):
    """The coordinator's system key-value store (blocking); ``coord.kv``."""

    put = _blocking(_KVCalls._put)
    get = _blocking(_KVCalls._get)
    delete = _blocking(_KVCalls._delete)
    items = _blocking(_KVCalls._items)


class AsyncSystemKV(_KVCalls, _Awaitable):
    """The coordinator's system key-value store (awaitable); ``coord.aio.kv``."""

    put = _awaitable(_KVCalls._put)
    get = _awaitable(_KVCalls._get)
    delete = _awaitable(_KVCalls._delete)
    items = _awaitable(_KVCalls._items)


class Runs(_RunCalls, _Blocking):
    """Plugin runs of one tenant (blocking); reach it as ``coord.runs``."""

    start = _blocking(_RunCalls._start)
    progress = _blocking(_RunCalls._progress)
    finish = _blocking(_RunCalls._finish)
    get = _blocking(_RunCalls._get)
    find = _blocking(_RunCalls._find)
    list = _blocking(_RunCalls._list)


class AsyncRuns(_RunCalls, _Awaitable):
    """Plugin runs of one tenant (awaitable); reach it as ``coord.aio.runs``."""

    start = _awaitable(_RunCalls._start)
    progress = _awaitable(_RunCalls._progress)
    finish = _awaitable(_RunCalls._finish)
    get = _awaitable(_RunCalls._get)
    find = _awaitable(_RunCalls._find)
    list = _awaitable(_RunCalls._list)


class Resources(_ResourceCalls, _Blocking):
    """Versioned named resources of one tenant (blocking); reach it as ``coord.resources``."""

    add = _blocking(_ResourceCalls._add)
    update = _blocking(_ResourceCalls._update)
    get = _blocking(_ResourceCalls._get)
    latest = _blocking(_ResourceCalls._latest)
    history = _blocking(_ResourceCalls._history)
    wait_newer = _blocking(_ResourceCalls._wait_newer)


class AsyncResources(_ResourceCalls, _Awaitable):
    """Versioned named resources of one tenant (awaitable); reach it as ``coord.aio.resources``."""

    add = _awaitable(_ResourceCalls._add)
    update = _awaitable(_ResourceCalls._update)
    get = _awaitable(_ResourceCalls._get)
    latest = _awaitable(_ResourceCalls._latest)
    history = _awaitable(_ResourceCalls._history)
    wait_newer = _awaitable(_ResourceCalls._wait_newer)


class _Root(_QueueCalls):
    """What both coordinator twins share: their parts (resources, runs, system store) and tenant switching."""

    _parts: ClassVar[dict[str, type[_Handle]]]
    _kv_class: ClassVar[type[_Handle]]

    def __init__(
        self, actor: Any, *, tenant: str = "default", call_timeout_s: float = 60.0, bound: bool = False
    ) -> None:
        super().__init__(actor, tenant=tenant, call_timeout_s=call_timeout_s, bound=bound)
        for name, part in self._parts.items():
            setattr(self, name, part(actor, **self._options()))

    @property
    def kv(self) -> Any:
        """The coordinator's system key-value store (the façade's records): not for code run for a tenant."""
        if self.bound:
            raise PermissionDeniedError(
                f"this code runs for tenant {self.tenant!r}: the coordinator's system store is not for it"
            )
        return self._kv_class(self._actor, **self._options())

    def for_tenant(self, tenant: str) -> Any:
        """The same coordinator, acting for another tenant (refused by a handle bound to its tenant)."""
        if self.bound and tenant != self.tenant:
            raise PermissionDeniedError(
                f"this code runs for tenant {self.tenant!r} and cannot act for {tenant!r}", tenant=self.tenant
            )
        return type(self)(self._actor, **{**self._options(), "tenant": tenant})


class Coordinator(_Root, _Blocking):
    """The coordinator of a Ray cluster, for one tenant: blocking calls. Get one with :func:`connect`.

    ``coord.aio`` is the awaitable twin on the same actor; ``coord.resources`` holds the resources calls.
    """

    _parts: ClassVar[dict[str, type[_Handle]]] = {"resources": Resources, "runs": Runs}
    _kv_class = SystemKV
    resources: Resources
    runs: Runs

    @functools.cached_property
    def aio(self) -> AsyncCoordinator:
        """The awaitable twin: same actor, same tenant."""
        return AsyncCoordinator(self._actor, **self._options())

    @functools.cached_property
    def session_registry(self) -> SessionRegistry:
        """The registry's bookkeeping calls (hosts and ``sessions`` use them)."""
        from ray_runtime.sessions.registry import SessionRegistry

        return SessionRegistry(self._actor, **self._options())

    @functools.cached_property
    def sessions(self) -> Sessions:
        """Agent sessions: create, invoke (or stream), pause, resume, fork, close; templates from
        ``RAY_RUNTIME_PLUGINS_DIR`` (default ``./plugins``)."""
        from ray_runtime.sessions.manager import Sessions, TemplateSource

        return Sessions(self.session_registry, TemplateSource(Settings().plugins_dir))

    enqueue = _blocking(_QueueCalls._enqueue)
    enqueue_many = _blocking(_QueueCalls._enqueue_many)
    claim = _blocking(_QueueCalls._claim)
    heartbeat = _blocking(_QueueCalls._heartbeat)
    complete = _blocking(_QueueCalls._complete)
    complete_many = _blocking(_QueueCalls._complete_many)
    complete_many_and_claim = _blocking(_QueueCalls._complete_many_and_claim)
    complete_and_claim = _blocking(_QueueCalls._complete_and_claim)
    fail = _blocking(_QueueCalls._fail)
    cancel = _blocking(_QueueCalls._cancel)
    retry = _blocking(_QueueCalls._retry)
    purge = _blocking(_QueueCalls._purge)
    get = _blocking(_QueueCalls._get)
    query = _blocking(_QueueCalls._query)
    wait = _blocking(_QueueCalls._wait)
    stats = _blocking(_QueueCalls._stats)
    queues = _blocking(_QueueCalls._queues)
    workers = _blocking(_QueueCalls._workers)
    info = _blocking(_QueueCalls._info)


class AsyncCoordinator(_Root, _Awaitable):
    """The coordinator of a Ray cluster, for one tenant: awaitable calls (``coord.aio``)."""

    _parts: ClassVar[dict[str, type[_Handle]]] = {"resources": AsyncResources, "runs": AsyncRuns}
    _kv_class = AsyncSystemKV
    resources: AsyncResources
    runs: AsyncRuns

    @functools.cached_property
    def session_registry(self) -> AsyncSessionRegistry:
        """The registry's bookkeeping calls (awaitable)."""
        from ray_runtime.sessions.registry import AsyncSessionRegistry

        return AsyncSessionRegistry(self._actor, **self._options())

    @functools.cached_property
    def sessions(self) -> AsyncSessions:
        """Agent sessions, awaitable (templates from ``RAY_RUNTIME_PLUGINS_DIR``, default ``./plugins``)."""
        from ray_runtime.sessions.manager import AsyncSessions, TemplateSource

        return AsyncSessions(self.session_registry, TemplateSource(Settings().plugins_dir))

    enqueue = _awaitable(_QueueCalls._enqueue)
    enqueue_many = _awaitable(_QueueCalls._enqueue_many)
    claim = _awaitable(_QueueCalls._claim)
    heartbeat = _awaitable(_QueueCalls._heartbeat)
    complete = _awaitable(_QueueCalls._complete)
    complete_many = _awaitable(_QueueCalls._complete_many)
    complete_many_and_claim = _awaitable(_QueueCalls._complete_many_and_claim)
    complete_and_claim = _awaitable(_QueueCalls._complete_and_claim)
    fail = _awaitable(_QueueCalls._fail)
    cancel = _awaitable(_QueueCalls._cancel)
    retry = _awaitable(_QueueCalls._retry)
    purge = _awaitable(_QueueCalls._purge)
    get = _awaitable(_QueueCalls._get)
    query = _awaitable(_QueueCalls._query)
    wait = _awaitable(_QueueCalls._wait)
    stats = _awaitable(_QueueCalls._stats)
    queues = _awaitable(_QueueCalls._queues)
    workers = _awaitable(_QueueCalls._workers)
    info = _awaitable(_QueueCalls._info)


def system_store(coord: Coordinator | AsyncCoordinator) -> AsyncSystemKV:
    """The system store of the coordinator behind ``coord``, even from a process bound to a tenant.

    For ray_runtime's own services running inside a tenant's process (e.g. the API key check in front of a Serve
    endpoint); the code of plugins must not use it.
    """
    return AsyncSystemKV(coord.actor, tenant=coord.tenant, call_timeout_s=coord.call_timeout_s)


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

    The coordinator is a named, detached actor (namespace ``ray_runtime``) pinned to the head node, restarted
    without limit, replaying its journal on each start. By default this call returns once it answers.

    Args:
        address: Ray address. By default: the cluster this process runs in, ``RAY_ADDRESS``, the local runtime
            ``ray-runtime up`` started, or the one cluster running on this machine (several: an error); with none
            at all, a private local Ray instance. Ignored when Ray is already initialised.
        tenant: Whose queues and resources to act on (default ``RAY_RUNTIME_TENANT`` or ``"default"``).
        name: Coordinator actor name, for running several side by side (default ``"coordinator"``).
        namespace: Ray namespace of the actor (default ``"ray_runtime"``).
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
            resources={"node:__internal_head__": 0.001},
        )
        .remote(name or settings.coordinator_name, coordinator_settings)
    )
    coord = Coordinator(
        actor,
        tenant=tenant or bound or settings.tenant,
        call_timeout_s=call_timeout_s or settings.call_timeout_s,
        bound=bool(bound),
    )
    if wait:
        coord.info()
    return coord


async def aconnect(address: str | None = None, **options: Any) -> AsyncCoordinator:
    """:func:`connect` for async code: returns an :class:`AsyncCoordinator` once the coordinator answers."""
    coord = connect(address, wait=False, **options).aio
    await coord.info()
    return coord
