"""The coordinator over HTTP: the same semantics and errors as the driver API, per tenant; and Agent Lightning's
legacy protocol at the root."""

from __future__ import annotations

import threading

import httpx

from ..conftest import unique
from ..waiting import wait_until


def test_a_task_round_trip_with_the_combined_call(facade):
    queue = unique("q")
    with facade.client("alpha-submit") as client:
        first = client.post(f"/api/v1/queues/{queue}/tasks", json={"input": {"n": 1}, "priority": 5}).json()["task_id"]
        batch = client.post(
            f"/api/v1/queues/{queue}/tasks/batch", json={"tasks": [{"input": {"n": 2}}, {"input": {"n": 3}}]}
        )
        assert batch.status_code == 201 and len(batch.json()["task_ids"]) == 2
        [lease] = client.post(f"/api/v1/queues/{queue}/claim", json={"worker_id": "w1", "lease_s": 30}).json()
        assert lease["task"]["id"] == first and lease["task"]["input"] == {"n": 1}
        assert (
            client.post(f"/api/v1/attempts/{lease['attempt_id']}/heartbeat", json={"extend_s": 60}).status_code == 200
        )
        done = client.post(
            f"/api/v1/attempts/{lease['attempt_id']}/complete",
            json={"result": {"ok": True}, "next": {"queue": queue, "worker_id": "w1"}},
        ).json()
        assert done["task"]["status"] == "succeeded" and len(done["leases"]) == 1
        stale = client.post(f"/api/v1/attempts/{lease['attempt_id']}/complete", json={"result": 2})
        assert stale.status_code == 409 and stale.json()["error"]["code"] == "task_finished"
        failed = client.post(
            f"/api/v1/attempts/{done['leases'][0]['attempt_id']}/fail", json={"error": "boom", "retryable": False}
        ).json()
        assert failed["status"] == "failed" and failed["error"]["message"] == "boom"
        stats = client.get(f"/api/v1/queues/{queue}/stats").json()
        assert stats["counts"]["succeeded"] == 1 and stats["counts"]["failed"] == 1 and stats["counts"]["queued"] == 1
        assert client.get(f"/api/v1/tasks/{first}").json()["result"] == {"ok": True}
        page = client.get("/api/v1/tasks", params={"queue": queue, "limit": 2}).json()
        assert len(page["items"]) == 2 and page["next_cursor"]
        rest = client.get("/api/v1/tasks", params={"queue": queue, "cursor": page["next_cursor"]}).json()
        assert len(rest["items"]) == 1 and rest["next_cursor"] is None
        assert any(w["worker_id"] == "w1" for w in client.get("/api/v1/workers").json())


def test_long_poll_claim_and_wait_over_http(facade):
    queue, worker = unique("lp"), unique("poller")
    with facade.client("alpha-submit") as client:
        got: list = []
        poller = threading.Thread(
            target=lambda: got.append(
                client.post(f"/api/v1/queues/{queue}/claim", json={"worker_id": worker, "wait_s": 30})
            )
        )
        poller.start()
        wait_until(
            lambda: any(w["worker_id"] == worker for w in client.get("/api/v1/workers").json()),
            30,
            interval_s=0.02,
            what="the claim to reach the coordinator",
        )
        assert not got, "the claim answered before any task existed: it did not wait"
        task_id = client.post(f"/api/v1/queues/{queue}/tasks", json={"input": "x"}).json()["task_id"]
        poller.join(timeout=30)
        [lease] = got[0].json()
        assert lease["task"]["id"] == task_id
        waiter = threading.Thread(
            target=lambda: got.append(client.post("/api/v1/tasks/wait", json={"task_ids": [task_id], "timeout_s": 30}))
        )
        waiter.start()
        client.post(f"/api/v1/attempts/{lease['attempt_id']}/complete", json={"result": "done"})
        waiter.join(timeout=30)
        result = got[1].json()
        assert [t["result"] for t in result["done"]] == ["done"] and result["pending"] == []


def test_cancel_retry_purge(facade):
    queue = unique("ops")
    with facade.client("alpha-submit") as client:
        ids = client.post(
            f"/api/v1/queues/{queue}/tasks/batch", json={"tasks": [{"input": i} for i in range(3)]}
        ).json()
        cancelled = client.post(f"/api/v1/tasks/{ids['task_ids'][0]}/cancel").json()
        assert cancelled["status"] == "cancelled"
        assert client.post(f"/api/v1/tasks/{ids['task_ids'][0]}/cancel").status_code == 409
        assert client.post(f"/api/v1/tasks/{ids['task_ids'][0]}/retry").json()["status"] == "queued"
        assert client.post(f"/api/v1/queues/{queue}/purge").json() == {"cancelled": 3}


def test_resources_over_http(facade):
    with facade.client("alpha-submit") as client:
        v1 = client.post(
            "/api/v1/resources", json={"resources": {"p": {"resource_type": "prompt_template", "template": "Hi {x}"}}}
        )
        assert v1.status_code == 201
        v2 = client.patch(
            "/api/v1/resources", json={"resources": {"cfg": {"resource_type": "json", "value": 7}}}
        ).json()
        assert set(v2["resources"]) == {"p", "cfg"} and v2["version"] == v1.json()["version"] + 1
        assert client.get("/api/v1/resources/latest").json()["resources_id"] == v2["resources_id"]
        assert client.get(f"/api/v1/resources/{v1.json()['resources_id']}").json()["version"] == v1.json()["version"]
        history = client.get("/api/v1/resources", params={"limit": 2}).json()
        assert history[0]["resources_id"] == v2["resources_id"]
        bad = client.post("/api/v1/resources", json={"resources": {"llm": {"resource_type": "llm", "endpoint": "x"}}})
        assert bad.status_code == 422 and "model" in bad.text


def test_tenants_never_see_each_others_queues_tasks_resources_or_workers(facade):
    queue = unique("private")
    with facade.client("alpha") as alpha, facade.client("beta") as beta:
        task_id = alpha.post(f"/api/v1/queues/{queue}/tasks", json={"input": "secret"}).json()["task_id"]
        [lease] = alpha.post(f"/api/v1/queues/{queue}/claim", json={"worker_id": "alpha-w"}).json()
        rid = alpha.post("/api/v1/resources", json={"resources": {"k": {"resource_type": "json", "value": 1}}}).json()
        assert beta.get(f"/api/v1/tasks/{task_id}").status_code == 404
        assert beta.post(f"/api/v1/tasks/{task_id}/cancel").status_code == 404
        assert beta.post(f"/api/v1/attempts/{lease['attempt_id']}/complete", json={"result": 1}).status_code == 404
        assert beta.get(f"/api/v1/resources/{rid['resources_id']}").status_code == 404
        assert queue not in beta.get("/api/v1/queues").json()
        assert beta.get(f"/api/v1/queues/{queue}/stats").json()["counts"]["leased"] == 0
        assert all(w["worker_id"] != "alpha-w" for w in beta.get("/api/v1/workers").json())
        assert all(t["id"] != task_id for t in beta.get("/api/v1/tasks").json()["items"])


def test_agent_lightning_legacy_protocol_with_basic_auth(facade):
    """What that project's legacy client does: GET /task, GET /resources/*, POST /rollout (no auth header)."""
    with facade.client("beta") as admin:
        admin.post(
            "/api/v1/resources",
            json={
                "resources": {
                    "main_llm": {
                        "resource_type": "llm",
                        "endpoint": "http://llm/v1",
                        "model": "m",
                        "sampling_parameters": {"temperature": 0.5},
                    },
                    "prompt": {"resource_type": "prompt_template", "template": "Solve {q}", "engine": "f-string"},
                }
            },
        )
        task_id = admin.post(
            "/api/v1/queues/rollouts/tasks", json={"input": {"q": "1+1"}, "metadata": {"mode": "train"}}
        ).json()["task_id"]
    legacy = httpx.Client(base_url=facade.url.replace("http://", f"http://agent:{facade.keys['beta']}@"), timeout=60)
    task_if_any = legacy.get("/task").json()
    assert set(task_if_any) == {"is_available", "task"} and task_if_any["is_available"]
    task = task_if_any["task"]
    assert set(task) == {
        "rollout_id",
        "input",
        "mode",
        "resources_id",
        "create_time",
        "last_claim_time",
        "num_claims",
        "metadata",
    }
    assert task["input"] == {"q": "1+1"} and task["mode"] == "train" and task["num_claims"] == 1
    latest = legacy.get("/resources/latest").json()
    assert set(latest) >= {"resources_id", "resources"} and latest["resources"]["main_llm"]["model"] == "m"
    assert legacy.get(f"/resources/{task['resources_id']}").json()["resources_id"] == task["resources_id"]
    reply = legacy.post("/rollout", json={"rollout_id": task["rollout_id"], "final_reward": 1.0, "metadata": {}}).json()
    assert reply["status"] == "ok"
    with facade.client("beta") as admin:
        assert admin.get(f"/api/v1/tasks/{task_id}").json()["result"]["final_reward"] == 1.0
    assert legacy.get("/task").json() == {"is_available": False, "task": None}
    assert httpx.get(f"{facade.url}/task").status_code == 401
