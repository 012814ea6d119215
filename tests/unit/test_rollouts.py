"""Agent Lightning rollouts in the coordinator's state: tasks of the tenant's ``agl.rollouts`` queue, AGL's state
machine, the order they ended in, retention, and a replay of the journal that keeps all of it."""

from __future__ import annotations

import json

import pytest

from ray_runtime.coordinator.journal import MemoryJournal
from ray_runtime.coordinator.rollouts import AGL_QUEUE
from ray_runtime.coordinator.state import CoordinatorState, Limits
from ray_runtime.errors import ConflictError, InvalidArgumentError, NotFoundError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def new(rollout_id=None, input=None, timeout=3600):
    meta = {"is_train": True, "config": {"timeout_seconds": timeout}, "metadata": {}}
    return (rollout_id, json.dumps(input), json.dumps(meta))


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def state(clock):
    return CoordinatorState(Limits(finished_retention=0, finished_ttl_s=1), clock=clock)


def test_creating_a_rollout_again_under_its_id_returns_the_first(state):
    [first] = state.rollouts.create("t", [new("r1", {"q": 1})])
    [again] = state.rollouts.create("t", [new("r1", {"q": 2})])
    assert again == first and json.loads(again["input"]) == {"q": 1}
    assert first["status"]["state"] == "queuing" and first["status"]["version"] == 1
    assert state.tasks.get("t", first["task_id"]).queue == AGL_QUEUE


def test_rollout_ids_are_per_tenant_and_another_tenants_is_missing(state):
    [mine] = state.rollouts.create("a", [new("r1", "a's")])
    [theirs] = state.rollouts.create("b", [new("r1", "b's")])
    assert mine["task_id"] != theirs["task_id"]
    state.rollouts.delete("b", "r1")
    assert state.rollouts.get("a", "r1") == mine
    with pytest.raises(NotFoundError, match="Rollout not found: r1"):
        state.rollouts.get("b", "r1")


def test_the_state_machine_moves_forward_only(state):
    state.rollouts.create("t", [new("r1")])
    with pytest.raises(ConflictError, match="cannot transition queuing -> succeeded"):
        state.rollouts.patch("t", "r1", json.dumps({"state": "succeeded"}))
    running = state.rollouts.patch("t", "r1", json.dumps({"state": "running", "last_attempt_id": "a1"}))
    assert running["status"]["state"] == "running" and running["status"]["last_attempt_id"] == "a1"
    assert running["status"]["version"] == 2
    with pytest.raises(ConflictError, match="cannot transition running -> queuing"):
        state.rollouts.patch("t", "r1", json.dumps({"state": "queuing"}))
    done = state.rollouts.patch("t", "r1", json.dumps({"state": "succeeded"}))
    assert done["status"]["state"] == "succeeded" and done["status"]["version"] == 3
    with pytest.raises(ConflictError, match="cannot transition succeeded -> failed"):
        state.rollouts.patch("t", "r1", json.dumps({"state": "failed"}))
    with pytest.raises(InvalidArgumentError):
        state.rollouts.patch("t", "r1", json.dumps({"input": "x"}))


def test_a_running_rollout_keeps_its_task_until_its_timeout_then_fails(state, clock):
    state.rollouts.create("t", [new("r1", timeout=100)])
    state.rollouts.patch("t", "r1", json.dumps({"state": "running"}))
    clock.now += 99
    state.sweep()
    assert state.rollouts.get("t", "r1")["status"]["state"] == "running"
    clock.now += 2
    state.sweep()
    failed = state.rollouts.get("t", "r1")["status"]
    assert failed["state"] == "failed" and "lease" in (failed["error_message"] or "")
    assert state.rollouts.ended("t", 0, 10)["total_terminal"] == 1


def test_the_ended_order_keeps_its_places_across_deletes(state):
    state.rollouts.create("t", [new(f"r{i}", {"data_id": f"d{i}"}) for i in range(4)])
    for i in (2, 0, 3):
        state.rollouts.patch("t", f"r{i}", json.dumps({"state": "failed", "error_message": "no"}))
    page = state.rollouts.ended("t", 0, 2)
    assert [item["rollout_id"] for item in page["items"]] == ["r2", "r0"]
    assert page["next_after"] == 2 and page["total_terminal"] == 3
    state.rollouts.delete("t", "r0")
    assert state.rollouts.delete("t", "r0") is None
    page = state.rollouts.ended("t", 0, 10)
    assert [(i["rollout_id"], i["data_id"]) for i in page["items"]] == [("r2", "d2"), ("r3", "d3")]
    assert page["next_after"] == 3 and page["total_terminal"] == 3
    assert state.rollouts.ended("t", 3, 10) == {"items": [], "next_after": 3, "total_terminal": 3}


def test_the_queues_retention_leaves_ended_rollouts_to_theirs(state, clock):
    state.rollouts.create("t", [new("r1")])
    state.rollouts.patch("t", "r1", json.dumps({"state": "failed"}))
    clock.now += 3600
    state.sweep()
    assert state.rollouts.get("t", "r1")["status"]["state"] == "failed"
    clock.now += state.limits.rollout_retention_s
    [(tenant, task_id)] = state.rollouts.sweep()
    assert tenant == "t" and task_id.startswith("task_")
    with pytest.raises(NotFoundError):
        state.rollouts.get("t", "r1")


def test_listing_by_state_and_claiming_for_a_runner(state):
    state.rollouts.create("t", [new(f"r{i}") for i in range(3)])
    claimed = state.rollouts.claim("t", "runner-1", 2)
    assert [r["rollout_id"] for r in claimed] == ["r0", "r1"]
    assert all(r["status"]["last_attempt_id"] == "0" and r["status"]["state"] == "running" for r in claimed)
    assert [r["rollout_id"] for r in state.rollouts.list("t", ["queuing"], 10)] == ["r2"]
    assert [r["rollout_id"] for r in state.rollouts.list("t", ["running", "queuing"], 2)] == ["r0", "r1"]


def test_a_replay_of_the_journal_keeps_rollouts_their_status_and_the_ended_order(clock):
    journal = MemoryJournal()
    first = CoordinatorState(clock=clock)
    first.rollouts.create("t", [new("r1"), new("r2")])
    first.rollouts.patch("t", "r2", json.dumps({"state": "running", "k8s_job_name": "job-2"}))
    first.rollouts.patch("t", "r2", json.dumps({"state": "succeeded"}))
    journal.write(first.take_changes())
    second = CoordinatorState(clock=clock)
    second.load(*journal.load())
    assert second.rollouts.get("t", "r2") == first.rollouts.get("t", "r2")
    assert second.rollouts.ended("t", 0, 10) == first.rollouts.ended("t", 0, 10)
    assert second.rollouts.get("t", "r2")["status"]["k8s_job_name"] == "job-2"
