"""``ray-runtime plugin``, ``run`` and ``worker``: plugins on the Ray cluster this machine can reach."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ray_runtime.cli._common import (
    EXIT_FAILED,
    JsonFlag,
    ParamsOption,
    RayAddress,
    Tenant,
    connect_ray,
    console,
    errors,
    handles_errors,
    log_view,
    parse_json,
    print_json,
    table,
)

plugin_app = typer.Typer(help="Plugins: list, pack, submit as Ray jobs, serve, run as tasks.", no_args_is_help=True)
run_app = typer.Typer()  # `run` and `worker`, registered at the top level
DashboardAddress = Annotated[
    str,
    typer.Option("--address", envvar="RAY_DASHBOARD_ADDRESS", help="Ray dashboard, as for `ray job submit`."),
]


@run_app.command("run")
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
@handles_errors
def plugin_list(
    root: Annotated[Path, typer.Option(help="Folder holding one folder per plugin.")] = Path("plugins"),
    as_json: JsonFlag = False,
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
        print_json({"plugins": rows, "invalid": {k: v.message for k, v in registry.errors.items()}})
        return
    cells = [[r["plugin"], r["version"], r["action"], ", ".join(r["modes"]), r["description"]] for r in rows]
    console.print(
        table(f"plugins under {registry.root}", ["plugin", "version", "action", "modes", "description"], cells)
    )
    for name, error in registry.errors.items():
        errors.print(f"[yellow]invalid plugin {escape(name)}:[/] {escape(error.message)}", soft_wrap=True)


@plugin_app.command("pack")
@handles_errors
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
    print_json(
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


@plugin_app.command("submit")
@handles_errors
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
            parse_json(params, default={}),
            address=address,
            tenant=tenant,
            submission_id=submission_id,
            ship_ray_runtime=ship,
        )
    console.print(f"submitted [bold]{sid}[/] ({plugin}/{action}) to {address}")
    if not follow:
        return
    with log_view(f"{plugin}/{action}") as line:
        status = asyncio.run(follow_logs(address, sid, line))
    colour = "green" if status == "SUCCEEDED" else "red"
    console.print(f"job {sid} [{colour}]{status}[/]; its result is recorded in the coordinator as run {sid}")
    if status != "SUCCEEDED":
        raise typer.Exit(EXIT_FAILED)


@plugin_app.command("serve")
@handles_errors
def plugin_serve(
    plugin: Annotated[str, typer.Argument(help="Plugin folder or name under ./plugins.")],
    actions: Annotated[list[str] | None, typer.Option("--action", help="Only these actions (repeatable).")] = None,
    address: RayAddress = None,
    tenant: Tenant = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the endpoints serve.")] = True,
) -> None:
    """Deploy a plugin's serve-mode actions on Ray Serve, leaving every other application as it is."""
    from ray_runtime.plugins.serve_deploy import serve_plugin, wait_for_apps

    connect_ray(address)
    with console.status("packing and deploying") as status:
        names = serve_plugin(plugin, tenant=tenant, actions=actions)
        if wait:
            wait_for_apps(names, on_status=lambda s: status.update(", ".join(f"{k}: {v}" for k, v in s.items())))
    for name in names:
        plugin_name, action = name.split(".", 1)
        console.print(f"[green]serving[/] {name} at POST /plugins/{plugin_name}/{action} (WebSocket: .../ws)")


@plugin_app.command("serve-config")
@handles_errors
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
@handles_errors
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
@handles_errors
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

    connect_ray(address)
    result = run_task(plugin, action, parse_json(params, default={}), tenant=tenant)
    print_json(result.model_dump(mode="json") if isinstance(result, BaseModel) else result)


@run_app.command("worker")
@handles_errors
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
    connect_ray(address)
    loaded = LoadedAction.load(resolved.name, action, resolved.path, spec.entrypoint)

    async def work() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
        runner = QueueWorker(loaded, queue, await aconnect(tenant=tenant), concurrency=concurrency, lease_s=lease_s)
        console.print(f"worker {runner.worker_id} consuming {queue!r} with {resolved.name}/{action} x{concurrency}")
        stats = await runner.run(stop=stop, max_tasks=max_tasks)
        console.print(f"done: {stats.succeeded} succeeded, {stats.failed} failed, {stats.lost} dropped (lease lost)")

    asyncio.run(work())
