"""One real local Ray cluster per test session (own temp dir, free ports, dashboard on), torn down at the end."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "plugins"
FIXTURE_PLUGINS = Path(__file__).resolve().parent / "fixtures" / "plugins"
SESSION_SETTINGS = {
    "retry_backoff_s": 0.05,
    "retry_backoff_max_s": 0.2,
    "sweep_interval_s": 0.05,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[dict[str, str]]:
    """Start a local Ray head (own temp dir, free ports, dashboard) for this session; stop it afterwards."""
    import ray

    if ray.is_initialized():
        raise RuntimeError("Ray is already initialised in the test process; tests need their own cluster")
    root = tempfile.mkdtemp(prefix="rrt-", dir="/tmp")  # short: Ray's socket paths have a length limit
    storage = os.path.join(root, "storage")
    os.environ["RAY_RUNTIME_STORAGE"] = storage  # inherited by the raylet, hence by every actor
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # jobs run `python`
    context = ray.init(
        num_cpus=4,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=free_port(),
        _temp_dir=os.path.join(root, "ray"),
        namespace="ray_runtime_tests",
        log_to_driver=False,
    )
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
