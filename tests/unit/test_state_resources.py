"""Versioned resources: immutable versions, latest, pinning at enqueue, latest at claim, pruning."""

from __future__ import annotations

import json

import pytest

from ray_runtime.coordinator.state import CoordinatorState, Limits
from ray_runtime.errors import ResourcesNotFoundError

from .conftest import new_task

T = "acme"


def body(n: int) -> str:
    return json.dumps({"cfg": {"resource_type": "json", "value": n}})


def test_versions_count_up_and_the_newest_is_latest(state):
    with pytest.raises(ResourcesNotFoundError):
        state.resources.latest(T)
    first = state.resources.add(T, body(1))
    second = state.resources.add(T, body(2))
    assert (first.version, second.version) == (1, 2)
    assert state.resources.latest(T) is second
    assert [r.id for r in state.resources.history(T)] == [second.id, first.id]
    assert state.resources.get(T, first.id).body == body(1)


def test_a_pinned_version_is_used_else_the_latest_at_claim(state):
    v1 = state.resources.add(T, body(1))
    state.tasks.enqueue(T, "q", [new_task("pinned", resources_id=v1.id)])
    state.tasks.enqueue(T, "q", [new_task("floating")])
    v2 = state.resources.add(T, body(2))
    leases = state.tasks.claim(T, "q", "w", max_tasks=2)
    assert [lease.lease_wire()["resources_id"] for lease in leases] == [v1.id, v2.id]


def test_unreferenced_old_versions_are_pruned_beyond_the_keep_count(clock):
    state = CoordinatorState(Limits(resources_keep=2), clock=clock)
    v1 = state.resources.add(T, body(1))
    state.tasks.enqueue(T, "q", [new_task(resources_id=v1.id)])
    v2 = state.resources.add(T, body(2))
    v3 = state.resources.add(T, body(3))
    v4 = state.resources.add(T, body(4))
    kept = {r.id for r in state.resources.history(T)}
    assert kept == {v1.id, v3.id, v4.id}  # v1 is pinned by a task; v2 is neither referenced nor recent
    assert v2.id in state.take_changes().resources_deleted


def test_tenants_have_separate_resources(state):
    mine = state.resources.add(T, body(1))
    with pytest.raises(ResourcesNotFoundError):
        state.resources.get("other", mine.id)
    assert state.resources.add("other", body(9)).version == 1
