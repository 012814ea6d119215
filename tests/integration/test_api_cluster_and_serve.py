"""Cluster state (honest about truncation, scoped to the tenant's jobs), Serve applications (one at a time, owned by
a tenant, others untouched), health and metrics."""

from __future__ import annotations

import httpx
import pytest
import ray
from ray import serve

from ray_runtime.plugins.manifest import load
from ray_runtime.plugins.package import build_package

from ..conftest import PLUGINS
from ..waiting import wait_until
from .test_api_jobs import wait_terminal


def test_nodes_are_listed_for_every_tenant_and_fetched_by_id(facade):
    with facade.client("beta") as client:
        listing = client.get("/api/v1/cluster/nodes").json()
        assert listing["kind"] == "nodes" and listing["total"] == 1 and not listing["truncated"]
        node_id = listing["items"][0]["node_id"]
        assert client.get(f"/api/v1/cluster/nodes/{node_id}").json()["node_id"] == node_id
        assert client.get(f"/api/v1/cluster/nodes/{'f' * 56}").status_code == 404  # well-formed, unknown
        assert client.get("/api/v1/cluster/nodes/ffff").status_code == 400  # malformed
        assert client.get("/api/v1/cluster/galaxies").status_code == 422
        assert client.get("/api/v1/cluster/actors", params={"filter": "nonsense"}).status_code == 400


def test_tasks_and_actors_are_scoped_to_the_tenants_jobs(facade):
    with facade.client("alpha-submit") as client:
        job = client.post("/api/v1/jobs", json={"plugin": "wordcount", "action": "count", "params": {}}).json()
        info = wait_terminal(client, job["submission_id"])
        assert info["status"] == "SUCCEEDED", info
        job_id = info["job_id"]
    with facade.client("alpha-read") as reader:
        tasks = reader.get("/api/v1/cluster/tasks", params={"limit": 1000}).json()["items"]
        assert any(t["job_id"] == job_id and t["name"] == "count_text" for t in tasks)
        assert all(t["job_id"] == job_id or t["job_id"] in _alpha_jobs(reader) for t in tasks)
        truncated = reader.get("/api/v1/cluster/tasks", params={"limit": 1}).json()
        assert len(truncated["items"]) == 1 and truncated["total"] >= 4 and truncated["truncated"]
    with facade.client("beta") as beta:
        theirs = beta.get("/api/v1/cluster/tasks", params={"limit": 1000}).json()["items"]
        assert all(t["job_id"] != job_id for t in theirs)


def _alpha_jobs(client: httpx.Client) -> set[str]:
    return {j["job_id"] for j in client.get("/api/v1/jobs", params={"limit": 1000}).json()["items"] if j["job_id"]}


@pytest.fixture(scope="module")
def bystander(serve_url):
    @serve.deployment
    class Bystander:
        def __call__(self, request) -> str:
            return "untouched"

    serve.run(Bystander.bind(), name="api-bystander", route_prefix="/api-bystander")
    return f"{serve_url}/api-bystander"


def wait_running(client: httpx.Client, name: str) -> dict:
    def running() -> dict | None:
        app = client.get(f"/api/v1/serve/applications/{name}").json()
        assert app.get("status") != "DEPLOY_FAILED", app
        return app if app.get("status") == "RUNNING" else None

    return wait_until(running, 240, interval_s=0.5, what=f"{name} to run")


def test_deploy_one_plugin_and_one_import_path_app_leaving_others_alone(facade, serve_url, bystander):
    text = {"text": "One. Two three."}
    with (
        facade.client("alpha") as alpha,
        facade.client("beta") as beta,
        facade.client("alpha-read") as reader,
        facade.client("root") as root,
    ):
        deployed = alpha.put(
            "/api/v1/serve/applications/textstats", json={"plugin": "textstats", "actions": ["analyze"]}
        )
        assert deployed.status_code == 200, deployed.text
        assert [a["name"] for a in deployed.json()] == ["textstats.analyze"]
        package = build_package(load(PLUGINS / "textstats"))
        imported = alpha.put(
            "/api/v1/serve/applications/imported",
            json={
                "import_path": "ray_runtime.plugins.serve:build_app",
                "args": {"action": "sentences"},
                "runtime_env": {"working_dir": package.uri},
                "route_prefix": "/imported",
            },
        )
        assert imported.status_code == 200, imported.text
        wait_running(alpha, "textstats.analyze")
        wait_running(alpha, "imported")
        keyed = {"headers": facade.headers("alpha"), "timeout": 60}
        assert httpx.post(f"{serve_url}/plugins/textstats/analyze", json=text, **keyed).json()["sentences"] == 2
        assert len(httpx.post(f"{serve_url}/imported", json=text, **keyed).text.strip().splitlines()) == 2
        unkeyed = httpx.post(f"{serve_url}/plugins/textstats/analyze", json=text, timeout=60)
        assert unkeyed.status_code == 401  # plugin endpoints have the façade's keys in front
        theirs = httpx.post(f"{serve_url}/plugins/textstats/analyze", json=text, headers=facade.headers("beta"))
        assert theirs.status_code == 404  # another tenant's endpoint is as absent as a missing one
        assert httpx.get(bystander, timeout=60).text == "untouched"

        assert {"textstats.analyze", "imported"} <= {a["name"] for a in alpha.get("/api/v1/serve/applications").json()}
        assert {a["name"] for a in beta.get("/api/v1/serve/applications").json()}.isdisjoint(
            {"textstats.analyze", "imported"}
        )
        assert beta.get("/api/v1/serve/applications/imported").status_code == 404
        assert beta.delete("/api/v1/serve/applications/imported").status_code == 404
        taken = root.put("/api/v1/serve/applications/imported", json={"import_path": "x:y"})
        assert taken.status_code == 409
        assert reader.put("/api/v1/serve/applications/imported", json={"import_path": "x:y"}).status_code == 403
        assert alpha.put("/api/v1/serve/applications/x", json={"plugin": "textstats"}).status_code == 400

        assert alpha.delete("/api/v1/serve/applications/imported").status_code == 204
        wait_until(
            lambda: alpha.get("/api/v1/serve/applications/imported").status_code == 404, 120, what="the app to go"
        )
        assert httpx.get(bystander, timeout=60).text == "untouched"
        assert httpx.post(f"{serve_url}/plugins/textstats/analyze", json=text, **keyed).status_code == 200


def test_health_and_metrics(facade):
    ready = httpx.get(f"{facade.url}/health/ready", timeout=30).json()
    assert ready["status"] == "ready" and set(ready["checks"]) == {"ray_gcs", "dashboard", "coordinator"}
    assert httpx.get(f"{facade.url}/metrics", timeout=30).status_code == 401
    with facade.client("alpha-submit") as client, facade.client("root") as root:
        client.post("/api/v1/queues/metered/tasks", json={"input": 1})
        text = root.get("/metrics").text
    assert 'ray_runtime_api_requests_total{method="GET",route="/health/ready",status="200"}' in text
    assert "ray_runtime_api_request_seconds_bucket" in text
    assert 'ray_runtime_tasks{status="queued"}' in text
    assert ray.is_initialized()
