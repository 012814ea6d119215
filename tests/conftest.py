"""One real local Ray cluster per test session (own temp dir, free ports, dashboard on), torn down at the end."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ray_runtime._net import free_port
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "plugins"
FIXTURE_PLUGINS = Path(__file__).resolve().parent / "fixtures" / "plugins"
SESSION_SETTINGS = {
    "retry_backoff_s": 0.05,
    "retry_backoff_max_s": 0.2,
    "sweep_interval_s": 0.05,
}


pytest_plugins = ["tests.postgres"]  # a PostgreSQL server for the session, a database per test

FIGURES: list[tuple[str, str]] = []  # what tests measured, printed at the end of the run


@pytest.fixture
def figures():
    """Record a figure the run prints at its end (e.g. how long a coordinator restart took, idle or busy)."""
    return lambda name, value: FIGURES.append((name, str(value)))


def pytest_terminal_summary(terminalreporter) -> None:
    if FIGURES:
        terminalreporter.section("figures measured by the tests")
        for name, value in FIGURES:
            terminalreporter.write_line(f"{name}: {value}")


def unique(name: str) -> str:
    """A name no other test uses (queues, tenants, apps)."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[dict[str, str]]:
    """Start a local Ray head (own temp dir, free ports, dashboard) for this session; stop it afterwards."""
    import ray

    from ray_runtime._local_state import new_ray_token
    from ray_runtime._ray import present_ray_token

    if ray.is_initialized():
        raise RuntimeError("Ray is already initialised in the test process; tests need their own cluster")
    root = tempfile.mkdtemp(prefix="rrt-", dir="/tmp")  # short: Ray's socket paths have a length limit
    storage = os.path.join(root, "storage")
    os.environ["RAY_RUNTIME_STORAGE"] = storage  # inherited by the raylet, hence by every actor
    os.environ["RR_TEST_IMPORT_LOG"] = os.path.join(root, "imports.log")  # fixture plugins log who imports them
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # jobs run `python`
    os.environ.pop("RAY_ADDRESS", None)  # never join a developer's cluster: this session starts its own
    present_ray_token(new_ray_token(Path(root)))  # Ray's token auth, with a token of this session's own
    context = ray.init(
        address="local",
        num_cpus=4,
        resources={"rr_slot": 1},  # one of a kind: placement tests hold it, then ask for it
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=free_port(),
        _temp_dir=os.path.join(root, "ray"),
        namespace="ray_runtime_tests",
        log_to_driver=False,
    )
    # Ray's job supervisor finds the address it gives a job's driver in <temp dir>/ray_current_cluster, which
    # `ray start` writes and ray.init does not; without it Ray looks for any GCS process on the machine, and with
    # another cluster running here a job's driver could join that one: write it, as `ray start` would
    Path(root, "ray", "ray_current_cluster").write_text(context.address_info["address"])
    try:
        yield {
            "address": context.address_info["address"],
            "dashboard": f"http://{context.dashboard_url}",
            "storage": storage,
            "root": root,
        }
    finally:
        ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def serve_url(ray_cluster) -> Iterator[str]:
    """Ray Serve on a free port for the whole session."""
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture(scope="session")
def session_coordinator(ray_cluster):
    """The cluster's (default) coordinator, which plugin runs also use; tests isolate themselves by tenant."""
    import ray_runtime as rr

    return rr.connect(**SESSION_SETTINGS)


@pytest.fixture
def coord(session_coordinator):
    """A blocking handle on the shared coordinator, acting for a tenant of this test alone."""
    return session_coordinator.for_tenant(f"t-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def acoord(coord):
    """The awaitable twin of ``coord``."""
    return coord.aio


@pytest.fixture(scope="session")
def api_keys(session_coordinator) -> dict[str, str]:
    """Keys for two tenants, alpha (admin who may run code, submit, read) and beta (admin), and a cluster admin."""
    from ray_runtime.keys import KEYS_NAMESPACE, new_key
    from ray_runtime.models.api import Scope

    keys = {}
    for name, tenant, scope, grants in (
        ("alpha", "alpha", Scope.ADMIN, {"run_code": True}),
        ("alpha-submit", "alpha", Scope.SUBMIT, {}),
        ("alpha-read", "alpha", Scope.READ, {}),
        ("beta", "beta", Scope.ADMIN, {}),
        ("root", "ops", Scope.ADMIN, {"cluster_admin": True, "run_code": True}),
    ):
        key, record = new_key(tenant, scope, name, **grants)
        session_coordinator.kv.put(KEYS_NAMESPACE, record.key_id, record.model_dump(mode="json"))
        keys[name] = key
    return keys


class Facade:
    """A running façade: its URL, its process id, and an authenticated httpx client per key name."""

    def __init__(self, url: str, keys: dict[str, str], pid: int) -> None:
        self.url = url
        self.keys = keys
        self.pid = pid

    def client(self, key: str | None = "alpha", **options) -> httpx.Client:  # noqa: F821
        import httpx

        headers = {"Authorization": f"Bearer {self.keys[key]}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=options.pop("timeout", 120), **options)

    def headers(self, key: str = "alpha") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[key]}"}


@contextlib.contextmanager
def running_facade(address: str, *args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """``ray-runtime api`` as its own process on a free port (``args`` added, ``env`` over this process's);
    its URL and pid once it answers ready, stopped at the end."""
    import subprocess

    import httpx

    port = free_port()
    command = [sys.executable, "-m", "ray_runtime", "api", "--port", str(port), "--address", address, *args]
    process = subprocess.Popen(
        command, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the façade did not start: {process.communicate(timeout=10)[0]}")
        try:
            return httpx.get(f"{url}/health/ready", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, 120, interval_s=0.2, what="the façade to be ready")
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def facade(ray_cluster, serve_url, api_keys, tmp_path_factory) -> Iterator[Facade]:
    """The façade as its own process (`ray-runtime api`), with the example and fixture plugins."""
    plugins = tmp_path_factory.mktemp("facade-plugins")
    for folder in [*PLUGINS.iterdir(), *FIXTURE_PLUGINS.iterdir()]:
        if (folder / "plugin.yaml").is_file():
            (plugins / folder.name).symlink_to(folder)
    env = {
        "RAY_RUNTIME_API_KEYS_CACHE_S": "0",
        "RAY_RUNTIME_API_LOG_HEARTBEAT_S": "0.5",
        "RAY_RUNTIME_API_MAX_BODY_BYTES": str(4 * 2**20),
        "RAY_RUNTIME_API_AUDIT_LOG": str(Path(ray_cluster["root"]) / "audit.jsonl"),
    }
    with running_facade(ray_cluster["address"], "--plugins-dir", str(plugins), env=env) as (url, pid):
        yield Facade(url, api_keys, pid)
