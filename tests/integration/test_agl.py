"""Agent Lightning 1.0's server API at ``/agl``: a scripted sequence of calls (every route, good and bad input) gets
the same status codes and bodies as from AGL 1.0.2's own server run in-process (ids and timestamps aside); rollouts
and their events outlive a coordinator kill; another tenant's rollouts are missing; a proxied model call that the
agent abandons is dropped without an event."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import ray

from ..agl_upstream import model_server
from ..waiting import wait_until

agl_app = pytest.importorskip("agentlightning.server.app", reason="Agent Lightning 1.0 is installed by `make`")

MODEL = "Qwen/Qwen2.5-7B-Instruct"  # the façade's default proxy model, as AGL's own default
REFERENCE_KEY = "reference-key"
_VOLATILE = {"timestamp", "created_at", "updated_at", "latency_ms"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[str, Any]]:
    with model_server() as server:
        yield server


@pytest.fixture
def reference() -> Iterator[httpx.Client]:
    """AGL's own server in this process, empty, with one key."""
    from agentlightning.server import store
    from fastapi.testclient import TestClient

    for table in (store._rollouts, store._events, store._models):
        table.clear()
    store._terminal_order.clear()
    config = {
        "key": REFERENCE_KEY,
        "default_proxy": {
            "model_name": MODEL,
            "include_log_probs": True,
            "include_routed_experts": False,
            "train": {"temperature": 1},
            "val": {"temperature": 0.7},
        },
    }
    with TestClient(agl_app.create_app(config)) as client:
        client.headers["Authorization"] = f"Bearer {REFERENCE_KEY}"
        yield client


def tenant_key(session_coordinator, scope: str = "admin") -> str:
    """A key of a tenant of its own (rollout ids are per tenant, and the ended order counts per tenant)."""
    return tenant_and_key(session_coordinator, scope)[1]


def tenant_and_key(session_coordinator, scope: str = "admin") -> tuple[str, str]:
    from ray_runtime.keys import KEYS_NAMESPACE, new_key
    from ray_runtime.models.api import Scope

    key, record = new_key(f"agl-{uuid.uuid4().hex[:10]}", Scope(scope), "agl-test")
    session_coordinator.kv.put(KEYS_NAMESPACE, record.key_id, record.model_dump(mode="json"))
    return record.tenant, key


@pytest.fixture
def ours(facade, session_coordinator) -> Iterator[httpx.Client]:
    key = tenant_key(session_coordinator)
    with httpx.Client(base_url=f"{facade.url}/agl", headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
        yield c


def stable(value: Any) -> Any:
    """A body without what differs between two runs by nature (times, latencies)."""
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


def script(endpoint: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Every route, with good and bad input, in an order a trainer, a controller and an agent would use them."""
    chat = {"messages": [{"role": "user", "content": "what is 2+2?"}], "max_tokens": 8}
    proxy = "/proxy/rollout/{}/attempt/a1/mode/{}/openai/v1/{}"
    prompt_a = {"prompt_token_ids": [1, 2, 3], "choices": [{"token_ids": [4, 5]}]}
    prompt_b = {"prompt_token_ids": [1, 2, 3, 4, 5, 6], "choices": [{"token_ids": [7]}]}
    return [
        ("GET", "/healthz", {"auth": False}),
        ("GET", "/api/rollouts", {"params": {"state_in": "queuing"}, "auth": False}),
        (
            "POST",
            "/api/rollouts",
            {
                "json": [
                    {"rollout_id": "r1", "input": {"data_id": "d1", "question": "2+2"}},
                    {
                        "rollout_id": "r2",
                        "input": "plain",
                        "is_train": False,
                        "config": {"timeout_seconds": 60, "local": {"agent_class": "a.B", "env_map": {"X": "1"}}},
                        "metadata": {"batch_idx": 1, "sample_idx_in_batch": 0, "extra": "kept"},
                    },
                    {"rollout_id": "r3", "input": {"instance_id": "i3"}},
                ]
            },
        ),
        ("POST", "/api/rollouts", {"json": [{"rollout_id": "r1", "input": "other"}]}),
        ("POST", "/api/rollouts", {"json": [{"is_train": "nope"}]}),
        ("POST", "/api/rollouts", {"json": {"input": 1}}),
        ("POST", "/api/rollouts", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
        ("GET", "/api/rollouts", {"params": {"state_in": "queuing"}}),
        ("GET", "/api/rollouts", {"params": {"state_in": ["queuing", "running"], "limit": 1}}),
        ("GET", "/api/rollouts", {}),
        ("GET", "/api/rollouts", {"params": {"state_in": "bogus"}}),
        ("GET", "/api/rollouts/r1", {}),
        ("GET", "/api/rollouts/nope", {}),
        ("PATCH", "/api/rollouts/r1", {"json": {"status": {"state": "succeeded"}}}),
        ("PATCH", "/api/rollouts/r1", {"json": {"status": {"state": "running", "last_attempt_id": "a1"}}}),
        ("PATCH", "/api/rollouts/r1", {"json": {"status": {"state": "running"}}}),
        ("PATCH", "/api/rollouts/r1", {"json": {"status": {"bogus": 1}}}),
        ("PATCH", "/api/rollouts/r1", {"json": {"status": {"state": "done"}}}),
        ("PATCH", "/api/rollouts/r1", {"json": {}}),
        ("PATCH", "/api/rollouts/r1", {"json": {"status": {"k8s_job_name": "job-1"}}}),
        ("PATCH", "/api/rollouts/nope", {"json": {"status": {"state": "running"}}}),
        ("POST", "/api/rollouts/r1/attempt/a1/events", {"json": {"event_type": "note", "data": {"k": [1, 2]}}}),
        ("POST", "/api/rollouts/r1/attempt/a0/events", {"json": {"event_type": "note"}}),
        ("POST", "/api/rollouts/nope/attempt/a1/events", {"json": {"event_type": "note"}}),
        ("POST", "/api/rollouts/r1/attempt/a1/events", {"json": {"data": {}}}),
        ("GET", "/api/rollouts/r1", {}),
        ("POST", proxy.format("r1", "train", "chat/completions"), {"json": chat}),
        (
            "POST",
            "/api/models",
            {"json": [{"model": MODEL, "endpoint": endpoint}, {"model": "other", "endpoint": "x"}]},
        ),
        ("POST", "/api/models", {"json": [{"model": MODEL}]}),
        ("POST", proxy.format("r1", "train", "chat/completions"), {"json": chat}),
        ("POST", proxy.format("r1", "val", "completions"), {"json": {"prompt": "once upon", "max_tokens": 4}}),
        ("POST", proxy.format("r1", "test", "chat/completions"), {"json": chat}),
        ("POST", proxy.format("r1", "train", "embeddings"), {"json": chat}),
        ("POST", proxy.format("nope", "train", "chat/completions"), {"json": chat}),
        ("POST", proxy.format("r1", "train", "chat/completions"), {"json": {**chat, "stream": True}}),
        ("POST", proxy.format("r1", "train", "chat/completions"), {"content": b"{oops"}),
        ("POST", proxy.format("r1", "train", "chat/completions"), {"json": [1, 2]}),
        (
            "POST",
            "/api/rollouts/r1/attempt/a1/events",
            {
                "json": {
                    "event_type": "model_request",
                    "data": {"response": prompt_a, "routed_experts": [[1]], "server": {"model": MODEL, "version": 0}},
                }
            },
        ),
        (
            "POST",
            "/api/rollouts/r1/attempt/a1/events",
            {
                "json": {
                    "event_type": "model_request",
                    "data": {"response": prompt_b, "routed_experts": [[2]], "server": {"model": MODEL, "version": 0}},
                }
            },
        ),
        (
            "POST",
            "/api/rollouts/r1/attempt/a1/events",
            {
                "json": {
                    "event_type": "model_request",
                    "data": {"response": prompt_b, "server": {"model": MODEL, "version": 1}},
                }
            },
        ),
        (
            "POST",
            "/api/rollouts/r1/attempt/a1/events",
            {"json": {"event_type": "reward", "data": {"value": 1.0, "source": "agent", "message": "right"}}},
        ),
        ("GET", "/api/rollouts/r1/events", {}),
        ("GET", "/api/rollouts/r1/events", {"params": {"format": "triplet"}}),
        ("GET", "/api/rollouts/r1/events", {"params": {"event_type": "reward"}}),
        ("GET", "/api/rollouts/r1/events", {"params": {"include_routed_experts": "false", "format": "triplet"}}),
        ("GET", "/api/rollouts/r2/events", {}),
        ("GET", "/api/rollouts/nope/events", {}),
        ("POST", "/proxy/pause", {"json": {"retry_after_seconds": 7, "reason": "weights sync"}}),
        ("POST", proxy.format("r1", "train", "chat/completions"), {"json": chat}),
        ("GET", "/proxy/state", {}),
        ("POST", "/proxy/resume", {}),
        ("GET", "/proxy/state", {}),
        ("PATCH", "/api/rollouts/r1", {"json": {"status": {"state": "succeeded"}}}),
        ("PATCH", "/api/rollouts/r2", {"json": {"status": {"state": "failed", "error_message": "agent crashed"}}}),
        ("PATCH", "/api/rollouts/r3", {"json": {"status": {"state": "running"}}}),
        ("GET", "/api/rollouts/terminal", {}),
        ("GET", "/api/rollouts/terminal", {"params": {"after": 1, "limit": 1}}),
        ("GET", "/api/rollouts/terminal", {"params": {"after": -5, "limit": 0}}),
        ("POST", "/api/rollouts/r1/attempt/a1/events", {"json": {"event_type": "late", "data": {}}}),
        ("DELETE", "/api/rollouts/r1", {}),
        ("DELETE", "/api/rollouts/r1", {}),
        ("GET", "/api/rollouts/terminal", {}),
        ("GET", "/api/rollouts/r1", {}),
        ("GET", "/api/rollouts", {"params": {"state_in": ["succeeded", "failed", "running"]}}),
        ("DELETE", "/api/models", {}),
        ("POST", proxy.format("r3", "train", "chat/completions"), {"json": chat}),
    ]


def call(client: httpx.Client, method: str, path: str, options: dict[str, Any]) -> httpx.Response:
    options = dict(options)
    headers = options.pop("headers", {})
    if not options.pop("auth", True):
        headers = {**headers, "Authorization": ""}
    return client.request(method, path, headers=headers, **options)


def test_every_route_answers_as_agent_lightnings_own_server(ours, reference, upstream):
    endpoint, _ = upstream
    statuses = set()
    for method, path, options in script(endpoint):
        expected, got = call(reference, method, path, options), call(ours, method, path, options)
        where = f"{method} {path} {options}"
        assert got.status_code == expected.status_code, f"{where}: {got.status_code} {got.text[:500]}"
        statuses.add(got.status_code)
        if expected.status_code == 204:
            continue
        assert stable(got.json()) == stable(expected.json()), where
        for header in ("retry-after", "x-agl-paused"):
            assert got.headers.get(header) == expected.headers.get(header), where
    assert statuses == {200, 201, 204, 400, 401, 404, 409, 422, 429, 503}  # the script reaches every answer


def test_created_rollouts_get_ids_and_x_api_key_works(facade, session_coordinator):
    key = tenant_key(session_coordinator)
    with httpx.Client(base_url=f"{facade.url}/agl", headers={"x-api-key": key}, timeout=60) as client:
        [made] = client.post("/api/rollouts", json=[{"input": 1}]).json()
        assert len(made["rollout_id"]) == 32 and made["status"]["state"] == "queuing"
        assert client.get(f"/api/rollouts/{made['rollout_id']}").json()["rollout"] == made
    assert httpx.get(f"{facade.url}/agl/api/rollouts/x", headers={"x-api-key": "wrong"}).json() == {
        "detail": "Invalid or missing API key"
    }


def test_another_tenants_rollout_is_missing_and_ids_are_per_tenant(facade, session_coordinator):
    mine, theirs = tenant_key(session_coordinator), tenant_key(session_coordinator)
    with (
        httpx.Client(base_url=f"{facade.url}/agl", headers={"Authorization": f"Bearer {mine}"}) as me,
        httpx.Client(base_url=f"{facade.url}/agl", headers={"Authorization": f"Bearer {theirs}"}) as them,
    ):
        me.post("/api/rollouts", json=[{"rollout_id": "shared", "input": "mine"}]).raise_for_status()
        me.post("/api/rollouts/shared/attempt/0/events", json={"event_type": "note", "data": {"who": "me"}})
        missing = them.get("/api/rollouts/shared")
        assert missing.status_code == 404 and missing.json() == {"detail": "Rollout not found: shared"}
        assert them.get("/api/rollouts/shared/events").status_code == 404
        assert them.post("/api/rollouts/shared/attempt/0/events", json={"event_type": "x"}).status_code == 404
        assert them.delete("/api/rollouts/shared").status_code == 204
        them.post("/api/rollouts", json=[{"rollout_id": "shared", "input": "theirs"}]).raise_for_status()
        assert them.get("/api/rollouts/shared/events").json() == []
        assert me.get("/api/rollouts/shared").json()["rollout"]["input"] == "mine"
        assert [e["data"] for e in me.get("/api/rollouts/shared/events").json()] == [{"who": "me"}]


def test_rollouts_and_their_events_outlive_a_coordinator_kill(facade, session_coordinator):
    key = tenant_key(session_coordinator)
    with httpx.Client(base_url=f"{facade.url}/agl", headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
        c.post("/api/rollouts", json=[{"rollout_id": f"k{i}", "input": i} for i in range(20)]).raise_for_status()
        for i in range(10):
            c.patch(f"/api/rollouts/k{i}", json={"status": {"state": "running", "last_attempt_id": "a"}})
            c.post(f"/api/rollouts/k{i}/attempt/a/events", json={"event_type": "reward", "data": {"value": i}})
        for i in range(5):
            c.patch(f"/api/rollouts/k{i}", json={"status": {"state": "succeeded"}})
        before = {i: c.get(f"/api/rollouts/k{i}").json() for i in range(20)}
        terminal = c.get("/api/rollouts/terminal").json()

        pid = session_coordinator.info()["pid"]
        ray.kill(session_coordinator.actor, no_restart=False)
        wait_until(lambda: _answers(session_coordinator, pid), 120, interval_s=0.1, what="the coordinator to return")

        assert {i: c.get(f"/api/rollouts/k{i}").json() for i in range(20)} == before
        assert c.get("/api/rollouts/terminal").json() == terminal
        assert [e["data"]["value"] for e in c.get("/api/rollouts/k3/events").json()] == [3]
        assert c.patch("/api/rollouts/k7", json={"status": {"state": "queuing"}}).status_code == 409


def test_registered_models_are_the_tenants_llm_resources(facade, session_coordinator):
    tenant, key = tenant_and_key(session_coordinator)
    resources = session_coordinator.for_tenant(tenant).resources
    resources.add({"prompt": {"resource_type": "prompt_template", "template": "Solve {q}"}})
    with httpx.Client(base_url=f"{facade.url}/agl", headers={"x-api-key": key}, timeout=60) as client:
        models = [{"model": "m", "endpoint": "http://a:8000/v1"}, {"model": "m", "endpoint": "http://b:8000/v1"}]
        client.post("/api/models", json=models).raise_for_status()
        client.post("/api/models", json=[{"model": "m", "endpoint": "http://a:8000/v1", "version": 2}])
        latest = resources.latest().resources
        llms = sorted((r.endpoint, r.model) for name, r in latest.items() if name.startswith("agl/"))
        assert llms == [("http://a:8000/v1", "m"), ("http://b:8000/v1", "m")]  # one per endpoint, again replaces
        assert latest["prompt"].template == "Solve {q}"  # the tenant's own resources stay

        assert client.delete("/api/models").status_code == 200
        assert list(resources.latest().resources) == ["prompt"]


def test_ended_rollouts_nobody_deletes_leave_with_their_events_after_the_retention(ray_cluster, tmp_path):
    import ray_runtime as rr
    from ray_runtime.coordinator.rollout_events import open_event_store
    from ray_runtime.models.agl import RolloutCreate

    from ..conftest import SESSION_SETTINGS

    name = f"retention-{uuid.uuid4().hex[:8]}"
    coord = rr.connect(name=name, storage=str(tmp_path), rollout_retention_s=2.0, **SESSION_SETTINGS)
    events = open_event_store(journal_url=None, coordinator=name, storage=tmp_path)
    try:
        made = coord.rollouts.create([RolloutCreate(rollout_id=r, input=0) for r in ("ended", "live")])
        for rollout in made:
            events.append(coord.tenant, rollout.task_id, "0", "reward", {"value": 1})
        coord.rollouts.patch("ended", {"state": "failed"})
        ended, live = (rollout.task_id for rollout in made)
        wait_until(lambda: coord.rollouts.find("ended") is None, 60, what="the retention to remove the ended one")
        wait_until(lambda: events.events(coord.tenant, ended, "0") == [], 30, what="its events to go")
        assert coord.rollouts.find("live") is not None  # a rollout that has not ended stays, with its events
        assert len(events.events(coord.tenant, live, "0")) == 1
    finally:
        events.close()
        ray.kill(coord.actor, no_restart=True)


def _answers(coordinator, old_pid: int) -> bool:
    try:
        return coordinator.info()["pid"] != old_pid
    except Exception:
        return False


def test_an_agent_that_hangs_up_drops_its_call_and_leaves_no_event(ours, upstream):
    import socket
    import threading

    endpoint, app = upstream
    release = threading.Event()
    arrived = threading.Event()

    @app.post("/v1/slow/chat/completions")
    async def slow() -> dict[str, Any]:
        import asyncio

        arrived.set()
        await asyncio.to_thread(release.wait, 60)
        return {"choices": []}

    ours.post("/api/rollouts", json=[{"rollout_id": "h1", "input": 0}]).raise_for_status()
    ours.post("/api/models", json=[{"model": MODEL, "endpoint": endpoint.replace("/v1", "/v1/slow")}])
    path = "/agl/proxy/rollout/h1/attempt/0/mode/train/openai/v1/chat/completions"
    url = httpx.URL(str(ours.base_url))
    body = b'{"messages": []}'
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {url.host}\r\nAuthorization: {ours.headers['Authorization']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection((url.host, url.port)) as agent:
        agent.sendall(head.encode() + body)
        assert arrived.wait(60), "the call never reached the model server"
    # the agent hung up while the model server was still working on its call: the façade drops the call
    wait_until(lambda: ours.get("/proxy/state").json()["inflight"] == 0, 30, what="the abandoned call to end")
    release.set()
    assert ours.get("/api/rollouts/h1/events").json() == []


@pytest.fixture
def runner_for(facade, session_coordinator):
    """A rollout runner of a fresh tenant on the test plugin's agents, running in a thread; yields (key, runner)."""
    import threading

    from ray_runtime.keys import KEYS_NAMESPACE, new_key
    from ray_runtime.models.api import Scope
    from ray_runtime.plugins.agl_runner import RolloutRunner

    from ..conftest import FIXTURE_PLUGINS

    started = []

    def start(**options):
        key, record = new_key(f"agl-{uuid.uuid4().hex[:10]}", Scope.ADMIN, "trainer")
        session_coordinator.kv.put(KEYS_NAMESPACE, record.key_id, record.model_dump(mode="json"))
        runner = RolloutRunner(
            session_coordinator.for_tenant(record.tenant),
            plugin=FIXTURE_PLUGINS / "agl_agent",
            agl_url=f"{facade.url}/agl",
            num_cpus=0.1,
            poll_s=0.05,
            **options,
        )
        stop = threading.Event()
        thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
        thread.start()
        started.append((stop, thread))
        return key, runner

    yield start
    for stop, thread in started:
        stop.set()
        thread.join(timeout=60)


def test_a_training_step_of_agl_rollout_managers_runs_on_the_runner(facade, upstream, runner_for):
    from agentlightning.verl.agl_rollout_manager import AglAsyncRolloutManager, AglRolloutManager

    endpoint, _ = upstream
    key, _ = runner_for(concurrency=4)
    options = dict(
        agl_base_url=f"{facade.url}/agl",
        agl_key=key,
        model=MODEL,
        step=1,
        train_rollout_n=2,
        poll_interval_seconds=0.05,
        local_agent_class="agl_agent.MathAgent",
        local_env_map={"QUESTION": "input.question"},
    )
    manager = AglRolloutManager(**options)
    manager.register_model([endpoint])
    completed = manager.enqueue_and_wait_until_completed({"question": ["what is 2+2", "what is 3+3"]}, is_train=True)
    assert len(completed) == 4 and {c.rollout_state for c in completed} == {"succeeded"}
    for rollout in completed:
        [triplet] = rollout.triplets
        assert triplet.reward == 1.0 and rollout.final_reward == 1.0
        assert len(triplet.prompt["token_ids"]) == 5 and len(triplet.response["token_ids"]) == 3
        assert triplet.response["log_probs"] == [-0.5, -1.0, -1.5]  # asked for by the proxy's training rewrite
    with httpx.Client(base_url=f"{facade.url}/agl", headers={"Authorization": f"Bearer {key}"}) as client:
        states = ["queuing", "running", "succeeded", "failed"]
        assert client.get("/api/rollouts", params={"state_in": states}).json() == []  # it deleted what it read

    grouped = AglAsyncRolloutManager(**{**options, "local_agent_class": "agl_agent.AsyncMathAgent"})
    done, carried = grouped.enqueue_and_wait_until_group_completed(
        {"question": ["a", "b", "c"]}, [], is_train=True, target_finished_group_num=2
    )
    assert len({c.data_id for c in done}) >= 2 and all(c.final_reward == 1.0 for c in done)
    assert len(done) + len(carried) == 6


def test_the_runner_fails_a_rollout_whose_agent_raises_and_one_without_an_agent(facade, runner_for):
    key, _ = runner_for()
    with httpx.Client(base_url=f"{facade.url}/agl", headers={"Authorization": f"Bearer {key}"}) as client:
        client.post(
            "/api/rollouts",
            json=[
                {"rollout_id": "bad", "input": 1, "config": {"local": {"agent_class": "agl_agent.FailingAgent"}}},
                {"rollout_id": "none", "input": 2},
            ],
        ).raise_for_status()
        ended = wait_until(
            lambda: (page := client.get("/api/rollouts/terminal").json())["total_terminal"] == 2 and page,
            120,
            what="both rollouts to end",
        )
        assert {item["state"] for item in ended["items"]} == {"failed"}
        assert "the agent gave up" in client.get("/api/rollouts/bad").json()["rollout"]["status"]["error_message"]
        assert "agent_class" in client.get("/api/rollouts/none").json()["rollout"]["status"]["error_message"]


def test_the_runner_command_says_how_each_rollout_ended(facade, ray_cluster, session_coordinator):
    from typer.testing import CliRunner

    from ray_runtime.cli import app

    from ..conftest import FIXTURE_PLUGINS

    tenant, key = tenant_and_key(session_coordinator)
    with httpx.Client(base_url=f"{facade.url}/agl", headers={"Authorization": f"Bearer {key}"}) as client:
        failing = {"local": {"agent_class": "agl_agent.FailingAgent"}}
        client.post("/api/rollouts", json=[{"rollout_id": "cli", "input": 1, "config": failing}]).raise_for_status()
        args = ["agl", "runner", "--plugin", str(FIXTURE_PLUGINS / "agl_agent"), "--url", f"{facade.url}/agl"]
        args += ["--tenant", tenant, "--address", ray_cluster["address"], "--max-rollouts", "1", "--num-cpus", "0.1"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "failed cli: agent failed: ValueError('the agent gave up')" in result.stdout
        assert "(0 succeeded, 1 failed, 0 running)" in result.stdout
        assert "done: 0 succeeded, 1 failed" in result.stdout
        assert client.get("/api/rollouts/cli").json()["rollout"]["status"]["state"] == "failed"


def test_a_rollout_whose_task_is_lost_runs_again_as_a_new_attempt(facade, upstream, runner_for):
    import os
    import signal

    endpoint, _ = upstream
    key, _ = runner_for()
    with httpx.Client(base_url=f"{facade.url}/agl", headers={"Authorization": f"Bearer {key}"}) as client:
        client.post("/api/models", json=[{"model": MODEL, "endpoint": endpoint}]).raise_for_status()
        config = {"local": {"agent_class": "agl_agent.FlakyAgent", "env_map": {"QUESTION": "input"}}}
        client.post("/api/rollouts", json=[{"rollout_id": "f1", "input": "what is 1+1", "config": config}])
        [started] = wait_until(lambda: client.get("/api/rollouts/f1/events").json(), 120, what="attempt 0 to start")
        os.kill(started["data"]["pid"], signal.SIGKILL)  # the worker running attempt 0, as if its node were lost
        done = wait_until(
            lambda: (r := client.get("/api/rollouts/f1").json())["rollout"]["status"]["state"] == "succeeded" and r,
            120,
            what="the second attempt to succeed",
        )
        assert done["attempts"] == ["0", "1"] and done["rollout"]["status"]["last_attempt_id"] == "1"
        events = client.get("/api/rollouts/f1/events").json()
        assert [e["event_type"] for e in events] == ["model_request", "reward"]
        assert {e["attempt_id"] for e in events} == {"1"}


def test_agent_lightnings_local_reconciler_runs_rollouts_against_the_routes(
    facade, session_coordinator, upstream, monkeypatch
):
    import asyncio

    from agentlightning.client import AgentLightningAsyncClient
    from agentlightning.controller.local_reconciler import LocalReconciler
    from omegaconf import OmegaConf

    from ..conftest import FIXTURE_PLUGINS

    endpoint, _ = upstream
    key = tenant_key(session_coordinator)
    monkeypatch.setenv("PYTHONPATH", str(FIXTURE_PLUGINS / "agl_agent"))  # where its subprocesses find the agent
    agl = f"{facade.url}/agl"
    config = OmegaConf.create(
        {
            "runner_type": "local",
            "local_runner": {"maximum_size": 2, "poll_interval": 0.05},
            "agl_server": {"url": agl, "key": key},
        }
    )
    with httpx.Client(base_url=agl, headers={"Authorization": f"Bearer {key}"}) as client:
        client.post("/api/models", json=[{"model": MODEL, "endpoint": endpoint}]).raise_for_status()
        local = {"agent_class": "agl_agent.MathAgent", "env_map": {"QUESTION": "input.q"}}
        items = [{"rollout_id": f"l{i}", "input": {"q": f"question {i}"}, "config": {"local": local}} for i in range(3)]
        client.post("/api/rollouts", json=items).raise_for_status()

        async def reconcile() -> None:
            async with AgentLightningAsyncClient(base_url=agl, key=key, timeout=60) as api:
                reconciler = LocalReconciler(api, config)
                running = asyncio.create_task(reconciler.run())
                while (await api.get("/api/rollouts/terminal")).json()["total_terminal"] < 3:
                    await asyncio.sleep(0.05)
                reconciler.stop()
                await running

        asyncio.run(asyncio.wait_for(reconcile(), 180))
        for i in range(3):
            status = client.get(f"/api/rollouts/l{i}").json()["rollout"]["status"]
            assert status["state"] == "succeeded" and status["last_attempt_id"] == "0"
            rewards = client.get(f"/api/rollouts/l{i}/events", params={"event_type": "reward"}).json()
            assert [e["data"]["value"] for e in rewards] == [1.0]
