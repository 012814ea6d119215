"""`ray-runtime up`, `status` and `down` as real processes: a second, complete runtime beside the session's cluster,
healthy and usable, found again by later commands wherever ``--dir`` put it, listening on loopback, and stopped
without touching anything it did not start."""

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
    """A home of its own (so runtimes a developer started are not ours to find) and a --dir outside it."""
    directory = tempfile.mkdtemp(prefix="rru-", dir="/tmp")  # short: Ray's socket paths have a length limit
    home = tempfile.mkdtemp(prefix="rrh-", dir="/tmp")
    env = {**os.environ, "HOME": home, "COLUMNS": "200", "RUNTIME_DIR": directory}
    for name in ("RAY_ADDRESS", "RAY_RUNTIME_URL", "RAY_RUNTIME_API_KEY", "RAY_RUNTIME_LOCAL_DIR", "RAY_AUTH_MODE"):
        env.pop(name, None)
    yield env
    ray_runtime("down", "--dir", directory, env=env, timeout=120)  # whatever a failed test left running
    shutil.rmtree(directory, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)


# Ray's own gRPC servers (GCS, raylet, its agents, the Ray Client server, and the core worker of every process that
# joins Ray, drivers such as the façade included) listen on every interface and Ray has no option to bind them. Every
# port `up` itself chooses (the façade, Serve's proxy, the dashboard) is loopback only.


def listeners(pids: set[int]) -> list[tuple[str, str, int]]:
    """(process, address, port) of every socket these processes listen on."""
    found = []
    for connection in psutil.net_connections(kind="inet"):
        if connection.status == psutil.CONN_LISTEN and connection.pid in pids:
            name = " ".join(psutil.Process(connection.pid).cmdline()[:3])
            found.append((name, connection.laddr.ip, connection.laddr.port))
    return found


def is_loopback(ip: str) -> bool:
    import ipaddress

    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def test_up_status_use_down(local_env, ray_cluster):
    import ray

    ports = ["--ray-port", "0", "--dashboard-port", "0", "--serve-port", "0", "--api-port", "0", "--num-cpus", "2"]
    ports += ["--dir", local_env["RUNTIME_DIR"]]
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

    recorded = json.loads((Path(local_env["RUNTIME_DIR"]) / "runtime.json").read_text())
    ours = [recorded["ray"]["pid"], recorded["api"]["pid"]]
    family = {p.pid for pid in ours for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]}
    assert len(family) > 5  # raylet, GCS, dashboard, Serve, coordinator, replicas...
    chosen = {int(url.rsplit(":", 1)[1]) for url in (state["api_url"], state["serve_url"], state["dashboard_url"])}
    exposed = [(name, ip, port) for name, ip, port in listeners(family) if not is_loopback(ip)]
    assert not [e for e in exposed if e[2] in chosen], exposed  # the façade, Serve and the dashboard: loopback
    assert chosen <= {port for _, ip, port in listeners(family) if is_loopback(ip)}

    stopped = ray_runtime("down", env=local_env, timeout=120)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not [pid for pid in family if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert ray.get(ray.put("the session cluster is untouched")) == "the session cluster is untouched"

    after = ray_runtime("status", env=local_env)
    assert after.returncode == 1 and "ray-runtime up" in after.stdout
    assert "nothing to stop" in ray_runtime("down", env=local_env).stdout
