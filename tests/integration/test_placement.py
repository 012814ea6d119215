"""Every wait on Ray placing something is bounded: a session host, queue workers, a task in its runtime_env and Serve
replicas that cannot be placed fail with ``insufficient_resources`` (503) naming what was asked and what is free,
leave nothing pending behind, and fail at once when no node could ever hold them.

The test cluster has one ``rr_slot`` resource; the ``slot_taken`` fixture holds it, so anything asking for it waits.
"""

from __future__ import annotations

import concurrent.futures
import json
import uuid

import httpx
import pytest
import ray
from ray.util.state import list_actors

from ray_runtime._placement import Ask, await_placed, cancel_task
from ray_runtime.errors import InsufficientResourcesError
from ray_runtime.plugins import spawn_workers
from ray_runtime.plugins.serve_deploy import serve_plugin, unserve_plugin, wait_for_apps

from ..conftest import FIXTURE_PLUGINS
from ..waiting import wait_until

SCARCE = FIXTURE_PLUGINS / "scarce"


@ray.remote(num_cpus=0, resources={"rr_slot": 1})
class SlotHolder:
    def ready(self) -> bool:
        return True


@pytest.fixture
def slot_taken():
    """The cluster's one rr_slot, held for the test."""
    holder = SlotHolder.remote()
    ray.get(holder.ready.remote(), timeout=120)
    yield holder
    ray.kill(holder)


def pending(name_part: str) -> list[str]:
    """Actors still waiting to be placed whose name or class holds ``name_part``."""
    waiting = list_actors(filters=[("state", "!=", "DEAD"), ("state", "!=", "ALIVE")], limit=10_000)
    return [a.name or a.class_name for a in waiting if name_part in (a.name or "") or name_part in a.class_name]


def test_a_session_whose_host_cannot_be_placed_says_why_and_ends_in_error_leaving_no_demand(facade, slot_taken):
    tag = uuid.uuid4().hex[:8]
    with facade.client() as http, concurrent.futures.ThreadPoolExecutor(1) as background:
        creating = background.submit(
            http.post, "/api/v1/sessions", json={"template": "agents.slotted", "metadata": {"probe": tag}}
        )

        def waiting() -> dict | None:
            found = http.get("/api/v1/sessions", params={"metadata": json.dumps({"probe": tag})}).json()["items"]
            return found[0] if found and found[0]["status"] == "creating" and found[0]["waiting_for"] else None

        seen = wait_until(waiting, 60, what="the session to say what it waits for")
        assert "to be placed by Ray" in seen["waiting_for"] and "rr_slot: 1" in seen["waiting_for"]
        refused = creating.result(timeout=120)
        assert refused.status_code == 503
        error = refused.json()["error"]
        assert error["code"] == "insufficient_resources" and error["details"]["asked"] == {"rr_slot": 1.0}
        assert "rr_slot: 1" in error["message"] and "free" in error["message"] and "Traceback" not in refused.text
        assert error["details"]["waited_s"] >= 3
        session = http.get(f"/api/v1/sessions/{seen['id']}").json()
        assert session["status"] == "error" and "rr_slot" in session["error"] and session["waiting_for"] is None
    assert not pending(f"rr-session:{seen['id']}")  # the pending host was withdrawn


def test_a_session_asking_more_than_any_node_has_fails_at_once(facade):
    with facade.client() as http:
        refused = http.post("/api/v1/sessions", json={"template": "agents.greedy"})
        assert refused.status_code == 503
        error = refused.json()["error"]
        assert error["code"] == "insufficient_resources" and error["details"]["waited_s"] == 0
        assert "64 CPU" in error["message"] and "no node of this cluster can ever hold it" in error["message"]
        [session] = [
            s
            for s in http.get("/api/v1/sessions", params={"status": "error", "limit": 1000}).json()["items"]
            if s["template"] == "agents.greedy"
        ][:1]
        assert "64 CPU" in session["error"]


def test_sessions_of_templates_that_declare_no_resources_ask_little_of_their_host(facade):
    with facade.client() as http:
        template = http.get("/api/v1/templates/agents.plain").json()
        assert template["resources"]["num_cpus"] == 0.1  # not the 1 CPU of the other modes
        created = http.post("/api/v1/sessions", json={"template": "agents.plain"}).json()
        assert created["status"] == "active"
        http.delete(f"/api/v1/sessions/{created['id']}")


def test_spawn_workers_returns_once_placed_or_raises_and_leaves_nothing_behind(coord, slot_taken):
    queue = f"scarce-{uuid.uuid4().hex[:8]}"
    with pytest.raises(InsufficientResourcesError, match="rr_slot: 1") as waited:
        spawn_workers(SCARCE, "work", queue=queue, workers=2, tenant=coord.tenant, placement_timeout_s=2)
    assert waited.value.details["waited_s"] >= 2
    wait_until(lambda: not pending("_WorkerActor"), 60, what="the pending workers to be withdrawn")
    with pytest.raises(InsufficientResourcesError) as at_once:
        spawn_workers(SCARCE, "huge", queue=queue, tenant=coord.tenant)
    assert at_once.value.details["waited_s"] == 0

    ray.kill(slot_taken)  # now it fits: spawn_workers returns with the worker placed, and it works
    pool = spawn_workers(SCARCE, "work", queue=queue, tenant=coord.tenant, placement_timeout_s=60)
    try:
        assert ray.get([actor.worker_id.remote() for actor in pool.actors], timeout=5)
        task_id = coord.enqueue(queue, {"n": 41})
        assert coord.wait([task_id], timeout_s=60).done[0].result == 42
    finally:
        pool.kill()


async def test_a_task_that_cannot_start_in_time_is_cancelled(slot_taken):
    @ray.remote(num_cpus=0, resources={"rr_slot": 1})
    def needs_the_slot() -> int:
        return 1

    ref = needs_the_slot.remote()
    with pytest.raises(InsufficientResourcesError, match="waited 1 s for resources"):
        await await_placed(ref, Ask("a test task", {"rr_slot": 1}), 1.0, cancel_task(ref))
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(ref, timeout=60)


def test_serve_replicas_that_cannot_be_placed_are_refused_or_removed(facade, slot_taken):
    with facade.client() as http:  # more than any node: refused before anything is deployed
        refused = http.put("/api/v1/serve/applications/scarce", json={"plugin": "scarce", "actions": ["huge"]})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "insufficient_resources"
        assert http.get("/api/v1/serve/applications/scarce.huge").status_code == 404

    names = serve_plugin(SCARCE, actions=["work"])  # fits the cluster, but its slot is taken
    try:
        with pytest.raises(InsufficientResourcesError, match=r"scarce\.work"):
            wait_for_apps(names, timeout_s=3)

        def removed() -> bool:
            details = httpx.get(f"{ray_dashboard()}/api/serve/applications/", headers=auth(), timeout=30).json()
            return "scarce.work" not in (details.get("applications") or {})

        wait_until(removed, 60, what="the application to be removed")
        wait_until(lambda: not pending("SERVE_REPLICA::scarce.work"), 60, what="the pending replica to go")
    finally:
        unserve_plugin("scarce", ["work"])


def ray_dashboard() -> str:
    from ray_runtime._ray import dashboard_url

    return dashboard_url()


def auth() -> dict[str, str]:
    from ray_runtime.api.dashboard import ray_auth_headers

    return ray_auth_headers()
