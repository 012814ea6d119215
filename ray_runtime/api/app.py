"""The façade: ``create_app(settings)`` builds the FastAPI app (standalone under uvicorn, or as a Serve app)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.exceptions import HTTPException as StarletteHTTPException

from ray_runtime._version import __version__
from ray_runtime.api.routes import cluster, health, jobs, keys, legacy, plugins, queues, ray_jobs, resources, serve
from ray_runtime.api.services import Services
from ray_runtime.api.settings import ApiSettings
from ray_runtime.errors import (
    BadRequestError,
    InternalError,
    NotFoundError,
    PayloadTooLargeError,
    RayRuntimeError,
    ValidationError,
)

__all__ = ["create_app"]

logger = logging.getLogger("ray_runtime.api")
_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_PACKAGE_LIMIT = 110 * 2**20  # Ray's packages may be up to 100 MiB


class Metrics:
    """The façade's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ray_runtime_api_requests", "HTTP requests.", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "ray_runtime_api_request_seconds", "HTTP request latency.", ["method", "route"], registry=self.registry
        )
        self.streams = Gauge("ray_runtime_api_log_streams", "Log streams being followed.", registry=self.registry)
        self.tasks = Gauge("ray_runtime_tasks", "Coordinator tasks by status.", ["status"], registry=self.registry)


class _BodyTooLarge(Exception):
    pass


class _Observe:
    """ASGI middleware: body size cap, request metrics, and the audit log of mutating calls."""

    def __init__(self, app: Any, services: Services, metrics: Metrics, max_body: int) -> None:
        self.app, self.services, self.metrics, self.max_body = app, services, metrics, max_body

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = _PACKAGE_LIMIT if scope["path"].startswith("/api/packages/") else self.max_body
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(send, int(declared), limit)
            return
        received, status, started = 0, [500], time.perf_counter()

        async def counted_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise _BodyTooLarge
            return message

        async def observed_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, counted_receive, observed_send)
        except _BodyTooLarge:
            await _too_large(send, received, limit)
            status[0] = 413
        finally:
            self._observe(scope, status[0], time.perf_counter() - started)

    def _observe(self, scope: dict[str, Any], status: int, elapsed: float) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")
        self.metrics.requests.labels(scope["method"], route, str(status)).inc()
        self.metrics.latency.labels(scope["method"], route).observe(elapsed)
        if scope["method"] in _MUTATING and self.services.audit is not None and route != "unmatched":
            caller = scope.get("state", {}).get("caller")
            self.services.audit.record(
                key_id=getattr(caller, "key_id", None),
                tenant=getattr(caller, "tenant", None),
                method=scope["method"],
                path=scope["path"],
                status=status,
            )


async def _too_large(send: Any, size: int, limit: int) -> None:
    body = PayloadTooLargeError("request body", size, limit).to_wire()
    response = JSONResponse(body, status_code=413)
    await response({"type": "http"}, None, send)  # type: ignore[arg-type]


def _error_response(error: RayRuntimeError) -> JSONResponse:
    return JSONResponse(error.to_wire(), status_code=error.http_status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RayRuntimeError)
    async def ours(request: Request, exc: RayRuntimeError) -> JSONResponse:
        if exc.http_status >= 500:
            logger.warning("%s %s failed: %s", request.method, request.url.path, exc.message)
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(error.get("type") == "json_invalid" for error in errors):
            return _error_response(BadRequestError("the request body is not valid JSON"))
        problems = [
            {"field": ".".join(str(part) for part in error["loc"] if part != "body") or "body", "problem": error["msg"]}
            for error in errors
        ]
        listing = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
        return _error_response(ValidationError(f"request is not valid: {listing}", errors=problems))

    @app.exception_handler(StarletteHTTPException)
    async def http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return _error_response(NotFoundError(f"no route {request.method} {request.url.path}"))
        body = {"error": {"code": f"http_{exc.status_code}", "message": str(exc.detail), "details": {}}}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("%s %s failed", request.method, request.url.path)
        return _error_response(InternalError("internal error; the façade's log has the details"))


def create_app(settings: ApiSettings | None = None, *, allow_dev_mode: bool | None = None) -> FastAPI:
    """The API façade.

    Args:
        settings: Addresses and limits (default: from ``RAY_RUNTIME_API_*``).
        allow_dev_mode: Serve without API keys while none exist (default: only when bound to loopback).
            When not allowed and no key exists, start-up fails with what to do.
    """
    settings = settings or ApiSettings()
    services = Services(settings)
    metrics = Metrics()
    dev_allowed = settings.loopback() if allow_dev_mode is None else allow_dev_mode

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await services.start()
        if services.dev_mode and not dev_allowed:
            await services.stop()
            raise RuntimeError(
                f"refusing to serve on {settings.host} without API keys (dev mode is loopback only): create one with "
                "`ray-runtime keys create --tenant <tenant> --scope admin`, or bind to 127.0.0.1"
            )
        if services.dev_mode:
            logger.warning("no API keys exist: serving in dev mode (loopback only, every caller is tenant 'default')")
        yield
        await services.stop()

    app = FastAPI(
        title="ray_runtime",
        version=__version__,
        description="One API over Ray jobs, logs, cluster state, Serve and the ray_runtime coordinator.",
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.metrics = metrics
    app.add_middleware(_Observe, services=services, metrics=metrics, max_body=settings.max_body_bytes)
    _install_error_handlers(app)
    for module in (health, jobs, ray_jobs, cluster, serve, plugins, queues, resources, keys, legacy):
        app.include_router(module.router)
    return app
