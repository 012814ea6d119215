"""`ray-runtime up`, `status` and `down` as real processes: a second, complete runtime beside the session's cluster,
healthy and usable, and stopped without touching anything it did not start."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import psutil
import pytest

from ray_runtime.client import AuthenticationError, RuntimeClient

from ..conftest import ROOT

CLI = [sys.executable, "-m", "ray_runtime"]


def ray_runtime(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def local_env(ray_cluster):
    directory = tempfile.mkdtemp(prefix="rru-", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**os.environ, "RAY_RUNTIME_LOCAL_DIR": directory, "COLUMNS": "200"}
    for name in ("RAY_ADDRESS", "RAY_RUNTIME_URL", "RAY_RUNTIME_API_KEY"):
        env.pop(name, None)
    yield env
    ray_runtime("down", env=env, timeout=120)  # whatever a failed test left running
    shutil.rmtree(directory, ignore_errors=True)


def test_up_status_use_down(local_env, ray_cluster):
    import ray

    session_raylets = {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "raylet"}
    ports = ["--ray-port", "0", "--dashboard-port", "0", "--serve-port", "0", "--api-port", "0", "--num-cpus", "2"]
    started = ray_runtime("up", *ports, "--json", env=local_env)
    assert started.returncode == 0, started.stderr + started.stdout
    state = json.loads(started.stdout)
    assert {"hello.greet", "textstats.analyze", "textstats.sentences", "rollout.solve"} <= set(state["applications"])

    again = ray_runtime("up", *ports, env=local_env)
    assert again.returncode == 2 and "already runs" in again.stderr

    health = ray_runtime("status", "--json", env=local_env)
    assert health.returncode == 0, health.stdout
    checks = {c["component"]: c["ok"] for c in json.loads(health.stdout)["checks"]}
    assert checks == dict.fromkeys(["ray", "coordinator", "dashboard", "serve", "api", "plugins"], True)

    with RuntimeClient(state["api_url"], state["api_key"]) as client:  # the dev key is an admin key
        job = client.submit_plugin("hello", "greet", {"name": "up"})
        assert client.wait_job(job.submission_id, timeout_s=120, poll_s=0.2).run.result["message"] == "Hello, up."
        with pytest.raises(AuthenticationError, match="API key is required"):
            RuntimeClient(state["api_url"]).list_jobs()
    said = httpx.post(
        f"{state['serve_url']}/plugins/textstats/analyze",
        json={"text": "One. Two."},
        headers={"authorization": f"Bearer {state['api_key']}"},
        timeout=60,
    )
    assert said.json()["sentences"] == 2
    listed = ray_runtime("job", "list", "--json", env=local_env)  # finds the runtime with no URL or key given
    assert listed.returncode == 0 and job.submission_id in listed.stdout

    recorded = json.loads((Path(local_env["RAY_RUNTIME_LOCAL_DIR"]) / "runtime.json").read_text())
    ours = [recorded["ray"]["pid"], recorded["api"]["pid"]]
    family = {p.pid for pid in ours for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]}
    assert len(family) > 5  # raylet, GCS, dashboard, Serve, coordinator, replicas...

    stopped = ray_runtime("down", env=local_env, timeout=120)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not [pid for pid in family if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert session_raylets <= {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "raylet"}
    assert ray.get(ray.put("the session cluster is untouched")) == "the session cluster is untouched"

    after = ray_runtime("status", env=local_env)
    assert after.returncode == 1 and "ray-runtime up" in after.stdout
    assert "nothing to stop" in ray_runtime("down", env=local_env).stdout
