"""Serve mode: each serve-mode action becomes a Serve application with one FastAPI deployment.

Application ``<plugin>.<action>`` at route prefix ``/plugins/<plugin>/<action>``:

* ``POST /plugins/<plugin>/<action>`` with JSON parameters returns the JSON result (422 names every bad field);
  a generator action streams, as NDJSON by default or as Server-Sent Events with ``Accept: text/event-stream``.
* ``WS /plugins/<plugin>/<action>/ws``: send the parameters as one JSON message; receive ``{"type": "chunk"}``
  messages (or one ``{"type": "result"}``), then ``{"type": "end"}``.
* ``GET /plugins/<plugin>/<action>`` describes the action and its parameters schema.

Deployments take their replicas, autoscaling, concurrency and Ray resources from the manifest. Their
``user_config`` names the coordinator resources version to use; a new version arrives through ``reconfigure``
without restarting a replica. Why one application per action and not per plugin: an application has one ingress,
so a per-plugin app would route every request through a second replica; here each request makes one hop.

The builder below is what a Serve config's ``import_path`` names (``ray_runtime.plugins.serve:build_app``); it
runs inside the app's runtime_env, whose working_dir is the plugin package.

(No ``from __future__ import annotations`` here: Serve's ingress wrapper makes FastAPI resolve the route
annotations elsewhere, so they must be real objects.)
"""

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve

from ray_runtime.errors import (
    ActionFailedError,
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    RayRuntimeError,
    ResourcesNotFoundError,
)
from ray_runtime.keys import KeyStore, Scope, credential
from ray_runtime.models.resources import ResourcesUpdate
from ray_runtime.plugins.action import Context, LoadedAction, Reporter
from ray_runtime.plugins.manifest import ActionSpec, load

__all__ = ["ActionDeployment", "app_name", "build_app", "deployment_options", "route_prefix"]

logger = logging.getLogger("ray_runtime.serve")


class _BarePrefixIsRoot:
    """ASGI middleware: a request for exactly the route prefix (no trailing slash) reaches the ``/`` routes.

    Without it Starlette answers ``POST /plugins/p/a`` with a 307 to ``/plugins/p/a/``, which clients must follow.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            root = scope.get("root_path", "").rstrip("/")
            if scope["path"].rstrip("/") == root:
                scope = {**scope, "path": f"{root}/", "raw_path": f"{root}/".encode()}
        await self.app(scope, receive, send)


api = FastAPI(title="ray_runtime plugin action", docs_url=None, redoc_url=None)
api.add_middleware(_BarePrefixIsRoot)


def app_name(plugin: str, action: str) -> str:
    """The Serve application name of a plugin action."""
    return f"{plugin}.{action}"


def route_prefix(plugin: str, action: str) -> str:
    return f"/plugins/{plugin}/{action}"


def deployment_options(spec: ActionSpec) -> dict[str, Any]:
    """Serve deployment options from the manifest's ``serve`` and ``resources``."""
    options: dict[str, Any] = {
        "name": spec.name,
        "max_ongoing_requests": spec.serve.max_ongoing_requests,
        "ray_actor_options": spec.resources.ray_options(),
    }
    if spec.serve.autoscaling is not None:
        options["autoscaling_config"] = spec.serve.autoscaling.model_dump()
    else:
        options["num_replicas"] = spec.serve.num_replicas
    return options


class _KeyGate:
    """The façade's API keys in front of an endpoint: once any key exists, a caller needs a live key of the app's
    tenant (any tenant's for an app of none) with scope ``submit``. Another tenant's key gets the 404 a missing
    endpoint would. ``auth: none`` in the manifest opens the endpoint to anyone who reaches Serve."""

    def __init__(self, mode: str, tenant: str | None) -> None:
        self.mode = mode
        self.tenant = tenant
        self._keys: KeyStore | None = None

    def _store(self) -> KeyStore:
        if self._keys is None:
            from ray_runtime.coordinator import connect
            from ray_runtime.coordinator.handle import system_store

            self._keys = KeyStore(system_store(connect(wait=False)), ttl_s=5.0)
        return self._keys

    async def check(self, headers: Any, path: str) -> None:
        """Let the request through, or raise what the façade would (401, 403, 404)."""
        if self.mode == "none":
            return
        keys = self._store()
        key = credential(headers.get("authorization"))
        if key is None:
            if not await keys.any_keys():
                return  # no key exists anywhere: a development cluster, open as the façade's dev mode is
            raise AuthenticationError("this endpoint needs an API key: send 'Authorization: Bearer <key>'")
        caller = await keys.caller(key)
        if self.tenant is not None and not caller.owns(self.tenant):
            raise NotFoundError(f"no route {path}")
        if not caller.scope.allows(Scope.SUBMIT):
            raise PermissionDeniedError(f"calling an endpoint needs scope 'submit' (yours: '{caller.scope.value}')")


class _ServeReporter(Reporter):
    """Resources come from ``user_config`` (pushed on every new version); without it, the latest on demand."""

    def __init__(self, tenant: str | None) -> None:
        self.tenant = tenant
        self.current: ResourcesUpdate | None = None
        self._coord: Any = None

    def _coordinator(self) -> Any:
        if self._coord is None or self._coord.tenant != (self.tenant or self._coord.tenant):
            from ray_runtime.coordinator import connect

            self._coord = connect(tenant=self.tenant)
        return self._coord

    def adopt(self, resources_id: str | None) -> None:
        self.current = self._coordinator().resources.get(resources_id) if resources_id else None

    def resources(self, ctx: Context) -> ResourcesUpdate | None:
        if self.current is not None:
            return self.current
        try:
            return self._coordinator().resources.latest()
        except ResourcesNotFoundError:
            return None


def _error_response(exc: Exception) -> JSONResponse:
    error = exc if isinstance(exc, RayRuntimeError) else ActionFailedError(f"{type(exc).__name__}: {exc}")
    if error.http_status >= 500:
        logger.exception("action failed", exc_info=exc)
    return JSONResponse(error.to_wire(), status_code=error.http_status)


def _wire_error(exc: Exception) -> dict[str, Any]:
    error = exc if isinstance(exc, RayRuntimeError) else ActionFailedError(f"{type(exc).__name__}: {exc}")
    return error.to_wire()


async def _ndjson(chunks: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            yield json.dumps(chunk).encode() + b"\n"
    except Exception as exc:
        yield json.dumps(_wire_error(exc)).encode() + b"\n"


async def _sse(chunks: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            yield f"data: {json.dumps(chunk)}\n\n".encode()
    except Exception as exc:
        yield f"event: error\ndata: {json.dumps(_wire_error(exc))}\n\n".encode()
        return
    yield b"event: end\ndata: {}\n\n"


@serve.deployment
@serve.ingress(api)
class ActionDeployment:
    """One plugin action behind HTTP, streaming and WebSocket; see the module docstring."""

    def __init__(
        self,
        plugin: str,
        action: str,
        entrypoint: str,
        tenant: str | None = None,
        folder: str | None = None,
        auth: str = "keys",
    ) -> None:
        self.loaded = LoadedAction.load(plugin, action, Path(folder) if folder else Path.cwd(), entrypoint)
        self.reporter = _ServeReporter(tenant)
        self.gate = _KeyGate(auth, tenant)

    async def reconfigure(self, config: dict[str, Any]) -> None:
        """Serve calls this with the deployment's ``user_config``: adopt the resources version it names."""
        self.reporter.tenant = config.get("tenant", self.reporter.tenant)
        await asyncio.to_thread(self.reporter.adopt, config.get("resources_id"))

    def _context(self) -> "Context":
        return self.loaded.context("serve", reporter=self.reporter)

    @api.get("/")
    async def describe(self, request: Request) -> Any:
        """What this endpoint runs and the JSON schema of its parameters."""
        try:
            await self.gate.check(request.headers, request.url.path)
        except RayRuntimeError as exc:
            return _error_response(exc)
        current = self.reporter.current
        return {
            "plugin": self.loaded.plugin,
            "action": self.loaded.name,
            "description": self.loaded.description,
            "streaming": self.loaded.signature.streaming,
            "params_schema": self.loaded.signature.params_schema(),
            "resources_id": current.resources_id if current is not None else None,
        }

    @api.post("/")
    async def invoke(self, request: Request) -> Response:
        """Run the action on the JSON body; stream when it is a generator."""
        try:
            await self.gate.check(request.headers, request.url.path)
            params = self.loaded.signature.validate(await request.body())
            if not self.loaded.signature.streaming:
                return JSONResponse(await self.loaded.arun(params, self._context()))
        except Exception as exc:
            return _error_response(exc)
        chunks = self.loaded.astream(params, self._context())
        if "text/event-stream" in request.headers.get("accept", ""):
            return StreamingResponse(_sse(chunks), media_type="text/event-stream")
        return StreamingResponse(_ndjson(chunks), media_type="application/x-ndjson")

    @api.websocket("/ws")
    async def websocket(self, websocket: WebSocket) -> None:
        """Parameters in one message; chunks (or one result) out, then an end message."""
        await websocket.accept()
        try:
            await self.gate.check(websocket.headers, websocket.url.path)
            params = self.loaded.signature.validate(await websocket.receive_text())
            if self.loaded.signature.streaming:
                async for chunk in self.loaded.astream(params, self._context()):
                    await websocket.send_json({"type": "chunk", "data": chunk})
            else:
                await websocket.send_json({"type": "result", "data": await self.loaded.arun(params, self._context())})
            await websocket.send_json({"type": "end"})
            await websocket.close(code=1000)
        except WebSocketDisconnect:
            return
        except Exception as exc:
            await websocket.send_json({"type": "error", **_wire_error(exc)})
            await websocket.close(code=1008 if isinstance(exc, RayRuntimeError) and exc.http_status < 500 else 1011)


def build_app(args: dict[str, Any]) -> serve.Application:
    """Serve application builder: ``args`` has ``action``, and optionally ``tenant`` and ``plugin_dir``.

    Without ``plugin_dir`` the plugin is the working directory (its package as the ``working_dir``); with it,
    a folder every node can read (a shared file system, or a single-node cluster).
    """
    plugin = load(args.get("plugin_dir", "."))
    spec = plugin.action(args["action"])
    deployment = ActionDeployment.options(**deployment_options(spec))
    folder = str(plugin.path.resolve()) if "plugin_dir" in args else None
    return deployment.bind(plugin.name, spec.name, spec.entrypoint, args.get("tenant"), folder, spec.serve.auth)
