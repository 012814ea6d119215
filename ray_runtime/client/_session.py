"""``Session`` and ``AsyncSession``: one agent session seen from a client; what ``create_session`` returns.

with client.create_session("chat.assistant", config={"persona": "guide"}) as session:   # closed on exit
    print(session.invoke("My name is Ada").result)
    for message in session.invoke_stream("What is 6 * 7?"):
        print(message)
    session.pause(); session.resume()
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from ray_runtime.models.sessions import Invocation, SessionInfo, TurnRecord

__all__ = ["AsyncSession", "Session"]


class _SessionBase:
    """A session and the client it was made by (a ``RuntimeClient`` or ``AsyncRuntimeClient``, which import this
    module: they are held, not named)."""

    def __init__(self, client: Any, record: SessionInfo) -> None:
        self._client = client
        self.record = record

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def status(self) -> str:
        """The status when last seen (``refresh()`` or any action updates it)."""
        return self.record.status.value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r}, {self.record.template!r}, {self.status})"


class Session(_SessionBase):
    """An agent session, blocking; a context manager that closes it."""

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.record.status.value != "closed":
            self.close()

    def invoke(self, request: Any) -> Invocation:
        """Run one turn (text, a ``TurnRequest``, or JSON data); its result.

        Raises:
            InvocationError: The agent raised (its code in ``details["agent_code"]``); the session stays usable.
            SessionBusyError, SessionPausedError, SessionClosedError, SessionNotFoundError.
        """
        return self._client._run(self._client._invoke_session(self.id, request))

    def invoke_stream(self, request: Any) -> Iterator[Any]:
        """Run one turn and yield its messages as they arrive (``Event``, then ``End``); the agent's error raises."""
        yield from self._client.stream_turn(self.id, request)

    def _act(self, action: str, body: Any = None) -> Session:
        self.record = self._client._run(self._client._session_action(self.id, action, body))
        return self

    def pause(self) -> Session:
        """Checkpoint and unload: paused until :meth:`resume`."""
        return self._act("pause")

    def resume(self) -> Session:
        """Back from paused, with its memory."""
        return self._act("resume")

    def refresh(self) -> Session:
        """Reset its idle timer (and this object's record)."""
        return self._act("refresh")

    def fork(self, *, metadata: dict[str, Any] | None = None) -> Session:
        """A new session from this one's state."""
        record = self._client._run(self._client._session_action(self.id, "fork", {"metadata": metadata}))
        return Session(self._client, record)

    def cancel(self, turn_id: str | None = None) -> bool:
        """Ask the running turn to stop."""
        return self._client._run(self._client._cancel_turn(self.id, turn_id))

    def close(self) -> Session:
        """End it for good."""
        self.record = self._client._run(self._client._close_session(self.id))
        return self

    def get(self) -> SessionInfo:
        """Read its record again (status, counters, transitions)."""
        self.record = self._client._run(self._client._get_session(self.id))
        return self.record

    def transcript(self) -> list[TurnRecord]:
        return self._client._run(self._client._session_transcript(self.id))

    def socket(self, **options: Any) -> Any:
        """The session's agent-protocol WebSocket (:class:`AgentSocket`, blocking); use as a context manager."""
        from ray_runtime.client._socket import AgentSocket

        return AgentSocket(self._client, self.id, **options)


class AsyncSession(_SessionBase):
    """An agent session, awaitable; an async context manager that closes it."""

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.record.status.value != "closed":
            await self.close()

    async def invoke(self, request: Any) -> Invocation:
        return await self._client._run(self._client._invoke_session(self.id, request))

    async def invoke_stream(self, request: Any) -> AsyncIterator[Any]:
        async for message in self._client.stream_turn(self.id, request):
            yield message

    async def _act(self, action: str, body: Any = None) -> AsyncSession:
        self.record = await self._client._run(self._client._session_action(self.id, action, body))
        return self

    async def pause(self) -> AsyncSession:
        return await self._act("pause")

    async def resume(self) -> AsyncSession:
        return await self._act("resume")

    async def refresh(self) -> AsyncSession:
        return await self._act("refresh")

    async def fork(self, *, metadata: dict[str, Any] | None = None) -> AsyncSession:
        record = await self._client._run(self._client._session_action(self.id, "fork", {"metadata": metadata}))
        return AsyncSession(self._client, record)

    async def cancel(self, turn_id: str | None = None) -> bool:
        return await self._client._run(self._client._cancel_turn(self.id, turn_id))

    async def close(self) -> AsyncSession:
        self.record = await self._client._run(self._client._close_session(self.id))
        return self

    async def get(self) -> SessionInfo:
        self.record = await self._client._run(self._client._get_session(self.id))
        return self.record

    async def transcript(self) -> list[TurnRecord]:
        return await self._client._run(self._client._session_transcript(self.id))

    def socket(self, **options: Any) -> Any:
        """The session's agent-protocol WebSocket (:class:`AsyncAgentSocket`); use with ``async with``."""
        from ray_runtime.client._socket import AsyncAgentSocket

        return AsyncAgentSocket(self._client, self.id, **options)
