"""``ray-runtime queue``, ``task`` and ``resources``: the coordinator through the API façade."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from ray_runtime.cli._common import (
    EXIT_FAILED,
    EXIT_TIMEOUT,
    JsonFlag,
    ago,
    console,
    handles_errors,
    parse_json,
    show,
    table,
    with_client,
)
from ray_runtime.client import RuntimeClient
from ray_runtime.errors import BadRequestError
from ray_runtime.models.resources import ResourcesUpdate
from ray_runtime.models.tasks import Task, TaskStatus

queue_app = typer.Typer(help="Coordinator queues: enqueue, stats, purge, list.", no_args_is_help=True)
task_app = typer.Typer(help="Coordinator tasks: get, list, wait, retry, cancel.", no_args_is_help=True)
resources_app = typer.Typer(help="Versioned resources: add, get, latest, history.", no_args_is_help=True)

QueueName = Annotated[str, typer.Argument(help="Queue name.")]
TaskId = Annotated[str, typer.Argument(help="Task id (task_...).")]
_BATCH = 1000
_COLOURS = {"succeeded": "green", "failed": "red", "dead": "red", "cancelled": "yellow", "leased": "cyan"}


def _status(task: Task) -> Text:
    return Text(task.status.value, style=_COLOURS.get(task.status.value, "white"))


def _short(value: Any, width: int = 50) -> str:
    text = json.dumps(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _task_rows(tasks: list[Task]) -> list[list[Any]]:
    return [[t.id, t.queue, _status(t), t.attempts, _short(t.input), ago(t.created_at)] for t in tasks]


_TASK_COLUMNS = ["task id", "queue", "status", "attempts", "input", "created"]

# ------------------------------------------------------------------------------------------------------------ queue


@queue_app.command("enqueue")
@handles_errors
@with_client
def enqueue(
    client: RuntimeClient,
    queue: QueueName,
    input: Annotated[str | None, typer.Argument(help="The task input: JSON, @file.json, or - for stdin.")] = None,
    jsonl: Annotated[Path | None, typer.Option(help="Enqueue one task per line of this JSON-lines file.")] = None,
    priority: Annotated[int, typer.Option(help="Higher runs first.")] = 0,
    delay_s: Annotated[float, typer.Option(min=0, help="Invisible for this long.")] = 0.0,
    idempotency_key: Annotated[str | None, typer.Option(help="Enqueue once per key (single task only).")] = None,
    max_attempts: Annotated[int | None, typer.Option(min=1, help="Attempts before the dead letter.")] = None,
    resources_id: Annotated[str | None, typer.Option(help="Pin a resources version.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Add one task (INPUT) or many (--jsonl FILE, sent in batches with a progress bar)."""
    options: dict[str, Any] = {"priority": priority, "delay_s": delay_s, "resources_id": resources_id}
    if max_attempts is not None:
        options["max_attempts"] = max_attempts
    if jsonl is None:
        task_id = client.enqueue(queue, parse_json(input, "INPUT"), idempotency_key=idempotency_key, **options)
        show({"task_id": task_id}, as_json, lambda: f"enqueued {task_id} on {queue}")
        return
    if input is not None or idempotency_key is not None:
        raise BadRequestError("--jsonl takes the inputs from the file: drop INPUT and --idempotency-key")
    items = _read_jsonl(jsonl)
    ids: list[str] = []
    with Progress(
        TextColumn("enqueue"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, disable=as_json
    ) as progress:
        bar = progress.add_task("enqueue", total=len(items))
        for start in range(0, len(items), _BATCH):
            ids += client.enqueue_many(queue, items[start : start + _BATCH], **options)
            progress.update(bar, completed=len(ids))
    show({"task_ids": ids}, as_json, lambda: f"enqueued {len(ids)} tasks on {queue}")


def _read_jsonl(path: Path) -> list[Any]:
    if not path.is_file():
        raise BadRequestError(f"--jsonl: no file {path}")
    items = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise BadRequestError(f"--jsonl: line {number} of {path} is not JSON: {exc}") from None
    if not items:
        raise BadRequestError(f"--jsonl: {path} holds no tasks")
    return items


@queue_app.command("stats")
@handles_errors
@with_client
def stats(client: RuntimeClient, queue: QueueName, as_json: JsonFlag = False) -> None:
    """Depth per status, delayed tasks and the oldest queued age."""
    found = client.queue_stats(queue)

    def human() -> Any:
        rows = [[status, count] for status, count in found.counts.items()]
        rows += [["(delayed)", found.delayed], ["(oldest queued)", f"{found.oldest_queued_age_s or 0:.1f}s"]]
        return table(f"queue {queue}", ["status", "tasks"], rows)

    show(found, as_json, human)


@queue_app.command("purge")
@handles_errors
@with_client
def purge(
    client: RuntimeClient,
    queue: QueueName,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Cancel every queued task of a queue (leased tasks finish)."""
    if not yes:
        typer.confirm(f"cancel every queued task of {queue}?", abort=True)
    console.print(f"cancelled {client.purge_queue(queue)} queued tasks of {queue}")


@queue_app.command("list")
@handles_errors
@with_client
def list_queues(client: RuntimeClient, as_json: JsonFlag = False) -> None:
    """Your queues."""
    names = client.list_queues()
    show(names, as_json, lambda: table("queues", ["queue"], [[name] for name in names]))


# ------------------------------------------------------------------------------------------------------------- task


@task_app.command("get")
@handles_errors
@with_client
def get_task(client: RuntimeClient, task_id: TaskId, as_json: JsonFlag = False) -> None:
    """One task: status, attempts, input, result or error."""
    task = client.get_task(task_id)

    def human() -> Any:
        rows = [
            ("task id", task.id),
            ("queue", task.queue),
            ("status", _status(task)),
            ("attempts", f"{task.attempts}/{task.max_attempts}"),
            ("input", json.dumps(task.input)),
            ("result", json.dumps(task.result) if task.result is not None else None),
            ("error", task.error.message if task.error else None),
            ("created", ago(task.created_at)),
        ]
        rows += [
            (
                f"attempt {a.attempt}",
                f"{a.outcome} {ago(a.ended_at)} on {a.worker_id}: {a.error.message if a.error else ''}",
            )
            for a in task.history
        ]
        return table(f"task {task.id}", ["field", "value"], rows, wrap=True)

    show(task, as_json, human)


@task_app.command("list")
@handles_errors
@with_client
def list_tasks(
    client: RuntimeClient,
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    status: Annotated[TaskStatus | None, typer.Option(help="Only this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Tasks per page.")] = 50,
    all_: Annotated[bool, typer.Option("--all", help="Every page.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Tasks in creation order."""
    tasks: list[Task] = []
    cursor = None
    while True:
        page = client.query_tasks(queue=queue, status=status, limit=limit, cursor=cursor)
        tasks += page.items
        if not all_ or page.next_cursor is None:
            break
        cursor = page.next_cursor
    show(tasks, as_json, lambda: table(f"tasks ({len(tasks)})", _TASK_COLUMNS, _task_rows(tasks)))


@task_app.command("wait")
@handles_errors
@with_client
def wait(
    client: RuntimeClient,
    task_ids: Annotated[list[str], typer.Argument(help="Task ids.")],
    timeout_s: Annotated[float, typer.Option("--timeout", min=0, help="Give up after this many seconds.")] = 300.0,
    as_json: JsonFlag = False,
) -> None:
    """Wait until the tasks end (exit 1 if any did not succeed, 4 on timeout)."""
    deadline = time.monotonic() + timeout_s
    done: dict[str, Task] = {}
    with Progress(
        TextColumn("tasks"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, disable=as_json
    ) as progress:
        bar = progress.add_task("wait", total=len(set(task_ids)))
        while len(done) < len(set(task_ids)):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            pending = [task_id for task_id in dict.fromkeys(task_ids) if task_id not in done]
            result = client.wait_tasks(pending, timeout_s=min(remaining, 30.0), return_when="first")
            done.update({task.id: task for task in result.done})
            progress.update(bar, completed=len(done))
    tasks = list(done.values())
    if tasks or as_json:
        show(tasks, as_json, lambda: table("finished tasks", _TASK_COLUMNS, _task_rows(tasks)))
    if len(done) < len(set(task_ids)):
        console.print(f"[yellow]{len(set(task_ids)) - len(done)} still running after {timeout_s:g}s[/]")
        raise typer.Exit(EXIT_TIMEOUT)
    if any(task.status != TaskStatus.SUCCEEDED for task in tasks):
        raise typer.Exit(EXIT_FAILED)


@task_app.command("retry")
@handles_errors
@with_client
def retry(client: RuntimeClient, task_id: TaskId, as_json: JsonFlag = False) -> None:
    """Queue a dead, failed or cancelled task again."""
    task = client.retry_task(task_id)
    show(task, as_json, lambda: Text.assemble(f"{task.id} is ", _status(task), " again"))


@task_app.command("cancel")
@handles_errors
@with_client
def cancel(client: RuntimeClient, task_id: TaskId, as_json: JsonFlag = False) -> None:
    """Cancel a queued or leased task."""
    task = client.cancel_task(task_id)
    show(task, as_json, lambda: Text.assemble(f"{task.id} is ", _status(task)))


# -------------------------------------------------------------------------------------------------------- resources


def _resources_table(update: ResourcesUpdate) -> Any:
    rows = [
        [
            name,
            resource.resource_type,
            _short(resource.model_dump(mode="json", exclude={"resource_type"}, exclude_none=True), 80),
        ]
        for name, resource in update.resources.items()
    ]
    title = f"resources {update.resources_id} (version {update.version}, {ago(update.created_at)})"
    return table(title, ["name", "type", "value"], rows, wrap=True)


@resources_app.command("add")
@handles_errors
@with_client
def add(
    client: RuntimeClient,
    resources: Annotated[str, typer.Argument(help="JSON object of named resources, @file.json, or - for stdin.")],
    merge: Annotated[bool, typer.Option(help="Start from the latest version (add or replace these names).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Publish a new version, e.g. '{"llm": {"resource_type": "llm", "endpoint": "...", "model": "..."}}'."""
    named = parse_json(resources, "RESOURCES")
    if not isinstance(named, dict) or not named:
        raise BadRequestError("RESOURCES must be a JSON object of name -> resource")
    update = client.update_resources(named) if merge else client.add_resources(named)
    show(update, as_json, lambda: _resources_table(update))


@resources_app.command("get")
@handles_errors
@with_client
def get_resources(
    client: RuntimeClient,
    resources_id: Annotated[str, typer.Argument(help="Version id (res_...).")],
    as_json: JsonFlag = False,
) -> None:
    """One version."""
    update = client.get_resources(resources_id)
    show(update, as_json, lambda: _resources_table(update))


@resources_app.command("latest")
@handles_errors
@with_client
def latest(client: RuntimeClient, as_json: JsonFlag = False) -> None:
    """The newest version."""
    update = client.latest_resources()
    show(update, as_json, lambda: _resources_table(update))


@resources_app.command("history")
@handles_errors
@with_client
def history(
    client: RuntimeClient,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many versions.")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Kept versions, newest first."""
    updates = client.resources_history(limit)
    rows = [[u.resources_id, u.version, ", ".join(u.resources), ago(u.created_at)] for u in updates]
    show(updates, as_json, lambda: table("resources versions", ["id", "version", "names", "created"], rows))
