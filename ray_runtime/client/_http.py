"""The request layer both clients share: request specs, the retry policy, and error decoding.

A call is a :class:`Request` (what to send and how to read the answer). :func:`send_flow` is the protocol as a
generator, like httpx's auth flows: it yields an ``httpx.Request`` to send or a delay to sleep, and receives the
response (or the transport error); the sync and async clients drive it, differing only in how they wait.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel, Field

from ray_runtime._version import __version__
from ray_runtime.errors import RayRuntimeError, UnavailableError, from_wire
from ray_runtime.models.api import TENANT_HEADER

__all__ = ["ClientConfig", "Endpoint", "Request", "Sleep", "decode_error", "handshake_errors", "send_flow"]

R = TypeVar("R")
_RETRY_STATUSES = frozenset({502, 503, 504})
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


class ClientConfig(BaseModel):
    """Timeouts, connection pool and the retry policy (retries only where repeating a request is harmless)."""

    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=60.0, gt=0)
    max_connections: int = Field(default=20, ge=1)
    max_keepalive_connections: int = Field(default=10, ge=0)
    retries: int = Field(default=3, ge=0, description="Retries of idempotent requests on connection errors or 502-504.")
    backoff_s: float = Field(default=0.2, ge=0, description="First retry delay; doubles each time, with jitter.")
    backoff_max_s: float = Field(default=5.0, ge=0)
    reconnect_for_s: float = Field(
        default=120.0, ge=0, description="How long a log tail keeps reconnecting (with backoff) before giving up."
    )

    def timeout(self, extra_s: float = 0.0) -> httpx.Timeout:
        return httpx.Timeout(self.read_timeout_s + extra_s, connect=self.connect_timeout_s)

    def limits(self) -> httpx.Limits:
        return httpx.Limits(
            max_connections=self.max_connections, max_keepalive_connections=self.max_keepalive_connections
        )

    def delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter before retry ``attempt`` (1-based)."""
        return random.uniform(0, min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1)))


def next_step(flow: Generator[Any, Any, Any], answer: Any) -> Any:
    """The flow's next step, given the answer to its last one; None when the flow is done."""
    try:
        return flow.send(answer)
    except StopIteration:
        return None


class Endpoint:
    """Where the façade is and who calls it: what every request, stream and WebSocket of a client is built from.

    Args:
        base_url: The façade, e.g. ``http://head:8080``.
        api_key: ``rrk_...`` (None: the façade must be in dev mode).
        tenant: Sent as ``X-Ray-Runtime-Tenant``; with a key it may only repeat the key's tenant.
        config: Timeouts, pool and retry policy.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        tenant: str | None = None,
        config: ClientConfig | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.tenant = tenant
        self.config = config or ClientConfig()

    def _headers(self) -> dict[str, str]:
        headers = {"user-agent": f"ray-runtime-client/{__version__}"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        if self.tenant:
            headers[TENANT_HEADER] = self.tenant
        return headers

    def ws_base(self) -> str:
        """The façade's URL for WebSockets (``ws://`` or ``wss://``)."""
        return self.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)


class ReconnectBudget:
    """How long a stream keeps reconnecting: a backoff before each try, given up ``reconnect_for_s`` after it went
    down (the count starts again once it hears from the server)."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.failures = 0
        self.down_since: float | None = None

    def heard(self) -> None:
        self.failures, self.down_since = 0, None

    def lost(self, what: str, resume: str, error: BaseException | None = None) -> float:
        """Seconds to wait before the next try; ``UnavailableError`` (saying how to resume) once out of time."""
        self.failures += 1
        now = time.monotonic()
        self.down_since = self.down_since or now
        if now - self.down_since > self.config.reconnect_for_s:
            raise UnavailableError(
                f"lost {what} and could not get it back for {self.config.reconnect_for_s:g}s ({self.failures} "
                f"tries); resume later with {resume}"
            ) from error
        return self.config.delay(self.failures)


@dataclass(frozen=True)
class Sleep:
    """What the flow asks its driver to do between attempts."""

    seconds: float


@dataclass(frozen=True)
class Request(Generic[R]):
    """One API call: method, path, query, JSON body, how to parse the answer, and whether it may be repeated."""

    method: str
    path: str
    parse: Callable[[httpx.Response], R]
    params: dict[str, Any] | None = None
    json: Any = None
    idempotent: bool | None = None  # None: by method (a POST is never repeated unless said so)
    extra_timeout_s: float = 0.0  # long polls hold the response this much longer
    headers: dict[str, str] = field(default_factory=dict)
    accept: frozenset[int] = frozenset()  # error statuses parsed as answers (e.g. a 503 health report)

    @property
    def repeatable(self) -> bool:
        return self.idempotent if self.idempotent is not None else self.method in _IDEMPOTENT_METHODS


@contextlib.contextmanager
def handshake_errors() -> Iterator[None]:
    """A WebSocket upgrade the server refused with a 4xx: the same typed error the HTTP route would raise."""
    from websockets.exceptions import InvalidStatus

    try:
        yield
    except InvalidStatus as exc:
        status = exc.response.status_code
        if not 400 <= status < 500:
            raise  # the server's trouble: reconnecting may help
        try:
            body = json.loads(exc.response.body or b"")
        except ValueError:
            body = {"error": {"message": f"the server refused the WebSocket with HTTP {status}"}}
        raise from_wire(body, status) from None


def decode_error(response: httpx.Response) -> RayRuntimeError:
    """The typed error of a failed response (the server's code and message when it sent them)."""
    try:
        body = response.json()
    except ValueError:
        body = {"error": {"message": response.text[:500] or f"HTTP {response.status_code}"}}
    return from_wire(body, response.status_code)


def send_flow(
    request: Request[R], build: Callable[[Request[Any]], httpx.Request], config: ClientConfig
) -> Generator[httpx.Request | Sleep, httpx.Response | Exception, R]:
    """Send with retries (repeatable requests only); yields requests and sleeps, returns the parsed answer."""
    attempt = 0
    while True:
        outcome = yield build(request)
        attempt += 1
        if not isinstance(outcome, Exception) and outcome.status_code in request.accept:
            return request.parse(outcome)
        retry = attempt <= config.retries and request.repeatable

        if isinstance(outcome, Exception):
            if retry and isinstance(outcome, httpx.TransportError) and not isinstance(outcome, httpx.ReadTimeout):
                yield Sleep(config.delay(attempt))
                continue
            raise _transport_error(outcome, request) from outcome
        if outcome.status_code in _RETRY_STATUSES and retry:
            yield Sleep(config.delay(attempt))
            continue
        if outcome.status_code >= 400:
            raise decode_error(outcome)
        return request.parse(outcome)


def _transport_error(exc: Exception, request: Request[Any]) -> RayRuntimeError:
    from ray_runtime.errors import TimeoutError

    if isinstance(exc, httpx.TimeoutException):
        return TimeoutError(
            f"{request.method} {request.path} timed out ({type(exc).__name__}); retry, or raise the client's timeouts"
        )
    return UnavailableError(
        f"cannot reach the ray_runtime API ({type(exc).__name__}: {exc}); check the URL, and that the façade runs "
        "(`ray-runtime status`)"
    )
