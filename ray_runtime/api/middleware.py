"""The façade's outer layer, around every HTTP request: the body size cap (also for chunked bodies), the last word on
unexpected errors (a JSON 500 that never breaks the keep-alive connection), request metrics, and the audit log.

Why errors stop here: an exception that escapes the app makes uvicorn close the connection after the response was
sent, so the caller's next request on that keep-alive connection fails with a reset. Here an unexpected error is
logged with its traceback and answered with a typed JSON 500 (no traceback on the wire), and nothing escapes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse

from ray_runtime.errors import BadRequestError, InternalError, PayloadTooLargeError, RayRuntimeError
from ray_runtime.keys import parse_key

__all__ = ["Guard"]

logger = logging.getLogger("ray_runtime.api")
_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Guard:
    """ASGI middleware: see the module docstring.

    Args:
        app: The app inside.
        services: For the audit log and for telling who a refused caller was.
        metrics: Where request counts and latencies go.
        limit_for: The body size cap of a request path.
    """

    def __init__(self, app: Any, services: Any, metrics: Any, limit_for: Callable[[str], int]) -> None:
        self.app, self.services, self.metrics, self.limit_for = app, services, metrics, limit_for

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status, responded = time.perf_counter(), [500], [False]

        async def observed_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0], responded[0] = message["status"], True
            await send(message)

        try:
            receive = await self._capped(scope, receive)
            await self.app(scope, receive, observed_send)
        except _Refused as refused:
            await _answer(observed_send, refused.error)
        except RecursionError:
            await _answer(observed_send, BadRequestError("the request body nests too deeply to be read"))
        except Exception:
            logger.exception("%s %s failed", scope["method"], scope["path"])
            if not responded[0]:  # else the response is cut short: the client sees an incomplete body
                status[0] = 500
                await _answer(observed_send, InternalError("internal error; the façade's log has the details"))
        finally:
            # shielded: a client that hangs up right after a refusal must not cancel its audit entry
            await asyncio.shield(asyncio.ensure_future(self._observe(scope, status[0], time.perf_counter() - started)))

    async def _capped(self, scope: dict[str, Any], receive: Any) -> Any:
        """``receive`` of a body within the cap: a declared length is checked at once, a chunked body is read
        here (up to the cap) and replayed to the app."""
        limit = self.limit_for(scope["path"])
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > limit:
                raise _Refused(PayloadTooLargeError("request body", int(declared), limit))
            return receive
        if headers.get(b"transfer-encoding", b"").lower() != b"chunked":
            return receive
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return _replay([message], receive)
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                raise _Refused(PayloadTooLargeError("request body", len(body), limit))
        return _replay([{"type": "http.request", "body": bytes(body), "more_body": False}], receive)

    async def _observe(self, scope: dict[str, Any], status: int, elapsed: float) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")
        self.metrics.requests.labels(scope["method"], route, str(status)).inc()
        self.metrics.latency.labels(scope["method"], route).observe(elapsed)
        audit = self.services.audit
        if scope["method"] not in _MUTATING or audit is None:
            return
        caller = scope.get("state", {}).get("caller")
        key_id, tenant = getattr(caller, "key_id", None), getattr(caller, "tenant", None)
        if caller is None:  # refused before (or by) authentication: say who tried, never with the secret
            key_id, tenant = await self._who(scope)
        extra = {"user": user} if (user := scope.get("state", {}).get("acting_user")) else {}
        audit.record(key_id=key_id, tenant=tenant, method=scope["method"], path=scope["path"], status=status, **extra)

    async def _who(self, scope: dict[str, Any]) -> tuple[str | None, str | None]:
        """The key id a refused request named and its tenant if the key is real (for the audit log)."""
        from ray_runtime.keys import credential

        try:
            key = credential(dict(scope["headers"]).get(b"authorization", b"").decode("latin-1") or None)
        except RayRuntimeError:
            return None, None
        parsed = parse_key(key) if key else None
        if parsed is None or self.services.keys is None:
            return None, None
        record = await self.services.keys.record(parsed[0])
        return parsed[0], record.tenant if record is not None else None


class _Refused(Exception):
    """A request answered here without reaching the app."""

    def __init__(self, error: RayRuntimeError) -> None:
        super().__init__(error.message)
        self.error = error


def _replay(messages: list[dict[str, Any]], then: Any) -> Callable[[], Any]:
    """A ``receive`` that hands out these messages, then the connection's own (e.g. its disconnect)."""
    pending = list(messages)

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else await then()

    return receive


async def _answer(send: Any, error: RayRuntimeError) -> None:
    response = JSONResponse(error.to_wire(), status_code=error.http_status)
    await response({"type": "http"}, None, send)  # type: ignore[arg-type]
