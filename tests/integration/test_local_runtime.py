"""`ray-runtime up`, `status` and `down` as real processes: a second, complete runtime beside the session's cluster,
healthy and usable, found again by later commands wherever ``--dir`` put it, listening on loopback, and stopped
without touching anything it did not start."""

from __future__ import annotations

import contextlib
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
    for name in ("RAY_ADDRESS", "RAY_RUNTIME_URL", "RAY_RUNTIME_API_KEY", "RAY_RUNTIME_LOCAL_DIR"):
        env.pop(name, None)
    yield env
    ray_runtime("down", "--dir", directory, env=env, timeout=120)  # whatever a failed test left running
    shutil.rmtree(directory, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)


# Every Ray server of `up`'s runtime is on loopback (Ray's single-machine mode) except one: each Serve replica's
# inter-deployment gRPC server binds [::]:0 in Ray's own code (ray-project/ray#59908); it checks the Ray token.
EXPOSED_BY_RAY = ("ray::ServeReplica",)

GCS_PROBE = """
import sys
from ray._raylet import GcsClient
client = GcsClient(address=sys.argv[1])
client.internal_kv_get(b"probe", None, timeout=10)
print("answered")
"""


def gcs_answers(address: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """A GCS call from a fresh process with ``env``."""
    return subprocess.run(
        [sys.executable, "-c", GCS_PROBE, address], capture_output=True, text=True, timeout=120, env=env
    )


def agent_http_statuses(pids: set[int]) -> set[int]:
    """What the dashboard agent's HTTP server answers a job listing with, asked without a token (its metrics
    exporter, on loopback, answers any path with metrics and is left out)."""
    agents = {pid for pid in pids if psutil.Process(pid).name().startswith("ray::DashboardA")}
    statuses = set()
    for _, _, port in listeners(agents):
        with contextlib.suppress(httpx.TransportError):
            reply = httpx.get(f"http://127.0.0.1:{port}/api/job_agent/jobs/", timeout=5)
            if not reply.text.startswith("# HELP"):
                statuses.add(reply.status_code)
    return statuses


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
    assert all(name.startswith(EXPOSED_BY_RAY) for name, _, _ in exposed), exposed  # the rest: loopback only
    assert chosen <= {port for _, ip, port in listeners(family) if is_loopback(ip)}
    assert not [p for p in family if "ray.util.client.server" in psutil.Process(p).cmdline()]  # no Ray Client

    # Ray's token auth: the runtime's own token (0600) lets a process in; without it the GCS and the agent refuse
    token = Path(local_env["RUNTIME_DIR"]) / "ray-token"
    assert token.stat().st_mode & 0o777 == 0o600 and state["ray_token_path"] == str(token)
    joined = {**local_env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    joined["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    assert gcs_answers(state["gcs_address"], joined).stdout.strip() == "answered"
    for without in (
        {**joined, "RAY_AUTH_MODE": "disabled"},
        {**joined, "RAY_AUTH_TOKEN_PATH": str(ROOT / "README.md")},
    ):
        refused = gcs_answers(state["gcs_address"], without)
        assert refused.returncode != 0 and "answered" not in refused.stdout
    assert agent_http_statuses(family) == {401}
    assert httpx.get(f"{state['dashboard_url']}/api/jobs/", timeout=10).status_code == 401
    ray_status = subprocess.run(
        [str(Path(sys.executable).parent / "ray"), "status", "--address", state["gcs_address"]],
        capture_output=True,
        text=True,
        timeout=120,
        env=joined,
    )  # the README's recipe for Ray's own CLI
    assert ray_status.returncode == 0 and "Active:" in ray_status.stdout, ray_status.stderr[-2000:]

    stopped = ray_runtime("down", env=local_env, timeout=120)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not token.exists()  # down leaves no token behind
    assert not [pid for pid in family if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert ray.get(ray.put("the session cluster is untouched")) == "the session cluster is untouched"

    after = ray_runtime("status", env=local_env)
    assert after.returncode == 1 and "ray-runtime up" in after.stdout
    assert "nothing to stop" in ray_runtime("down", env=local_env).stdout
