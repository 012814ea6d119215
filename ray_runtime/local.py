"""A complete ray_runtime on this machine: Ray head with dashboard, coordinator, example plugins on Serve, façade.

:func:`up` starts it and waits until each part is healthy, :func:`down` stops exactly the processes ``up``
started (found through the state file, checked by pid and start time), :func:`status` reports what runs.
Everything lives in one folder (default ``~/.ray_runtime/local``): the state file, the logs, Ray's temp dir,
the coordinator's journal and the dev API key, so a later ``up`` keeps the queues and resources of the last.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from pydantic import BaseModel, Field, field_validator

if TYPE_CHECKING:
    import psutil

    from ray_runtime.coordinator import Coordinator

from ray_runtime._environ import environ
from ray_runtime._local_state import (
    DEFAULT_DIR,
    RAY_AUTH_VARIABLES,
    STATE_FILE,
    LocalRuntime,
    Process,
    join_env,
    load_state,
    local_dir,
    new_ray_token,
    remember,
)
from ray_runtime._net import free_port
from ray_runtime.errors import ConflictError, ServerError, TimeoutError

__all__ = ["Check", "LocalRuntime", "RuntimeOptions", "down", "load_state", "local_dir", "status", "up"]

KEY_FILE = "dev-api-key"
Step = Callable[[str, str], None]  # (component, what is happening)
_DASHBOARD_UP = frozenset({200, 401})  # 401: it runs, and wants the runtime's Ray token


class RuntimeOptions(BaseModel):
    """What ``up`` starts and where."""

    dir: Path = DEFAULT_DIR
    host: str = Field(default="127.0.0.1", description="Where the dashboard, Serve and the façade listen.")
    ray_port: int = Field(default=6379, ge=0, le=65535, description="GCS port (0: any free one).")
    dashboard_port: int = Field(default=8265, ge=0, le=65535)
    serve_port: int = Field(default=8000, ge=0, le=65535)
    api_port: int = Field(default=8080, ge=0, le=65535)
    num_cpus: int | None = Field(default=None, ge=1)
    plugins_dir: Path = Path("plugins")
    serve_plugins: bool = Field(default=True, description="Deploy the serve-mode actions of every plugin.")
    timeout_s: float = Field(default=300.0, gt=0)

    @field_validator("host")
    @classmethod
    def _loopback(cls, host: str) -> str:
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            raise ValueError("the local runtime listens on loopback only (its dashboard has no auth); see cluster.yaml")
        return host


class Check(BaseModel):
    """One part's health."""

    component: str
    ok: bool
    detail: str


# ------------------------------------------------------------------------------------------------------------- up


def up(options: RuntimeOptions, on_step: Step = lambda component, message: None) -> LocalRuntime:
    """Start everything and wait until each part is healthy; raises (after stopping what it started) if one is not."""
    directory = options.dir.expanduser().resolve()
    existing = load_state(directory)
    if existing is not None and existing.ray.handle() is not None:
        raise ConflictError(
            f"a local runtime already runs from {directory} (API {existing.api_url}); "
            "see `ray-runtime status`, or stop it with `ray-runtime down`"
        )
    for sub in ("logs", "storage"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + options.timeout_s
    ports = {
        name: _port(getattr(options, f"{name}_port"), options.host) for name in ("ray", "dashboard", "serve", "api")
    }
    env = _environment(directory, new_ray_token(directory))

    on_step("ray", f"starting the Ray head (GCS :{ports['ray']}, dashboard :{ports['dashboard']})")
    ray_process = _start_ray(directory, options, ports, env)
    state = LocalRuntime(
        dir=directory,
        started_at=time.time(),
        ray=Process.of(ray_process),
        gcs_address=f"127.0.0.1:{ports['ray']}",
        dashboard_url=f"http://{options.host}:{ports['dashboard']}",
        serve_url=f"http://{options.host}:{ports['serve']}",
        api_url=f"http://{options.host}:{ports['api']}",
        api_key="",
    )
    state.save()
    remember(directory, started=True)
    try:
        _wait_http(
            f"{state.dashboard_url}/api/version", deadline, ray_process, directory / "logs" / "ray.log", _DASHBOARD_UP
        )
        _stop_ray_client_server(ray_process)
        on_step("ray", "ready")
        _start_in_cluster(state, options, ports["serve"], env, deadline, on_step)
        state.save()
        on_step("api", f"starting the façade on {state.api_url}")
        api_process = _start_api(state, options, env)
        state.api = Process.of(api_process)
        state.save()
        _wait_http(
            f"{state.api_url}/health/ready",
            deadline,
            api_process,
            directory / "logs" / "api.log",
            headers={"authorization": f"Bearer {state.api_key}"},
        )
        on_step("api", "ready")
    except BaseException:
        down(directory)
        raise
    return state


def _port(wanted: int, host: str) -> int:
    if wanted == 0:
        return free_port(host)
    with socket.socket() as probe:
        try:
            probe.bind((host, wanted))
        except OSError:
            raise ConflictError(
                f"port {wanted} on {host} is taken; pick another (e.g. --api-port) or 0 for any free port"
            ) from None
    return wanted


def _environment(directory: Path, token_path: Path) -> dict[str, str]:
    """What the cluster's processes inherit: the journal's folder, this Python first on PATH (jobs run `python`),
    the runtime's Ray token, and a node address on loopback."""
    env = {name: value for name, value in os.environ.items() if name not in RAY_AUTH_VARIABLES}
    env["RAY_RUNTIME_STORAGE"] = str(directory / "storage")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("RAY_ADDRESS", None)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # Ray's token auth for every process of this runtime (its GCS, raylet, agents, core workers and dashboard refuse
    # whoever does not present the runtime's own token), and every Ray server on loopback (see join_env)
    env.update(join_env(token_path))
    # on `down`, Ray would wait up to 30 s for a node that hosts detached actors to drain: nothing to move here
    env.setdefault("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")
    return env


def _start_ray(
    directory: Path, options: RuntimeOptions, ports: dict[str, int], env: dict[str, str]
) -> subprocess.Popen:
    """``ray start --head --block`` in its own session: on SIGTERM it stops every process of its node."""
    command = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        "--block",
        f"--port={ports['ray']}",
        "--include-dashboard=true",
        f"--dashboard-host={options.host}",
        f"--dashboard-port={ports['dashboard']}",
        f"--temp-dir={directory / 'ray'}",
        "--disable-usage-stats",
        # every other port free, so this runtime coexists with any other Ray on the machine
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
    ]
    if options.num_cpus is not None:
        command.append(f"--num-cpus={options.num_cpus}")
    log = (directory / "logs" / "ray.log").open("ab")
    return subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )


def _stop_ray_client_server(ray_process: subprocess.Popen) -> None:
    """Stop the Ray Client server ``ray start --head`` always starts: nothing here uses it, and it would let whoever
    reaches it run code as a driver. Ray has no option to leave it out; ``ray start --block`` takes a SIGTERM'd
    child as a graceful exit and keeps the node running."""
    import psutil

    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(ray_process.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "ray.util.client.server" in child.cmdline():
                    child.terminate()


def _start_in_cluster(
    state: LocalRuntime, options: RuntimeOptions, serve_port: int, env: dict[str, str], deadline: float, on_step: Step
) -> None:
    """As a short-lived driver: the coordinator, the dev API key, Serve and the example plugins."""
    import ray
    from ray import serve

    from ray_runtime._ray import join_local_runtime
    from ray_runtime.coordinator import connect

    on_step("coordinator", "starting the coordinator")
    variables = {name: env[name] for name in ("RAY_RUNTIME_STORAGE", "PATH")}
    with environ(variables, restore=RAY_AUTH_VARIABLES):
        join_local_runtime(state.token_path)
        # What Ray tells a driver (a worker that died, say) it prints on stdout: keep it off `up --json`'s output
        with contextlib.redirect_stdout(sys.stderr):
            try:
                ray.init(address=state.gcs_address, log_to_driver=False, logging_level="ERROR")
                coordinator = connect()
                on_step("coordinator", "ready")
                state.api_key = _dev_key(state.dir, coordinator)
                on_step("serve", f"starting Serve on {state.serve_url}")
                serve.start(http_options={"host": options.host, "port": serve_port})
                if options.serve_plugins:
                    state.applications = _serve_plugins(options.plugins_dir, state.dashboard_url, deadline, on_step)
                on_step("serve", "ready")
            finally:
                ray.shutdown()


def _dev_key(directory: Path, coordinator: Coordinator) -> str:
    """The dev key: an admin of tenant ``default`` and a cluster admin who may run code (this machine's operator
    runs it); the one from the last ``up`` while it is still valid, else a new one."""
    from ray_runtime.keys import KEYS_NAMESPACE, new_key, parse_key
    from ray_runtime.models.api import Scope

    path = directory / KEY_FILE
    kept = path.read_text().strip() if path.is_file() else ""
    parsed = parse_key(kept)
    if parsed is not None:
        record = coordinator.kv.get(KEYS_NAMESPACE, parsed[0])
        if record is not None and record.get("revoked_at") is None and record.get("cluster_admin"):
            return kept

    key, record = new_key("default", Scope.ADMIN, "ray-runtime up (dev)", cluster_admin=True, run_code=True)
    coordinator.kv.put(KEYS_NAMESPACE, record.key_id, record.model_dump(mode="json"))
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def _serve_plugins(plugins_dir: Path, dashboard_url: str, deadline: float, on_step: Step) -> list[str]:
    from ray_runtime.plugins.manifest import PluginRegistry
    from ray_runtime.plugins.serve_deploy import serve_plugin, wait_for_apps

    names: list[str] = []
    for plugin in PluginRegistry(plugins_dir):
        if any("serve" in spec.modes for spec in plugin.manifest.actions.values()):
            on_step("serve", f"deploying plugin {plugin.name}")
            names += serve_plugin(plugin, dashboard_url=dashboard_url)

    def show(statuses: dict[str, str]) -> None:
        waiting = sorted(name for name, status in statuses.items() if status != "RUNNING")
        on_step("serve", f"{len(statuses) - len(waiting)}/{len(statuses)} applications running")

    if names:
        wait_for_apps(
            names, dashboard_url=dashboard_url, timeout_s=max(1.0, deadline - time.monotonic()), on_status=show
        )
    return names


def _start_api(state: LocalRuntime, options: RuntimeOptions, env: dict[str, str]) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "ray_runtime",
        "api",
        "--host",
        options.host,
        "--port",
        state.api_url.rsplit(":", 1)[1],
        "--address",
        state.gcs_address,
        "--dashboard",
        state.dashboard_url,
        "--plugins-dir",
        str(options.plugins_dir.resolve()),
    ]
    log = (state.dir / "logs" / "api.log").open("ab")
    return subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )


def _wait_http(
    url: str,
    deadline: float,
    process: subprocess.Popen,
    log: Path,
    ready: frozenset[int] = frozenset({200}),
    headers: dict[str, str] | None = None,
) -> None:
    """Poll ``url`` until it answers with a ``ready`` status; fail fast, with the log's tail, if ``process`` exits."""
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, headers=headers, timeout=5).status_code in ready:
                return
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
            raise ServerError(f"{Path(str(process.args[0])).name} exited with {process.returncode}; its log:\n{tail}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not become ready in time; see the logs under {log.parent}")
        time.sleep(0.25)


# ----------------------------------------------------------------------------------------------------------- down


def down(directory: Path = DEFAULT_DIR, on_step: Step = lambda component, message: None) -> list[str]:
    """Stop the façade, then the Ray node (which takes Serve, the coordinator and the jobs with it).

    Only the processes recorded in the state file, and the processes of their sessions, are signalled.
    Returns what was stopped.
    """
    directory = directory.expanduser().resolve()
    state = load_state(directory)
    if state is None:
        return []
    stopped = []
    for name, process in (("api", state.api), ("ray", state.ray)):
        if process is not None and _stop(process):
            on_step(name, "stopped")
            stopped.append(name)
    (directory / STATE_FILE).unlink(missing_ok=True)
    state.token_path.unlink(missing_ok=True)
    remember(directory, started=False)
    return stopped


def _stop(process: Process, grace_s: float = 30.0) -> bool:
    """SIGTERM the process, wait, then SIGKILL what is left of its session (it was started as a session leader)."""
    import psutil

    handle = process.handle()
    if handle is None:
        return False
    session = [p for p in psutil.process_iter() if _session_of(p) == process.pid]
    with contextlib.suppress(psutil.Error):
        handle.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs([handle, *[p for p in session if p.pid != handle.pid]], timeout=grace_s)
    for leftover in alive:
        with contextlib.suppress(psutil.Error):
            leftover.kill()
    psutil.wait_procs(alive, timeout=5)
    return True


def _session_of(process: psutil.Process) -> int | None:
    try:
        return os.getsid(process.pid)
    except OSError:
        return None


# --------------------------------------------------------------------------------------------------------- status


def status(directory: Path = DEFAULT_DIR) -> tuple[LocalRuntime | None, list[Check]]:
    """Whether each part of the runtime in ``directory`` runs and answers."""
    state = load_state(directory)
    if state is None:
        return None, []
    auth = {"authorization": f"Bearer {state.api_key}"}
    checks = [
        Check(component="ray", ok=state.ray.handle() is not None, detail=f"pid {state.ray.pid}, {state.gcs_address}"),
        _probe("dashboard", f"{state.dashboard_url}/api/version", ready=_DASHBOARD_UP),
        _probe("serve", f"{state.serve_url}/-/healthz"),
        _probe("api", f"{state.api_url}/health/ready", auth),
    ]
    ready = _ready_checks(state.api_url, auth)
    if "coordinator" in ready:
        checks.insert(1, Check(component="coordinator", ok=ready["coordinator"][0], detail=ready["coordinator"][1]))
    if state.applications:
        checks.append(_applications(state, auth))
    return state, checks


def _probe(
    component: str, url: str, headers: dict[str, str] | None = None, ready: frozenset[int] = frozenset({200})
) -> Check:
    try:
        reply = httpx.get(url, headers=headers, timeout=5)
    except httpx.TransportError as exc:
        return Check(component=component, ok=False, detail=f"{url}: {type(exc).__name__}")
    return Check(component=component, ok=reply.status_code in ready, detail=f"{url} → {reply.status_code}")


def _ready_checks(api_url: str, headers: dict[str, str]) -> dict[str, tuple[bool, str]]:
    try:
        body = httpx.get(f"{api_url}/health/ready", headers=headers, timeout=5).json()
    except (httpx.TransportError, ValueError):
        return {}
    return {name: (check["ok"], check.get("detail", "")) for name, check in body.get("checks", {}).items()}


def _applications(state: LocalRuntime, headers: dict[str, str]) -> Check:
    try:
        reply = httpx.get(f"{state.api_url}/api/v1/serve/applications", headers=headers, timeout=10)
        apps = {app["name"]: app["status"] for app in reply.raise_for_status().json()}
    except (httpx.HTTPError, ValueError) as exc:
        return Check(component="plugins", ok=False, detail=f"cannot list Serve applications: {exc}")
    statuses = {name: apps.get(name, "MISSING") for name in state.applications}
    running = sum(status == "RUNNING" for status in statuses.values())
    detail = f"{running}/{len(statuses)} running" + "".join(
        f"; {name} {status}" for name, status in statuses.items() if status != "RUNNING"
    )
    return Check(component="plugins", ok=running == len(statuses), detail=detail)
