"""The ``ray-runtime`` command (Typer + Rich).

Commands that act on the cluster directly (``plugin``, ``run``, ``worker``, ``api``, ``keys``) join Ray as a
driver; ``job``, ``queue``, ``task``, ``resources``, ``template``, ``session`` and ``chat`` go through the API
façade with the Python client;
``up``, ``down`` and ``status`` manage a complete runtime on this machine.
"""

from __future__ import annotations

import os
import sys

import typer

from ray_runtime._version import __version__
from ray_runtime.cli import local
from ray_runtime.cli.admin import admin_app, keys_app
from ray_runtime.cli.agl import agl_app
from ray_runtime.cli.chat import chat
from ray_runtime.cli.coordinator import coordinator_app
from ray_runtime.cli.jobs import job_app
from ray_runtime.cli.plugins import plugin_app, run_app
from ray_runtime.cli.queues import queue_app, resources_app, task_app
from ray_runtime.cli.sessions import session_app, template_app

__all__ = ["app", "main"]

app = typer.Typer(
    name="ray-runtime",
    help="Run plugins, queues and the API façade on Ray.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.command()
def version() -> None:
    """Print the ray_runtime version."""
    typer.echo(__version__)


app.command("up")(local.up)
app.command("down")(local.down)
app.command("status")(local.status)
app.command("chat")(chat)
app.add_typer(job_app, name="job")
app.add_typer(plugin_app, name="plugin")
app.add_typer(queue_app, name="queue")
app.add_typer(task_app, name="task")
app.add_typer(resources_app, name="resources")
app.add_typer(keys_app, name="keys")
app.add_typer(template_app, name="template")
app.add_typer(session_app, name="session")
app.add_typer(coordinator_app, name="coordinator")
app.add_typer(agl_app, name="agl")
app.registered_commands += run_app.registered_commands + admin_app.registered_commands


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    app(args=sys.argv[1:])
