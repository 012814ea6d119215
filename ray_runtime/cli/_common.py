"""What every command shares: consoles, error handling and exit codes, input parsing, output, and connections."""

from __future__ import annotations

import functools
import inspect
import json
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ray_runtime.errors import (
    AuthenticationError,
    BadRequestError,
    CallerError,
    PermissionDeniedError,
    RayRuntimeError,
    TimeoutError,
    UnavailableError,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_TIMEOUT",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "JsonFlag",
    "ParamsOption",
    "RayAddress",
    "Tenant",
    "connect_ray",
    "console",
    "errors",
    "handles_errors",
    "log_view",
    "parse_json",
    "print_json",
    "show",
    "table",
    "with_client",
]

F = TypeVar("F", bound=Callable[..., Any])
console = Console()
errors = Console(stderr=True)

# Exit codes: 0 done; 1 it ran and failed (a job failed, a server error); 2 the input must change (bad input,
# unknown id, auth); 3 the façade or cluster cannot be reached; 4 a wait ran out of time.
EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_TIMEOUT = 1, 2, 3, 4
CONFIG_FILE = Path("~/.config/ray-runtime/config.toml")

ParamsOption = Annotated[str | None, typer.Option("--params", "-p", help="JSON parameters, or @file.json.")]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--address",
        envvar="RAY_ADDRESS",
        help="Ray cluster address (default: the local runtime `up` started, or the only cluster running here).",
    ),
]
Tenant = Annotated[str | None, typer.Option("--tenant", envvar="RAY_RUNTIME_TENANT", help="Tenant to act for.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts) instead of tables.")]

_CLUSTER_MODULES = frozenset({"ray", "fastapi", "uvicorn", "cloudpickle", "yaml", "pathspec", "psutil"})
_HINTS: list[tuple[type[RayRuntimeError], str]] = [
    (
        AuthenticationError,
        "pass --api-key or set RAY_RUNTIME_API_KEY (an admin creates keys with `ray-runtime keys create`)",
    ),
    (PermissionDeniedError, "use a key of the right tenant and scope (read < submit < admin)"),
]


def handles_errors(command: F) -> F:
    """Turn ray_runtime errors into a message, a hint of what to do next, and an exit code saying whose turn it is."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.split(".")[0] not in _CLUSTER_MODULES:
                raise
            errors.print(
                f"[red]error:[/] this command runs on a Ray cluster and needs {exc.name!r}: "
                "pip install 'ray-runtime\\[cluster]' (the client-only install has the job, queue, task and "
                "resources commands)",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(EXIT_USAGE) from None
        except RayRuntimeError as exc:
            errors.print(f"[red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
            problems = exc.details.get("errors", [])
            for problem in problems if len(problems) > 1 else []:  # one problem is the message already
                field = problem.get("field") or "(input)"
                errors.print(f"  - {escape(field)}: {escape(problem['problem'])}", highlight=False, soft_wrap=True)
            for kind, hint in _HINTS:
                if isinstance(exc, kind):
                    errors.print(f"[dim]hint: {hint}[/]", soft_wrap=True)
            raise typer.Exit(_exit_code(exc)) from None

    return wrapper  # type: ignore[return-value]


def _exit_code(exc: RayRuntimeError) -> int:
    if isinstance(exc, UnavailableError):
        return EXIT_UNAVAILABLE
    if isinstance(exc, TimeoutError):
        return EXIT_TIMEOUT
    return EXIT_USAGE if isinstance(exc, CallerError) else EXIT_FAILED


def parse_json(text: str | None, option: str = "--params", default: Any = None) -> Any:
    """JSON given inline, as ``@file``, or ``-`` for stdin."""
    if text is None:
        return default
    if text == "-":
        raw = typer.get_text_stream("stdin").read()
    elif text.startswith("@"):
        path = Path(text[1:]).expanduser()
        if not path.is_file():
            raise BadRequestError(f"{option}: no file {path}")
        raw = path.read_text()
    else:
        raw = text
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadRequestError(f"{option} is not valid JSON: {exc}") from None


def connect_ray(address: str | None) -> None:
    """Join the Ray cluster as a driver (commands that act on Ray directly), and say which one was joined."""
    from ray_runtime._ray import init_ray

    joined = init_ray(address)
    errors.print(f"[dim]joined {escape(joined)}[/]", highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------------------------------------- output


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


TraceFormatOption = Annotated[
    str, typer.Option("--format", help="otlp (OTLP/JSON spans, for trace viewers) or triplet (AGL's, for trainers).")
]
OutputOption = Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")]


def write_trace(value: Any, output: Path | None, what: str) -> None:
    """A trace as JSON: to ``output`` (saying where it went), else to stdout."""
    if output is None:
        print_json(value)
        return
    output.write_text(json.dumps(value, indent=2))
    errors.print(f"{what} written to {escape(str(output))}", highlight=False)


def print_json(value: Any) -> None:
    """JSON on stdout, unstyled when piped."""
    text = json.dumps(_plain(value), default=str, indent=2)
    if console.is_terminal:
        console.print_json(text)
    else:
        typer.echo(text)


_ID = re.compile(r"^[a-z]+_[0-9A-Za-z_-]{8,}$|^raysubmit_\w+$")  # ids are copied whole: never shortened
_SHORTEST = 8  # a shortened column keeps at least this many characters (and its header)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, wrap: bool = False) -> Table:
    """A Rich table that fits the terminal: one line per row, every id and header whole. Columns that do not fit
    at their full width are shortened (with …), or left out when even that does not fit (the caption says which);
    the first column always stays. With ``wrap`` (a record's fields, a transcript) every column stays and long
    cells wrap onto more lines instead. Cells print as given, never as markup (a Text keeps its style; None prints
    as empty)."""
    cells = [
        [cell if isinstance(cell, Text) else Text("" if cell is None else str(cell)) for cell in row] for row in rows
    ]
    if wrap:
        wrapped = Table(title=title, title_justify="left")
        for position, column in enumerate(columns):
            wrapped.add_column(column, overflow="fold", no_wrap=position == 0)
        for row in cells:
            wrapped.add_row(*row)
        return wrapped
    widths = [
        max([len(header), *(cell.cell_len for row in cells for cell in row[i : i + 1])])
        for i, header in enumerate(columns)
    ]
    whole = [i == 0 or any(_ID.match(row[i].plain) for row in cells if i < len(row)) for i in range(len(columns))]
    kept = _fitted(columns, widths, whole, console.width)
    dropped = [header for i, header in enumerate(columns) if i not in kept]
    caption = f"left out to fit {console.width} columns: {', '.join(dropped)} (--json has them)" if dropped else None
    rendered = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for i, cut in kept.items():
        whole_width = widths[i] if cut is None and whole[i] else None
        rendered.add_column(columns[i], no_wrap=True, overflow="ellipsis", max_width=cut, min_width=whole_width)
    for row in cells:
        rendered.add_row(*(row[i] if i < len(row) else Text("") for i in kept))
    return rendered


def _fitted(columns: Sequence[str], widths: list[int], whole: list[bool], width: int) -> dict[int, int | None]:
    """Which columns a table of ``width`` characters shows, each with the width it is cut to (None: its own): the
    first always, then every other one that fits whole, in order, then shortened ones (never an id) in the rest."""
    if not columns:
        return {}
    room = width - 1 - widths[0] - 3  # the table's right edge, and the first column with its border and padding
    kept: dict[int, int | None] = {0: None}
    for i in range(1, len(columns)):
        if widths[i] + 3 <= room:
            kept[i], room = None, room - widths[i] - 3
    for i, header in enumerate(columns):
        if i not in kept and not whole[i] and room - 3 >= max(len(header), _SHORTEST):
            cut = min(widths[i], room - 3)
            kept[i], room = cut, room - cut - 3
    return dict(sorted(kept.items()))


def show(value: Any, as_json: bool, human: Callable[[], Any]) -> None:
    """``value`` as JSON for scripts, or what ``human`` renders for people."""
    if as_json:
        print_json(value)
    else:
        rendered = human()
        if rendered is not None:
            console.print(rendered)


_PROGRESS_LINE = re.compile(r"^\[progress\] (?P<done>[\d.]+)(?:/(?P<total>[\d.]+))?\s*(?P<message>.*)$")


@contextmanager
def log_view(title: str) -> Iterator[Callable[[str], None]]:
    """Live log lines with a progress bar fed by the ``[progress] done/total message`` lines plugin jobs print."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        bar = progress.add_task(title, total=None, note="")

        def line(text: str) -> None:
            match = _PROGRESS_LINE.match(text)
            if match is None:
                progress.console.print(Text.from_ansi(text), highlight=False)
                return
            total = float(match["total"]) if match["total"] else None
            progress.update(bar, completed=float(match["done"]), total=total, note=match["message"])

        yield line


# ------------------------------------------------------------------------------------------------------ connection


class Connection(BaseModel):
    """Where the façade is and who we are: from flags, env, the config file, or the runtime `up` started."""

    url: str
    api_key: str | None = None
    tenant: str | None = None


def resolve_connection(url: str | None, api_key: str | None, tenant: str | None) -> Connection:
    """Flags and env (Typer reads both) win; then ``$RAY_RUNTIME_CONFIG`` or ~/.config/ray-runtime/config.toml;
    then the local runtime of ``ray-runtime up``."""
    from ray_runtime._local_state import find_runtime

    found: dict[str, Any] = {"url": url, "api_key": api_key, "tenant": tenant}
    config_path = Path(os.environ.get("RAY_RUNTIME_CONFIG", CONFIG_FILE)).expanduser()
    if config_path.is_file():
        try:
            config = tomllib.loads(config_path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise BadRequestError(f"{config_path} is not valid TOML: {exc}") from None
        for name in found:
            if found[name] is None and config.get(name) is not None:
                found[name] = str(config[name])
    if found["url"] is None:
        state = find_runtime()
        if state is not None:
            found["url"] = state.api_url
            found["api_key"] = found["api_key"] or state.api_key
    if found["url"] is None:
        raise UnavailableError(
            "no ray_runtime API to talk to: pass --url, set RAY_RUNTIME_URL, write url = ... in "
            f"{CONFIG_FILE}, or start a local runtime with `ray-runtime up` (one started with --dir elsewhere: "
            "set RAY_RUNTIME_LOCAL_DIR)"
        )
    return Connection(**found)


UrlOption = Annotated[
    str | None, typer.Option("--url", envvar="RAY_RUNTIME_URL", help="The API façade (default: config or `up`).")
]
KeyOption = Annotated[
    str | None, typer.Option("--api-key", envvar="RAY_RUNTIME_API_KEY", help="API key.", show_default=False)
]


def with_client(command: F) -> F:
    """Give a command ``--url``, ``--api-key`` and ``--tenant``, and call it with a ready ``client``."""
    signature = inspect.signature(command, eval_str=True)
    kept = [parameter for name, parameter in signature.parameters.items() if name != "client"]
    added = [
        inspect.Parameter("url", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=UrlOption),
        inspect.Parameter("api_key", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=KeyOption),
        inspect.Parameter("tenant", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Tenant),
    ]

    @functools.wraps(command)
    def wrapper(*args: Any, url: str | None = None, api_key: str | None = None, tenant: str | None = None, **kw: Any):
        from ray_runtime.client import RuntimeClient

        connection = resolve_connection(url, api_key, tenant)
        with RuntimeClient(connection.url, connection.api_key, tenant=connection.tenant) as client:
            return command(*args, client=client, **kw)

    wrapper.__signature__ = signature.replace(parameters=kept + added)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in kept + added}
    return wrapper  # type: ignore[return-value]


def ago(timestamp: float | None) -> str:
    """``12s ago``-style age of a Unix time."""
    import time

    if timestamp is None:
        return ""
    seconds = max(0.0, time.time() - timestamp)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"
