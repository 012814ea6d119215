"""The same façade as a Ray Serve application (deployed through Serve's declarative config)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import websockets.sync.client as ws_client

from ..conftest import PLUGINS
from ..waiting import wait_until


@pytest.fixture(scope="module")
def served_facade(facade, ray_cluster, serve_url):
    import ray

    from ray_runtime.plugins.serve_deploy import serve_manager, wait_for_apps

    config = {
        "name": "ray-runtime-api",
        "route_prefix": "/rr",
        "import_path": "ray_runtime.api.serve_app:build",
        "args": {"plugins_dir": str(PLUGINS)},
    }
    ray.get(serve_manager(ray_cluster["dashboard"]).apply.remote([config], []))
    wait_for_apps(["ray-runtime-api"], dashboard_url=ray_cluster["dashboard"])
    return f"{serve_url}/rr"


def test_the_serve_hosted_facade_serves_every_family_with_the_same_keys(served_facade, facade):
    alpha = httpx.Client(base_url=served_facade, headers=facade.headers("alpha"), timeout=120)
    beta = httpx.Client(base_url=served_facade, headers=facade.headers("beta"), timeout=120)
    ready = httpx.get(f"{served_facade}/health/ready", timeout=60).json()
    assert ready["status"] == "ready", ready
    assert httpx.get(f"{served_facade}/api/v1/queues", timeout=60).status_code == 401  # no dev mode under Serve
    task_id = alpha.post("/api/v1/queues/served/tasks", json={"input": 1}).json()["task_id"]
    [lease] = alpha.post("/api/v1/queues/served/claim", json={"worker_id": "s"}).json()
    assert alpha.post(f"/api/v1/attempts/{lease['attempt_id']}/complete", json={"result": 2}).status_code == 200
    assert beta.get(f"/api/v1/tasks/{task_id}").status_code == 404
    job = alpha.post("/api/v1/jobs", json={"plugin": "hello", "action": "greet", "params": {"name": "serve"}}).json()
    url = f"{served_facade.replace('http://', 'ws://')}/api/v1/jobs/{job['submission_id']}/logs/ws"
    with ws_client.connect(url, additional_headers=facade.headers("alpha"), open_timeout=60) as ws:
        frames = [json.loads(message) for message in ws]
    assert frames[-1]["type"] == "end" and frames[-1]["status"] == "SUCCEEDED"
    assert "Hello, serve." in "".join(f["data"] for f in frames if f["type"] == "lines")
    wait_until(lambda: alpha.get(f"/api/v1/jobs/{job['submission_id']}").json()["run"], 30, what="the run record")
    assert beta.get(f"/api/v1/jobs/{job['submission_id']}").status_code == 404


def test_ray_job_list_through_the_serve_hosted_facade(served_facade, facade):
    ray_cli = str(Path(sys.executable).parent / "ray")
    listed = subprocess.run(
        [ray_cli, "job", "list", "--address", served_facade, "--headers", json.dumps(facade.headers("beta"))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    alphas = httpx.get(f"{facade.url}/api/v1/jobs", headers=facade.headers("alpha"), timeout=60).json()["items"]
    assert alphas and not [job["submission_id"] for job in alphas if job["submission_id"] in listed.stdout]
