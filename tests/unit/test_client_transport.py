"""The clients' request layer through their transport seam (``transport=httpx.MockTransport``): retries, typed
errors, and the log tail's resume logic, in-process and in milliseconds. The same behaviour is tested end to end
against the real façade in tests/integration/test_client.py."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from ray_runtime.client import (
    AsyncRuntimeClient,
    ClientConfig,
    NotFoundError,
    RuntimeClient,
    ServerError,
    StreamLimitError,
    StreamLimits,
    UnavailableError,
)

FAST = ClientConfig(retries=3, backoff_s=0.0)
JOB = {
    "submission_id": "raysubmit_1",
    "status": "RUNNING",
    "tenant": "t",
}


class Recorder:
    """A MockTransport handler answering from a script of statuses; it records every request."""

    def __init__(self, *statuses: int, body: object = JOB) -> None:
        self.statuses = list(statuses)
        self.body = body
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if status >= 400:
            return httpx.Response(status, json={"error": {"code": "unavailable", "message": "busy", "details": {}}})
        return httpx.Response(status, json=self.body)


def client(handler, **options) -> RuntimeClient:
    return RuntimeClient("http://rr.test", "rrk_id_secret", config=FAST, transport=httpx.MockTransport(handler))


def test_idempotent_requests_are_retried_until_they_succeed():
    recorder = Recorder(503, 502, 200)
    with client(recorder) as api:
        assert api.get_job("raysubmit_1").status == "RUNNING"
    assert len(recorder.requests) == 3
    assert recorder.requests[0].headers["authorization"] == "Bearer rrk_id_secret"


def test_a_plain_post_is_sent_once_and_one_with_an_idempotency_key_is_retried():
    recorder = Recorder(503, body={"task_id": "task_x"})
    with client(recorder) as api, pytest.raises(ServerError) as info:
        api.enqueue("q", {"n": 1})
    assert info.value.status_code == 503 and len(recorder.requests) == 1
    retried = Recorder(503, 200, body={"task_id": "task_x"})
    with client(retried) as api:
        assert api.enqueue("q", {"n": 1}, idempotency_key="k1") == "task_x"
    assert len(retried.requests) == 2


def test_retries_stop_after_the_configured_number():
    recorder = Recorder(503)
    with client(recorder) as api, pytest.raises(UnavailableError):
        api.list_jobs()
    assert len(recorder.requests) == 1 + FAST.retries


def test_server_errors_come_back_as_their_own_class():
    def not_found(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": {"code": "task_not_found", "message": "no such task"}})

    with client(not_found) as api, pytest.raises(NotFoundError) as info:
        api.get_task("task_x")
    assert type(info.value).__name__ == "TaskNotFoundError" and info.value.message == "no such task"


def test_a_connection_error_is_unavailable_and_names_what_to_check():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with client(refuse) as api, pytest.raises(UnavailableError, match="ray-runtime status"):
        api.health_check()


# ----------------------------------------------------------------------------------------- log tail resume


LOG = [f"line {i}\n" for i in range(10)]


def frames_from(offset: int) -> list[bytes]:
    """The NDJSON frames of the log from a byte offset: one line per frame, then the end."""
    frames, position = [], 0
    for line in LOG:
        position += len(line)
        if position > offset:
            frames.append(json.dumps({"type": "lines", "offset": position, "data": line}).encode() + b"\n")
    frames.append(json.dumps({"type": "end", "offset": position, "status": "SUCCEEDED"}).encode() + b"\n")
    return frames


class CutStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """Serves frames, then cuts the connection after ``cut_after`` of them (None: never)."""

    def __init__(self, frames: list[bytes], cut_after: int | None) -> None:
        self.frames, self.cut_after = frames, cut_after

    def _chunks(self) -> Iterator[bytes]:
        for sent, frame in enumerate(self.frames):
            if sent == self.cut_after:
                raise httpx.ReadError("connection cut")
            yield frame

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks():
            yield chunk


class Tails:
    """The façade's NDJSON tail, cutting each of the first ``cuts`` connections after ``cut_after`` frames."""

    def __init__(self, cuts: int, cut_after: int = 3) -> None:
        self.cuts, self.cut_after = cuts, cut_after
        self.offsets: list[int] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        self.offsets.append(offset)
        cut_after = self.cut_after if len(self.offsets) <= self.cuts else None
        return httpx.Response(200, stream=CutStream(frames_from(offset), cut_after))


def test_the_tail_resumes_at_the_last_offset_with_every_line_once_sync():
    tails = Tails(cuts=2)
    with client(tails) as api:
        lines = list(api.tail_job_logs("raysubmit_1", protocol="http"))
    assert lines == [line.rstrip("\n") for line in LOG]
    assert tails.offsets == [0, 21, 42]  # each reconnect starts exactly after the last frame (3 lines of 7 bytes)


async def test_the_tail_resumes_at_the_last_offset_with_every_line_once_async():
    tails = Tails(cuts=2)
    transport = httpx.MockTransport(tails)
    async with AsyncRuntimeClient("http://rr.test", config=FAST, transport=transport) as api:
        lines = [line async for line in api.tail_job_logs("raysubmit_1", protocol="http")]
    assert lines == [line.rstrip("\n") for line in LOG]
    assert tails.offsets == [0, 21, 42]


def test_the_tail_keeps_reconnecting_for_its_time_budget_then_names_the_offset():
    tails = Tails(cuts=10_000, cut_after=0)  # every connection drops before its first frame
    config = ClientConfig(backoff_s=0.01, backoff_max_s=0.02, reconnect_for_s=0.5)
    api = RuntimeClient("http://rr.test", config=config, transport=httpx.MockTransport(tails))
    started = time.monotonic()
    with api, pytest.raises(UnavailableError, match="offset=") as info:
        list(api.tail_job_logs("raysubmit_1", protocol="http"))
    assert "resume later" in info.value.message
    assert 0.5 <= time.monotonic() - started < 5, "the reconnect budget is a time, not a count"
    assert len(tails.offsets) > 5


def test_the_tail_enforces_its_limits_on_the_client_too():
    tails = Tails(cuts=0)
    with client(tails) as api, pytest.raises(StreamLimitError):
        list(api.tail_job_logs("raysubmit_1", protocol="http", limits=StreamLimits(max_lines=4)))
