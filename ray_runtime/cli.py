"""The ``ray-runtime`` command (Typer + Rich)."""

from __future__ import annotations

import typer

from ray_runtime._version import __version__

app = typer.Typer(name="ray-runtime", help="Run plugins, queues and the API façade on Ray.", no_args_is_help=True)


@app.callback()
def _root() -> None:
    """Run plugins, queues and the API façade on Ray."""


@app.command()
def version() -> None:
    """Print the ray_runtime version."""
    typer.echo(__version__)


def main() -> None:
    """Console-script entry point."""
    app()
