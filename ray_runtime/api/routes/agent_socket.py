"""The agent protocol's WebSocket, ``/api/v1/sessions/{id}/ws``, and its JSON Schema at ``/api/v1/protocol/agent``.

A connection subscribes to its session's host (which numbers every message and keeps the current and the last turn
for replay) and forwards what it hears; it reads the client's frames at the same time and turns them into calls:
``user_message`` starts a turn, ``cancel`` stops one, ``ping`` is answered with ``pong``. A frame that cannot be
used gets an ``error`` frame (``seq`` 0: about this connection, not the session) and the socket stays open. When
the session leaves its host (paused, closed, timed out) the host's ``bye`` is forwarded and the socket closes.

Browsers cannot set headers on a WebSocket, so the key may come as a subprotocol, ``rr.key.<key>`` (never in the
URL); the server answers with the protocol's own subprotocol, ``rr.agent.v1``, when the client offered it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from pydantic import ValidationError as PydanticValidationError

from ray_runtime.api.deps import ItemId, Reader
from ray_runtime.api.sockets import accept, refuse, socket_headers
from ray_runtime.errors import (
    BadMessageError,
    FrameTooLargeError,
    HostLostError,
    PermissionDeniedError,
    RayRuntimeError,
    SessionClosedError,
    SessionNotFoundError,
    SessionPausedError,
)
from ray_runtime.models.agent import (
    AGENT_SUBPROTOCOL,
    MAX_FRAME_BYTES,
    Bye,
    Cancel,
    Error,
    Ping,
    Pong,
    UserMessage,
    client_message_adapter,
    frame,
    protocol_schema,
)
from ray_runtime.models.api import Scope
from ray_runtime.models.sessions import TurnRequest

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["sessions"])
logger = logging.getLogger(__name__)


@router.get("/protocol/agent")
async def agent_protocol(caller: Reader) -> dict[str, Any]:
    """The agent protocol's JSON Schema (both directions), its version and its frame cap."""
    return protocol_schema()


@router.websocket("/sessions/{session_id}/ws")
async def agent_socket(
    websocket: WebSocket,
    session_id: ItemId,
    after_seq: Annotated[
        int | None,
        Query(
            ge=0,
            description="Replay what came after this seq first (a resuming client; 0: the current and the last "
            "turn). Without it, only what happens from now on.",
        ),
    ] = None,
) -> None:
    """A session's agent protocol (see ``ray_runtime.models.agent``): status on connect, turns' events for every
    socket, ``bye`` when the session leaves. A read key may watch; sending takes a submit key."""
    services = websocket.app.state.services
    try:
        caller = await services.auth.authenticate(socket_headers(websocket))
        sessions = services.sessions_for(caller)
        await sessions.route(session_id)  # paused, closed or missing: refused before the upgrade
    except RayRuntimeError as exc:
        await refuse(websocket, exc)
        return
    await accept(websocket, AGENT_SUBPROTOCOL)
    await AgentConnection(websocket, sessions, session_id, caller.scope.allows(Scope.SUBMIT), after_seq).run()


class AgentConnection:
    """One client's socket on one session: forwards the session's messages, answers the client's frames."""

    def __init__(
        self, websocket: WebSocket, sessions: Any, session_id: str, may_send: bool, after_seq: int | None
    ) -> None:
        self.websocket = websocket
        self.sessions = sessions
        self.session_id = session_id
        self.may_send = may_send
        self.after_seq = after_seq
        self._sending = asyncio.Lock()

    async def run(self) -> None:
        reader = asyncio.create_task(self._read())
        forwarder = asyncio.create_task(self._forward())
        try:
            await asyncio.wait({reader, forwarder}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, forwarder):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(reader, forwarder, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.websocket.close(code=1000)

    async def _send(self, text: str) -> None:
        async with self._sending:
            await self.websocket.send_text(text)

    async def _error(self, exc: RayRuntimeError, turn_id: str | None = None, *, usable: bool = True) -> None:
        await self._send(frame(Error(seq=0, turn_id=turn_id, usable=usable, **exc.to_wire()["error"])))

    # ---------------------------------------------------------------------------------------- session → client

    async def _forward(self) -> None:
        """The session's messages, following it across hosts; a ``bye`` ends the connection."""
        try:
            async for body in self.sessions.follow(self.session_id, self.after_seq):
                await self._send(json.dumps(body, separators=(",", ":")))
                if body["type"] == "bye":
                    return
        except (SessionPausedError, SessionClosedError) as exc:
            await self._error(exc, usable=False)
            await self._send(frame(Bye(seq=0, reason="paused" if exc.code == "session_paused" else "closed")))
        except (HostLostError, SessionNotFoundError):
            await self._error(HostLostError(f"session {self.session_id} lost its host and did not come back"))
            await self._send(frame(Bye(seq=0, reason="error")))
        except RayRuntimeError as exc:
            await self._error(exc, usable=False)
            await self._send(frame(Bye(seq=0, reason="error")))

    # ---------------------------------------------------------------------------------------- client → session

    async def _read(self) -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                received = await self.websocket.receive()
                if received["type"] == "websocket.disconnect":
                    return
                text = received.get("text")
                if text is None:
                    await self._error(BadMessageError("send JSON text frames, not binary ones"))
                    continue
                if len(text.encode()) > MAX_FRAME_BYTES:
                    await self._error(FrameTooLargeError(f"a frame may hold at most {MAX_FRAME_BYTES} bytes"))
                    continue
                await self._handle(text)

    async def _handle(self, text: str) -> None:
        try:
            message = client_message_adapter.validate_json(text)
        except PydanticValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"]) or "(message)"
            await self._error(BadMessageError(f"{where}: {problem['msg']}; see /api/v1/protocol/agent"))
            return
        if isinstance(message, Ping):
            await self._send(frame(Pong(seq=0, nonce=message.nonce)))
            return
        turn_id = message.turn_id
        try:
            if not self.may_send:
                raise PermissionDeniedError("this key may only watch the session; sending needs the submit scope")
            if isinstance(message, UserMessage):
                await self.sessions.start_turn(
                    self.session_id, TurnRequest(text=message.text, data=message.data, turn_id=message.turn_id)
                )
            elif isinstance(message, Cancel):
                await self.sessions.cancel(self.session_id, message.turn_id)
        except RayRuntimeError as exc:
            usable = not isinstance(exc, SessionClosedError | SessionNotFoundError)
            await self._error(exc, turn_id, usable=usable)
