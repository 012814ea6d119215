"""Kills: the coordinator under load loses no acknowledged data; a dead worker's task moves to another."""

from __future__ import annotations

import random
import threading
import time
import uuid

import pytest
import ray

import ray_runtime as rr
from ray_runtime.errors import StaleAttemptError, TaskFinishedError
from ray_runtime.models import TaskStatus

from ..conftest import SESSION_SETTINGS
from ..waiting import wait_until


@pytest.fixture(params=["files", "postgres"])
def own_coordinator(request, ray_cluster):
    """A coordinator of this test alone (its own actor and journal), removed afterwards; on each backend: files
    (its checkpointer folds every 50 ms, so kills land while it folds, and a new coordinator replays while the old
    one's checkpointer ends), and PostgreSQL (a database of the test's own)."""
    name = f"faults-{uuid.uuid4().hex[:8]}"
    backend = {"journal_url": request.getfixturevalue("postgres_url")} if request.param == "postgres" else {}
    coord = rr.connect(name=name, **SESSION_SETTINGS, checkpoint_interval_s=0.05, **backend)
    yield coord
    ray.kill(coord.actor, no_restart=True)


def backend_of(coord) -> str:
    return "PostgreSQL" if coord.info()["journal"].startswith("postgresql://") else "files"


def kill_and_wait_for_restart(coord) -> None:
    pid = coord.info()["pid"]
    ray.kill(coord.actor, no_restart=False)
    # calls wait while the actor restarts, then reach the new process
    wait_until(lambda: coord.info()["pid"] != pid, 60, interval_s=0.05, what="the coordinator to restart")


def kill_and_time_restart(coord) -> float:
    """Kill the coordinator; seconds until a call is answered by its next process (a call made during the restart
    waits for it)."""
    pid = coord.info()["pid"]
    killed = time.monotonic()
    ray.kill(coord.actor, no_restart=False)
    wait_until(lambda: coord.info()["pid"] != pid, 60, interval_s=0.01, what="the coordinator to restart")
    return time.monotonic() - killed


def test_a_restart_of_an_idle_coordinator_is_timed(own_coordinator, figures):
    coord = own_coordinator
    coord.enqueue_many("idle", list(range(100)))
    restarts = sorted(kill_and_time_restart(coord) for _ in range(3))
    start = coord.info()["start"]
    assert start["first_call_s"] >= start["ready_s"] >= start["imports_s"] > 0 and start["replay_s"] >= 0
    figures(
        f"coordinator restart, idle, journal in {backend_of(coord)} (kill → first answered call)",
        f"median {restarts[1]:.2f} s of 3; the last start, seconds from its process's start: {start}",
    )


def test_a_restart_keeps_every_acknowledged_change_and_honours_live_leases(own_coordinator):
    coord = own_coordinator
    resources = coord.resources.add({"cfg": {"resource_type": "json", "value": {"k": 1}}})
    ids = coord.enqueue_many("q", list(range(5)))
    done = coord.claim("q", "w1")[0]
    coord.complete(done.attempt_id, "first")
    held = coord.claim("q", "w1", lease_s=60)[0]
    dead_id = coord.enqueue("q", "doomed", max_attempts=1, priority=9)
    coord.fail(coord.claim("q", "w1")[0].attempt_id, "boom")

    kill_and_wait_for_restart(coord)

    assert coord.info()["replayed_tasks"] == 6
    assert coord.get(done.task.id).result == "first"
    assert coord.get(dead_id).status is TaskStatus.DEAD
    assert coord.resources.latest().resources_id == resources.resources_id
    assert coord.complete(held.attempt_id, "after restart").status is TaskStatus.SUCCEEDED
    remaining = {lease.task.id for lease in coord.claim("q", "w2", max_tasks=10)}
    assert remaining == set(ids) - {done.task.id, held.task.id}


@ray.remote(num_cpus=0)
def run_worker(name: str, tenant: str, queue: str, total: int) -> list[tuple[str, str, int]]:
    """Claim, 'work', and hand in with the combined call until the queue's counts say all ``total`` tasks
    succeeded (however slow a restart is); returns what it completed."""
    coord = rr.connect(name=name, tenant=tenant)
    worker_id = f"w-{uuid.uuid4().hex[:6]}"
    accepted: list[tuple[str, str, int]] = []
    leases = []
    while True:
        if not leases:
            if coord.stats(queue).counts.get("succeeded", 0) >= total:
                return accepted
            leases = coord.claim(queue, worker_id, max_tasks=1, lease_s=20, wait_s=0.5)
            continue
        lease = leases.pop()
        try:
            task, leases = coord.complete_and_claim(
                lease.attempt_id, lease.task.input * 2, queue=queue, worker_id=worker_id, lease_s=20
            )
            accepted.append((task.id, lease.attempt_id, task.result))
        except (StaleAttemptError, TaskFinishedError):
            leases = []


def test_killing_the_coordinator_repeatedly_under_load_loses_no_task_and_accepts_one_result_each(
    own_coordinator, figures
):
    coord = own_coordinator
    name = coord.info()["name"]
    total, batch = 3000, 100
    enqueued: list[str] = []
    producing = threading.Event()
    producing.set()

    def produce() -> None:
        for start in range(0, total, batch):
            enqueued.extend(coord.enqueue_many("chaos", list(range(start, start + batch)), max_attempts=50))
            time.sleep(random.uniform(0, 0.05))
        producing.clear()

    producer = threading.Thread(target=produce)
    producer.start()
    workers = [run_worker.remote(name, coord.tenant, "chaos", total) for _ in range(3)]
    kills, restarts = 0, []
    while producing.is_set() or kills < 4:
        time.sleep(random.uniform(0.3, 0.8))
        restarts.append(kill_and_time_restart(coord))
        kills += 1
    producer.join()
    accepted = [item for items in ray.get(workers, timeout=600) for item in items]
    restarts.sort()
    figures(
        f"coordinator restart under load, journal in {backend_of(coord)} (kill → first answered call)",
        f"median {restarts[len(restarts) // 2]:.2f} s, worst {restarts[-1]:.2f} s over {kills} kills; "
        f"the last start: {coord.info()['start']}",
    )

    assert kills >= 4 and len(enqueued) == total == len(set(enqueued))
    accepted_by_task: dict[str, list[tuple[str, int]]] = {}
    for task_id, attempt_id, result in accepted:
        accepted_by_task.setdefault(task_id, []).append((attempt_id, result))
    assert set(accepted_by_task) == set(enqueued), "some task was never completed"
    assert all(len(v) == 1 for v in accepted_by_task.values()), "a task accepted two results"
    page, seen = coord.query(queue="chaos", limit=1000), 0
    while True:
        for task in page.items:
            assert task.status is TaskStatus.SUCCEEDED and task.result == task.input * 2
            assert accepted_by_task[task.id] == [(task.attempt_id, task.result)]
            seen += 1
        if page.next_cursor is None:
            break
        page = coord.query(queue="chaos", limit=1000, cursor=page.next_cursor)
    assert seen == total


@ray.remote(num_cpus=0)
class SlowWorker:
    """Claims one task and sits on it."""

    def __init__(self, tenant: str) -> None:
        self.coord = rr.connect(tenant=tenant)

    def claim(self, queue: str) -> str:
        return self.coord.claim(queue, "doomed-worker", lease_s=0.5)[0].attempt_id


def test_a_task_held_by_a_killed_worker_is_requeued_and_completed_by_another(coord, session_coordinator):
    task_id = coord.enqueue("jobs", {"n": 21}, max_attempts=3)
    doomed = SlowWorker.remote(coord.tenant)
    first_attempt = ray.get(doomed.claim.remote("jobs"))
    ray.kill(doomed)
    [lease] = coord.claim("jobs", "rescuer", wait_s=30)
    assert lease.task.id == task_id and lease.attempt_id != first_attempt
    assert lease.task.error.type == "LeaseExpired"
    done = coord.complete(lease.attempt_id, 42)
    assert done.status is TaskStatus.SUCCEEDED and done.attempts == 2 and done.worker_id == "rescuer"
    with pytest.raises(StaleAttemptError):
        coord.complete(first_attempt, "zombie result")
