"""What ``ray-runtime up`` leaves behind for later commands: the state file of a local runtime, and its Ray token.

A local runtime lives in one folder (default ``~/.ray_runtime/local``): ``runtime.json`` (mode 0600) says what runs,
where, and with which dev API key; ``ray-token`` (mode 0600) is the Ray token its cluster checks on every gRPC and
dashboard request. :func:`find_runtime` finds the runtime later commands use, and :func:`join_env` is what a process
needs in its environment to join that cluster. This module only reads and writes files; starting and stopping is
:mod:`ray_runtime.local`.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from ray_runtime.errors import UnavailableError

if TYPE_CHECKING:
    import psutil

__all__ = [
    "DEFAULT_DIR",
    "TOKEN_FILE",
    "LocalRuntime",
    "Process",
    "find_runtime",
    "join_env",
    "load_state",
    "local_dir",
    "new_ray_token",
    "remember",
    "runtime_of",
]

DEFAULT_DIR = Path("~/.ray_runtime/local")
STATE_FILE = "runtime.json"
TOKEN_FILE = "ray-token"
STARTED_FILE = Path("~/.ray_runtime/started-runtimes")
RAY_AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_TOKEN")
SINGLE_MACHINE_VARIABLE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray keeps the node on loopback


class Process(BaseModel):
    """A process ``up`` started: its pid and creation time (so a recycled pid is never mistaken for it)."""

    pid: int
    created: float

    @classmethod
    def of(cls, popen: subprocess.Popen) -> Process:
        import psutil

        return cls(pid=popen.pid, created=psutil.Process(popen.pid).create_time())

    def handle(self) -> psutil.Process | None:
        """The live process, or None once it (or the pid's original owner) is gone."""
        import psutil

        try:
            process = psutil.Process(self.pid)
            alive = abs(process.create_time() - self.created) < 1 and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return None
        return process if alive else None


class LocalRuntime(BaseModel):
    """The state file: what runs, where, and how to reach it."""

    dir: Path
    started_at: float
    ray: Process
    api: Process | None = None
    gcs_address: str
    dashboard_url: str
    serve_url: str
    api_url: str
    api_key: str
    applications: list[str] = Field(default_factory=list)

    @property
    def token_path(self) -> Path:
        """The Ray token of this runtime's cluster (made by ``up``, deleted by ``down``)."""
        return self.dir / TOKEN_FILE

    def save(self) -> None:
        path = self.dir / STATE_FILE
        path.touch(mode=0o600)
        path.chmod(0o600)  # it holds the dev API key
        path.write_text(self.model_dump_json(indent=2))


def local_dir() -> Path:
    """Where ``up`` keeps its runtime: ``$RAY_RUNTIME_LOCAL_DIR``, else ``~/.ray_runtime/local``."""
    return Path(os.environ.get("RAY_RUNTIME_LOCAL_DIR", DEFAULT_DIR)).expanduser()


def _started() -> list[Path]:
    """Folders of runtimes ``up`` started and ``down`` has not stopped (``up --dir`` anywhere is remembered)."""
    path = STARTED_FILE.expanduser()
    return [Path(line) for line in path.read_text().splitlines() if line] if path.is_file() else []


def remember(directory: Path, started: bool) -> None:
    """Note (or forget) a folder ``up`` started a runtime in, so later commands find it wherever it is."""
    path = STARTED_FILE.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = [d for d in _started() if d != directory]
    path.write_text("".join(f"{d}\n" for d in [*kept, *([directory] if started else [])]))


def load_state(directory: Path = DEFAULT_DIR) -> LocalRuntime | None:
    """The state of a runtime ``up`` started in ``directory`` (None if there is none)."""
    path = directory.expanduser() / STATE_FILE
    if not path.is_file():
        return None
    try:
        return LocalRuntime.model_validate_json(path.read_text())
    except ValueError:
        return None  # written by another version, or cut short: not a runtime we can use


def find_runtime() -> LocalRuntime | None:
    """The running local runtime later commands use: the one in ``$RAY_RUNTIME_LOCAL_DIR`` if set, else the one
    ``up`` started (in its default folder or any ``--dir``); None if none runs.

    Raises:
        UnavailableError: Several run and none is named (the message names their folders).
    """
    running = _running([local_dir()] if os.environ.get("RAY_RUNTIME_LOCAL_DIR") else None)
    if len(running) > 1:
        listed = ", ".join(str(state.dir) for state in running)
        raise UnavailableError(
            f"{len(running)} local runtimes run ({listed}); pick one with --dir or RAY_RUNTIME_LOCAL_DIR"
        )
    return running[0] if running else None


def _running(folders: list[Path] | None = None) -> list[LocalRuntime]:
    """The runtimes running from ``folders`` (default: every folder ``up`` started one in)."""
    if folders is None:
        folders = list(dict.fromkeys([DEFAULT_DIR.expanduser().resolve(), *_started()]))
    return [state for state in map(load_state, folders) if state is not None and state.ray.handle() is not None]


def new_ray_token(directory: Path) -> Path:
    """A fresh Ray token for a runtime about to start in ``directory``: random, mode 0600 from its first byte."""
    path = directory / TOKEN_FILE
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_hex(32))
    return path


def join_env(token_path: Path) -> dict[str, str]:
    """The environment a process needs to join a local runtime's cluster: its Ray token, and Ray's single-machine
    mode. In that mode (Ray's default on macOS and Windows) a loopback address stays loopback: the node registers as
    127.0.0.1, so every Ray server of the runtime (GCS, raylet, agents, core workers, metrics) listens on loopback
    only, and a driver dialling 127.0.0.1 is not redirected to the machine's routable address."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path), SINGLE_MACHINE_VARIABLE: "0"}


def runtime_of(gcs_address: str) -> LocalRuntime | None:
    """The running local runtime whose cluster is at ``gcs_address`` (so a command naming it gets its token)."""
    return next((runtime for runtime in _running() if runtime.gcs_address == gcs_address), None)
