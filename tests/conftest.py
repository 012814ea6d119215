"""One real local Ray cluster per test session, in its own temp dir, torn down at the end."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator

import pytest

SESSION_SETTINGS = {
    "retry_backoff_s": 0.05,
    "retry_backoff_max_s": 0.2,
    "sweep_interval_s": 0.05,
}


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[dict[str, str]]:
    """Start a local Ray head (own temp dir, free ports) for this session; stop it afterwards."""
    import ray

    if ray.is_initialized():
        raise RuntimeError("Ray is already initialised in the test process; tests need their own cluster")
    root = tempfile.mkdtemp(prefix="rrt-", dir="/tmp")  # short: Ray's socket paths have a length limit
    storage = os.path.join(root, "storage")
    os.environ["RAY_RUNTIME_STORAGE"] = storage  # inherited by the raylet, hence by every actor
    context = ray.init(
        num_cpus=4,
        include_dashboard=False,
        _temp_dir=os.path.join(root, "ray"),
        namespace="ray_runtime_tests",
        log_to_driver=False,
    )
    try:
        yield {"address": context.address_info["address"], "storage": storage, "root": root}
    finally:
        ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def session_coordinator(ray_cluster):
    """The session's shared coordinator; tests isolate themselves by tenant."""
    import ray_runtime as rr

    return rr.connect(name="tests", **SESSION_SETTINGS)


@pytest.fixture
def coord(session_coordinator):
    """A blocking handle on the shared coordinator, acting for a tenant of this test alone."""
    return session_coordinator.for_tenant(f"t-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def acoord(coord):
    """The awaitable twin of ``coord``."""
    return coord.aio
