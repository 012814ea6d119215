"""The driver API against a real coordinator actor on a real local Ray cluster."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from pydantic import BaseModel

import ray_runtime as rr
from ray_runtime.errors import (
    InvalidArgumentError,
    PayloadTooLargeError,
    ResourcesNotFoundError,
    StaleAttemptError,
    TaskFinishedError,
    TaskNotFoundError,
    ValidationError,
)
from ray_runtime.models import LLM, Lease, PromptTemplate, Task, TaskStatus

from ..waiting import wait_until


class Order(BaseModel):
    sku: str
    qty: int


def test_enqueue_claim_complete_round_trip_with_typed_models(coord):
    task_id = coord.enqueue("orders", Order(sku="a-1", qty=2), priority=3, metadata={"source": "test"})
    [lease] = coord.claim("orders", "worker-1", lease_s=5)
    assert isinstance(lease, Lease) and lease.task.id == task_id
    assert lease.task.input == {"sku": "a-1", "qty": 2}
    assert lease.task.metadata == {"source": "test"} and lease.task.priority == 3
    done = coord.complete(lease.attempt_id, {"shipped": True})
    assert isinstance(done, Task) and done.status is TaskStatus.SUCCEEDED
    assert coord.get(task_id).result == {"shipped": True}
    assert coord.stats("orders").counts[TaskStatus.SUCCEEDED] == 1


def test_combined_complete_and_claim_hands_in_and_takes_the_next(coord):
    first, second = coord.enqueue_many("q", [1, 2])
    [lease] = coord.claim("q", "w")
    done, leases = coord.complete_and_claim(lease.attempt_id, "r1", queue="q", worker_id="w")
    assert done.id == first and done.result == "r1"
    assert [lease.task.id for lease in leases] == [second]


def test_complete_many_reports_each_outcome(coord):
    coord.enqueue_many("q", [1, 2])
    leases = coord.claim("q", "w", max_tasks=2)
    coord.complete(leases[1].attempt_id, "early")
    outcomes = coord.complete_many([(leases[0].attempt_id, "a"), (leases[1].attempt_id, "b")])
    assert outcomes[0] is None and coord.get(leases[0].task.id).result == "a"
    assert isinstance(outcomes[1], TaskFinishedError) and coord.get(leases[1].task.id).result == "early"


def test_complete_many_and_claim_hands_in_a_batch_and_takes_the_next(coord):
    first, second, third, fourth = coord.enqueue_many("batch", [1, 2, 3, 4])
    leases = coord.claim("batch", "w", max_tasks=2)
    coord.complete(leases[1].attempt_id, "early")
    outcomes, more = coord.complete_many_and_claim(
        [(leases[0].attempt_id, "a"), (leases[1].attempt_id, "b")], queue="batch", worker_id="w", max_tasks=5
    )
    assert outcomes[0] is None and isinstance(outcomes[1], TaskFinishedError)  # each outcome, as complete_many
    assert [lease.task.id for lease in more] == [third, fourth]  # and the claim happened whatever they were
    assert coord.get(first).result == "a" and coord.get(second).result == "early"
    with pytest.raises(InvalidArgumentError):
        coord.complete_many_and_claim([], queue="bad queue!", worker_id="w")
    assert coord.get(third).status == TaskStatus.LEASED


def test_long_poll_claim_returns_as_soon_as_a_task_arrives(coord):
    result: list[list[Lease]] = []
    returned_at: list[float] = []
    poller = threading.Thread(
        target=lambda: (result.append(coord.claim("lp", "w", wait_s=30)), returned_at.append(time.monotonic()))
    )
    poller.start()
    wait_until(coord.workers, 30, interval_s=0.01, what="the claim to reach the coordinator")
    assert not returned_at, "the claim returned before any task existed: it did not wait"
    enqueued_at = time.monotonic()
    task_id = coord.enqueue("lp", "wake up")
    poller.join(timeout=30)
    assert [lease.task.id for lease in result[0]] == [task_id]
    assert returned_at[0] - enqueued_at < 5, "the long poll waited out its timeout instead of waking"


def test_long_poll_returns_empty_after_its_wait(coord):
    started = time.monotonic()
    assert coord.claim("empty", "w", wait_s=0.5) == []
    assert time.monotonic() - started >= 0.5, "the claim returned before its wait was over"


async def test_wait_wakes_on_completion_and_reports_pending_on_timeout(acoord):
    a, b = await acoord.enqueue_many("q", ["a", "b"])
    waiting = asyncio.create_task(acoord.wait([a, b], timeout_s=30))
    for _ in range(2):
        [lease] = await acoord.claim("q", "w")
        await acoord.complete(lease.attempt_id, lease.task.input.upper())
    result = await asyncio.wait_for(waiting, 30)
    assert sorted(t.result for t in result.done) == ["A", "B"] and result.pending == []
    c = await acoord.enqueue("q", "c")
    timed_out = await acoord.wait([c], timeout_s=0.1)
    assert timed_out.done == [] and timed_out.pending == [c]


async def test_wait_for_first_returns_when_one_ends(acoord):
    a, b = await acoord.enqueue_many("q", ["a", "b"])
    waiting = asyncio.create_task(acoord.wait([a, b], timeout_s=30, return_when="first"))
    [lease] = await acoord.claim("q", "w")
    await acoord.complete(lease.attempt_id, 1)
    result = await asyncio.wait_for(waiting, 30)
    assert [t.id for t in result.done] == [lease.task.id] and len(result.pending) == 1


def test_typed_errors_cross_the_actor_boundary(coord):
    with pytest.raises(InvalidArgumentError, match="queue"):
        coord.enqueue("no spaces", 1)
    with pytest.raises(TaskNotFoundError):
        coord.get("task_00000000000000000000000000")
    with pytest.raises(PayloadTooLargeError) as info:
        coord.enqueue("q", "x" * (1 << 20))
    assert info.value.details["field"] == "input"
    with pytest.raises(InvalidArgumentError, match="JSON-serialisable"):
        coord.enqueue("q", {"when": object()})
    coord.enqueue("q", 1)
    [lease] = coord.claim("q", "w", lease_s=0.2)
    time.sleep(0.3)  # let the lease run out
    with pytest.raises(StaleAttemptError):
        coord.complete(lease.attempt_id, "too late")
    assert coord.stats("q").counts[TaskStatus.SUCCEEDED] == 0


def test_failures_carry_the_traceback_and_dead_letters_can_be_retried(coord):
    task_id = coord.enqueue("q", 1, max_attempts=1)
    [lease] = coord.claim("q", "w")
    try:
        raise ValueError("bad row 7")
    except ValueError as exc:
        dead = coord.fail(lease.attempt_id, exc)
    assert dead.status is TaskStatus.DEAD
    assert dead.error.type == "ValueError" and "bad row 7" in dead.error.traceback
    assert [t.id for t in coord.query(queue="q", status="dead").items] == [task_id]
    assert coord.retry(task_id).status is TaskStatus.QUEUED
    with pytest.raises(TaskFinishedError):
        coord.cancel(coord.complete(coord.claim("q", "w")[0].attempt_id, 2).id)


def test_blocking_call_inside_an_event_loop_points_at_the_async_twin(coord):
    async def misuse():
        coord.stats("q")

    with pytest.raises(RuntimeError, match="aio"):
        asyncio.run(misuse())


def test_resources_are_versioned_and_leases_name_the_version_to_use(coord):
    with pytest.raises(ResourcesNotFoundError):
        coord.resources.latest()
    v1 = coord.resources.add(
        {"llm": LLM(endpoint="http://llm:8000/v1", model="m1"), "prompt": PromptTemplate(template="Q: {q}")}
    )
    v2 = coord.resources.update({"llm": {"resource_type": "llm", "endpoint": "http://llm:8000/v1", "model": "m2"}})
    assert (v1.version, v2.version) == (1, 2)
    assert v2.resources["llm"].model == "m2" and v2.resources["prompt"].format(q="2+2") == "Q: 2+2"
    assert [r.resources_id for r in coord.resources.history()] == [v2.resources_id, v1.resources_id]
    assert coord.resources.get(v1.resources_id).resources["llm"].model == "m1"
    pinned = coord.enqueue("q", 1, resources_id=v1.resources_id)
    coord.enqueue("q", 2)
    leases = {lease.task.id: lease for lease in coord.claim("q", "w", max_tasks=2)}
    assert leases.pop(pinned).resources_id == v1.resources_id
    assert next(iter(leases.values())).resources_id == v2.resources_id


def test_invalid_resources_name_every_bad_field(coord):
    with pytest.raises(ValidationError) as info:
        coord.resources.add({"llm": {"resource_type": "llm", "endpoint": "x"}, "p": {"resource_type": "nope"}})
    fields = {e["field"] for e in info.value.details["errors"]}
    assert "llm.model" in fields and any(f.startswith("p") for f in fields)


def test_workers_are_listed_with_their_node(coord):
    import ray

    coord.enqueue("q", 1)
    [lease] = coord.claim("q", "w-node")
    [worker] = coord.workers()
    assert worker.worker_id == "w-node" and worker.attempts == [lease.attempt_id]
    assert worker.node_id == ray.get_runtime_context().get_node_id()


def test_connect_finds_the_existing_coordinator(session_coordinator, coord):
    coord.enqueue("q", "shared")
    again = rr.connect(tenant=coord.tenant)
    assert again.stats("q").counts[TaskStatus.QUEUED] == 1
    assert again.info()["pid"] == session_coordinator.info()["pid"]


def test_a_tasks_attempts_that_ended_without_a_result_are_kept_with_their_errors(coord):
    task_id = coord.enqueue("hist", {"n": 1}, max_attempts=3)
    [first] = coord.claim("hist", "w1")
    coord.fail(first.attempt_id, {"type": "ValueError", "message": "first try"})
    wait_until(lambda: coord.claim("hist", "w2", lease_s=0.2), 30, interval_s=0.05, what="the retry")
    wait_until(lambda: coord.get(task_id).attempts == 2 and coord.get(task_id).status == TaskStatus.QUEUED, 30,
               what="the second lease to expire")  # fmt: skip
    [third] = wait_until(lambda: coord.claim("hist", "w3"), 30, interval_s=0.05, what="the third claim")
    coord.complete(third.attempt_id, "done")
    task = coord.get(task_id)
    assert [(a.attempt, a.worker_id, a.outcome) for a in task.history] == [(1, "w1", "failed"), (2, "w2", "expired")]
    assert task.history[0].error.message == "first try" and task.history[1].error.type == "LeaseExpired"
    assert task.history[0].started_at < task.history[0].ended_at and task.result == "done"
    cancelled = coord.enqueue("hist", {"n": 2})
    assert len(coord.claim("hist", "w4")) == 1
    coord.cancel(cancelled)
    assert [(a.outcome, a.error) for a in coord.get(cancelled).history] == [("cancelled", None)]


def test_queue_stats_count_what_ended_per_minute(coord):
    coord.enqueue_many("tput", [1, 2, 3, 4])
    leases = coord.claim("tput", "w", max_tasks=4)
    for lease in leases[:3]:
        coord.complete(lease.attempt_id, "ok")
    coord.fail(leases[3].attempt_id, "no", retryable=False)
    [minute] = coord.stats("tput").throughput
    assert (minute.succeeded, minute.failed) == (3, 1) and abs(minute.minute - time.time()) < 120


def test_tasks_are_listed_by_the_resources_version_they_use(coord):
    first = coord.resources.add({"p": PromptTemplate(template="v1 {q}")})
    pinned = coord.enqueue("pins", {"n": 1}, resources_id=first.resources_id)
    second = coord.resources.add({"p": PromptTemplate(template="v2 {q}")})
    latest = coord.enqueue("pins", {"n": 2})
    coord.claim("pins", "w", max_tasks=2)  # the unpinned one runs with the latest version
    assert [t.id for t in coord.query(resources_id=first.resources_id).items] == [pinned]
    assert [t.id for t in coord.query(resources_id=second.resources_id).items] == [latest]
