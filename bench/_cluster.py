"""What the benchmarks share: a private local Ray cluster (never one already running here) in a temp folder of its
own, and saving the figures."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray

from ray_runtime._local_state import new_ray_token
from ray_runtime._net import free_port
from ray_runtime._ray import present_ray_token


@contextmanager
def private_ray(num_cpus: int = 4, **env: str) -> Iterator[tuple[Any, str]]:
    """A local Ray cluster with a dashboard on a free port, its storage in a fresh temp folder; ``env`` is set
    first (the raylet, hence every actor, inherits it). Yields Ray's context and the folder."""
    temp = tempfile.mkdtemp(prefix="rrb-", dir="/tmp")  # short: Ray's socket paths have a length limit
    os.environ.update(
        RAY_RUNTIME_STORAGE=os.path.join(temp, "storage"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # jobs run `python`
        **env,
    )
    present_ray_token(new_ray_token(Path(temp)))  # Ray's token auth, with a token of this cluster's own
    context = ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=free_port(),
        _temp_dir=os.path.join(temp, "ray"),
        log_to_driver=False,
    )
    # where Ray's job supervisor looks for its cluster's address (`ray start` writes it, ray.init does not; without
    # it Ray would take any GCS process on the machine)
    Path(temp, "ray", "ray_current_cluster").write_text(context.address_info["address"])
    try:
        yield context, temp
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def save(figures: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(figures, indent=2))
