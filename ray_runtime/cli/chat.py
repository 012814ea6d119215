"""``ray-runtime chat``: talk to an agent session in the terminal, over the agent protocol's WebSocket.

Text streams as the agent produces it; tool calls and results show dimmed; each turn ends with its tokens and time.
``/pause``, ``/resume``, ``/fork``, ``/status``, ``/help`` and ``/exit`` (or Ctrl-D) act on the session; Ctrl-C
cancels a running turn.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.text import Text

from ray_runtime.cli._common import console, errors, handles_errors, parse_json, with_client
from ray_runtime.cli.sessions import status_text
from ray_runtime.client import RuntimeClient, Session
from ray_runtime.errors import RayRuntimeError

__all__ = ["chat"]

_HELP = "/pause  /resume  /fork  /status  /help  /exit   (Ctrl-C cancels a running turn, Ctrl-D exits)"


@handles_errors
@with_client
def chat(
    client: RuntimeClient,
    target: Annotated[str, typer.Argument(help="A template (<plugin>.<action>) for a new session, or a session id.")],
    config: Annotated[str | None, typer.Option("--config", "-c", help="A new session's config: JSON or @file.")] = None,
    keep: Annotated[bool, typer.Option(help="Keep a session this chat created open when it ends.")] = False,
) -> None:
    """Chat with an agent: a new session of TEMPLATE (closed at the end unless --keep), or an existing session."""
    created = not target.startswith("ses_")
    if created:
        session = client.create_session(target, config=parse_json(config, "--config", default={}))
    else:
        session = client.session(target)
        if session.status in ("paused", "inactive"):
            session.resume()
    console.print(Text.assemble("session ", (session.id, "bold"), f" ({session.record.template}) ", "  " + _HELP))
    try:
        Chat(session).run()
    finally:
        if created and not keep:
            session.close()
            console.print(Text(f"closed {session.id}", style="dim"))
        else:
            console.print(Text(f"left {session.id} {session.get().status.value}", style="dim"))


class Chat:
    """The read-send-print loop over one session's socket (a new socket after a resume or a fork)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.socket: Any = None

    def run(self) -> None:
        self._connect()
        try:
            while True:
                try:
                    line = console.input("[bold cyan]you>[/] ")
                except EOFError:
                    console.print()
                    return
                except KeyboardInterrupt:
                    console.print()
                    continue
                line = line.strip()
                if not line:
                    continue
                if line.startswith("/"):
                    if not self._command(line):
                        return
                    continue
                self._turn(line)
        finally:
            self._disconnect()

    def _connect(self) -> None:
        self.socket = self.session.socket().connect()

    def _disconnect(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None

    def _command(self, line: str) -> bool:
        """Do a slash command; False to end the chat."""
        command = line.split()[0].lower()
        try:
            if command in ("/exit", "/quit"):
                return False
            if command == "/pause":
                self._disconnect()
                self.session.pause()
                console.print(Text.assemble("session ", status_text("paused"), "; /resume to go on"))
            elif command == "/resume":
                self.session.resume()
                self._connect()
                console.print(Text.assemble("session ", status_text("active")))
            elif command == "/fork":
                fork = self.session.fork()
                self._disconnect()
                console.print(Text(f"forked {fork.id} from {self.session.id}; now talking to the fork", style="bold"))
                self.session = fork
                self._connect()
            elif command == "/status":
                record = self.session.get()
                console.print(
                    Text.assemble(
                        f"{record.id} ",
                        status_text(record.status),
                        f"  {record.invocations} turns, {record.tokens} tokens",
                    )
                )
            else:
                console.print(_HELP)
        except RayRuntimeError as exc:
            errors.print(f"[red]error:[/] {exc.message}", highlight=False)
        return True

    def _turn(self, text: str) -> None:
        if self.socket is None:
            errors.print("[red]error:[/] the session is paused; /resume first", highlight=False)
            return
        reply: Any = None
        try:
            reply = self.socket.send_message(text)
            console.print("[bold green]agent>[/] ", end="")
            for event in reply:
                if event.kind == "text_chunk":
                    console.print(event.text, end="", markup=False, highlight=False, soft_wrap=True)
                elif event.kind == "tool_call":
                    console.print(Text(f"\n  ⚙ {event.name}({json.dumps(event.arguments)})", style="dim"))
                elif event.kind == "tool_result":
                    console.print(Text(f"  ↳ {json.dumps(event.result)}", style="dim"))
                elif event.kind == "progress":
                    console.print(Text(f"\n  … {event.done:g}/{event.total or '?'} {event.message}", style="dim"))
        except KeyboardInterrupt:
            if reply is None:
                return
            self.socket.cancel(reply.turn_id)
            reply.wait()
        except RayRuntimeError as exc:
            console.print()
            errors.print(f"[red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
            return
        console.print()
        if reply.result is not None and reply.result != reply.text:
            console.print(Text(f"result: {json.dumps(reply.result)}", style="bold"))
        console.print(Text(f"[{reply.status}, {reply.tokens} tokens, {reply.duration_s:.2f}s]", style="dim"))
