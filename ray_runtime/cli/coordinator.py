"""``ray-runtime coordinator``: the coordinator's state where it lives (files, or PostgreSQL), and moving it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from ray_runtime.cli._common import EXIT_FAILED, JsonFlag, console, handles_errors, show, table

coordinator_app = typer.Typer(help="The coordinator's state: where it lives, and moving it.", no_args_is_help=True)


@coordinator_app.command("migrate")
@handles_errors
def migrate(
    source: Annotated[
        str,
        typer.Option(
            "--from",
            help="Where it is: postgresql://..., a journal file (<name>.sqlite3), or a storage folder "
            "($RAY_RUNTIME_STORAGE).",
        ),
    ],
    target: Annotated[str, typer.Option("--to", help="Where it goes (empty), given as --from is.")],
    name: Annotated[str, typer.Option(help="The coordinator's name.")] = "coordinator",
    as_json: JsonFlag = False,
) -> None:
    """Copy a coordinator's whole state (tasks, resources, runs, keys, sessions and their snapshots) to an empty
    journal, offline, and verify the copy by counts and checksums (exit 1 if it differs). Stop the coordinator
    first: a file journal it runs on is refused, and a PostgreSQL one is taken over."""
    from ray_runtime.coordinator.migration import migrate as copy

    with console.status(f"copying coordinator {name!r}, then reading the copy back to compare"):
        done = copy(source, target, name=name)
    rows = [[kind, f"{count:,}", done.checksums[kind][:16]] for kind, count in done.counts.items()]
    show(
        asdict(done),
        as_json,
        lambda: table(
            f"{done.source} → {done.target}: {'verified' if done.verified else 'DIFFERS'}",
            ["kind", "copied", "sha256"],
            rows,
        ),
    )
    if not done.verified:
        raise typer.Exit(EXIT_FAILED)
