"""``ray-runtime agl``: Agent Lightning 1.0 rollouts run by ray_runtime."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer
from rich.markup import escape

from ray_runtime.cli._common import (
    OutputOption,
    RayAddress,
    Tenant,
    TraceFormatOption,
    connect_ray,
    console,
    handles_errors,
    with_client,
    write_trace,
)
from ray_runtime.client import RuntimeClient

agl_app = typer.Typer(
    help="Agent Lightning 1.0: run its rollouts as Ray tasks, export their traces.", no_args_is_help=True
)


@agl_app.command("runner")
@handles_errors
def runner(
    plugin: Annotated[str, typer.Option(help="Plugin (folder, or name under ./plugins) the agents run with.")],
    url: Annotated[str, typer.Option(help="The façade's AGL routes as agents reach them, e.g. http://head:8080/agl.")],
    concurrency: Annotated[int, typer.Option(min=1, help="Rollouts running at once.")] = 4,
    num_cpus: Annotated[float, typer.Option(min=0, help="CPUs each rollout's Ray task asks for.")] = 1.0,
    max_attempts: Annotated[int, typer.Option(min=1, help="Attempts when Ray loses a rollout's task.")] = 3,
    max_rollouts: Annotated[int | None, typer.Option(help="Stop after this many rollouts ended.")] = None,
    address: RayAddress = None,
    tenant: Tenant = None,
) -> None:
    """Claim the tenant's queuing rollouts and run each one's config.local.agent_class in a Ray task (Ctrl-C fails
    the running ones and stops). Not beside AGL's own local controller on the same tenant."""
    from ray_runtime.coordinator import connect
    from ray_runtime.plugins.agl_runner import RolloutRunner

    connect_ray(address)
    coordinator = connect(tenant=tenant) if tenant else connect()

    def ended(rollout_id: str, state: str, error: str | None) -> None:
        done = list(rollouts.finished.values())
        colour = "green" if state == "succeeded" else "red"
        console.print(
            f"[{colour}]{state}[/] {escape(rollout_id)}{f': {escape(error)}' if error else ''}  "
            f"[dim]({done.count('succeeded')} succeeded, {done.count('failed')} failed, {rollouts.running} running)[/]",
            highlight=False,
            soft_wrap=True,
        )

    rollouts = RolloutRunner(
        coordinator,
        plugin=plugin,
        agl_url=url,
        concurrency=concurrency,
        num_cpus=num_cpus,
        max_attempts=max_attempts,
        on_end=ended,
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    console.print(
        f"runner {rollouts.worker_id}: tenant {coordinator.tenant!r}, agents of {rollouts.plugin.name}, x{concurrency}"
    )
    rollouts.run(stop, until_done=max_rollouts)
    ended = list(rollouts.finished.values())
    console.print(f"done: {ended.count('succeeded')} succeeded, {ended.count('failed')} failed")


@agl_app.command("export")
@handles_errors
@with_client
def export(
    client: RuntimeClient,
    rollout_id: Annotated[str, typer.Argument(help="The rollout's id.")],
    format: TraceFormatOption = "otlp",
    attempt: Annotated[str | None, typer.Option(help="Which attempt (default: the one its status names).")] = None,
    output: OutputOption = None,
) -> None:
    """A rollout's attempt as OTLP/JSON spans (model calls with their token ids) or as AGL triplets."""
    write_trace(client.rollout_trace(rollout_id, format, attempt), output, f"the trace of rollout {rollout_id}")
