"""``ray-runtime job``: Ray jobs through the API façade (submit, list, get, logs, stop, delete)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from ray_runtime.cli._common import (
    EXIT_FAILED,
    JsonFlag,
    ParamsOption,
    ago,
    console,
    handles_errors,
    log_view,
    parse_json,
    show,
    table,
    with_client,
)
from ray_runtime.client import RuntimeClient
from ray_runtime.errors import BadRequestError
from ray_runtime.models.api import JobInfo, JobStatus

job_app = typer.Typer(
    help="Ray jobs through the API façade: submit, list, get, logs, stop, delete.", no_args_is_help=True
)

JobId = Annotated[str, typer.Argument(help="The job's submission id.")]
_COLOURS = {"SUCCEEDED": "green", "FAILED": "red", "STOPPED": "yellow", "RUNNING": "cyan", "PENDING": "blue"}


def _status(job: JobInfo) -> Text:
    return Text(job.status.value, style=_COLOURS.get(job.status.value, "white"))


def _what(job: JobInfo) -> str:
    if job.plugin:
        return f"{job.plugin}/{job.action}"
    return job.entrypoint if len(job.entrypoint) <= 60 else job.entrypoint[:57] + "..."


def _metadata(pairs: list[str] | None) -> dict[str, str]:
    metadata = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadRequestError(f"--metadata takes key=value; got {pair!r}")
        metadata[key] = value
    return metadata


@job_app.command("submit")
@handles_errors
@with_client
def submit(
    client: RuntimeClient,
    plugin: Annotated[str | None, typer.Argument(help="Plugin name (on the façade's plugins dir).")] = None,
    action: Annotated[str | None, typer.Argument(help="Action of the plugin.")] = None,
    params: ParamsOption = None,
    entrypoint: Annotated[
        str | None, typer.Option(help="A raw shell entrypoint instead of a plugin action.", show_default=False)
    ] = None,
    runtime_env: Annotated[str | None, typer.Option(help="runtime_env of a raw entrypoint: JSON or @file.")] = None,
    submission_id: Annotated[str | None, typer.Option(help="Use this submission id.")] = None,
    metadata: Annotated[list[str] | None, typer.Option(help="key=value labels (repeatable).")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Follow the logs until the job ends.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Submit a plugin action (PLUGIN ACTION) or a raw --entrypoint as a Ray job."""
    if (plugin is None) == (entrypoint is None) or (plugin is not None and action is None):
        raise BadRequestError("give PLUGIN ACTION, or --entrypoint 'command' (one of the two)")
    labels = _metadata(metadata)
    if plugin is not None:
        job = client.submit_plugin(
            plugin, action, parse_json(params, default={}), submission_id=submission_id, metadata=labels
        )
    else:
        env = parse_json(runtime_env, "--runtime-env")
        job = client.submit_job(entrypoint, runtime_env=env, submission_id=submission_id, metadata=labels)
    if not follow:
        show(job, as_json, lambda: f"submitted [bold]{job.submission_id}[/] ({_what(job)})")
        return
    if not as_json:
        console.print(f"submitted [bold]{job.submission_id}[/] ({_what(job)}); following its logs")
    _follow(client, job.submission_id, as_json)


def _follow(client: RuntimeClient, job_id: str, as_json: bool, offset: int = 0) -> None:
    """Tail until the job ends, then show how it ended; exit 1 unless it succeeded."""
    if as_json:
        for _ in client.tail_job_logs(job_id, offset=offset):
            pass
    else:
        with log_view(job_id) as line:
            for text in client.tail_job_logs(job_id, offset=offset):
                line(text)
    job = client.wait_job(job_id, timeout_s=60, poll_s=0.2)  # the log ends with the job; its record follows
    show(job, as_json, lambda: _summary(job))
    if job.status != JobStatus.SUCCEEDED:
        raise typer.Exit(EXIT_FAILED)


def _summary(job: JobInfo) -> Text:
    text = Text.assemble(f"job {job.submission_id} ", _status(job))
    if job.message and job.status != JobStatus.SUCCEEDED:
        text.append(f": {job.message.splitlines()[0]}")  # Ray appends the log's tail, shown above already
    if job.run is not None and job.run.result is not None:
        import json

        text.append(f"\nresult: {json.dumps(job.run.result)}")
    return text


@job_app.command("list")
@handles_errors
@with_client
def list_(
    client: RuntimeClient,
    status: Annotated[JobStatus | None, typer.Option(help="Only jobs in this status.")] = None,
    plugin: Annotated[str | None, typer.Option(help="Only runs of this plugin.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many (newest first).")] = 20,
    all_: Annotated[bool, typer.Option("--all", help="Every page, not only the first.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """List your jobs, newest first."""
    filters: dict[str, Any] = {"status": status, "plugin": plugin}
    jobs = list(client.iter_jobs(**filters)) if all_ else client.list_jobs(limit=limit, **filters).items
    show(
        jobs,
        as_json,
        lambda: table(
            f"jobs ({len(jobs)})",
            ["submission id", "status", "what", "by", "started"],
            [[j.submission_id, _status(j), _what(j), j.submitted_by, ago(j.start_time)] for j in jobs],
        ),
    )


@job_app.command("get")
@handles_errors
@with_client
def get(client: RuntimeClient, job_id: JobId, as_json: JsonFlag = False) -> None:
    """A job's status, and for plugin jobs the recorded progress and result."""
    job = client.get_job(job_id)

    def human() -> Table:
        rows = [
            ("submission id", job.submission_id),
            ("status", _status(job)),
            ("message", job.message),
            ("what", _what(job)),
            ("tenant", job.tenant),
            ("submitted by", job.submitted_by),
            ("started", ago(job.start_time)),
            ("ended", ago(job.end_time)),
        ]
        if job.run is not None:
            progress = job.run.progress
            if progress is not None:
                total = f"{progress.total:g}" if progress.total is not None else "?"
                rows.append(("progress", f"{progress.done:g}/{total} {progress.message or ''}"))
            if job.run.result is not None:
                import json

                rows.append(("result", json.dumps(job.run.result)))
            if job.run.error is not None:
                rows.append(("error", job.run.error.message))
        return table(f"job {job.submission_id}", ["field", "value"], rows, wrap=True)

    show(job, as_json, human)


@job_app.command("logs")
@handles_errors
@with_client
def logs(
    client: RuntimeClient,
    job_id: JobId,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep following until the job ends.")] = False,
    offset: Annotated[int, typer.Option(min=0, help="Start at this byte offset.")] = 0,
) -> None:
    """Print a job's log (all of it, page by page), or follow it live with -f."""
    if follow:
        _follow(client, job_id, as_json=False, offset=offset)
        return
    while True:
        page = client.get_job_logs(job_id, offset=offset, limit=1 << 20)
        typer.echo(page.data, nl=False)
        if page.complete or page.next_offset == offset:
            return
        offset = page.next_offset


@job_app.command("stop")
@handles_errors
@with_client
def stop(
    client: RuntimeClient,
    job_id: JobId,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until it has stopped.")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Stop a running job."""
    job = client.stop_job(job_id)
    if wait:
        with console.status(f"stopping {job_id}", spinner="dots"):
            job = client.wait_job(job_id, timeout_s=120, poll_s=0.2)
    show(job, as_json, lambda: Text.assemble(f"{job_id} is ", _status(job)))


@job_app.command("delete")
@handles_errors
@with_client
def delete(client: RuntimeClient, job_id: JobId) -> None:
    """Delete a finished job and its logs."""
    client.delete_job(job_id)
    console.print(f"deleted {job_id}")
