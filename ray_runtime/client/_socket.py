"""``AgentSocket`` (blocking) and ``AsyncAgentSocket``: a session's agent protocol over one WebSocket.

    with client.create_session("chat.assistant") as session, session.socket() as socket:
        reply = socket.send_message("What is 6 * 7?")
        for event in reply:                  # TextChunk, ToolCall, ToolResult, Progress, Custom
            print(event)
        print(reply.result, reply.tokens, reply.duration_s)

Both share :class:`SocketState` (which messages are new, which turn each belongs to, what to resend) and
:func:`socket_flow` (reading, and reconnecting with ``after_seq`` within ``ClientConfig.reconnect_for_s``), written
once and driven by each socket with its own I/O. A connection cut mid-turn is resumed: the server replays what came
after the last ``seq`` received, so every chunk arrives exactly once; a turn sent just before the cut is sent again
under the same turn id, and runs once. An ``error`` frame raises from the turn's iterator as the same typed error an
HTTP invocation raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Generator
from typing import Any

from ray_runtime.client._calls import _segment
from ray_runtime.client._http import Endpoint, ReconnectBudget, Sleep, handshake_errors, next_step
from ray_runtime.errors import (
    BadRequestError,
    HostLostError,
    RayRuntimeError,
    SessionClosedError,
    SessionPausedError,
    UnavailableError,
    from_wire,
)
from ray_runtime.models.agent import (
    AGENT_SUBPROTOCOL,
    MAX_FRAME_BYTES,
    REPLAYED_TYPES,
    AgentEvent,
    Bye,
    Cancel,
    End,
    Error,
    Event,
    Status,
    UserMessage,
    error_of,
    frame,
    server_message_adapter,
)

__all__ = ["AgentSocket", "AsyncAgentSocket", "AsyncResponseIterator", "ResponseIterator", "SocketState"]

logger = logging.getLogger(__name__)
NEXT_FRAME, OPEN = "next frame", "open"  # what the flow asks its driver for
_RESUMING_BYES = frozenset({"server_shutdown", "unloaded"})  # the session lives on: connect again
Callback = Callable[[Any], None] | None


class SocketState:
    """Where a socket stands: the last ``seq`` it received, the session's status, its own turns still running
    (each with the frame that started it, to send again after a reconnect) and how it ended.

    Args:
        session_id: The session.
        after_seq: Replay what came after this seq first (resume where another socket left off; 0: the current and
            the last turn). None: only what happens from now on; the socket then resumes from its first status.
        put: How a message reaches a turn's queue (each socket brings its own).
        on_status, on_bye: Called with each ``Status`` and the ``Bye``.
        on_message: Called with every other message: other sockets' turns, ``pong``s, errors about this
            connection.
    """

    def __init__(
        self,
        session_id: str,
        after_seq: int | None,
        budget: ReconnectBudget,
        put: Callable[[Any, Any], None],
        on_status: Callback = None,
        on_bye: Callback = None,
        on_message: Callback = None,
    ) -> None:
        self.session_id = session_id
        self.last_seq = after_seq
        self.budget = budget
        self.status: Status | None = None
        self.bye: Bye | None = None
        self.closing = False  # the caller closed the socket
        self.failure: RayRuntimeError | None = None  # why the socket ended, when it did not end well
        self._put = put
        self._turns: dict[str, tuple[str, Any]] = {}  # turn id -> (its user_message frame, its queue)
        self._lock = threading.Lock()
        self.on_status, self.on_bye, self.on_message = on_status, on_bye, on_message

    def path(self) -> str:
        path = f"/api/v1/sessions/{_segment(self.session_id)}/ws"
        return path if self.last_seq is None else f"{path}?after_seq={self.last_seq}"

    def start(self, text: str | None, data: Any, turn_id: str | None, sink: Any) -> tuple[str, str]:
        """A new turn of this socket: its id and the frame to send."""
        if self.failure is not None:
            raise self.failure
        if self.bye is not None and self.bye.reason not in _RESUMING_BYES:
            raise _after_bye(self.session_id, self.bye)
        turn_id = turn_id or f"turn_{uuid.uuid4().hex[:16]}"
        message = frame(UserMessage(turn_id=turn_id, text=text, data=data))
        if len(message.encode()) > MAX_FRAME_BYTES:
            raise BadRequestError(f"the message is over the protocol's {MAX_FRAME_BYTES}-byte frame cap", field="data")
        with self._lock:
            if turn_id in self._turns:
                raise BadRequestError(f"turn {turn_id!r} is running on this socket already", field="turn_id")
            self._turns[turn_id] = (message, sink)
        return turn_id, message

    def unfinished(self) -> list[str]:
        """The frames of this socket's turns that have not ended: sent again after a reconnect."""
        with self._lock:
            return [message for message, _ in self._turns.values()]

    def receive(self, text: str | bytes) -> None:
        """Take one frame: a new message goes to its turn's queue, or to a callback; one seen already is dropped."""
        raw = json.loads(text)
        if raw.get("type") == "error" and "status" in raw:  # refused where the server could not refuse an upgrade
            raise from_wire(raw, int(raw["status"]))
        message = server_message_adapter.validate_python(raw)
        self.budget.heard()
        if message.type in REPLAYED_TYPES and message.seq > 0:
            if message.seq <= (self.last_seq or 0):
                return  # replayed after a reconnect, and seen before it
            self.last_seq = message.seq
        if isinstance(message, Status):
            if self.last_seq is None:
                self.last_seq = message.seq  # a fresh socket: what came before it is not its history
            self.status = message
            _call(self.on_status, message)
            return
        if isinstance(message, Bye):
            self.bye = message
            _call(self.on_bye, message)
            return
        turn_id = getattr(message, "turn_id", None)
        with self._lock:
            found = self._turns.get(turn_id) if message.type in REPLAYED_TYPES and turn_id else None
            if found is not None and message.type != "event":
                del self._turns[turn_id]
        if found is None:
            _call(self.on_message, message)
        else:
            self._put(found[1], message)

    def resumes(self) -> bool:
        """Whether a connection that ended should be opened again."""
        return not self.closing and (self.bye is None or self.bye.reason in _RESUMING_BYES)

    def end(self, error: RayRuntimeError | None = None) -> None:
        """The socket is over: its running turns get ``error`` (or what the ``bye`` means)."""
        if error is None and not self.closing:
            error = _after_bye(self.session_id, self.bye) if self.bye is not None else None
        if error is None:
            error = UnavailableError(f"the socket of session {self.session_id} is closed")
        self.failure = self.failure or error
        with self._lock:
            turns, self._turns = self._turns, {}
        for _, sink in turns.values():
            self._put(sink, error)


def _call(callback: Callback, message: Any) -> None:
    if callback is not None:
        callback(message)


def _after_bye(session_id: str, bye: Bye) -> RayRuntimeError:
    if bye.reason == "paused":
        return SessionPausedError(session_id)
    if bye.reason == "error":
        return HostLostError(f"session {session_id} lost its host; see its status (`ray-runtime session get`)")
    return SessionClosedError(session_id, "closed" if bye.reason == "closed" else "inactive", bye.reason)


def socket_flow(state: SocketState) -> Generator[str | Sleep, Any, None]:
    """A socket's life after it connected, as a flow: it yields :data:`NEXT_FRAME` and is sent the frame's text,
    ``None`` when the connection closed, or the exception that cut it; it yields :class:`Sleep` and then
    :data:`OPEN` to reconnect (sent ``None`` when connected, else the exception). It returns when the socket is over.
    """
    while True:
        answer = yield NEXT_FRAME
        if isinstance(answer, str | bytes):
            try:
                state.receive(answer)
            except ValueError:
                logger.warning("ignored a frame this client does not understand: %.200r", answer)
            continue
        if not state.resumes():
            state.end()
            return
        while True:
            try:
                delay = state.budget.lost(f"the socket of session {state.session_id}", f"after_seq={state.last_seq}")
            except UnavailableError as exc:
                state.end(exc)
                return
            yield Sleep(delay)
            if state.closing:
                state.end()
                return
            opened = yield OPEN
            if opened is None:
                break
            if isinstance(opened, RayRuntimeError) and 400 <= opened.status_code < 500:
                state.end(opened)  # the session is paused, closed or gone now: connecting again will not help
                return


class _Reply:
    """A turn as it arrives: the events so far, then its result, tokens and duration."""

    def __init__(self, turn_id: str) -> None:
        self.turn_id = turn_id
        self.events: list[AgentEvent] = []
        self.end: End | None = None

    @property
    def text(self) -> str:
        """The text chunks so far, joined."""
        return "".join(e.text for e in self.events if e.kind == "text_chunk")  # type: ignore[union-attr]

    @property
    def result(self) -> Any:
        return None if self.end is None else self.end.result

    @property
    def tokens(self) -> int | None:
        return None if self.end is None else self.end.tokens_used

    @property
    def duration_s(self) -> float | None:
        return None if self.end is None else self.end.duration_s

    @property
    def status(self) -> str:
        return "running" if self.end is None else self.end.status

    def _take(self, item: Any) -> AgentEvent | None:
        """The next event, or None when the turn ended; an error raises."""
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, Event):
            self.events.append(item.event)
            return item.event
        if isinstance(item, End):
            self.end = item
            return None
        assert isinstance(item, Error)
        raise error_of(item)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.turn_id!r}, {self.status}, {len(self.events)} events)"


class ResponseIterator(_Reply):
    """The events of one turn (blocking); ``result``, ``tokens`` and ``duration_s`` are filled when it ends."""

    def __init__(self, turn_id: str, sink: queue.Queue[Any]) -> None:
        super().__init__(turn_id)
        self._sink = sink

    def __iter__(self) -> ResponseIterator:
        return self

    def __next__(self) -> AgentEvent:
        if self.end is not None:
            raise StopIteration
        event = self._take(self._sink.get())
        if event is None:
            raise StopIteration
        return event

    def wait(self) -> ResponseIterator:
        """Read the turn to its end; this iterator, its result filled."""
        for _ in self:
            pass
        return self


class AsyncResponseIterator(_Reply):
    """The events of one turn (async); ``result``, ``tokens`` and ``duration_s`` are filled when it ends."""

    def __init__(self, turn_id: str, sink: asyncio.Queue[Any]) -> None:
        super().__init__(turn_id)
        self._sink = sink

    def __aiter__(self) -> AsyncResponseIterator:
        return self

    async def __anext__(self) -> AgentEvent:
        if self.end is not None:
            raise StopAsyncIteration
        event = self._take(await self._sink.get())
        if event is None:
            raise StopAsyncIteration
        return event

    async def wait(self) -> AsyncResponseIterator:
        async for _ in self:
            pass
        return self


class _SocketBase:
    def __init__(
        self,
        client: Endpoint,
        session_id: str,
        put: Callable[[Any, Any], None],
        *,
        after_seq: int | None = None,
        on_status: Callback = None,
        on_bye: Callback = None,
        on_message: Callback = None,
    ) -> None:
        self._client = client
        self.state = SocketState(
            session_id, after_seq, ReconnectBudget(client.config), put, on_status, on_bye, on_message
        )

    @property
    def session_id(self) -> str:
        return self.state.session_id

    @property
    def status(self) -> Status | None:
        """The session's status as last sent (on connect and on every change)."""
        return self.state.status

    @property
    def last_seq(self) -> int | None:
        """Where a new socket would resume (``after_seq``): the seq of the last turn message received, or of the
        first status if none came after it (None before the socket connected)."""
        return self.state.last_seq

    def _url(self) -> str:
        return self._client.ws_base() + self.state.path()

    def _connect_options(self) -> dict[str, Any]:
        return {
            "additional_headers": self._client._headers(),
            "subprotocols": [AGENT_SUBPROTOCOL],
            "open_timeout": self._client.config.connect_timeout_s,
            "max_size": 2 * MAX_FRAME_BYTES,
        }


def _lost_errors() -> tuple[type[BaseException], ...]:
    from websockets.exceptions import WebSocketException

    return (WebSocketException, OSError, EOFError, TimeoutError)


class AgentSocket(_SocketBase):
    """A session's agent protocol over a WebSocket, blocking; a context manager (``session.socket()``).

    Args:
        client: The ``RuntimeClient`` whose URL, key and config it uses.
        session_id: The session.
        after_seq: Replay what came after this seq first (what another socket last received); by default only
            what happens from now on.
        on_status, on_bye: Called (on the socket's reader thread) with each ``Status`` and with the ``Bye``.
        on_message: Called with messages of turns other sockets started, and connection errors.
    """

    def __init__(self, client: Endpoint, session_id: str, **options: Any) -> None:
        super().__init__(client, session_id, lambda sink, item: sink.put(item), **options)
        self._ws: Any = None
        self._reader: threading.Thread | None = None
        self._stopped = threading.Event()

    def __enter__(self) -> AgentSocket:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> AgentSocket:
        """Open the socket; returns once the session's status is here."""
        self._open()
        self.state.receive(self._ws.recv(timeout=self._client.config.read_timeout_s))
        self._reader = threading.Thread(target=self._read, name=f"agent-socket-{self.session_id}", daemon=True)
        self._reader.start()
        return self

    def _open(self) -> None:
        from websockets.sync.client import connect

        with handshake_errors():
            self._ws = connect(self._url(), **self._connect_options())
        for message in self.state.unfinished():
            self._ws.send(message)

    def _read(self) -> None:
        flow, answer = socket_flow(self.state), None
        while (step := next_step(flow, answer)) is not None:
            answer = None
            if step is NEXT_FRAME:
                try:
                    answer = self._ws.recv()
                except _lost_errors() as exc:
                    answer = None if self.state.closing else exc
            elif isinstance(step, Sleep):
                self._stopped.wait(step.seconds)
            elif step is OPEN:
                try:
                    self._open()
                except (RayRuntimeError, *_lost_errors()) as exc:
                    answer = exc

    def send_message(
        self, text: str | None = None, data: Any = None, *, turn_id: str | None = None
    ) -> ResponseIterator:
        """Start a turn; iterate the answer for its events (``TextChunk``, ``ToolCall``, ...). Its ``error``
        raises from the iterator (``InvocationError``, ``SessionBusyError``, ...)."""
        sink: queue.Queue[Any] = queue.Queue()
        turn_id, message = self.state.start(text, data, turn_id, sink)
        try:
            self._ws.send(message)
        except _lost_errors():
            pass  # the reader reconnects and sends it again
        return ResponseIterator(turn_id, sink)

    def cancel(self, turn_id: str | None = None) -> None:
        """Ask the running turn (``turn_id``, or whichever runs) to stop; its iterator ends with status cancelled."""
        try:
            self._ws.send(frame(Cancel(turn_id=turn_id)))
        except _lost_errors() as exc:
            raise UnavailableError("the socket is reconnecting; cancel again in a moment") from exc

    def close(self) -> None:
        """Close the socket (the session stays as it is)."""
        self.state.closing = True
        self._stopped.set()
        if self._ws is not None:
            self._ws.close()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=10)


class AsyncAgentSocket(_SocketBase):
    """A session's agent protocol over a WebSocket, async; ``async with session.socket() as socket``."""

    def __init__(self, client: Endpoint, session_id: str, **options: Any) -> None:
        super().__init__(client, session_id, lambda sink, item: sink.put_nowait(item), **options)
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    async def __aenter__(self) -> AsyncAgentSocket:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> AsyncAgentSocket:
        """Open the socket; returns once the session's status is here."""
        await self._open()
        self.state.receive(await asyncio.wait_for(self._ws.recv(), self._client.config.read_timeout_s))
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return self

    async def _open(self) -> None:
        from websockets.asyncio.client import connect

        with handshake_errors():
            self._ws = await connect(self._url(), **self._connect_options())
        for message in self.state.unfinished():
            await self._ws.send(message)

    async def _read(self) -> None:
        flow, answer = socket_flow(self.state), None
        while (step := next_step(flow, answer)) is not None:
            answer = None
            if step is NEXT_FRAME:
                try:
                    answer = await self._ws.recv()
                except _lost_errors() as exc:
                    answer = None if self.state.closing else exc
            elif isinstance(step, Sleep):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), step.seconds)
            elif step is OPEN:
                try:
                    await self._open()
                except (RayRuntimeError, *_lost_errors()) as exc:
                    answer = exc

    async def send_message(
        self, text: str | None = None, data: Any = None, *, turn_id: str | None = None
    ) -> AsyncResponseIterator:
        """Start a turn; ``async for`` the answer's events. Its ``error`` raises from the iterator."""
        sink: asyncio.Queue[Any] = asyncio.Queue()
        turn_id, message = self.state.start(text, data, turn_id, sink)
        try:
            await self._ws.send(message)
        except _lost_errors():
            pass  # the reader reconnects and sends it again
        return AsyncResponseIterator(turn_id, sink)

    async def cancel(self, turn_id: str | None = None) -> None:
        try:
            await self._ws.send(frame(Cancel(turn_id=turn_id)))
        except _lost_errors() as exc:
            raise UnavailableError("the socket is reconnecting; cancel again in a moment") from exc

    async def close(self) -> None:
        self.state.closing = True
        self._stopped.set()
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
