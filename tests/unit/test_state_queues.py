"""Queue semantics of the pure state machine: ordering, leases, fencing, retries, dead letters."""

from __future__ import annotations

import json

import pytest

from ray_runtime.coordinator.state import CoordinatorState
from ray_runtime.errors import (
    AttemptNotFoundError,
    ConflictError,
    StaleAttemptError,
    TaskFinishedError,
    TaskNotFoundError,
)
from ray_runtime.models import TaskStatus

from .conftest import new_task

T = "acme"


def enqueue(state: CoordinatorState, value=None, queue: str = "q", **options) -> str:
    return state.tasks.enqueue(T, queue, [new_task(value, **options)])[0]


def claim_one(state: CoordinatorState, queue: str = "q", worker: str = "w1", **options):
    leased = state.tasks.claim(T, queue, worker, **options)
    assert len(leased) == 1
    return leased[0]


def test_claims_highest_priority_first_and_fifo_within_a_priority(state):
    low = [enqueue(state, i, priority=0) for i in range(3)]
    high = [enqueue(state, i, priority=5) for i in range(2)]
    order = [r.id for r in state.tasks.claim(T, "q", "w", max_tasks=10)]
    assert order == high + low


def test_delayed_task_is_invisible_until_due(state, clock):
    task_id = enqueue(state, "later", delay_s=5)
    assert state.tasks.claim(T, "q", "w") == []
    assert state.tasks.stats(T, "q")["delayed"] == 1
    clock.advance(5)
    assert claim_one(state).id == task_id


def test_idempotency_key_returns_existing_task_and_enqueues_nothing(state):
    first = enqueue(state, 1, idempotency_key="order-7")
    again = enqueue(state, 2, idempotency_key="order-7")
    assert again == first
    assert state.tasks.stats(T, "q")["counts"]["queued"] == 1
    assert json.loads(state.tasks.get(T, first).input) == 1


def test_repeated_task_id_is_not_enqueued_twice(state):
    task = new_task("x")
    assert state.tasks.enqueue(T, "q", [task]) == state.tasks.enqueue(T, "q", [task])
    assert state.tasks.stats(T, "q")["counts"]["queued"] == 1


def test_complete_is_final_and_double_completion_is_refused(state):
    enqueue(state, "in")
    lease = claim_one(state)
    done = state.tasks.complete(T, lease.attempt_id, json.dumps("out"))
    assert done.status is TaskStatus.SUCCEEDED
    with pytest.raises(TaskFinishedError) as info:
        state.tasks.complete(T, lease.attempt_id, json.dumps("other"))
    assert info.value.details["status"] == "succeeded"
    assert state.tasks.get(T, done.id).result == json.dumps("out")


def test_repeated_request_is_answered_again_not_reapplied(state):
    enqueue(state)
    lease = claim_one(state)
    first = state.tasks.complete(T, lease.attempt_id, "1", request_id="req-1")
    state.take_changes()
    again = state.tasks.complete(T, lease.attempt_id, "2", request_id="req-1")
    assert again is first and again.result == "1"
    assert not state.has_changes()


def test_expired_lease_is_requeued_with_backoff_and_the_old_attempt_is_fenced(state, clock):
    task_id = enqueue(state)
    first_attempt = claim_one(state, worker="w1").attempt_id
    clock.advance(10.0)
    assert state.sweep() == 1
    record = state.tasks.get(T, task_id)
    assert record.status is TaskStatus.QUEUED
    assert json.loads(record.error)["type"] == "LeaseExpired"
    assert state.tasks.claim(T, "q", "w2") == []  # still backing off (1 s)
    clock.advance(1.0)
    second = claim_one(state, worker="w2")
    assert second.attempts == 2
    with pytest.raises(StaleAttemptError) as info:
        state.tasks.complete(T, first_attempt, "1")
    assert info.value.details["live_attempt_id"] == second.attempt_id
    state.tasks.complete(T, second.attempt_id, "2")
    assert state.tasks.get(T, task_id).result == "2"


def test_overdue_lease_is_expired_on_access_even_before_the_sweeper_runs(state, clock):
    enqueue(state)
    lease = claim_one(state)
    clock.advance(10.5)
    with pytest.raises(StaleAttemptError):
        state.tasks.complete(T, lease.attempt_id, "late")
    assert state.tasks.get(T, lease.id).status is TaskStatus.QUEUED


def test_heartbeat_extends_the_lease(state, clock):
    enqueue(state)
    lease = claim_one(state)
    clock.advance(8)
    state.tasks.heartbeat(T, lease.attempt_id, extend_s=20)
    clock.advance(15)
    state.sweep()
    assert state.tasks.complete(T, lease.attempt_id, "ok").status is TaskStatus.SUCCEEDED


def test_retryable_failures_back_off_exponentially_then_dead_letter(state, clock):
    task_id = enqueue(state, max_attempts=3)
    waits = []
    for _ in range(2):
        lease = claim_one(state)
        record = state.tasks.fail(T, lease.attempt_id, json.dumps({"type": "E", "message": "boom"}))
        waits.append(record.available_at - clock.now)
        clock.advance(record.available_at - clock.now)
    assert waits == [1.0, 2.0]
    lease = claim_one(state)
    assert state.tasks.fail(T, lease.attempt_id, '{"type":"E"}').status is TaskStatus.DEAD
    dead = state.tasks.query(T, queue="q", status="dead")[0]
    assert [r.id for r in dead] == [task_id]
    retried = state.tasks.retry(T, task_id)
    assert retried.status is TaskStatus.QUEUED and retried.attempts == 0
    assert claim_one(state).id == task_id


def test_lease_expiry_counts_as_an_attempt_and_ends_in_dead(state, clock):
    task_id = enqueue(state, max_attempts=2)
    claim_one(state)
    clock.advance(10)
    state.sweep()
    clock.advance(1)
    claim_one(state)
    clock.advance(10)
    state.sweep()
    assert state.tasks.get(T, task_id).status is TaskStatus.DEAD


def test_non_retryable_failure_is_final(state):
    enqueue(state)
    lease = claim_one(state)
    assert state.tasks.fail(T, lease.attempt_id, '{"type":"E"}', retryable=False).status is TaskStatus.FAILED
    with pytest.raises(TaskFinishedError):
        state.tasks.fail(T, lease.attempt_id, '{"type":"E"}')


def test_cancel_queued_and_leased_tasks_and_refuse_finished_ones(state):
    queued = enqueue(state, 1)
    enqueue(state, 2)
    lease = claim_one(state)
    assert lease.id == queued
    waiting = state.tasks.query(T, status="queued")[0][0].id
    assert state.tasks.cancel(T, waiting).status is TaskStatus.CANCELLED
    assert state.tasks.claim(T, "q", "w") == []
    state.tasks.cancel(T, lease.id)
    with pytest.raises(TaskFinishedError) as info:
        state.tasks.complete(T, lease.attempt_id, "x")
    assert info.value.details["status"] == "cancelled"
    with pytest.raises(TaskFinishedError):
        state.tasks.cancel(T, lease.id)


def test_retry_of_a_live_or_succeeded_task_is_refused(state):
    task_id = enqueue(state)
    with pytest.raises(ConflictError):
        state.tasks.retry(T, task_id)
    lease = claim_one(state)
    state.tasks.complete(T, lease.attempt_id, "1")
    with pytest.raises(TaskFinishedError):
        state.tasks.retry(T, task_id)


def test_purge_cancels_queued_tasks_only(state, clock):
    enqueue(state, 1)
    leased = claim_one(state)
    enqueue(state, 2)
    enqueue(state, 3, delay_s=60)
    assert state.tasks.purge(T, "q") == 2
    counts = state.tasks.stats(T, "q")["counts"]
    assert counts["cancelled"] == 2 and counts["leased"] == 1 and counts["queued"] == 0
    assert state.tasks.complete(T, leased.attempt_id, "ok").status is TaskStatus.SUCCEEDED
    clock.advance(61)
    assert state.tasks.claim(T, "q", "w") == []


def test_claim_with_a_repeated_request_id_returns_the_same_leases(state):
    for i in range(3):
        enqueue(state, i)
    first = [r.attempt_id for r in state.tasks.claim(T, "q", "w", max_tasks=2, request_id="claim-1")]
    again = [r.attempt_id for r in state.tasks.claim(T, "q", "w", max_tasks=2, request_id="claim-1")]
    assert len(first) == 2 and again == first
    assert state.tasks.stats(T, "q")["counts"]["queued"] == 1


def test_query_pages_are_stable_while_tasks_are_added(state):
    ids = [enqueue(state, i) for i in range(25)]
    seen, cursor = [], None
    page, cursor = state.tasks.query(T, queue="q", limit=10, cursor=cursor)
    seen += [r.id for r in page]
    ids += [enqueue(state, 100 + i) for i in range(5)]
    while cursor is not None:
        page, cursor = state.tasks.query(T, queue="q", limit=10, cursor=cursor)
        seen += [r.id for r in page]
    assert seen == ids


def test_stats_report_depth_per_status_and_oldest_age(state, clock):
    enqueue(state, 1)
    clock.advance(4)
    enqueue(state, 2)
    lease = claim_one(state)
    state.tasks.complete(T, lease.attempt_id, "1")
    stats = state.tasks.stats(T, "q")
    assert stats["counts"]["queued"] == 1 and stats["counts"]["succeeded"] == 1
    assert stats["oldest_queued_age_s"] == pytest.approx(0.0)
    clock.advance(3)
    assert state.tasks.stats(T, "q")["oldest_queued_age_s"] == pytest.approx(3.0)
    assert state.tasks.stats(T, "q")["workers"] == 1


def test_workers_are_recorded_with_the_attempts_they_hold(state):
    enqueue(state, 1)
    enqueue(state, 2)
    lease = state.tasks.claim(T, "q", "w1", node_id="node-a")[0]
    workers = state.tasks.workers(T)
    assert [(w["worker_id"], w["node_id"], w["attempts"]) for w in workers] == [("w1", "node-a", [lease.attempt_id])]
    state.tasks.complete(T, lease.attempt_id, "1")
    assert state.tasks.workers(T)[0]["attempts"] == []


def test_tenants_never_see_each_others_tasks(state):
    task_id = enqueue(state, "secret")
    lease = claim_one(state)
    with pytest.raises(TaskNotFoundError):
        state.tasks.get("other", task_id)
    with pytest.raises(AttemptNotFoundError):
        state.tasks.complete("other", lease.attempt_id, "x")
    assert state.tasks.claim("other", "q", "w") == []
    assert state.tasks.query("other")[0] == []


def test_finished_tasks_beyond_retention_are_dropped_and_their_keys_freed(clock):
    from ray_runtime.coordinator.state import Limits

    state = CoordinatorState(Limits(finished_retention=2), clock=clock)
    ids = []
    for i in range(4):
        ids.append(enqueue(state, i, idempotency_key=f"k{i}"))
        lease = claim_one(state)
        state.tasks.complete(T, lease.attempt_id, "ok")
        clock.advance(1)
    state.sweep()
    with pytest.raises(TaskNotFoundError):
        state.tasks.get(T, ids[0])
    assert state.tasks.get(T, ids[3]).status is TaskStatus.SUCCEEDED
    assert enqueue(state, "again", idempotency_key="k0") != ids[0]
    assert set(state.take_changes().deleted) >= {ids[0], ids[1]}
