"""Session hosts: the Ray actors that hold live agents and run their turns.

A host is one async Ray actor in a template's runtime_env, acting for one tenant. A *dedicated* host holds one
session (its own process, resources and runtime_env) and ends when that session leaves; a *shared* host holds many
sessions of one tenant and template (a pool never mixes tenants) and ends after it has been empty for a while.

Each live session admits turns by the template's ``busy`` policy (``reject``: one at a time, the others refused at
once; ``queue``: all, run one after another in arrival order on its turn lock), numbers every message it sends with a
per-session ``seq``, keeps a replay buffer of the current and the last turn (so a client that reconnects misses
nothing), and has the subscribers that follow it over WebSockets. Counters, last activity and transcript turns go to
the coordinator in batches (every half second at most), so they are at most about a second stale there. Snapshots go
to the coordinator, which keeps them on the head node's disk.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray_runtime.checks import check_json
from ray_runtime.errors import (
    InvocationError,
    RayRuntimeError,
    SessionBusyError,
    SessionNotFoundError,
    SnapshotFailedError,
    SnapshotTooLargeError,
)
from ray_runtime.models.agent import Bye, End, Error, Event, Status, read_message
from ray_runtime.models.sessions import TurnRecord, TurnRequest
from ray_runtime.sessions.model_calls import TurnGrant, grant_turn, revoke_turn
from ray_runtime.sessions.template import LoadedTemplate, SessionContext, TurnContext, as_event

__all__ = ["SessionHost"]

logger = logging.getLogger("ray_runtime.sessions")
_REPORT_EVERY_S = 0.5
_TURNS_REMEMBERED = 256  # turn ids a session remembers, so a turn sent again after a reconnect runs once
_EMPTY_HOST_S = 60.0  # a shared host with no session for this long ends (the pool shrinks)
_TURNS_BUFFERED = 2  # the replay buffer holds the current and the last turn
_BUFFERED_MESSAGES = 100_000  # and never more than this many messages
_FINISHED = object()
MAX_RESULT_BYTES = 1 << 20


@dataclass(eq=False)
class _Live:
    """One session held here."""

    id: str
    agent: Any
    ctx: SessionContext
    config: str
    seq: int
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    turn: TurnContext | None = None
    buffer: collections.deque[tuple[str, dict[str, Any]]] = field(default_factory=collections.deque)
    turns: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=_TURNS_BUFFERED))
    subscribers: set[asyncio.Queue[dict[str, Any] | None]] = field(default_factory=set)
    started: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=_TURNS_REMEMBERED))
    admitted: collections.deque[str] = field(default_factory=collections.deque)  # turns let in, not yet ended
    invocations: int = 0
    tokens: int = 0
    last_at: float = field(default_factory=time.time)
    reported_seq: int = 0

    def publish(self, message: Any, turn_id: str | None = None) -> dict[str, Any]:
        """Number a message, keep a turn's messages for replay (the current and the last turn), and hand it to
        every subscriber. Status and bye messages are not replayed: a subscriber gets the status on connecting."""
        self.seq += 1
        body = message.model_dump(mode="json", exclude_none=True)
        body["seq"] = self.seq
        if turn_id is not None:
            if turn_id not in self.turns:
                self.turns.append(turn_id)
            self.buffer.append((turn_id, body))
            while self.buffer and (self.buffer[0][0] not in self.turns or len(self.buffer) > _BUFFERED_MESSAGES):
                self.buffer.popleft()
        for queue in self.subscribers:
            queue.put_nowait(body)
        return body


class SessionHost:
    """Holds live agents of one tenant and template; see the module docstring.

    Args:
        name: This actor's name (what the registry records as the sessions' host).
        tenant: The tenant it acts for.
        plugin, action, entrypoint: The template.
        options: The template's ``session`` options (``SessionOptions`` as a dict).
        dedicated: Hold one session, and end when it leaves.
        folder: Where the plugin's code is (default: the working directory, i.e. the runtime_env's working_dir).
    """

    def __init__(
        self,
        name: str,
        tenant: str,
        plugin: str,
        action: str,
        entrypoint: str,
        options: dict[str, Any],
        dedicated: bool,
        folder: str | None = None,
    ) -> None:
        from ray_runtime.coordinator import connect

        self.name = name
        self.tenant = tenant
        self.template = LoadedTemplate.load(plugin, action, Path(folder) if folder else Path.cwd(), entrypoint)
        self.options = options
        self.dedicated = dedicated
        self.coord = connect(tenant=tenant, wait=False).aio
        self.registry = self.coord.session_registry
        self._sessions: dict[str, _Live] = {}
        self._turns: list[tuple[str, str]] = []  # transcript turns not yet reported
        self._pending: list[tuple[str, int, int, float, int]] = []  # counters not yet reported
        self._resources: Any = None
        self._empty_since = time.monotonic()
        self._stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._background = [loop.create_task(self._report_forever()), loop.create_task(self._follow_resources())]

    # -------------------------------------------------------------------------------------------- lifecycle

    async def open(
        self, session_id: str, version: str, config: str, restore: list[str] | None, seq: int, cause: str
    ) -> dict[str, Any]:
        """Build (or, from the snapshot ``restore`` = [session id, key], restore) a session's agent here; it is
        then ACTIVE in the registry, whose record of it comes back as ``session`` (None if it was open here
        already). Raises ``ValidationError`` for a bad config, ``RestoreRefusedError``."""
        if session_id in self._sessions:
            return {"session_id": session_id, "host": self.name, "seq": self._sessions[session_id].seq, "session": None}
        ctx = SessionContext(session_id, self.tenant, self.template.id, version)
        ctx._resources = self._resources
        parsed = self.template.config(json.loads(config))
        if restore is None:
            agent = await asyncio.to_thread(self.template.build, parsed, ctx)
        else:
            blob = await self.registry.snapshot(restore[0], restore[1])
            agent = await asyncio.to_thread(self.template.restore, blob, parsed, ctx)
        live = _Live(session_id, agent, ctx, config, seq=seq)
        self._sessions[session_id] = live
        session = await self.registry.opened(session_id, self.name, cause)
        live.publish(self._status(live, "active"))
        return {"session_id": session_id, "host": self.name, "seq": live.seq, "session": session}

    async def pause(self, session_id: str) -> dict[str, Any]:
        """Snapshot the agent to the coordinator and let it go: PAUSED. A snapshot that fails, or is over the cap,
        refuses the pause and the session stays active."""
        return await self._rest(session_id, "paused", "paused", "paused")

    async def unload(self, session_id: str, cause: str) -> dict[str, Any]:
        """Like a pause, but INACTIVE: the next turn brings it back (the idle timeout's ``on_idle: unload``)."""
        return await self._rest(
            session_id, "inactive", cause, "idle_timeout" if cause == "idle_timeout" else "unloaded"
        )

    async def _rest(self, session_id: str, status: str, cause: str, reason: str) -> dict[str, Any]:
        live = self._live(session_id)
        async with live.lock:
            blob = await self._snapshot(live)
            live.publish(Bye(seq=0, reason=reason))  # type: ignore[arg-type]
            await self.flush(live.id)
            wire = await self.registry.rest(session_id, status, blob, live.seq, cause)
            self._leave(live)
        return wire

    async def checkpoint(self, session_id: str) -> dict[str, Any]:
        """A snapshot of the running agent, kept as the session's checkpoint (for forks, and every_turn)."""
        live = self._live(session_id)
        async with live.lock:
            return await self.registry.checkpoint(session_id, await self._snapshot(live), live.seq)

    async def close(self, session_id: str, cause: str = "closed") -> dict[str, Any]:
        """Let the agent go for good: CLOSED."""
        live = self._sessions.get(session_id)
        if live is not None:
            if live.turn is not None:
                live.turn.cancel()
            live.publish(Bye(seq=0, reason="idle_timeout" if cause == "idle_timeout" else "closed"))  # type: ignore[arg-type]
            await self.flush(live.id)
            self._leave(live)
        return await self.registry.close(session_id, cause)

    def _leave(self, live: _Live) -> None:
        self._sessions.pop(live.id, None)
        for queue in live.subscribers:
            queue.put_nowait(None)
        if not self._sessions:
            self._empty_since = time.monotonic()
            if self.dedicated:  # its one session left: give its process and resources back
                asyncio.get_running_loop().call_later(1.0, os._exit, 0)

    async def _snapshot(self, live: _Live) -> bytes:
        try:
            blob = await asyncio.to_thread(self.template.snapshot, live.agent)
        except Exception as exc:
            raise SnapshotFailedError(
                f"the agent of session {live.id} could not be snapshotted ({type(exc).__name__}: {exc}); "
                "it stays active",
                session_id=live.id,
            ) from None
        limit = int(self.options.get("max_snapshot_bytes", 64 * 2**20))
        if len(blob) > limit:
            raise SnapshotTooLargeError(live.id, len(blob), limit)
        return blob

    # ----------------------------------------------------------------------------------------------- turns

    async def invoke(self, session_id: str, request: dict[str, Any]) -> dict[str, Any]:
        """Run one turn; its result (an ``Invocation``). The agent's exception is an ``InvocationError``."""
        last: dict[str, Any] = {}
        async for message in self._turn(session_id, request):
            last = message
        return _outcome(session_id, last)

    async def invoke_stream(self, session_id: str, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Run one turn and yield its messages (``event``s, then ``end``; ``error`` if the agent raised)."""
        async for message in self._turn(session_id, request):
            yield message

    async def start_turn(self, session_id: str, request: dict[str, Any]) -> str:
        """Start a turn and return its id at once; its messages reach the subscribers (the WebSocket path).

        Raises:
            SessionBusyError: Under ``busy: reject``, another turn was let in first; this one never runs.
        """
        live = self._live(session_id)
        turn = TurnRequest.model_validate(request)
        turn_id = turn.turn_id or _turn_id()
        if turn_id in live.started:
            return turn_id  # sent again by a client that reconnected: a turn runs once
        self._admit(live, turn_id)
        live.started.append(turn_id)

        async def drive() -> None:
            try:
                async for _ in self._turn(session_id, {**turn.model_dump(), "turn_id": turn_id}, admitted=True):
                    pass
            except Exception:  # the agent's own failures are messages; this is the session leaving meanwhile
                logger.warning("turn %s of session %s ended without its messages", turn_id, session_id, exc_info=True)

        asyncio.get_running_loop().create_task(drive())
        return turn_id

    def _admit(self, live: _Live, turn_id: str) -> None:
        """Let a turn in, or refuse it: checked and recorded in one step with no await between, so turns arriving
        together cannot both pass. Under ``busy: reject`` one turn at a time; under ``queue`` every turn, each then
        waiting on the session's turn lock in arrival order."""
        if live.admitted and self.options.get("busy", "reject") == "reject":
            raise SessionBusyError(live.id, live.admitted[0])
        live.admitted.append(turn_id)

    async def cancel(self, session_id: str, turn_id: str | None = None) -> bool:
        """Ask the running turn (``turn_id``, or whichever runs) to stop; whether one was running."""
        live = self._live(session_id)
        if live.turn is None or (turn_id is not None and live.turn.turn_id != turn_id):
            return False
        live.turn.cancel()
        return True

    async def _turn(
        self, session_id: str, raw: dict[str, Any], *, admitted: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        live = self._live(session_id)
        request = TurnRequest.model_validate(raw)
        turn_id = request.turn_id or _turn_id()
        if not admitted:
            self._admit(live, turn_id)
        try:
            async for message in self._run_turn(live, request, turn_id):
                yield message
        finally:
            live.admitted.remove(turn_id)

    async def _model_grant(self, session_id: str, turn_id: str) -> TurnGrant | None:
        """With ``model_proxy``: the turn's key and proxy URL (None, and a warning, when the store is away or no
        façade announced itself: the turn runs without)."""
        if not self.options.get("model_proxy"):
            return None
        from ray_runtime.coordinator.handle import system_store

        try:
            grant = await grant_turn(system_store(self.coord), self.tenant, session_id, turn_id)
        except Exception as exc:
            logger.warning("turn %s of %s runs without the model proxy: %s", turn_id, session_id, exc)
            return None
        if grant is None:
            logger.warning(
                "turn %s of %s runs without the model proxy: no façade has announced itself", turn_id, session_id
            )
        return grant

    async def _revoke(self, grant: TurnGrant) -> None:
        from ray_runtime.coordinator.handle import system_store

        try:
            await revoke_turn(system_store(self.coord), grant)
        except Exception as exc:  # the key stays until someone revokes it: say which
            logger.warning("could not delete the turn key %s: %s", grant.key_id, exc)

    async def _run_turn(self, live: _Live, request: TurnRequest, turn_id: str) -> AsyncIterator[dict[str, Any]]:
        session_id = live.id
        async with live.lock:
            ctx = TurnContext(live.ctx, turn_id)
            grant = await self._model_grant(session_id, turn_id)
            if grant is not None:
                ctx.openai_base_url, ctx.openai_api_key = grant.base_url, grant.api_key
            live.turn = ctx
            live.ctx._resources = self._resources
            live.publish(self._status(live, "active", turn_id))
            started = time.perf_counter()
            record = TurnRecord(
                turn_id=turn_id, at=time.time(), request=request.model_dump(mode="json"), status="running"
            )
            texts: list[str] = []
            try:
                result, cancelled = _FINISHED, False
                async for chunk in self._chunks(live.agent, request, ctx):
                    if ctx.cancelled:
                        cancelled = True
                        break
                    if isinstance(chunk, _Returned):
                        result = chunk.value
                        continue
                    event = as_event(chunk)
                    if event.kind == "text_chunk":
                        texts.append(event.text)
                    elif event.kind != "progress":
                        record.events.append(event.model_dump(mode="json"))
                    yield live.publish(Event(seq=0, turn_id=turn_id, event=event), turn_id)
                cancelled = cancelled or ctx.cancelled
                if result is _FINISHED:
                    result = "".join(texts) if texts else None
                check_json("result", json.dumps(result, default=str), max_bytes=MAX_RESULT_BYTES)
                status = "cancelled" if cancelled else "succeeded"
                end = End(
                    seq=0,
                    turn_id=turn_id,
                    status=status,  # type: ignore[arg-type]
                    result=result,
                    tokens_used=ctx.tokens,
                    duration_s=time.perf_counter() - started,
                )
                record = record.model_copy(update={"status": status, "text": "".join(texts), "result": result})
            except Exception as exc:
                failure = (
                    exc
                    if isinstance(exc, RayRuntimeError)
                    else InvocationError.from_exception(exc, session_id, turn_id)
                )
                wire = failure.to_wire()["error"]
                record = record.model_copy(update={"status": "failed", "text": "".join(texts), "error": wire})
                yield live.publish(Error(seq=0, turn_id=turn_id, usable=True, **wire), turn_id)
                end = None
            finally:
                live.turn = None
                if grant is not None:
                    await self._revoke(grant)
                duration = time.perf_counter() - started
                record = record.model_copy(update={"tokens_used": ctx.tokens, "duration_s": duration})
                live.invocations += 1
                live.tokens += ctx.tokens
                live.last_at = time.time()
                self._turns.append((session_id, record.model_dump_json()))
            if end is not None:
                message = live.publish(end, turn_id)
                if self.options.get("checkpoint") == "every_turn":
                    await self.registry.checkpoint(session_id, await self._snapshot(live), live.seq)
                yield message

    async def _chunks(self, agent: Any, request: TurnRequest, ctx: TurnContext) -> AsyncIterator[Any]:
        """What the agent's ``invoke`` yields (or the one result it returns, as ``_Returned``); sync code in threads."""
        produced = agent.invoke(request, ctx) if self.template.is_async else None
        if self.template.is_async and not self.template.streaming:
            yield _Returned(await produced)
            return
        if self.template.is_async:
            async for chunk in produced:
                yield chunk
            return
        if not self.template.streaming:
            yield _Returned(await asyncio.to_thread(agent.invoke, request, ctx))
            return
        async for chunk in _in_a_thread(agent.invoke(request, ctx), ctx):
            yield chunk

    # ------------------------------------------------------------------------------------------ subscribers

    async def subscribe(self, session_id: str, after_seq: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """The session's messages from now on, until the session leaves this host (its last message is then a
        ``bye``); with ``after_seq``, first what the replay buffer holds after it (a client resuming, or asking for
        the current and the last turn with 0). Starts with the session's status, whose ``seq`` is where a client
        that got nothing else resumes from."""
        live = self._live(session_id)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        missed = [] if after_seq is None else [body for _, body in live.buffer if body["seq"] > after_seq]
        newest = missed[-1]["seq"] if missed else live.seq if after_seq is None else after_seq
        live.subscribers.add(queue)
        try:
            yield (
                self._status(live, "active", live.turn.turn_id if live.turn else None)
                .model_copy(update={"seq": live.seq})
                .model_dump(mode="json", exclude_none=True)
            )
            for body in missed:
                yield body
            while (body := await queue.get()) is not None:
                if body["seq"] > newest:
                    yield body
                    if body["type"] == "bye":
                        return
        finally:
            live.subscribers.discard(queue)

    # ---------------------------------------------------------------------------------------------- health

    async def ping(self) -> dict[str, Any]:
        """How this host is: its sessions and which of them run a turn."""
        return {
            "host": self.name,
            "pid": os.getpid(),
            "sessions": len(self._sessions),
            "busy": sorted(s.id for s in self._sessions.values() if s.turn is not None),
        }

    async def ping_agent(self, session_id: str) -> str:
        """The agent's own ``ping()`` ("healthy" or "busy"), else by whether a turn runs."""
        live = self._live(session_id)
        own = getattr(live.agent, "ping", None)
        if callable(own):
            return str(await asyncio.to_thread(own))
        return "busy" if live.turn is not None else "healthy"

    async def run_until_stopped(self) -> None:
        """Returns never: the coordinator holds this call to learn, from its failure, that the host died."""
        await self._stopped.wait()

    # -------------------------------------------------------------------------------------------- internals

    def _live(self, session_id: str) -> _Live:
        live = self._sessions.get(session_id)
        if live is None:
            raise SessionNotFoundError(session_id)  # not held here (moved, unloaded): look it up again
        return live

    def _status(self, live: _Live, state: str, turn_id: str | None = None) -> Status:
        return Status(seq=0, session_id=live.id, state=state, template=self.template.id, turn_id=turn_id)

    def _report(self, live: _Live) -> None:
        if live.invocations or live.tokens or live.seq > live.reported_seq:
            self._pending.append((live.id, live.invocations, live.tokens, live.last_at, live.seq))
            live.invocations = live.tokens = 0
            live.reported_seq = live.seq

    async def flush(self, session_id: str | None = None) -> None:
        """Report what is not reported yet (counters, transcript turns) now: every session's, or one leaving
        session's (before the registry hears it left); kept for the next try if it fails."""

        def chosen(row: tuple[Any, ...]) -> bool:
            return session_id is None or row[0] == session_id

        for live in self._sessions.values():
            if session_id is None or live.id == session_id:
                self._report(live)
        reports, self._pending = [r for r in self._pending if chosen(r)], [r for r in self._pending if not chosen(r)]
        turns, self._turns = [t for t in self._turns if chosen(t)], [t for t in self._turns if not chosen(t)]
        if reports or turns:
            try:
                await self.registry.report(reports, turns)
            except Exception:
                self._pending[:0], self._turns[:0] = reports, turns
                raise

    async def _report_forever(self) -> None:
        """Counters, last activity and transcript turns to the coordinator, in batches; kept and sent again when
        the coordinator is away."""
        while True:
            await asyncio.sleep(_REPORT_EVERY_S)
            try:
                await self.flush()
            except Exception as exc:
                logger.warning("could not report to the coordinator (will retry): %s", exc)
            idle = time.monotonic() - self._empty_since
            if not self.dedicated and not self._sessions and idle > _EMPTY_HOST_S:
                os._exit(0)  # an empty shared host: the pool shrinks (a new one is made when needed)

    async def _follow_resources(self) -> None:
        """Keep the tenant's latest resources at hand, so agents read them without a call per turn."""
        from ray_runtime.errors import ResourcesNotFoundError

        with contextlib.suppress(ResourcesNotFoundError, Exception):
            self._resources = await self.coord.resources.latest()
        while True:
            version = self._resources.version if self._resources is not None else 0
            try:
                update = await self.coord.resources.wait_newer(version, timeout_s=60)
            except Exception:
                await asyncio.sleep(2)
                continue
            if update is not None:
                self._resources = update
                for live in self._sessions.values():
                    live.ctx._resources = update


class _Returned:
    """A turn's result: what a non-streaming invoke returned, or a generator's return value."""

    def __init__(self, value: Any) -> None:
        self.value = value


async def _in_a_thread(generator: Any, ctx: TurnContext) -> AsyncIterator[Any]:
    """A sync generator run to its end on one worker thread, its chunks handed over as they come: one thread for
    the turn, not a hop per chunk, and one wake-up of the event loop for however many chunks are waiting. It stops
    at its next chunk once the turn is cancelled."""
    loop = asyncio.get_running_loop()
    waiting: collections.deque[Any] = collections.deque()
    lock, arrived = threading.Lock(), asyncio.Event()
    signalled = False

    def hand_over(chunk: Any) -> None:
        nonlocal signalled
        with lock:
            waiting.append(chunk)
            wake, signalled = not signalled, True
        if wake:
            loop.call_soon_threadsafe(arrived.set)

    def produce() -> None:
        try:
            while True:
                try:
                    chunk = next(generator)
                except StopIteration as done:
                    hand_over(_Returned(done.value))
                    return
                hand_over(chunk)
                if ctx.cancelled:
                    generator.close()
                    hand_over(_Returned(_FINISHED))
                    return
        except BaseException as exc:
            hand_over(_Raised(exc))

    loop.run_in_executor(None, produce)
    ended = False
    try:
        while not ended:
            await arrived.wait()
            with lock:
                chunks = list(waiting)
                waiting.clear()
                arrived.clear()
                signalled = False
            for chunk in chunks:
                if isinstance(chunk, _Raised):
                    ended = True
                    raise chunk.exc
                ended = isinstance(chunk, _Returned)
                yield chunk
                if ended:
                    return
    finally:
        if not ended:
            ctx.cancel()  # the turn stopped reading (cancelled, or it failed): the producer stops at its next chunk


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _turn_id() -> str:
    return f"turn_{uuid.uuid4().hex[:16]}"


def _outcome(session_id: str, last: dict[str, Any]) -> dict[str, Any]:
    """The ``Invocation`` of a turn from its last message (an ``error`` raises its typed error)."""
    if last.get("type") == "error":
        read_message(last)  # raises the turn's typed error
    return {
        "session_id": session_id,
        "turn_id": last.get("turn_id"),
        "status": last.get("status", "succeeded"),
        "result": last.get("result"),
        "tokens_used": last.get("tokens_used", 0),
        "duration_s": last.get("duration_s", 0.0),
    }
