"""The queue calls of the coordinator's driver handle: enqueue, claim, heartbeat, complete (one, many, and with the
next claim), fail, cancel, retry, purge, get, query, wait, stats, queues, workers, info.

Each builder validates and encodes its arguments into the call's named message (``messages``) and says how to
decode the answer; its docstring is the public method's. Tasks and leases come back with their JSON payloads as
text, parsed here in place.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Unpack

from pydantic import TypeAdapter

from ray_runtime._ids import new_id
from ray_runtime.coordinator.calls import Call, Handle, error_json, new_request_id, to_json
from ray_runtime.coordinator.messages import (
    Claim,
    Complete,
    CompleteAndClaim,
    CompleteMany,
    CompleteManyAndClaim,
    Completion,
    Enqueue,
    Fail,
    Heartbeat,
    Info,
    NewTask,
    Query,
    QueueRef,
    TaskRef,
    TenantRef,
    Wait,
)
from ray_runtime.errors import InvalidArgumentError, RayRuntimeError
from ray_runtime.models import (
    Lease,
    QueueStats,
    Task,
    TaskError,
    TaskPage,
    TaskSpec,
    TaskStatus,
    WaitResult,
    WorkerInfo,
)
from ray_runtime.models.tasks import TaskOptions, task_specs

__all__ = ["QueueCalls"]


# ------------------------------------------------------------------------------------------- codecs


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


def _new_task(spec: TaskSpec, position: str = "") -> NewTask:
    """One task as it crosses to the actor: a new id, and its payloads as JSON text."""
    return NewTask(
        task_id=new_id("task"),
        input=to_json(f"{position}input", spec.input),
        priority=spec.priority,
        delay_s=spec.delay_s,
        idempotency_key=spec.idempotency_key,
        max_attempts=spec.max_attempts,
        lease_s=spec.lease_s,
        resources_id=spec.resources_id,
        metadata=None if spec.metadata is None else to_json(f"{position}metadata", spec.metadata),
    )


# ------------------------------------------------------------------------------------------- builders


class QueueCalls(Handle):
    """Builders of the queue calls; their docstrings are the public methods' docstrings."""

    def _enqueue(self, queue: str, input: Any = None, **options: Unpack[TaskOptions]) -> Call[str]:
        """Add a task to ``queue`` (created on first use) and return its id.

        Args:
            queue: 1-128 letters, digits, ``._:-``.
            input: Any JSON-serialisable value (pydantic models too), at most ``max_payload_bytes`` as JSON.
            **options: :class:`TaskSpec`'s: ``priority`` (higher first, FIFO within one), ``delay_s`` (invisible to
                ``claim`` until then), ``idempotency_key`` (a task with this key in the queue is returned
                instead), ``max_attempts`` (claims before a dead letter; expiries and retryable failures count),
                ``lease_s`` (over the claimer's), ``resources_id`` (pin a version; else each attempt gets the
                latest at claim), ``metadata`` (free JSON).

        Raises:
            InvalidArgumentError: A bad name, number or id (the message names the field).
            ValidationError: An unknown option, or one of the wrong type.
            PayloadTooLargeError: ``input`` or ``metadata`` is over the cap.
            ResourcesNotFoundError: ``resources_id`` does not exist.

        Example:
            >>> task_id = coord.enqueue("emails", {"to": "a@example.com"}, priority=5)
        """
        [spec] = task_specs([input], options, field="options")
        return Call("enqueue", Enqueue(self.tenant, queue, [_new_task(spec)]), lambda ids: ids[0])

    def _enqueue_many(self, queue: str, items: Iterable[Any], **options: Unpack[TaskOptions]) -> Call[list[str]]:
        """Add many tasks in one call and one journal write; returns their ids in order.

        Each item is a task's input, or a :class:`TaskSpec` carrying its own options (the keyword options, as
        :meth:`enqueue`'s but an ``idempotency_key``, apply to plain inputs). The batch is validated as a whole:
        on any error nothing is enqueued.
        """
        if options.get("idempotency_key") is not None:
            raise InvalidArgumentError("idempotency_key", "is per task: give each item a TaskSpec with its own")
        specs = task_specs(items, options)
        tasks = [_new_task(spec, f"items[{i}].") for i, spec in enumerate(specs)]
        return Call("enqueue", Enqueue(self.tenant, queue, tasks), list)

    def _claim(
        self,
        queue: str,
        worker_id: str,
        *,
        max_tasks: int = 1,
        lease_s: float | None = None,
        wait_s: float = 0.0,
    ) -> Call[list[Lease]]:
        """Lease up to ``max_tasks`` tasks; returns them (possibly none).

        Highest priority first, FIFO within a priority; delayed tasks stay invisible until due. With
        ``wait_s > 0`` the call long-polls: it returns as soon as a task is claimable, or empty after ``wait_s``.
        Each lease names the resources version its attempt must use.
        """
        message = Claim(self.tenant, queue, worker_id, max_tasks, lease_s, wait_s, self._node(), new_request_id())
        return Call("claim", message, _leases, sleeps_s=wait_s)

    def _heartbeat(self, attempt_id: str, extend_s: float | None = None) -> Call[Lease]:
        """Extend a live lease by ``extend_s`` (default: its own length) from now; returns the new lease.

        Raises:
            StaleAttemptError: The lease expired or another attempt holds the task: stop working on it.
            TaskFinishedError: The task was cancelled (or finished otherwise): stop working on it.
        """
        return Call("heartbeat", Heartbeat(self.tenant, attempt_id, extend_s), _lease)

    def _complete(self, attempt_id: str, result: Any = None) -> Call[Task]:
        """Hand in the result of a live attempt; the task succeeds for good.

        Raises:
            StaleAttemptError: The attempt is not the task's live attempt any more; the result is dropped.
            TaskFinishedError: The task already ended (e.g. completed twice, or cancelled).
            PayloadTooLargeError: ``result`` is over the cap.
        """
        return Call("complete", Complete(self.tenant, attempt_id, to_json("result", result), new_request_id()), _task)

    def _complete_many(self, results: Iterable[tuple[str, Any]]) -> Call[list[RayRuntimeError | None]]:
        """Complete many ``(attempt_id, result)`` pairs in one call and one journal write.

        Returns one outcome per pair, in order: None where the result was accepted, else the error that pair got
        (returned, not raised, so one stale attempt does not hide the others' outcomes).
        """
        return Call("complete_many", CompleteMany(self.tenant, _completions(results)), list)

    def _complete_many_and_claim(
        self,
        results: Iterable[tuple[str, Any]],
        *,
        queue: str,
        worker_id: str,
        max_tasks: int = 100,
        lease_s: float | None = None,
    ) -> Call[tuple[list[RayRuntimeError | None], list[Lease]]]:
        """:meth:`complete_many`, then claim up to ``max_tasks`` more, in one round trip and one journal write:
        a batch worker's loop. Returns ``(outcomes, leases)``; the claim happens whatever the outcomes."""
        message = CompleteManyAndClaim(
            self.tenant, _completions(results), queue, worker_id, max_tasks, lease_s, self._node(), new_request_id()
        )

        def parse(raw: dict[str, Any]) -> tuple[list[RayRuntimeError | None], list[Lease]]:
            return raw["outcomes"], _leases(raw["leases"])

        return Call("complete_many_and_claim", message, parse)

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
    ) -> Call[tuple[Task, list[Lease]]]:
        """Complete an attempt and claim the next task(s) in one round trip; returns ``(task, leases)``.

        Raises what :meth:`complete` raises; then nothing is claimed.
        """
        message = CompleteAndClaim(
            tenant=self.tenant,
            attempt_id=attempt_id,
            result=to_json("result", result),
            request_id=new_request_id(),
            queue=queue,
            worker_id=worker_id,
            max_tasks=max_tasks,
            lease_s=lease_s,
            wait_s=wait_s,
            node_id=self._node(),
            claim_id=new_request_id(),
        )

        def parse(raw: dict[str, Any]) -> tuple[Task, list[Lease]]:
            return _task(raw["task"]), _leases(raw["leases"])

        return Call("complete_and_claim", message, parse, sleeps_s=wait_s)

    def _fail(
        self,
        attempt_id: str,
        error: BaseException | TaskError | Mapping[str, Any] | str,
        *,
        retryable: bool = True,
    ) -> Call[Task]:
        """Fail a live attempt: retried after exponential backoff while attempts remain, else a dead letter.

        With ``retryable=False`` the task fails at once, for good. An exception is recorded with its traceback.
        """
        message = Fail(self.tenant, attempt_id, error_json(error), bool(retryable), new_request_id())
        return Call("fail", message, _task)

    def _cancel(self, task_id: str) -> Call[Task]:
        """Cancel a queued or leased task (the leased attempt becomes stale).

        Raises:
            TaskFinishedError: The task already ended; terminal states are final.
        """
        return Call("cancel", TaskRef(self.tenant, task_id), _task)

    def _retry(self, task_id: str) -> Call[Task]:
        """Queue a dead, failed or cancelled task again, with a fresh budget of attempts."""
        return Call("retry", TaskRef(self.tenant, task_id), _task)

    def _purge(self, queue: str) -> Call[int]:
        """Cancel every queued task of ``queue`` (leased ones run on); returns how many."""
        return Call("purge", QueueRef(self.tenant, queue), int)

    def _get(self, task_id: str) -> Call[Task]:
        """One task, with its input, and its result or error once it has one."""
        return Call("get", TaskRef(self.tenant, task_id), _task)

    def _query(
        self,
        *,
        queue: str | None = None,
        status: TaskStatus | str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        resources_id: str | None = None,
    ) -> Call[TaskPage]:
        """A page of tasks in creation order; pass the page's ``next_cursor`` to get the next one.
        ``resources_id``: only tasks pinned to that resources version, or whose latest attempt used it."""
        status_value = status.value if isinstance(status, TaskStatus) else status

        def parse(raw: dict[str, Any]) -> TaskPage:
            return TaskPage(items=[_task(w) for w in raw["items"]], next_cursor=raw["next_cursor"])

        return Call("query", Query(self.tenant, queue, status_value, limit, cursor, resources_id), parse)

    def _wait(
        self,
        task_ids: Iterable[str],
        *,
        timeout_s: float = 60.0,
        return_when: Literal["all", "first"] = "all",
    ) -> Call[WaitResult]:
        """Wait until all (or the first) of the tasks end, or ``timeout_s`` passes; returns done and pending.

        The coordinator wakes the call on each completion; nothing polls.
        """
        ids = [task_ids] if isinstance(task_ids, str) else list(task_ids)
        if return_when not in ("all", "first"):
            raise InvalidArgumentError("return_when", f"must be 'all' or 'first'; got {return_when!r}")

        def parse(raw: dict[str, Any]) -> WaitResult:
            return WaitResult(done=[_task(w) for w in raw["done"]], pending=raw["pending"])

        message = Wait(self.tenant, ids, timeout_s, return_when == "first")
        return Call("wait", message, parse, sleeps_s=max(0.0, timeout_s))

    def _stats(self, queue: str) -> Call[QueueStats]:
        """Depth of ``queue`` per status, delayed count, oldest claimable age, and known workers."""
        return Call("stats", QueueRef(self.tenant, queue), QueueStats.model_validate)

    def _queues(self) -> Call[list[str]]:
        """Names of this tenant's queues."""
        return Call("queues", TenantRef(self.tenant), list)

    def _workers(self) -> Call[list[WorkerInfo]]:
        """Workers seen by claim or heartbeat recently, with the attempts each holds."""
        return Call("workers", TenantRef(self.tenant), lambda raw: [WorkerInfo.model_validate(w) for w in raw])

    def _info(self) -> Call[dict[str, Any]]:
        """The coordinator's name, pid, journal, replay figures and task counts (also a liveness probe)."""
        return Call("info", Info(), dict)


def _completions(results: Iterable[tuple[str, Any]]) -> list[Completion]:
    """A batch's ``(attempt_id, result)`` pairs, each with a request id of its own (the batch's, numbered)."""
    batch = new_request_id()
    return [
        (attempt_id, to_json(f"results[{i}]", result), f"{batch}.{i}") for i, (attempt_id, result) in enumerate(results)
    ]
