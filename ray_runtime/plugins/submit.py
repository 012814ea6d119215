"""Job mode from outside the cluster: submit a plugin action as a Ray job, follow it to the end.

    submission_id = submit_job(plugin, "count", {"paths": [...]}, address="http://head:8265")

The job's entrypoint is ``python -m ray_runtime run . <action> --params '<json>'`` in the plugin's runtime_env
(its package as working_dir, its pip requirements and env vars), with the action's Ray resources reserved for
the entrypoint. ray_runtime itself travels along in ``py_modules`` when the cluster does not run it already.
"""

from __future__ import annotations

import functools
import json
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray_runtime
from ray_runtime.config import BOUND_TENANT_ENV
from ray_runtime.errors import PayloadTooLargeError
from ray_runtime.plugins.manifest import Plugin
from ray_runtime.plugins.prepare import PreparedAction, prepare

__all__ = [
    "TERMINAL_JOB_STATES",
    "cluster_runs_ray_runtime",
    "follow_logs",
    "job_client",
    "submit_job",
    "submit_prepared",
]

TERMINAL_JOB_STATES = {"SUCCEEDED", "FAILED", "STOPPED"}
MAX_INLINE_PARAMS = 64 * 1024


@functools.cache
def job_client(address: str) -> Any:
    """Ray's ``JobSubmissionClient`` for a dashboard address (one per address: making one costs a request)."""
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address if "://" in address else f"http://{address}")


_RECHECK_S = 60.0
_runs_ray_runtime: dict[str, tuple[float, bool]] = {}


def cluster_runs_ray_runtime(address: str) -> bool:
    """Whether the cluster already runs ray_runtime (its coordinator actor is alive); re-checked each minute."""
    from ray.util.state import list_actors

    checked_at, answer = _runs_ray_runtime.get(address, (-_RECHECK_S, False))
    if time.monotonic() - checked_at < _RECHECK_S:
        return answer
    try:
        alive = list_actors(
            address=address, filters=[("class_name", "=", "CoordinatorActor"), ("state", "=", "ALIVE")], limit=1
        )
    except Exception:
        alive = []
    _runs_ray_runtime[address] = (time.monotonic(), bool(alive))
    return bool(alive)


def submit_job(
    plugin: Plugin | str | Path,
    action: str,
    params: Any = None,
    *,
    address: str,
    tenant: str | None = None,
    submission_id: str | None = None,
    ship_ray_runtime: bool | None = None,
    metadata: dict[str, str] | None = None,
) -> str:
    """Submit one plugin action as a Ray job; returns its submission id.

    Parameters are validated here first when the plugin's code imports in this process (else the job validates
    them and exits with code 2).

    Args:
        address: The Ray dashboard (``http://head:8265``).
        ship_ray_runtime: Send this ray_runtime in ``py_modules``; None decides by whether the cluster runs it.

    Raises:
        InvalidArgumentError: The action does not run in job mode.
        ValidationError: ``params`` do not fit (when the plugin imports here).
        PackageError / PackageTooLargeError: The plugin folder cannot be packed.
    """
    from ray_runtime.plugins.task import local_action

    client = job_client(address)
    if ship_ray_runtime is None:
        ship_ray_runtime = not cluster_runs_ray_runtime(address)
    py_modules = [str(Path(ray_runtime.__file__).parent)] if ship_ray_runtime else None
    env_vars = {BOUND_TENANT_ENV: tenant} if tenant else None
    prepared = prepare(plugin, action, "job", submission_client=client, py_modules=py_modules, env_vars=env_vars)
    local = local_action(prepared)
    if local is not None:
        params = local.signature.validate(params).model_dump(mode="json")
    return submit_prepared(
        prepared, params, address=address, tenant=tenant, submission_id=submission_id, metadata=metadata
    )


def submit_prepared(
    prepared: PreparedAction,
    params: Any,
    *,
    address: str,
    tenant: str | None = None,
    submission_id: str | None = None,
    metadata: dict[str, str] | None = None,
) -> str:
    """Submit a prepared job-mode action with these parameters; returns its submission id."""
    encoded = params if isinstance(params, str) else json.dumps(params if params is not None else {})
    if len(encoded) > MAX_INLINE_PARAMS:
        raise PayloadTooLargeError("params", len(encoded), MAX_INLINE_PARAMS)
    entrypoint = f"python -m ray_runtime run . {prepared.name} --params {shlex.quote(encoded)}"
    if tenant:
        entrypoint += f" --tenant {shlex.quote(tenant)}"
    resources = prepared.spec.resources
    return job_client(address).submit_job(
        entrypoint=entrypoint,
        runtime_env=prepared.runtime_env,
        submission_id=submission_id,
        metadata={
            "ray_runtime.plugin": prepared.plugin.name,
            "ray_runtime.action": prepared.name,
            "ray_runtime.tenant": tenant or "default",
            **(metadata or {}),
        },
        entrypoint_num_cpus=resources.num_cpus,
        entrypoint_num_gpus=resources.num_gpus or None,
        entrypoint_memory=resources.memory,
        entrypoint_resources=resources.custom or None,
    )


async def follow_logs(address: str, submission_id: str, on_line: Callable[[str], None]) -> str:
    """Feed each log line of the job to ``on_line`` until it ends; returns its final status."""
    client = job_client(address)
    buffer = ""
    async for chunk in client.tail_job_logs(submission_id):
        buffer += chunk
        *lines, buffer = buffer.split("\n")
        for line in lines:
            on_line(line)
    if buffer:
        on_line(buffer)
    return str(client.get_job_status(submission_id).value)
