"""Bad input gets a typed error naming the field, and changes nothing."""

from __future__ import annotations

import pytest

from ray_runtime.errors import (
    AttemptNotFoundError,
    InvalidArgumentError,
    PayloadTooLargeError,
    ResourcesNotFoundError,
    TaskNotFoundError,
)

from .conftest import new_task

T = "acme"


@pytest.fixture
def busy_state(state):
    """A state with one queued and one leased task, and nothing left to journal."""
    state.tasks.enqueue(T, "q", [new_task(1), new_task(2)])
    state.tasks.claim(T, "q", "w")
    state.take_changes()
    return state


def snapshot(state):
    return state.tasks.stats(T, "q"), [r.wire() for r in state.tasks.query(T)[0]]


@pytest.mark.parametrize(
    ("call", "error", "field"),
    [
        (lambda s: s.tasks.enqueue(T, "bad/name", [new_task()]), InvalidArgumentError, "queue"),
        (lambda s: s.tasks.enqueue(T, "", [new_task()]), InvalidArgumentError, "queue"),
        (lambda s: s.tasks.enqueue("ten ant", "q", [new_task()]), InvalidArgumentError, "tenant"),
        (lambda s: s.tasks.enqueue(T, "q", [new_task("x" * 2000)]), PayloadTooLargeError, "input"),
        (lambda s: s.tasks.enqueue(T, "q", [new_task(metadata={"m": "x" * 2000})]), PayloadTooLargeError, "metadata"),
        (lambda s: s.tasks.enqueue(T, "q", [new_task(priority=1.5)]), InvalidArgumentError, "priority"),
        (lambda s: s.tasks.enqueue(T, "q", [new_task(delay_s=-1)]), InvalidArgumentError, "delay_s"),
        (lambda s: s.tasks.enqueue(T, "q", [new_task(max_attempts=0)]), InvalidArgumentError, "max_attempts"),
        (lambda s: s.tasks.enqueue(T, "q", [new_task(lease_s=0)]), InvalidArgumentError, "lease_s"),
        (lambda s: s.tasks.enqueue(T, "q", [new_task(task_id="task_nope")]), InvalidArgumentError, "task_id"),
        (
            lambda s: s.tasks.enqueue(T, "q", [new_task(), new_task(lease_s=-5)]),
            InvalidArgumentError,
            "tasks[1].lease_s",
        ),
        (lambda s: s.tasks.claim(T, "q", "w", lease_s=-1), InvalidArgumentError, "lease_s"),
        (lambda s: s.tasks.claim(T, "q", "w", max_tasks=0), InvalidArgumentError, "max_tasks"),
        (lambda s: s.tasks.claim(T, "q", "bad worker"), InvalidArgumentError, "worker_id"),
        (lambda s: s.tasks.heartbeat(T, "att_unknown"), AttemptNotFoundError, "attempt_id"),
        (lambda s: s.tasks.complete(T, "att_0000000000000000000000000a_1", "1"), AttemptNotFoundError, "attempt_id"),
        (lambda s: s.tasks.fail(T, "nonsense", "{}"), AttemptNotFoundError, "attempt_id"),
        (lambda s: s.tasks.cancel(T, "task_missing"), TaskNotFoundError, "task_id"),
        (lambda s: s.tasks.query(T, limit=0), InvalidArgumentError, "limit"),
        (lambda s: s.tasks.query(T, cursor="garbage"), InvalidArgumentError, "cursor"),
        (lambda s: s.tasks.query(T, status="sleeping"), InvalidArgumentError, "status"),
        (lambda s: s.resources.get(T, "res_missing"), ResourcesNotFoundError, "resources_id"),
        (
            lambda s: s.tasks.enqueue(T, "q", [new_task(resources_id="res_missing")]),
            ResourcesNotFoundError,
            "resources_id",
        ),
    ],
)
def test_bad_input_is_refused_with_a_typed_error_and_changes_nothing(busy_state, call, error, field):
    before = snapshot(busy_state)
    with pytest.raises(error) as info:
        call(busy_state)
    if "field" in info.value.details:
        assert info.value.details["field"] == field
        assert field in info.value.message
    else:
        assert field.split(".")[-1].removesuffix("_id") in info.value.message or info.value.details
    assert not busy_state.has_changes()
    assert snapshot(busy_state) == before


def test_oversize_result_is_refused_and_the_lease_stays_live(busy_state):
    attempt_id = busy_state.tasks.query(T, status="leased")[0][0].attempt_id
    with pytest.raises(PayloadTooLargeError) as info:
        busy_state.tasks.complete(T, attempt_id, '"' + "x" * 5000 + '"')
    assert info.value.details == {"field": "result", "size": 5002, "limit": 1024}
    assert busy_state.tasks.complete(T, attempt_id, "1").result == "1"
