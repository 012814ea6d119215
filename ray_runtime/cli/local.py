"""``ray-runtime up``, ``down`` and ``status``: a complete runtime on this machine."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ray_runtime.cli._common import EXIT_FAILED, JsonFlag, console, handles_errors, show, table
from ray_runtime.errors import ValidationError

LocalDir = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        help="Where the runtime keeps state, logs and journal (default: $RAY_RUNTIME_LOCAL_DIR "
        "or ~/.ray_runtime/local).",
        show_default=False,
    ),
]
Port = Annotated[int, typer.Option(min=0, max=65535)]
_COMPONENTS = {
    "ray": "Ray head + dashboard",
    "coordinator": "coordinator",
    "serve": "Serve + example plugins",
    "api": "API façade",
}


def _dir(given: Path | None) -> Path:
    """``--dir``, else ``$RAY_RUNTIME_LOCAL_DIR``, else the runtime ``up`` started (any ``--dir``), else the default."""
    from ray_runtime._local_state import find_runtime, local_dir

    if given is not None or os.environ.get("RAY_RUNTIME_LOCAL_DIR"):
        return (given or local_dir()).expanduser()
    running = find_runtime()
    return running.dir if running is not None else local_dir()


def up(
    directory: LocalDir = None,
    dashboard_port: Port = 8265,
    ray_port: Port = 6379,
    serve_port: Port = 8000,
    api_port: Port = 8080,
    num_cpus: Annotated[int | None, typer.Option(min=1, help="CPUs Ray may use (default: all).")] = None,
    plugins_dir: Annotated[Path, typer.Option(help="Plugins to serve and submit.")] = Path("plugins"),
    serve_plugins: Annotated[bool, typer.Option(help="Deploy the plugins' serve-mode actions.")] = True,
    timeout_s: Annotated[float, typer.Option("--timeout", min=1, help="Give up (and stop it all) after this.")] = 300,
    as_json: JsonFlag = False,
) -> None:
    """Start Ray (with dashboard), the coordinator, the plugins on Serve and the API façade; wait until healthy.

    Ports set to 0 take any free port. Everything stays on 127.0.0.1.
    """
    import pydantic

    from ray_runtime._local_state import join_env
    from ray_runtime.local import RuntimeOptions
    from ray_runtime.local import up as start

    try:
        options = RuntimeOptions(
            dir=_dir(directory),
            ray_port=ray_port,
            dashboard_port=dashboard_port,
            serve_port=serve_port,
            api_port=api_port,
            num_cpus=num_cpus,
            plugins_dir=plugins_dir,
            serve_plugins=serve_plugins,
            timeout_s=timeout_s,
        )
    except pydantic.ValidationError as exc:
        raise ValidationError.from_pydantic("options", exc) from None
    with Progress(
        SpinnerColumn(finished_text="[green]✓[/]"),
        TextColumn("{task.fields[component]:<26}"),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        disable=as_json,
    ) as progress:
        rows = {name: progress.add_task("waiting", total=1, component=label) for name, label in _COMPONENTS.items()}

        def on_step(component: str, message: str) -> None:
            progress.update(rows[component], description=message, completed=1 if message == "ready" else 0)

        state = start(options, on_step)
    shown = {**state.model_dump(mode="json", exclude={"ray", "api"}), "ray_token_path": str(state.token_path)}

    def human() -> None:
        grid = Table.grid(padding=(0, 2))
        grid.add_row("API façade", f"{state.api_url}  (OpenAPI: {state.api_url}/docs)")
        grid.add_row("Web console", f"{state.api_url}/ui/  (log in with the key below)")
        grid.add_row("dashboard", state.dashboard_url)
        grid.add_row("Serve", f"{state.serve_url}  ({', '.join(state.applications) or 'no plugins'})")
        grid.add_row("Ray address", f"{state.gcs_address}  (Ray token: {state.token_path})")
        grid.add_row("dev API key", f"{state.api_key}  (admin of tenant 'default', cluster admin, may run code)")
        console.print(Panel(grid, title=f"ray_runtime is up ({state.dir})", border_style="green"))
        console.print(
            "ray-runtime commands and rr.connect() on this machine find it on their own; for other tools (Ray's own "
            "CLI and SDKs need all three lines):",
            soft_wrap=True,
        )
        for line in (
            f"  export RAY_RUNTIME_URL={state.api_url} RAY_RUNTIME_API_KEY={state.api_key}",
            f"  export RAY_ADDRESS={state.gcs_address} RAY_API_SERVER_ADDRESS={state.dashboard_url}",
            "  export " + " ".join(f"{name}={value}" for name, value in join_env(state.token_path).items()),
            "stop it with `ray-runtime down`",
        ):
            console.print(line, soft_wrap=True, highlight=False)

    show(shown, as_json, human)


def down(directory: LocalDir = None) -> None:
    """Stop exactly what `ray-runtime up` started (the façade, then the Ray node with everything on it)."""
    from ray_runtime.local import down as stop

    with console.status("stopping"):
        stopped = stop(
            _dir(directory), lambda component, message: console.print(f"{_COMPONENTS[component]}: {message}")
        )
    console.print("stopped" if stopped else f"nothing to stop in {_dir(directory)}")


def status(directory: LocalDir = None, as_json: JsonFlag = False) -> None:
    """What the local runtime runs and whether each part answers (exit 1 if something is down)."""
    from ray_runtime.local import status as check

    state, checks = check(_dir(directory))
    if state is None:
        show(
            {"running": False},
            as_json,
            lambda: f"no local runtime in {_dir(directory)}; start one with `ray-runtime up`",
        )
        raise typer.Exit(EXIT_FAILED)
    rows = [[c.component, Text("ok", "green") if c.ok else Text("down", "red"), c.detail] for c in checks]
    show(
        {"running": True, "api_url": state.api_url, "checks": checks},
        as_json,
        lambda: table(f"local runtime in {state.dir}", ["component", "health", "detail"], rows, wrap=True),
    )
    if not all(c.ok for c in checks):
        raise typer.Exit(EXIT_FAILED)


up = handles_errors(up)
down = handles_errors(down)
status = handles_errors(status)
