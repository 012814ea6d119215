"""``RuntimeClient`` and ``AsyncRuntimeClient``: the same methods over one request layer; only the transport differs."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import Any, TypeVar

import httpx

from ray_runtime._twins import awaitable as _awaitable
from ray_runtime._twins import blocking as _blocking
from ray_runtime.client._calls import Calls, _segment
from ray_runtime.client._http import (
    ClientConfig,
    Endpoint,
    Request,
    Sleep,
    decode_error,
    handshake_errors,
    next_step,
    send_flow,
)
from ray_runtime.client._session import AsyncSession, Session
from ray_runtime.client._session_calls import TURN_TIMEOUT_S, SessionCalls, turn_body
from ray_runtime.client._tail import NEXT_FRAME, LogTail, Protocol, tail_flow
from ray_runtime.errors import TimeoutError
from ray_runtime.models.agent import End, Event, read_message
from ray_runtime.models.api import JobInfo, StreamLimits

__all__ = ["AsyncRuntimeClient", "RuntimeClient"]

R = TypeVar("R")
Flow = Generator[Any, Any, R]  # yields httpx requests, API calls (Request) or Sleeps; returns the answer
_STREAM_ERRORS = (httpx.TransportError, OSError, EOFError)
_NDJSON = "application/x-ndjson"


def _ws_errors() -> tuple[type[BaseException], ...]:
    """What a dropped connection raises (WebSocket errors too, when websockets is installed)."""
    try:
        from websockets.exceptions import WebSocketException
    except ImportError:
        return _STREAM_ERRORS
    return (WebSocketException, *_STREAM_ERRORS)


class _Base(Endpoint, Calls, SessionCalls):
    """What both clients hold: the endpoint (URL, credentials, config), the connection pool, and request
    building."""

    _http_class: type[httpx.Client] | type[httpx.AsyncClient]  # each client names its own; _run waits its way

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        tenant: str | None = None,
        config: ClientConfig | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """
        Args:
            base_url: The façade, e.g. ``http://head:8080``.
            api_key: ``rrk_...`` (None: the façade must be in dev mode).
            tenant: Sent as ``X-Ray-Runtime-Tenant``; with a key it may only repeat the key's tenant.
            config: Timeouts, pool and retry policy.
            transport: An httpx transport to send through instead of the network (``httpx.MockTransport``,
                ``httpx.ASGITransport(app)`` for the async client, ...). Log tails over WebSocket always use
                the network; pass ``protocol="http"`` to tail through the transport.
        """
        super().__init__(base_url, api_key, tenant=tenant, config=config)
        self._http = self._http_class(
            base_url=self.base_url,
            headers=self._headers(),
            timeout=self.config.timeout(),
            limits=self.config.limits(),
            transport=transport,  # type: ignore[arg-type]
        )

    def _ws_url(self, tail: LogTail) -> str:
        query = "&".join(f"{key}={value}" for key, value in tail.params().items())
        return f"{self.ws_base()}{tail.path()}?{query}"

    def _build_with(self, http: httpx.Client | httpx.AsyncClient) -> Callable[[Request[Any]], httpx.Request]:
        def build(request: Request[Any]) -> httpx.Request:
            return http.build_request(
                request.method,
                request.path,
                params=request.params,
                json=request.json,
                headers=request.headers or None,
                timeout=self.config.timeout(request.extra_timeout_s),
            )

        return build

    def _turn_stream(self, session_id: str, request: Any) -> dict[str, Any]:
        """The arguments of ``http.stream`` for one streamed turn (NDJSON; never repeated)."""
        return {
            "method": "POST",
            "url": f"/api/v1/sessions/{_segment(session_id)}/invoke",
            "json": turn_body(request),
            "headers": {"accept": _NDJSON},
            "timeout": self.config.timeout(TURN_TIMEOUT_S),
        }

    def _send_flow(self, request: Request[R]) -> Flow[R]:
        return send_flow(request, self._build_with(self._http), self.config)

    def _wait_job_flow(
        self, job_id: str, timeout_s: float | None, poll_s: float, on_progress: Callable[[JobInfo], None] | None
    ) -> Flow[JobInfo]:
        """``wait_job`` as a flow: it yields calls and sleeps, each client drives it its own way."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last = None
        while True:
            job: JobInfo = yield self._get_job(job_id)
            mark = (job.status, job.run.progress if job.run else None)
            if mark != last and on_progress is not None:
                on_progress(job)
            last = mark
            if job.status.terminal:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job.status.value} after {timeout_s}s")
            yield Sleep(poll_s)


class RuntimeClient(_Base):
    """The ray_runtime API, blocking. Use as a context manager, or call ``close()``.

    Example:
        >>> with RuntimeClient("http://head:8080", api_key="rrk_...") as client:
        ...     job = client.submit_plugin("wordcount", "count", {"top": 3})
        ...     for line in client.tail_job_logs(job.submission_id):
        ...         print(line)
    """

    _http_class = httpx.Client
    _http: httpx.Client

    def __enter__(self) -> RuntimeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, request: Request[R]) -> R:
        return self._drive(self._send_flow(request))

    def _drive(self, flow: Flow[R]) -> R:
        """Run a flow: send what it asks to send, sleep when it asks to wait, hand back each outcome."""
        outcome: Any = None
        try:
            while True:
                step = flow.send(outcome)
                if isinstance(step, Sleep):
                    time.sleep(step.seconds)
                    outcome = None
                elif isinstance(step, Request):
                    outcome = self._run(step)
                else:
                    try:
                        outcome = self._http.send(step)
                    except httpx.HTTPError as exc:
                        outcome = exc
        except StopIteration as done:
            return done.value

    def iter_jobs(self, **filters: Any) -> Iterator[JobInfo]:
        """Every job matching ``filters`` (as ``list_jobs``), page after page."""
        cursor = None
        while True:
            page = self.list_jobs(cursor=cursor, **filters)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def wait_job(
        self,
        job_id: str,
        *,
        timeout_s: float | None = None,
        poll_s: float = 0.5,
        on_progress: Callable[[JobInfo], None] | None = None,
    ) -> JobInfo:
        """Wait until the job ends; ``on_progress`` sees each change of status or run progress."""
        return self._drive(self._wait_job_flow(job_id, timeout_s, poll_s, on_progress))

    def tail_job_logs(
        self, job_id: str, *, protocol: Protocol = "auto", offset: int = 0, limits: StreamLimits | None = None
    ) -> Iterator[str]:
        """The job's log lines from ``offset`` until the job ends, each exactly once across reconnects.

        ``auto`` tries WebSocket and falls back to HTTP. ``limits`` are enforced here too (``StreamLimitError``).
        """
        tail = LogTail(job_id, protocol, offset, limits, self.config)
        flow, frames, answer = tail_flow(tail), None, None
        try:
            while (step := next_step(flow, answer)) is not None:
                answer = None
                if step is NEXT_FRAME:
                    frames = frames or self._frames(tail)
                    try:
                        answer = next(frames, None)
                    except _ws_errors() as exc:
                        answer = exc
                    if answer is None or isinstance(answer, BaseException):
                        frames.close()
                        frames = None
                elif isinstance(step, Sleep):
                    time.sleep(step.seconds)
                else:
                    yield from step
        finally:
            if frames is not None:
                frames.close()

    def create_session(
        self,
        template: str,
        *,
        config: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        idle_timeout_s: float | None = None,
    ) -> Session:
        """A new agent session of ``template`` (``<plugin>.<action>``), active when this returns.

        Raises:
            ValidationError: ``config`` does not fit the template's schema (nothing is created).
            TemplateNotFoundError, RateLimitError (the tenant's session quota).
        """
        record = self._run(
            self._create_session_record(template, config=config, metadata=metadata, idle_timeout_s=idle_timeout_s)
        )
        return Session(self, record)

    def session(self, session_id: str) -> Session:
        """An existing session, as an object to act on."""
        return Session(self, self.get_session(session_id))

    def stream_turn(self, session_id: str, request: Any) -> Iterator[Event | End]:
        """Run one turn over HTTP and yield its ``Event``s, then its ``End``; an agent's error raises
        (``InvocationError``), and so does a host lost mid-turn (``HostLostError``)."""
        with self._http.stream(**self._turn_stream(session_id, request)) as reply:
            if reply.status_code >= 400:
                reply.read()
                raise decode_error(reply)
            for line in reply.iter_lines():
                if line:
                    yield read_message(json.loads(line))  # type: ignore[misc]

    def _frames(self, tail: LogTail) -> Iterator[dict[str, Any]]:
        if tail.protocol == "websocket":
            from websockets.sync.client import connect

            with (
                handshake_errors(),
                connect(
                    self._ws_url(tail), additional_headers=self._headers(), open_timeout=self.config.connect_timeout_s
                ) as ws,
            ):
                for message in ws:
                    yield json.loads(message)
            return
        with self._http.stream("GET", tail.path(), params=tail.params(), timeout=self.config.timeout(86400)) as reply:
            if reply.status_code >= 400:
                reply.read()
                raise decode_error(reply)
            for line in reply.iter_lines():
                if line:
                    yield json.loads(line)

    health_check = _blocking(Calls._health_check)
    submit_plugin = _blocking(Calls._submit_plugin)
    submit_job = _blocking(Calls._submit_job)
    list_jobs = _blocking(Calls._list_jobs)
    get_job = _blocking(Calls._get_job)
    get_job_logs = _blocking(Calls._get_job_logs)
    stop_job = _blocking(Calls._stop_job)
    delete_job = _blocking(Calls._delete_job)
    list_cluster = _blocking(Calls._list_cluster)
    get_cluster = _blocking(Calls._get_cluster)
    list_nodes = _blocking(Calls._list_nodes)
    list_actors = _blocking(Calls._list_actors)
    list_tasks = _blocking(Calls._list_tasks)
    list_applications = _blocking(Calls._list_applications)
    get_application = _blocking(Calls._get_application)
    deploy_plugin = _blocking(Calls._deploy_plugin)
    deploy_application = _blocking(Calls._deploy_application)
    delete_application = _blocking(Calls._delete_application)
    enqueue = _blocking(Calls._enqueue)
    enqueue_many = _blocking(Calls._enqueue_many)
    claim = _blocking(Calls._claim)
    heartbeat = _blocking(Calls._heartbeat)
    complete = _blocking(Calls._complete)
    complete_and_claim = _blocking(Calls._complete_and_claim)
    fail = _blocking(Calls._fail)
    cancel_task = _blocking(Calls._cancel_task)
    retry_task = _blocking(Calls._retry_task)
    purge_queue = _blocking(Calls._purge_queue)
    queue_stats = _blocking(Calls._queue_stats)
    list_queues = _blocking(Calls._list_queues)
    get_task = _blocking(Calls._get_task)
    query_tasks = _blocking(Calls._query_tasks)
    wait_tasks = _blocking(Calls._wait_tasks)
    workers = _blocking(Calls._workers)
    add_resources = _blocking(Calls._add_resources)
    update_resources = _blocking(Calls._update_resources)
    get_resources = _blocking(Calls._get_resources)
    latest_resources = _blocking(Calls._latest_resources)
    resources_history = _blocking(Calls._resources_history)
    create_key = _blocking(Calls._create_key)
    list_keys = _blocking(Calls._list_keys)
    revoke_key = _blocking(Calls._revoke_key)
    me = _blocking(Calls._me)
    list_templates = _blocking(SessionCalls._list_templates)
    get_template = _blocking(SessionCalls._get_template)
    list_sessions = _blocking(SessionCalls._list_sessions)
    invoke_agent = _blocking(SessionCalls._invoke_agent)
    get_session = _blocking(SessionCalls._get_session)
    close_session = _blocking(SessionCalls._close_session)
    invoke_session = _blocking(SessionCalls._invoke_session)
    session_transcript = _blocking(SessionCalls._session_transcript)
    session_trace = _blocking(SessionCalls._session_trace)
    rollout_trace = _blocking(SessionCalls._rollout_trace)


class AsyncRuntimeClient(_Base):
    """The ray_runtime API, awaitable. Use as an async context manager, or ``await aclose()``."""

    _http_class = httpx.AsyncClient
    _http: httpx.AsyncClient

    async def __aenter__(self) -> AsyncRuntimeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _run(self, request: Request[R]) -> R:
        return await self._drive(self._send_flow(request))

    async def _drive(self, flow: Flow[R]) -> R:
        """Run a flow: send what it asks to send, sleep when it asks to wait, hand back each outcome."""
        outcome: Any = None
        try:
            while True:
                step = flow.send(outcome)
                if isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                    outcome = None
                elif isinstance(step, Request):
                    outcome = await self._run(step)
                else:
                    try:
                        outcome = await self._http.send(step)
                    except httpx.HTTPError as exc:
                        outcome = exc
        except StopIteration as done:
            return done.value

    async def iter_jobs(self, **filters: Any) -> AsyncIterator[JobInfo]:
        """Every job matching ``filters`` (as ``list_jobs``), page after page."""
        cursor = None
        while True:
            page = await self.list_jobs(cursor=cursor, **filters)
            for job in page.items:
                yield job
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def wait_job(
        self,
        job_id: str,
        *,
        timeout_s: float | None = None,
        poll_s: float = 0.5,
        on_progress: Callable[[JobInfo], None] | None = None,
    ) -> JobInfo:
        """Wait until the job ends; ``on_progress`` sees each change of status or run progress."""
        return await self._drive(self._wait_job_flow(job_id, timeout_s, poll_s, on_progress))

    async def tail_job_logs(
        self, job_id: str, *, protocol: Protocol = "auto", offset: int = 0, limits: StreamLimits | None = None
    ) -> AsyncIterator[str]:
        """The job's log lines from ``offset`` until the job ends, each exactly once across reconnects."""
        tail = LogTail(job_id, protocol, offset, limits, self.config)
        flow, frames, answer = tail_flow(tail), None, None
        try:
            while (step := next_step(flow, answer)) is not None:
                answer = None
                if step is NEXT_FRAME:
                    frames = frames or self._frames(tail)
                    try:
                        answer = await anext(frames, None)
                    except _ws_errors() as exc:
                        answer = exc
                    if answer is None or isinstance(answer, BaseException):
                        await frames.aclose()
                        frames = None
                elif isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                else:
                    for line in step:
                        yield line
        finally:
            if frames is not None:
                await frames.aclose()

    async def create_session(
        self,
        template: str,
        *,
        config: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        idle_timeout_s: float | None = None,
    ) -> AsyncSession:
        """A new agent session of ``template``, active when this returns (as ``RuntimeClient.create_session``)."""
        record = await self._run(
            self._create_session_record(template, config=config, metadata=metadata, idle_timeout_s=idle_timeout_s)
        )
        return AsyncSession(self, record)

    async def session(self, session_id: str) -> AsyncSession:
        """An existing session, as an object to act on."""
        return AsyncSession(self, await self.get_session(session_id))

    async def stream_turn(self, session_id: str, request: Any) -> AsyncIterator[Event | End]:
        """Run one turn over HTTP and yield its ``Event``s, then its ``End``; an agent's error raises."""
        async with self._http.stream(**self._turn_stream(session_id, request)) as reply:
            if reply.status_code >= 400:
                await reply.aread()
                raise decode_error(reply)
            async for line in reply.aiter_lines():
                if line:
                    yield read_message(json.loads(line))  # type: ignore[misc]

    async def _frames(self, tail: LogTail) -> AsyncIterator[dict[str, Any]]:
        if tail.protocol == "websocket":
            from websockets.asyncio.client import connect

            with handshake_errors():
                async with connect(
                    self._ws_url(tail), additional_headers=self._headers(), open_timeout=self.config.connect_timeout_s
                ) as ws:
                    async for message in ws:
                        yield json.loads(message)
            return
        async with self._http.stream("GET", tail.path(), params=tail.params(), timeout=self.config.timeout(86400)) as r:
            if r.status_code >= 400:
                await r.aread()
                raise decode_error(r)
            async for line in r.aiter_lines():
                if line:
                    yield json.loads(line)

    health_check = _awaitable(Calls._health_check)
    submit_plugin = _awaitable(Calls._submit_plugin)
    submit_job = _awaitable(Calls._submit_job)
    list_jobs = _awaitable(Calls._list_jobs)
    get_job = _awaitable(Calls._get_job)
    get_job_logs = _awaitable(Calls._get_job_logs)
    stop_job = _awaitable(Calls._stop_job)
    delete_job = _awaitable(Calls._delete_job)
    list_cluster = _awaitable(Calls._list_cluster)
    get_cluster = _awaitable(Calls._get_cluster)
    list_nodes = _awaitable(Calls._list_nodes)
    list_actors = _awaitable(Calls._list_actors)
    list_tasks = _awaitable(Calls._list_tasks)
    list_applications = _awaitable(Calls._list_applications)
    get_application = _awaitable(Calls._get_application)
    deploy_plugin = _awaitable(Calls._deploy_plugin)
    deploy_application = _awaitable(Calls._deploy_application)
    delete_application = _awaitable(Calls._delete_application)
    enqueue = _awaitable(Calls._enqueue)
    enqueue_many = _awaitable(Calls._enqueue_many)
    claim = _awaitable(Calls._claim)
    heartbeat = _awaitable(Calls._heartbeat)
    complete = _awaitable(Calls._complete)
    complete_and_claim = _awaitable(Calls._complete_and_claim)
    fail = _awaitable(Calls._fail)
    cancel_task = _awaitable(Calls._cancel_task)
    retry_task = _awaitable(Calls._retry_task)
    purge_queue = _awaitable(Calls._purge_queue)
    queue_stats = _awaitable(Calls._queue_stats)
    list_queues = _awaitable(Calls._list_queues)
    get_task = _awaitable(Calls._get_task)
    query_tasks = _awaitable(Calls._query_tasks)
    wait_tasks = _awaitable(Calls._wait_tasks)
    workers = _awaitable(Calls._workers)
    add_resources = _awaitable(Calls._add_resources)
    update_resources = _awaitable(Calls._update_resources)
    get_resources = _awaitable(Calls._get_resources)
    latest_resources = _awaitable(Calls._latest_resources)
    resources_history = _awaitable(Calls._resources_history)
    create_key = _awaitable(Calls._create_key)
    list_keys = _awaitable(Calls._list_keys)
    revoke_key = _awaitable(Calls._revoke_key)
    me = _awaitable(Calls._me)
    list_templates = _awaitable(SessionCalls._list_templates)
    get_template = _awaitable(SessionCalls._get_template)
    list_sessions = _awaitable(SessionCalls._list_sessions)
    invoke_agent = _awaitable(SessionCalls._invoke_agent)
    get_session = _awaitable(SessionCalls._get_session)
    close_session = _awaitable(SessionCalls._close_session)
    invoke_session = _awaitable(SessionCalls._invoke_session)
    session_transcript = _awaitable(SessionCalls._session_transcript)
    session_trace = _awaitable(SessionCalls._session_trace)
    rollout_trace = _awaitable(SessionCalls._rollout_trace)
