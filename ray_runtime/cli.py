"""The ``ray-runtime`` command (Typer + Rich)."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ray_runtime._version import __version__
from ray_runtime.errors import CallerError, RayRuntimeError

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(name="ray-runtime", help="Run plugins, queues and the API façade on Ray.", no_args_is_help=True)
plugin_app = typer.Typer(help="Plugins: list, pack, submit as Ray jobs, serve, run as tasks.", no_args_is_help=True)
app.add_typer(plugin_app, name="plugin")
keys_app = typer.Typer(help="API keys of the façade (stored hashed in the coordinator).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console()
errors = Console(stderr=True)

EXIT_FAILED, EXIT_USAGE = 1, 2
ParamsOption = Annotated[str | None, typer.Option("--params", "-p", help="JSON parameters, or @file.json.")]
RayAddress = Annotated[
    str | None, typer.Option("--address", envvar="RAY_ADDRESS", help="Ray cluster address (default: auto).")
]
Tenant = Annotated[str | None, typer.Option("--tenant", envvar="RAY_RUNTIME_TENANT", help="Tenant to act for.")]
DashboardAddress = Annotated[
    str,
    typer.Option("--address", envvar="RAY_DASHBOARD_ADDRESS", help="Ray dashboard, as for `ray job submit`."),
]


def _handles_errors(command: F) -> F:
    """Turn ray_runtime errors into a one-line message and an exit code that says whose fault it was."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except RayRuntimeError as exc:
            errors.print(f"[red]error:[/] {exc.message}")
            for problem in exc.details.get("errors", []):
                errors.print(f"  - {problem.get('field') or '(input)'}: {problem['problem']}")
            raise typer.Exit(EXIT_USAGE if isinstance(exc, CallerError) else EXIT_FAILED) from None

    return wrapper  # type: ignore[return-value]


def _params(text: str | None) -> Any:
    if text is None:
        return {}
    raw = Path(text[1:]).expanduser().read_text() if text.startswith("@") else text
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        from ray_runtime.errors import BadRequestError

        raise BadRequestError(f"--params is not valid JSON: {exc}") from None


def _connect_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    try:
        ray.init(address=address or "auto", log_to_driver=False)
    except ConnectionError as exc:
        from ray_runtime.errors import UnavailableError

        raise UnavailableError(
            f"no Ray cluster at {address or 'auto'} ({exc}); start one with `ray start --head` or pass --address"
        ) from None


def _print_json(value: Any) -> None:
    console.print_json(json.dumps(value, default=str))


@app.callback()
def _root() -> None:
    """Run plugins, queues and the API façade on Ray."""


@app.command()
def version() -> None:
    """Print the ray_runtime version."""
    typer.echo(__version__)


@app.command("run")
def run(
    plugin: Annotated[str, typer.Argument(help="Plugin folder ('.' inside a job's working_dir).")],
    action: Annotated[str, typer.Argument(help="Action name.")],
    params: ParamsOption = None,
    tenant: Tenant = None,
    run_id: Annotated[str | None, typer.Option(help="Record under this id (default: the Ray submission id).")] = None,
    record: Annotated[
        bool | None, typer.Option("--record/--no-record", help="Record the run (default: in jobs).")
    ] = None,
    resources_id: Annotated[str | None, typer.Option(help="Resources version to use (default: latest).")] = None,
) -> None:
    """Run an action in this process: the entrypoint of a plugin's Ray job (exit 0 ok, 1 failed, 2 bad input)."""
    from ray_runtime.plugins.job import JobOptions, run_job

    options = JobOptions(tenant=tenant, run_id=run_id, record=record, resources_id=resources_id)
    raise typer.Exit(run_job(plugin, action, params, options))


@plugin_app.command("list")
@_handles_errors
def plugin_list(
    root: Annotated[Path, typer.Option(help="Folder holding one folder per plugin.")] = Path("plugins"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the plugins under a folder, with their actions and modes (and any invalid ones)."""
    from ray_runtime.plugins.manifest import PluginRegistry

    registry = PluginRegistry(root)
    rows = [
        {
            "plugin": p.name,
            "version": p.manifest.version,
            "action": a.name,
            "modes": a.modes,
            "description": a.description,
        }
        for p in registry
        for a in p.manifest.actions.values()
    ]
    if as_json:
        _print_json({"plugins": rows, "invalid": {k: v.message for k, v in registry.errors.items()}})
        return
    table = Table(title=f"plugins under {registry.root}")
    for column in ("plugin", "version", "action", "modes", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["plugin"], row["version"], row["action"], ", ".join(row["modes"]), row["description"])
    console.print(table)
    for name, error in registry.errors.items():
        errors.print(f"[yellow]invalid plugin {name}:[/] {error.message}")


@plugin_app.command("pack")
@_handles_errors
def plugin_pack(
    plugin: Annotated[str, typer.Argument(help="Plugin folder or name under ./plugins.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the zip here.")] = None,
) -> None:
    """Pack a plugin into its content-addressed zip; print the URI, checksum, size and files."""
    from ray_runtime.plugins.manifest import resolve
    from ray_runtime.plugins.package import build_package

    package = build_package(resolve(plugin))
    if output is not None:
        package.write(output)
    _print_json(
        {
            "plugin": package.plugin,
            "version": package.version,
            "uri": package.uri,
            "sha256": package.sha256,
            "bytes": package.size,
            "files": list(package.files),
            "written_to": str(output) if output else None,
        }
    )


_PROGRESS_LINE = re.compile(r"^\[progress\] (?P<done>[\d.]+)(?:/(?P<total>[\d.]+))?\s*(?P<message>.*)$")


@plugin_app.command("submit")
@_handles_errors
def plugin_submit(
    plugin: Annotated[str, typer.Argument(help="Plugin folder or name under ./plugins.")],
    action: Annotated[str, typer.Argument(help="Action name.")],
    params: ParamsOption = None,
    address: DashboardAddress = "http://127.0.0.1:8265",
    tenant: Tenant = None,
    submission_id: Annotated[str | None, typer.Option(help="Submission id to use.")] = None,
    follow: Annotated[bool, typer.Option("--follow/--no-follow", help="Follow logs until the job ends.")] = True,
    ship: Annotated[
        bool | None, typer.Option("--ship-ray-runtime/--no-ship-ray-runtime", help="Default: if the cluster lacks it.")
    ] = None,
) -> None:
    """Pack and submit an action as a Ray job, then show its progress and logs until it ends."""
    from ray_runtime.plugins.submit import follow_logs, submit_job

    with console.status("packing and submitting"):
        sid = submit_job(
            plugin,
            action,
            _params(params),
            address=address,
            tenant=tenant,
            submission_id=submission_id,
            ship_ray_runtime=ship,
        )
    console.print(f"submitted [bold]{sid}[/] ({plugin}/{action}) to {address}")
    if not follow:
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bar = progress.add_task(f"{plugin}/{action}", total=None, note="")

        def show(line: str) -> None:
            match = _PROGRESS_LINE.match(line)
            if match is None:
                progress.console.print(line, markup=False, highlight=False)
                return
            total = float(match["total"]) if match["total"] else None
            progress.update(bar, completed=float(match["done"]), total=total, note=match["message"])

        status = asyncio.run(follow_logs(address, sid, show))
    colour = "green" if status == "SUCCEEDED" else "red"
    console.print(f"job {sid} [{colour}]{status}[/]; its result is recorded in the coordinator as run {sid}")
    if status != "SUCCEEDED":
        raise typer.Exit(EXIT_FAILED)


@plugin_app.command("serve")
@_handles_errors
def plugin_serve(
    plugin: Annotated[str, typer.Argument(help="Plugin folder or name under ./plugins.")],
    actions: Annotated[list[str] | None, typer.Option("--action", help="Only these actions (repeatable).")] = None,
    address: RayAddress = None,
    tenant: Tenant = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the endpoints serve.")] = True,
) -> None:
    """Deploy a plugin's serve-mode actions on Ray Serve, leaving every other application as it is."""
    from ray_runtime.plugins.serve_deploy import serve_plugin, wait_for_apps

    _connect_ray(address)
    with console.status("packing and deploying") as status:
        names = serve_plugin(plugin, tenant=tenant, actions=actions)
        if wait:
            wait_for_apps(names, on_status=lambda s: status.update(", ".join(f"{k}: {v}" for k, v in s.items())))
    for name in names:
        plugin_name, action = name.split(".", 1)
        console.print(f"[green]serving[/] {name} at POST /plugins/{plugin_name}/{action} (WebSocket: .../ws)")


@plugin_app.command("serve-config")
@_handles_errors
def plugin_serve_config(
    root: Annotated[Path, typer.Argument(help="Folder holding one folder per plugin.")] = Path("plugins"),
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the YAML here.")] = None,
) -> None:
    """Write a `serve deploy` config for every serve-mode action under ROOT (run `plugin upload` first)."""
    import yaml

    from ray_runtime.plugins.manifest import PluginRegistry
    from ray_runtime.plugins.serve_deploy import declarative_config

    config = declarative_config(PluginRegistry(root))
    header = (
        f"# Generated by `ray-runtime plugin serve-config {root}`: do not edit, regenerate.\n"
        f"# Deploy: ray-runtime plugin upload {root} --address http://HEAD:8265\n"
        "#         serve deploy THIS_FILE --address http://HEAD:8265\n"
        "# (working_dir URIs are content-addressed: they change only when a plugin's files do.)\n"
    )
    text = header + yaml.safe_dump(config, sort_keys=False)
    if output is None:
        typer.echo(text)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        console.print(f"wrote {output} ({len(config['applications'])} applications)")


@plugin_app.command("upload")
@_handles_errors
def plugin_upload(
    root: Annotated[Path, typer.Argument(help="A plugin folder, or a folder holding one folder per plugin.")] = Path(
        "plugins"
    ),
    address: DashboardAddress = "http://127.0.0.1:8265",
) -> None:
    """Upload plugin packages to the cluster (skipped when it has them), for `serve deploy` or jobs."""
    from ray_runtime.plugins.manifest import MANIFEST_NAME, PluginRegistry, load
    from ray_runtime.plugins.submit import job_client
    from ray_runtime.plugins.upload import ensure_uploaded, package_for

    found = [load(root)] if (root / MANIFEST_NAME).is_file() else list(PluginRegistry(root))
    client = job_client(address)
    for plugin in found:
        uri = ensure_uploaded(package_for(plugin), submission_client=client)
        console.print(f"{plugin.name}: {uri}")


@plugin_app.command("run")
@_handles_errors
def plugin_run(
    plugin: Annotated[str, typer.Argument(help="Plugin folder or name under ./plugins.")],
    action: Annotated[str, typer.Argument(help="Action name.")],
    params: ParamsOption = None,
    address: RayAddress = None,
    tenant: Tenant = None,
) -> None:
    """Run an action as a Ray task on the cluster and print its result."""
    from pydantic import BaseModel

    from ray_runtime.plugins.task import run as run_task

    _connect_ray(address)
    result = run_task(plugin, action, _params(params), tenant=tenant)
    _print_json(result.model_dump(mode="json") if isinstance(result, BaseModel) else result)


@app.command("worker")
@_handles_errors
def worker(
    plugin: Annotated[str, typer.Argument(help="Plugin folder or name under ./plugins.")],
    action: Annotated[str, typer.Argument(help="Action name.")],
    queue: Annotated[str | None, typer.Option(help="Queue to consume (default: the manifest's).")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Tasks run at once.")] = 1,
    lease_s: Annotated[float, typer.Option(help="Lease length (heartbeats renew it).")] = 60.0,
    max_tasks: Annotated[int | None, typer.Option(help="Stop after this many tasks.")] = None,
    address: RayAddress = None,
    tenant: Tenant = None,
) -> None:
    """Consume a coordinator queue with a plugin action in this process (Ctrl-C finishes current tasks, stops)."""
    from ray_runtime.coordinator import aconnect
    from ray_runtime.errors import InvalidArgumentError
    from ray_runtime.plugins.action import LoadedAction
    from ray_runtime.plugins.manifest import resolve
    from ray_runtime.plugins.worker import QueueWorker

    resolved = resolve(plugin)
    spec = resolved.action(action)
    queue = queue or spec.queue
    if queue is None or "worker" not in spec.modes:
        raise InvalidArgumentError("action", f"{resolved.name}/{action} does not run in worker mode with a queue")
    _connect_ray(address)
    loaded = LoadedAction.load(resolved.name, action, resolved.path, spec.entrypoint)

    async def work() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
        runner = QueueWorker(loaded, queue, await aconnect(tenant=tenant), concurrency=concurrency, lease_s=lease_s)
        console.print(f"worker {runner.worker_id} consuming {queue!r} with {resolved.name}/{action} x{concurrency}")
        stats = await runner.run(stop=stop, max_tasks=max_tasks)
        console.print(f"done: {stats.succeeded} succeeded, {stats.failed} failed, {stats.lost} dropped (lease lost)")

    asyncio.run(work())


@app.command("api")
@_handles_errors
def api(
    host: Annotated[str, typer.Option(envvar="RAY_RUNTIME_API_HOST", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="RAY_RUNTIME_API_PORT", help="Port to bind.")] = 8080,
    address: RayAddress = None,
    dashboard: Annotated[str | None, typer.Option(help="Ray dashboard URL (default: the cluster's).")] = None,
    plugins_dir: Annotated[Path, typer.Option(help="Plugins the façade can submit and serve.")] = Path("plugins"),
    coordinator: Annotated[str, typer.Option(help="Coordinator actor name.")] = "coordinator",
) -> None:
    """Run the API façade under uvicorn. Without API keys it serves only on loopback (dev mode)."""
    import uvicorn

    from ray_runtime.api import ApiSettings, create_app
    from ray_runtime.api.keys import KEYS_NAMESPACE
    from ray_runtime.coordinator import connect
    from ray_runtime.errors import InvalidArgumentError

    settings = ApiSettings(
        host=host,
        port=port,
        ray_address=address,
        dashboard_url=dashboard,
        plugins_dir=plugins_dir,
        coordinator_name=coordinator,
    )
    _connect_ray(address)
    keys = connect(name=coordinator).kv.items(KEYS_NAMESPACE)
    if not any(record.get("revoked_at") is None for record in keys.values()) and not settings.loopback():
        raise InvalidArgumentError(
            "host",
            f"no API keys exist, so the façade serves only on loopback; create one with `ray-runtime keys create "
            f"--tenant <tenant> --scope admin`, or bind to 127.0.0.1 (got {host})",
        )
    console.print(f"ray_runtime API on http://{host}:{port} (OpenAPI at /docs)")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", ws="auto")


@keys_app.command("create")
@_handles_errors
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant the key acts for.")],
    scope: Annotated[str, typer.Option(help="read, submit or admin.")] = "submit",
    name: Annotated[str, typer.Option(help="A note to tell keys apart.")] = "",
    address: RayAddress = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create an API key; it is printed this once and stored only as a hash."""
    from ray_runtime.api.keys import KEYS_NAMESPACE, new_key
    from ray_runtime.coordinator import connect
    from ray_runtime.coordinator.state import check_name
    from ray_runtime.errors import InvalidArgumentError
    from ray_runtime.models.api import Scope

    check_name("tenant", tenant)
    if scope not in {s.value for s in Scope}:
        raise InvalidArgumentError("scope", f"must be read, submit or admin; got {scope!r}")
    _connect_ray(address)
    key, record = new_key(tenant, Scope(scope), name)
    connect().kv.put(KEYS_NAMESPACE, record.key_id, record.model_dump(mode="json"), if_absent=True)
    if as_json:
        _print_json({"key": key, "info": record.info().model_dump(mode="json")})
        return
    console.print(f"key {record.key_id} for tenant {tenant!r}, scope {scope}. Store it now; it is not shown again:")
    typer.echo(key)


@keys_app.command("list")
@_handles_errors
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    address: RayAddress = None,
) -> None:
    """List API keys (ids, tenants, scopes; never secrets)."""
    from ray_runtime.api.keys import KEYS_NAMESPACE, StoredKey
    from ray_runtime.coordinator import connect

    _connect_ray(address)
    table = Table(title="API keys")
    for column in ("key id", "tenant", "scope", "name", "created", "revoked"):
        table.add_column(column)
    for raw in connect().kv.items(KEYS_NAMESPACE).values():
        key = StoredKey.model_validate(raw)
        if tenant is None or key.tenant == tenant:
            revoked = "yes" if key.revoked_at else ""
            table.add_row(key.key_id, key.tenant, key.scope.value, key.name, f"{key.created_at:.0f}", revoked)
    console.print(table)


@keys_app.command("revoke")
@_handles_errors
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (rrk_<id>_...).")], address: RayAddress = None
) -> None:
    """Revoke an API key (the façade stops accepting it within its key cache time)."""
    import time

    from ray_runtime.api.keys import KEYS_NAMESPACE, StoredKey
    from ray_runtime.coordinator import connect
    from ray_runtime.errors import NotFoundError

    _connect_ray(address)
    coord = connect()
    raw = coord.kv.get(KEYS_NAMESPACE, key_id)
    if raw is None:
        raise NotFoundError(f"no API key {key_id!r}")
    record = StoredKey.model_validate(raw)
    coord.kv.put(KEYS_NAMESPACE, key_id, record.model_copy(update={"revoked_at": time.time()}).model_dump(mode="json"))
    console.print(f"revoked {key_id}")


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    app(args=sys.argv[1:])
