"""Which Ray cluster to join, and small facts about it, read the way Ray's own tools read them.

Joining by auto-discovery picks whichever cluster started last on the machine, which is wrong as soon as two run
(a developer's own ``ray-runtime up`` beside a test run, say). So every ``ray.init`` in ray_runtime goes through
:func:`init_ray`, which uses, in order: the address the user named (``--address``), ``RAY_ADDRESS`` (also what
Ray sets for a job's driver), the local runtime ``ray-runtime up`` started, and only then the one cluster running
on this machine; it refuses to guess between several. Joining a local runtime (by any of these) hands this process
that runtime's Ray token, which its cluster checks on every request.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import ray

from ray_runtime._local_state import RAY_AUTH_VARIABLES, SINGLE_MACHINE_VARIABLE, find_runtime, join_env, runtime_of
from ray_runtime.errors import UnavailableError

__all__ = ["dashboard_url", "init_ray", "join_local_runtime", "present_ray_token", "resolve_address"]


def resolve_address(explicit: str | None = None) -> tuple[str, str]:
    """The Ray address to join and where it came from (for telling the user which cluster was joined).

    Raises:
        UnavailableError: No cluster is named and none, or several, run on this machine.
    """
    if explicit:
        return explicit, "--address"
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    runtime = find_runtime()
    if runtime is not None:
        return runtime.gcs_address, f"the local runtime in {runtime.dir}"
    from ray._private.services import find_gcs_addresses  # Ray has no public way to list local clusters

    running = sorted(find_gcs_addresses())
    if len(running) == 1:
        return running[0], "the only Ray cluster running on this machine"
    if running:
        raise UnavailableError(
            f"{len(running)} Ray clusters run on this machine ({', '.join(running)}) and none was named: "
            "pass --address or set RAY_ADDRESS"
        )
    raise UnavailableError(
        "no Ray cluster runs on this machine: start one with `ray-runtime up`, or name one with --address or "
        "RAY_ADDRESS"
    )


def init_ray(address: str | None = None, *, start_if_none: bool = False, quiet: bool = True) -> str:
    """Join the Ray cluster :func:`resolve_address` names (once per process); returns which one, and why.

    Args:
        address: The address the user named, if any.
        start_if_none: With nothing named and nothing running, start a private local Ray instance (for driver
            scripts and notebooks) instead of raising.
        quiet: Keep Ray's INFO lines (and the workers' output) out of this process's terminal.
    """
    if ray.is_initialized():
        return "the Ray cluster this process belongs to"
    options: dict = {"log_to_driver": False}
    if quiet:
        options["logging_level"] = logging.WARNING
    try:
        resolved, source = resolve_address(address)
    except UnavailableError:
        if not start_if_none:
            raise
        ray.init(address="local", **options)
        return "a new local Ray instance (none was named or running)"
    runtime = runtime_of(resolved)
    if runtime is not None:
        join_local_runtime(runtime.token_path)
    try:
        ray.init(address=resolved, **options)
    except ConnectionError as exc:
        raise UnavailableError(f"cannot join the Ray cluster at {resolved} ({source}): {exc}") from None
    return f"the Ray cluster at {resolved} ({source})"


def present_ray_token(token_path: Path | str) -> None:
    """Make this process (and the processes it starts) present the Ray token in ``token_path`` to a cluster with
    token auth: set before ``ray.init``, with Ray's cached view of the auth mode and the token read again."""
    from ray._raylet import AuthenticationTokenLoader, Config

    for name in RAY_AUTH_VARIABLES:
        os.environ.pop(name, None)  # RAY_AUTH_TOKEN would win over the file
    os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path)})
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def join_local_runtime(token_path: Path) -> None:
    """Ready this process (and the processes it starts) to join a local runtime's cluster, before ``ray.init``:
    the environment of :func:`~ray_runtime._local_state.join_env` (its token, and Ray's single-machine mode)."""
    from ray._private import ray_constants

    present_ray_token(token_path)
    os.environ.update(join_env(token_path))
    # Ray reads this one into a module constant at import: the same switch as the variable, for this process
    ray_constants.ENABLE_RAY_CLUSTER = os.environ[SINGLE_MACHINE_VARIABLE] != "0"


def dashboard_url() -> str:
    """The dashboard's URL, as the dashboard registered it in GCS (correct in drivers, actors and replicas).

    Ray has no public getter outside ``ray.init``'s return value; this reads the key the dashboard writes.
    """
    from ray._private import ray_constants
    from ray.experimental.internal_kv import _internal_kv_get

    init_ray()
    address = _internal_kv_get(ray_constants.DASHBOARD_ADDRESS, namespace=ray_constants.KV_NAMESPACE_DASHBOARD)
    url = address.decode() if address else ray._private.worker.get_dashboard_url()
    return url if "://" in url else f"http://{url}"
