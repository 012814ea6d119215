"""Job log tailing for the façade: one upstream per job, shared by every follower, with byte offsets.

The upstream is Ray's State API log stream (``/api/v0/logs/stream`` of the dashboard, what ``ray.util.state.get_log``
reads) polled every ``poll_interval_s``: lines reach followers in tens of milliseconds. Ray's stream never ends, so
the hub watches the job's status; once the job is terminal it reads the rest of the file once more, so nothing
written before the driver exited is lost, and followers get an ``end`` frame with the final status.

Offsets count bytes of the log. A follower starting at ``offset`` gets exactly the bytes after it; frames end on
line boundaries (except the final one), so resuming at a frame's offset never cuts a line or repeats one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from ray_runtime.api.dashboard import Dashboard
from ray_runtime.api.settings import StreamLimits
from ray_runtime.errors import InvalidArgumentError, UnavailableError
from ray_runtime.models.api import JobStatus, LogFrame

__all__ = ["LogHub"]

logger = logging.getLogger("ray_runtime.api.logs")
DetailsLookup = Callable[[str], Awaitable[dict]]  # Ray's JobDetails of a submission id
_MAX_BUFFER = 64 * 2**20  # a job log bigger than this is served from the file for the part that fell out
_KEEP_FINISHED_S = 120.0


@dataclass
class _JobLog:
    """What the hub holds for one job: the bytes seen so far and whether the log is complete."""

    submission_id: str
    node_id: str | None = None  # where the driver runs (Ray's log queries need it)
    data: bytearray = field(default_factory=bytearray)
    base: int = 0  # offset of data[0]
    done: bool = False
    status: JobStatus | None = None
    error: Exception | None = None
    followers: int = 0
    finished_at: float = 0.0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def end(self) -> int:
        return self.base + len(self.data)

    def append(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.data += chunk
        if len(self.data) > _MAX_BUFFER:
            drop = len(self.data) - _MAX_BUFFER // 2
            del self.data[:drop]
            self.base += drop
        self.notify()

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class LogHub:
    """Follows job logs from the State API and hands them to any number of followers with offsets."""

    def __init__(
        self,
        dashboard: Dashboard,
        details: DetailsLookup,
        *,
        poll_interval_s: float = 0.05,
        heartbeat_s: float = 5.0,
        status_interval_s: float = 0.25,
    ) -> None:
        self._dashboard = dashboard
        self._details = details
        self._poll_interval_s = poll_interval_s
        self._heartbeat_s = heartbeat_s
        self._status_interval_s = status_interval_s
        self._logs: dict[str, _JobLog] = {}
        self.active_streams = 0

    # ---------------------------------------------------------------------------------------- upstream

    def _log(self, submission_id: str) -> _JobLog:
        self._forget_old()
        log = self._logs.get(submission_id)
        if log is None or (log.error is not None and log.followers == 0):
            log = self._logs[submission_id] = _JobLog(submission_id)
            log.task = asyncio.get_running_loop().create_task(self._pump(log))
        return log

    def _forget_old(self) -> None:
        horizon = time.monotonic() - _KEEP_FINISHED_S
        for sid, log in list(self._logs.items()):
            if log.done and log.followers == 0 and log.finished_at < horizon:
                del self._logs[sid]

    async def _status(self, log: _JobLog) -> JobStatus:
        details = await self._details(log.submission_id)
        log.node_id = log.node_id or details.get("driver_node_id")
        return JobStatus(details["status"])

    async def _pump(self, log: _JobLog) -> None:
        """Follow the State API stream until the job is terminal, then read what is left of the file."""
        follow: asyncio.Task[None] | None = None
        try:
            while not (status := await self._status(log)).terminal:
                if log.node_id is not None and (follow is None or (follow.done() and follow.exception())):
                    follow = asyncio.create_task(self._follow(log))  # (again if the file did not exist yet)
                await asyncio.sleep(self._status_interval_s)
            if follow is not None:
                follow.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await follow
            if log.node_id is not None:  # no driver node: the job ended before its driver started, no log
                await self._read_rest(log)
            log.status = status
        except Exception as exc:
            logger.warning("log tail of %s failed: %s", log.submission_id, exc)
            log.error = exc
            if follow is not None:
                follow.cancel()
        finally:
            log.done = True
            log.finished_at = time.monotonic()
            log.notify()

    async def _follow(self, log: _JobLog) -> None:
        params = {
            "submission_id": log.submission_id,
            "node_id": log.node_id,
            "lines": -1,
            "interval": self._poll_interval_s,
            "media_type": "stream",
        }
        async with self._dashboard.stream("/api/v0/logs/stream", params) as reply:
            if reply.status_code != 200:
                await asyncio.sleep(self._status_interval_s)
                raise UnavailableError(f"State API log stream answered {reply.status_code}")
            skip = log.end  # a restarted stream starts from the file's beginning again
            async for chunk in reply.aiter_raw():
                if skip:
                    chunk, skip = chunk[skip:], max(0, skip - len(chunk))
                log.append(chunk)

    async def _read_rest(self, log: _JobLog) -> None:
        """The bytes of the finished log after ``log.end`` (the driver may have written them since the last poll)."""
        log.append(await self.read_file(log.submission_id, log.end, None, node_id=log.node_id))

    async def read_file(
        self, submission_id: str, offset: int, limit: int | None, *, node_id: str | None = None
    ) -> bytes:
        """Bytes ``[offset, offset + limit)`` of the log file, reading no further than needed."""
        if node_id is None:
            node_id = (await self._details(submission_id)).get("driver_node_id")
            if node_id is None:
                return b""  # the driver has not started (or never did): no log yet
        params = {"submission_id": submission_id, "node_id": node_id, "lines": -1, "media_type": "file"}
        wanted = None if limit is None else offset + limit
        seen, kept = 0, bytearray()
        async with self._dashboard.stream("/api/v0/logs/file", params) as reply:
            if reply.status_code == 404 or (reply.status_code == 500 and b"not found" in await reply.aread()):
                return b""
            if reply.status_code != 200:
                raise UnavailableError(f"State API log file answered {reply.status_code}")
            async for chunk in reply.aiter_raw():
                start = max(0, offset - seen)
                seen += len(chunk)
                if start < len(chunk):
                    kept += chunk[start:]
                if wanted is not None and seen >= wanted:
                    break
        return bytes(kept if limit is None else kept[:limit])

    # ---------------------------------------------------------------------------------------- readers

    async def read_range(self, submission_id: str, offset: int, limit: int) -> tuple[bytes, bool]:
        """A bounded byte range, and whether it reached the end of the log as it is now."""
        if offset < 0:
            raise InvalidArgumentError("offset", f"must be >= 0; got {offset}")
        log = self._logs.get(submission_id)
        if log is not None and log.base <= offset <= log.end and (log.done or offset + limit <= log.end):
            chunk = bytes(log.data[offset - log.base : offset - log.base + limit])
        else:
            chunk = await self.read_file(submission_id, offset, limit + 1)
            complete = len(chunk) <= limit
            return chunk[:limit], complete
        return chunk, offset + len(chunk) >= log.end and log.done

    async def follow(self, submission_id: str, offset: int, limits: StreamLimits) -> AsyncIterator[LogFrame]:
        """Frames of the log from ``offset`` until the job ends (then an ``end`` frame), or a limit is reached."""
        if offset < 0:
            raise InvalidArgumentError("offset", f"must be >= 0; got {offset}")
        log = self._log(submission_id)
        log.followers += 1
        self.active_streams += 1
        try:
            async for frame in self._frames(log, offset, limits):
                yield frame
        finally:
            log.followers -= 1
            self.active_streams -= 1

    async def _frames(self, log: _JobLog, position: int, limits: StreamLimits) -> AsyncIterator[LogFrame]:
        sent_lines = sent_bytes = sent_messages = 0
        last_sent = time.monotonic()
        while True:
            changed = log.changed
            if position < log.base:  # fell out of the buffer: serve it from the file
                chunk = await self.read_file(log.submission_id, position, log.base - position, node_id=log.node_id)
                complete = chunk[: chunk.rfind(b"\n") + 1] or chunk
            else:
                available = bytes(log.data[position - log.base :])
                complete = available if log.done else available[: available.rfind(b"\n") + 1]
            if complete:
                for part in _split(complete, limits.max_message_size):
                    over = _over_limit(limits, sent_lines, sent_bytes, sent_messages, part)
                    if over is not None:
                        yield LogFrame(type="limit", offset=position, limit=over)
                        return
                    position += len(part)
                    sent_lines += part.count(b"\n")
                    sent_bytes += len(part)
                    sent_messages += 1
                    last_sent = time.monotonic()
                    yield LogFrame(type="lines", offset=position, data=part.decode("utf-8", errors="replace"))
                continue
            if log.done:
                if log.error is not None:
                    error = log.error
                    wire = error.to_wire()["error"] if hasattr(error, "to_wire") else {"code": "unavailable"}
                    yield LogFrame(type="error", offset=position, error=wire)
                else:
                    yield LogFrame(type="end", offset=position, status=log.status)
                return
            timeout = max(0.0, self._heartbeat_s - (time.monotonic() - last_sent))
            try:
                await asyncio.wait_for(changed.wait(), timeout)
            except TimeoutError:
                last_sent = time.monotonic()
                yield LogFrame(type="heartbeat", offset=position)


def _split(data: bytes, size: int) -> list[bytes]:
    """Pieces of at most ``size`` bytes, cut after a newline where one falls inside the piece."""
    parts = []
    while len(data) > size:
        cut = data.rfind(b"\n", 0, size) + 1 or size
        parts.append(data[:cut])
        data = data[cut:]
    if data:
        parts.append(data)
    return parts


def _over_limit(limits: StreamLimits, lines: int, size: int, messages: int, part: bytes) -> str | None:
    if messages + 1 > limits.max_messages:
        return "max_messages"
    if lines + part.count(b"\n") > limits.max_lines:
        return "max_lines"
    if size + len(part) > limits.max_bytes:
        return "max_bytes"
    return None
