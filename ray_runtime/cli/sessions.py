"""``ray-runtime template`` and ``ray-runtime session``: agent templates and sessions through the API façade."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.text import Text

from ray_runtime.cli._common import (
    EXIT_FAILED,
    JsonFlag,
    OutputOption,
    TraceFormatOption,
    ago,
    console,
    handles_errors,
    parse_json,
    show,
    table,
    with_client,
    write_trace,
)
from ray_runtime.cli.jobs import _metadata
from ray_runtime.client import RuntimeClient
from ray_runtime.errors import BadRequestError
from ray_runtime.models.agent import End, Event
from ray_runtime.models.sessions import SessionInfo, SessionStatus, Template

template_app = typer.Typer(help="Agent session templates (plugin actions of mode session).", no_args_is_help=True)
session_app = typer.Typer(
    help="Agent sessions: create, list, get, invoke, pause, resume, fork, refresh, cancel, close, transcript, trace.",
    no_args_is_help=True,
)

SessionId = Annotated[str, typer.Argument(help="The session's id (ses_...).")]
_COLOURS = {"active": "green", "paused": "yellow", "inactive": "blue", "creating": "cyan", "closed": "dim"}


def status_text(status: SessionStatus | str) -> Text:
    value = getattr(status, "value", status)
    return Text(value, style=_COLOURS.get(value, "red"))


# ---------------------------------------------------------------------------------------------------- templates


@template_app.command("list")
@handles_errors
@with_client
def list_templates(
    client: RuntimeClient,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Only templates with this tag (repeatable).")] = None,
    name: Annotated[str | None, typer.Option(help="Only templates whose id contains this.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The templates sessions can be created from."""
    templates = client.list_templates(tags=tag, name=name)
    rows = [(t.id, t.isolation, t.busy, ", ".join(t.tags), t.description) for t in templates]
    show(templates, as_json, lambda: table("templates", ["id", "isolation", "busy", "tags", "description"], rows))


@template_app.command("get")
@handles_errors
@with_client
def get_template(
    client: RuntimeClient,
    template_id: Annotated[str, typer.Argument(help="<plugin>.<action>")],
    as_json: JsonFlag = False,
) -> None:
    """One template, with the JSON Schema of its config."""
    template = client.get_template(template_id)
    show(template, as_json, lambda: _template(template))


def _template(template: Template) -> Text:
    text = Text.assemble((template.id, "bold"), f"  {template.description}\n")
    for name in (
        "version",
        "isolation",
        "busy",
        "idle_timeout_s",
        "max_lifetime_s",
        "on_idle",
        "checkpoint",
        "recover",
    ):
        text.append(f"  {name}: {getattr(template, name)}\n")
    if template.config_schema:
        text.append("config schema:\n" + json.dumps(template.config_schema, indent=2))
    return text


# ----------------------------------------------------------------------------------------------------- sessions


def _sessions(title: str, sessions: list[SessionInfo]) -> Any:
    rows = [
        (s.id, s.template, status_text(s.status), s.invocations, s.tokens, ago(s.last_activity_at), s.parent_id)
        for s in sessions
    ]
    return table(title, ["id", "template", "status", "turns", "tokens", "last activity", "forked from"], rows)


def _session(session: SessionInfo) -> Text:
    text = Text.assemble((session.id, "bold"), f"  {session.template} ", status_text(session.status), "\n")
    for name in ("invocations", "tokens", "host", "checkpoint_key", "parent_id", "error"):
        value = getattr(session, name)
        if value is not None:
            text.append(f"  {name}: {value}\n")
    text.append(f"  created {ago(session.created_at)}, last active {ago(session.last_activity_at)}\n")
    for transition in session.transitions[-5:]:
        text.append(f"  {ago(transition.at):>8}  {transition.to.value:<9} {transition.cause}\n", style="dim")
    return text


@session_app.command("create")
@handles_errors
@with_client
def create(
    client: RuntimeClient,
    template: Annotated[str, typer.Argument(help="<plugin>.<action> (see `ray-runtime template list`).")],
    config: Annotated[str | None, typer.Option("--config", "-c", help="Config: JSON, @file.json or -.")] = None,
    metadata: Annotated[list[str] | None, typer.Option(help="key=value labels (repeatable).")] = None,
    idle_timeout_s: Annotated[float | None, typer.Option(help="Seconds idle before on_idle applies.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a session (active when this returns); prints its id."""
    session = client.create_session(
        template,
        config=parse_json(config, "--config", default={}),
        metadata=_metadata(metadata) or None,
        idle_timeout_s=idle_timeout_s,
    )
    show(session.record, as_json, lambda: f"created [bold]{session.id}[/] ({template})")


@session_app.command("list")
@handles_errors
@with_client
def list_sessions(
    client: RuntimeClient,
    status: Annotated[SessionStatus | None, typer.Option(help="Only sessions in this status.")] = None,
    template: Annotated[str | None, typer.Option(help="Only sessions of this template.")] = None,
    metadata: Annotated[list[str] | None, typer.Option(help="Only sessions with key=value (repeatable).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: JsonFlag = False,
) -> None:
    """The tenant's sessions, newest first."""
    page = client.list_sessions(status=status, template=template, metadata=_metadata(metadata) or None, limit=limit)
    show(page, as_json, lambda: _sessions("sessions", page.items))


@session_app.command("get")
@handles_errors
@with_client
def get(client: RuntimeClient, session_id: SessionId, as_json: JsonFlag = False) -> None:
    """A session: status, counters, host, last checkpoint, recent transitions."""
    session = client.get_session(session_id)
    show(session, as_json, lambda: _session(session))


@session_app.command("invoke")
@handles_errors
@with_client
def invoke(
    client: RuntimeClient,
    session_id: SessionId,
    text: Annotated[str | None, typer.Argument(help="The user's message.")] = None,
    data: Annotated[str | None, typer.Option("--data", "-d", help="JSON input: inline, @file.json or -.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run one turn; its text streams as it comes (tool calls and progress dimmed), then its result."""
    request = {key: value for key, value in (("text", text), ("data", parse_json(data, "--data"))) if value is not None}
    if not request:
        raise BadRequestError("give TEXT, or --data JSON (or both)")
    if as_json:
        show(client.invoke_session(session_id, request), True, lambda: None)
        return
    end = print_turn(client.stream_turn(session_id, request))
    if end.status == "failed":
        raise typer.Exit(EXIT_FAILED)


def print_turn(messages: Any) -> End:
    """Print a turn's messages as they arrive; its ``End``."""
    end: End | None = None
    for message in messages:
        if isinstance(message, Event):
            event = message.event
            if event.kind == "text_chunk":
                console.print(event.text, end="", highlight=False, markup=False, soft_wrap=True)
            elif event.kind in ("tool_call", "tool_result", "progress"):
                console.print(Text(f"[{event.kind}] {event.model_dump_json(exclude={'kind'})}", style="dim"))
        elif isinstance(message, End):
            end = message
    if end is None:
        raise BadRequestError("the turn ended without an end message")
    console.print()
    if end.result is not None and not isinstance(end.result, str):
        console.print(Text(f"result: {json.dumps(end.result)}", style="bold"))
    console.print(Text(f"{end.status} in {end.duration_s:.2f}s, {end.tokens_used} tokens", style="dim"))
    return end


def _act(client: RuntimeClient, session_id: str, action: str, as_json: bool) -> None:
    session = getattr(client.session(session_id), action)().record
    show(session, as_json, lambda: Text.assemble(f"{session.id} ", status_text(session.status)))


@session_app.command("pause")
@handles_errors
@with_client
def pause(client: RuntimeClient, session_id: SessionId, as_json: JsonFlag = False) -> None:
    """Checkpoint and unload it (resume brings it back with its memory)."""
    _act(client, session_id, "pause", as_json)


@session_app.command("resume")
@handles_errors
@with_client
def resume(client: RuntimeClient, session_id: SessionId, as_json: JsonFlag = False) -> None:
    """Bring a paused session back."""
    _act(client, session_id, "resume", as_json)


@session_app.command("refresh")
@handles_errors
@with_client
def refresh(client: RuntimeClient, session_id: SessionId, as_json: JsonFlag = False) -> None:
    """Reset its idle timer."""
    _act(client, session_id, "refresh", as_json)


@session_app.command("close")
@handles_errors
@with_client
def close(client: RuntimeClient, session_id: SessionId, as_json: JsonFlag = False) -> None:
    """Close it for good."""
    session = client.close_session(session_id)
    show(session, as_json, lambda: Text.assemble(f"{session.id} ", status_text(session.status)))


@session_app.command("fork")
@handles_errors
@with_client
def fork(
    client: RuntimeClient,
    session_id: SessionId,
    metadata: Annotated[
        list[str] | None, typer.Option(help="The fork's key=value labels (default: the parent's).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """A new session from this one's state; prints the new id."""
    forked = client.session(session_id).fork(metadata=_metadata(metadata) or None).record
    show(forked, as_json, lambda: f"forked [bold]{forked.id}[/] from {session_id}")


@session_app.command("cancel")
@handles_errors
@with_client
def cancel(client: RuntimeClient, session_id: SessionId, as_json: JsonFlag = False) -> None:
    """Ask its running turn to stop."""
    cancelled = client.session(session_id).cancel()
    show({"cancelled": cancelled}, as_json, lambda: "cancelling its turn" if cancelled else "no turn was running")


@session_app.command("transcript")
@handles_errors
@with_client
def transcript(client: RuntimeClient, session_id: SessionId, as_json: JsonFlag = False) -> None:
    """Its turns, oldest first."""
    turns = client.session_transcript(session_id)
    rows = [
        (t.turn_id, ago(t.at), t.status, t.request.get("text") or json.dumps(t.request.get("data")), t.text)
        for t in turns
    ]
    show(
        turns,
        as_json,
        lambda: table(f"transcript of {session_id}", ["turn", "at", "status", "asked", "answered"], rows, wrap=True),
    )


@session_app.command("trace")
@handles_errors
@with_client
def trace(
    client: RuntimeClient, session_id: SessionId, format: TraceFormatOption = "otlp", output: OutputOption = None
) -> None:
    """Its turns as a trace: OTLP/JSON spans with the GenAI conventions (load them in a trace viewer), or AGL
    triplets (prompt, response, reward) for a trainer."""
    write_trace(client.session_trace(session_id, format), output, f"the trace of {session_id}")
