"""Following a job's log through the façade, exactly once across disconnects.

:class:`LogTail` is the protocol state: where to connect (WebSocket or HTTP, from which offset), what each frame
means, when the stream is over, and how long to wait before reconnecting. :func:`tail_flow` is the loop over it,
written once as a generator that both clients drive with their own I/O. The façade resumes exactly at the offset
of the last frame received, so no line is lost or repeated.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Generator
from typing import Any, Literal

from ray_runtime.client._http import ClientConfig, ReconnectBudget, Sleep
from ray_runtime.errors import RayRuntimeError, StreamLimitError, from_wire
from ray_runtime.models.api import StreamLimits

__all__ = ["NEXT_FRAME", "LogTail", "Protocol", "tail_flow"]

Protocol = Literal["auto", "websocket", "http"]
NEXT_FRAME = "next frame"  # what the flow asks its driver for


class LogTail:
    """Where a tail stands: its protocol, its offset, what it has counted against the limits, and its retries."""

    def __init__(self, job_id: str, protocol: Protocol, offset: int, limits: StreamLimits | None, config: ClientConfig):
        if protocol not in ("auto", "websocket", "http"):
            raise ValueError(f"protocol must be 'auto', 'websocket' or 'http'; got {protocol!r}")
        self.job_id = job_id
        websockets = importlib.util.find_spec("websockets") is not None
        self.fallback = protocol == "auto"  # WebSocket first, HTTP if it does not get through
        if protocol == "auto":
            protocol = "websocket" if websockets else "http"
        self.protocol: Literal["websocket", "http"] = protocol
        self.offset = offset
        self.limits = limits
        self.config = config
        self.ended = False
        self.status: str | None = None
        self._lines = self._bytes = self._messages = 0
        self._reconnects = ReconnectBudget(config)
        self._received_on_this_connection = False

    def path(self) -> str:
        suffix = "ws" if self.protocol == "websocket" else "stream"
        return f"/api/v1/jobs/{self.job_id}/logs/{suffix}"

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"offset": self.offset}
        if self.limits is not None:
            params |= self.limits.model_dump()  # the server enforces them too
        return params

    def connected(self) -> None:
        self._received_on_this_connection = False

    def feed(self, frame: dict[str, Any]) -> list[str]:
        """The lines a frame carries; marks the end, or raises for a limit or a server error."""
        kind = frame.get("type")
        self._received_on_this_connection = True
        self._reconnects.heard()
        if kind == "lines":
            data = frame.get("data", "")
            self._count(data)
            self.offset = int(frame["offset"])
            return data.splitlines()
        if kind == "end":
            self.ended, self.status = True, frame.get("status")
            return []
        if kind == "limit":
            raise StreamLimitError(f"the log stream reached its {frame.get('limit')} limit", limit=frame.get("limit"))
        if kind == "error":
            raise from_wire({"error": frame.get("error") or {}}, int(frame.get("status") or 503))
        return []  # heartbeats

    def _count(self, data: str) -> None:
        if self.limits is None:
            return
        size = len(data.encode())
        self._messages += 1
        self._lines += data.count("\n")
        self._bytes += size
        for name, value in (
            ("max_message_size", size),
            ("max_messages", self._messages),
            ("max_lines", self._lines),
            ("max_bytes", self._bytes),
        ):
            if value > getattr(self.limits, name):
                raise StreamLimitError(f"the log stream went over {name} on the client", limit=name)

    def disconnected(self, error: BaseException | None) -> float:
        """Seconds to wait before reconnecting (at ``offset``); raises once reconnecting is hopeless."""
        if isinstance(error, RayRuntimeError):
            raise error
        if self.fallback and self.protocol == "websocket" and not self._received_on_this_connection:
            self.protocol = "http"  # WebSocket did not get through (a proxy?): HTTP from here on
            return 0.0
        return self._reconnects.lost(f"the log stream of {self.job_id}", f"offset={self.offset}", error)


def tail_flow(tail: LogTail) -> Generator[str | Sleep | list[str], dict[str, Any] | BaseException | None, None]:
    """The tail as a flow: it yields :data:`NEXT_FRAME` and is sent the next frame (a dict), ``None`` when the
    connection ended, or the exception that cut it; it yields lists of lines to hand out and :class:`Sleep` before
    reconnecting. The driver opens a connection at ``tail.path()``/``tail.params()`` whenever it has none.
    """
    while not tail.ended:
        tail.connected()
        while True:
            frame = yield NEXT_FRAME
            if frame is None or isinstance(frame, BaseException):
                delay = tail.disconnected(frame)
                break
            lines = tail.feed(frame)
            if lines:
                yield lines
            if tail.ended:
                return
        if delay:
            yield Sleep(delay)
