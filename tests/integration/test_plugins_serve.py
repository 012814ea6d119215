"""Serve mode: HTTP, streaming (NDJSON, SSE), WebSocket, validation, resources via user_config, safe deploys."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
import websockets.sync.client as ws_client
from ray import serve

import ray_runtime as rr
from ray_runtime.keys import KEYS_NAMESPACE, new_key
from ray_runtime.models.api import Scope
from ray_runtime.plugins.manifest import load
from ray_runtime.plugins.serve_deploy import serve_plugin, unserve_plugin, wait_for_apps

from ..conftest import FIXTURE_PLUGINS, PLUGINS
from ..waiting import wait_until

TENANT = f"serve-{uuid.uuid4().hex[:8]}"
TEXT = "Ray runs tasks. Plugins become endpoints! Do they stream? They do."


@pytest.fixture(scope="module")
def served(ray_cluster, serve_url, session_coordinator):
    """hello (through the CLI), textstats, rollout (uses resources) and failing, deployed once for the module."""

    @serve.deployment
    class Bystander:
        def __call__(self, request) -> str:
            return "still here"

    serve.run(Bystander.bind(), name="bystander", route_prefix="/bystander")  # an app we must not clobber
    coord = session_coordinator.for_tenant(TENANT)
    v1 = coord.resources.add(
        {
            "llm": rr.LLM(endpoint="http://llm", model="m", sampling_parameters={"temperature": 0.7}),
            "prompt": rr.PromptTemplate(template="Q: {question}"),
        }
    )
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "ray_runtime",
            "plugin",
            "serve",
            str(PLUGINS / "hello"),
            "--address",
            ray_cluster["address"],
            "--tenant",
            TENANT,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    names = []
    for plugin in (PLUGINS / "textstats", PLUGINS / "rollout", FIXTURE_PLUGINS / "failing"):
        names += serve_plugin(plugin, tenant=TENANT, dashboard_url=ray_cluster["dashboard"])
    wait_for_apps(names, dashboard_url=ray_cluster["dashboard"])
    key, record = new_key(TENANT, Scope.SUBMIT, "serve tests")
    session_coordinator.kv.put(KEYS_NAMESPACE, record.key_id, record.model_dump(mode="json"))
    yield {"url": serve_url, "coord": coord, "v1": v1, "cli": cli.stdout, "auth": {"authorization": f"Bearer {key}"}}
    unserve_plugin("hello", ["greet"], dashboard_url=ray_cluster["dashboard"])
    for plugin in (PLUGINS / "textstats", PLUGINS / "rollout", FIXTURE_PLUGINS / "failing"):
        loaded = load(plugin)
        actions = [a.name for a in loaded.manifest.actions.values() if "serve" in a.modes]
        unserve_plugin(loaded.name, actions, dashboard_url=ray_cluster["dashboard"])
    serve.delete("bystander")


def post(served, path: str, body, **headers) -> httpx.Response:
    content = body if isinstance(body, bytes | str) else json.dumps(body)
    return httpx.post(f"{served['url']}{path}", content=content, headers={**served["auth"], **headers}, timeout=60)


def test_the_cli_served_hello_and_said_where(served):
    assert "serving hello.greet at POST /plugins/hello/greet" in served["cli"]
    reply = post(served, "/plugins/hello/greet", {"name": "Ada"})
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"message": "Hello, Ada.", "mode": "serve"}


def test_post_returns_the_json_result_and_get_describes_the_action(served):
    stats = post(served, "/plugins/textstats/analyze", {"text": TEXT, "top": 2}).json()
    assert stats["sentences"] == 4 and stats["words"] == 11 and stats["top_words"] == [["do", 2], ["they", 2]]
    description = httpx.get(f"{served['url']}/plugins/textstats/analyze", headers=served["auth"], timeout=30).json()
    assert description["streaming"] is False and "text" in description["params_schema"]["properties"]


def test_bad_params_get_422_naming_every_field_and_bad_json_gets_400(served):
    reply = post(served, "/plugins/textstats/analyze", {"top": "many"})
    assert reply.status_code == 422
    error = reply.json()["error"]
    assert error["code"] == "validation_error"
    assert {e["field"] for e in error["details"]["errors"]} == {"text", "top"}
    malformed = post(served, "/plugins/textstats/analyze", b"{not json")
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "bad_request"


def test_a_failing_action_gets_500_without_a_traceback(served):
    reply = post(served, "/plugins/failing/explode", {"reason": "serve"})
    assert reply.status_code == 500
    body = reply.json()["error"]
    assert body["code"] == "action_failed" and "boom: serve" in body["message"]
    assert "Traceback" not in reply.text


def test_a_generator_streams_ndjson_by_default_and_sse_on_request(served):
    with httpx.stream(
        "POST", f"{served['url']}/plugins/textstats/sentences", json={"text": TEXT}, headers=served["auth"], timeout=60
    ) as r:
        assert r.headers["content-type"].startswith("application/x-ndjson")
        chunks = [json.loads(line) for line in r.iter_lines() if line]
    assert [c["words"] for c in chunks] == [3, 3, 3, 2]
    with httpx.stream(
        "POST",
        f"{served['url']}/plugins/textstats/sentences",
        json={"text": TEXT},
        headers={"accept": "text/event-stream", **served["auth"]},
        timeout=60,
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = r.read().decode().strip().split("\n\n")
    data = [json.loads(e.removeprefix("data: ")) for e in events if e.startswith("data: ")]
    assert data == chunks and events[-1] == "event: end\ndata: {}"


def test_websocket_streams_chunks_then_end_and_reports_bad_params(served):
    url = served["url"].replace("http://", "ws://")
    with ws_client.connect(
        f"{url}/plugins/textstats/sentences/ws", open_timeout=30, additional_headers=served["auth"]
    ) as ws:
        ws.send(json.dumps({"text": TEXT}))
        messages = [json.loads(m) for m in ws]
    assert [m["type"] for m in messages] == ["chunk"] * 4 + ["end"]
    assert messages[1]["data"]["sentence"] == "Plugins become endpoints!"
    with ws_client.connect(
        f"{url}/plugins/textstats/analyze/ws", open_timeout=30, additional_headers=served["auth"]
    ) as ws:
        ws.send(json.dumps({"text": TEXT}))
        result, end = json.loads(ws.recv()), json.loads(ws.recv())
    assert result["type"] == "result" and result["data"]["sentences"] == 4 and end == {"type": "end"}
    with ws_client.connect(
        f"{url}/plugins/textstats/analyze/ws", open_timeout=30, additional_headers=served["auth"]
    ) as ws:
        ws.send(json.dumps({"top": 3}))
        error = json.loads(ws.recv())
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            ws.recv()
    assert error["type"] == "error" and error["error"]["code"] == "validation_error"
    assert closed.value.rcvd.code == 1008


def replicas(dashboard: str, app: str) -> set[str]:
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    details = ServeSubmissionClient(dashboard).get_serve_details()["applications"][app]["deployments"]
    return {replica["replica_id"] for deployment in details.values() for replica in deployment["replicas"]}


def test_new_resources_reach_running_replicas_without_a_restart(served, ray_cluster):
    problem = {"question": "6 * 7", "expected": 42}
    first = post(served, "/plugins/rollout/solve", problem).json()
    assert first["resources_id"] == served["v1"].resources_id and first["temperature"] == 0.7
    assert first["prompt"] == "Q: 6 * 7"
    before = replicas(ray_cluster["dashboard"], "rollout.solve")
    v2 = served["coord"].resources.update(
        {"llm": rr.LLM(endpoint="http://llm", model="m2", sampling_parameters={"temperature": 0.1})}
    )
    reply = wait_until(
        lambda: (r := post(served, "/plugins/rollout/solve", problem).json())["resources_id"] == v2.resources_id and r,
        60,
        what="the replicas to use the new resources",
    )
    assert reply["model"] == "m2" and reply["temperature"] == 0.1 and reply["reward"] == 1.0
    assert replicas(ray_cluster["dashboard"], "rollout.solve") == before


def test_deploying_a_plugin_leaves_every_other_application_running(served, ray_cluster):
    serve_plugin(PLUGINS / "textstats", tenant=TENANT, dashboard_url=ray_cluster["dashboard"])  # redeploy
    assert httpx.get(f"{served['url']}/bystander", timeout=30).text == "still here"
    assert post(served, "/plugins/hello/greet", {"name": "again"}).status_code == 200
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    apps = ServeSubmissionClient(ray_cluster["dashboard"]).get_serve_details()["applications"]
    assert {"bystander", "hello.greet", "textstats.analyze", "textstats.sentences", "rollout.solve"} <= set(apps)


import websockets  # noqa: E402  (the exceptions module, after the sync client above)


def test_stock_serve_deploy_of_the_committed_config_serves_the_examples(served, ray_cluster):
    """Last in this module: `serve deploy` replaces the declarative apps deployed above."""
    from ..conftest import ROOT

    upload = subprocess.run(
        [sys.executable, "-m", "ray_runtime", "plugin", "upload", str(PLUGINS), "--address", ray_cluster["dashboard"]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert upload.returncode == 0, upload.stderr
    deploy = subprocess.run(
        [
            str(Path(sys.executable).parent / "serve"),
            "deploy",
            str(ROOT / "serve_apps" / "example_plugins.yaml"),
            "--address",
            ray_cluster["dashboard"],
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    names = ["hello.greet", "rollout.solve", "textstats.analyze", "textstats.sentences"]
    wait_for_apps(names, dashboard_url=ray_cluster["dashboard"])
    assert post(served, "/plugins/hello/greet", {"name": "config"}).json()["message"] == "Hello, config."
    assert httpx.get(f"{served['url']}/bystander", timeout=30).text == "still here"  # imperative apps stay
