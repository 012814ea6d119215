"""The façade: ``create_app(settings)`` builds the FastAPI app (standalone under uvicorn, or as a Serve app)."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute

from ray_runtime._version import __version__
from ray_runtime.api.middleware import Guard
from ray_runtime.api.routes import (
    agent_socket,
    agl,
    cluster,
    console,
    health,
    jobs,
    keys,
    legacy,
    plugins,
    queues,
    ray_jobs,
    resources,
    serve,
    sessions,
    synapse,
    tenants,
    traces,
)
from ray_runtime.api.services import Services
from ray_runtime.api.settings import ApiSettings
from ray_runtime.errors import (
    AuthenticationError,
    BadRequestError,
    InvalidArgumentError,
    NotFoundError,
    RateLimitError,
    RayRuntimeError,
    ValidationError,
)
from ray_runtime.models.api import ErrorBody

__all__ = ["create_app"]

logger = logging.getLogger("ray_runtime.api")
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "Bad input: the message names the field."),
        (401, "No API key, or an unknown or revoked one."),
        (403, "The key's scope or grants do not allow this."),
        (404, "No such object, or another tenant's: the two are indistinguishable."),
        (409, "Conflicts with the object's state, or a name another owner holds."),
        (413, "A body or payload over its cap."),
        (422, "Validation failed: every bad field is listed in details.errors."),
        (429, "A limit of the tenant was reached; Retry-After says when to try again."),
    )
}


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


def _error_response(error: RayRuntimeError) -> JSONResponse:
    headers = {}
    if isinstance(error, RateLimitError):
        headers["Retry-After"] = str(max(1, math.ceil(error.details.get("retry_after_s", 1))))
    if isinstance(error, AuthenticationError):
        headers["WWW-Authenticate"] = 'Bearer, Basic realm="ray_runtime"'
    return JSONResponse(error.to_wire(), status_code=error.http_status, headers=headers)


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


def _body_limit(settings: ApiSettings) -> Callable[[str], int]:
    def limit_for(path: str) -> int:
        return ray_jobs.MAX_PACKAGE_BYTES if path.startswith("/api/packages/") else settings.max_body_bytes

    return limit_for


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
    app.add_middleware(Guard, services=services, metrics=metrics, limit_for=_body_limit(settings))
    _install_error_handlers(app)
    # first: FastAPI matches included routers' routes one by one (~2 us each here); the AGL routes carry the most
    # requests (every event and model call) and are told apart by their prefix alone
    app.mount(settings.agl.prefix, agl.agl_app(services))
    agl_routes = app.routes[-1]
    families = (health, jobs, ray_jobs, cluster, serve, plugins, sessions, agent_socket, queues, resources, keys)
    families += (tenants, legacy, traces, console)
    for module in families:
        app.include_router(module.router, responses=ERROR_RESPONSES)
    app.include_router(synapse.router, prefix=settings.synapse_prefix, responses=ERROR_RESPONSES)
    _refuse_shadowing(app, agl_routes, settings.agl.prefix)
    return app


def _refuse_shadowing(app: FastAPI, mount: BaseRoute, prefix: str) -> None:
    """The AGL routes are matched first, so their prefix must not hold any of the façade's own routes."""
    paths = (context.path or "" for context in iter_route_contexts(app.routes) if context.original_route is not mount)
    held = sorted({path for path in paths if path == prefix or path.startswith(prefix + "/")})
    if held:
        raise InvalidArgumentError(
            "RAY_RUNTIME_API_AGL__PREFIX",
            f"{prefix!r} would hide the façade's own routes under it ({', '.join(held[:3])}); choose another prefix",
        )
