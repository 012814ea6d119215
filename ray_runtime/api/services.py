"""What the façade talks to, set up once per process: Ray, the dashboard, the coordinator, keys, logs, audit."""

from __future__ import annotations

import asyncio
import json
import os
import time
from builtins import TimeoutError as TimeoutError_
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import ray

from ray_runtime._ray import dashboard_url
from ray_runtime.api.audit import AuditLog
from ray_runtime.api.keys import KEYS_NAMESPACE, Caller, StoredKey, parse_key, verify
from ray_runtime.api.logtail import LogHub
from ray_runtime.api.settings import ApiSettings
from ray_runtime.checks import check_name
from ray_runtime.errors import (
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    RayRuntimeError,
    TimeoutError,
    UnavailableError,
    from_wire,
)
from ray_runtime.models.api import TENANT_HEADER, JobStatus, Scope

__all__ = ["Services", "ray_auth_headers"]


def ray_auth_headers() -> dict[str, str]:
    """The cluster's own token header for the dashboard (empty when Ray's token auth is off)."""
    from ray._private.authentication.http_token_authentication import get_auth_headers_if_auth_enabled

    return dict(get_auth_headers_if_auth_enabled({}))


class KeyCache:
    """API keys from the coordinator's system store, trusted for ``ttl_s`` after each lookup."""

    def __init__(self, coordinator: Any, ttl_s: float) -> None:
        self._kv = coordinator.kv
        self._ttl_s = ttl_s
        self._records: dict[str, tuple[float, StoredKey | None]] = {}
        self._any: tuple[float, bool] = (-1e9, False)

    async def any_keys(self) -> bool:
        """Whether any live key exists (no keys: dev mode, on loopback only)."""
        checked_at, answer = self._any
        if time.monotonic() - checked_at > self._ttl_s:
            records = await self._kv.items(KEYS_NAMESPACE)
            answer = any(record.get("revoked_at") is None for record in records.values())
            self._any = (time.monotonic(), answer)
        return answer

    async def caller(self, key: str) -> Caller:
        """The caller a key stands for; ``AuthenticationError`` for an unknown, malformed or revoked key."""
        parsed = parse_key(key)
        if parsed is None:
            raise AuthenticationError("malformed API key; keys look like rrk_<id>_<secret>")
        key_id, secret = parsed
        checked_at, record = self._records.get(key_id, (-1e9, None))
        if time.monotonic() - checked_at > self._ttl_s:
            raw = await self._kv.get(KEYS_NAMESPACE, key_id)
            record = StoredKey.model_validate(raw) if raw is not None else None
            self._records[key_id] = (time.monotonic(), record)
        if not verify(record, secret):
            raise AuthenticationError("unknown or revoked API key")
        assert record is not None
        return Caller(tenant=record.tenant, scope=record.scope, key_id=key_id)

    def forget(self, key_id: str) -> None:
        self._records.pop(key_id, None)
        self._any = (-1e9, False)


class _Expiring:
    """A small time-bounded memo of upstream answers (bounded in size; oldest dropped first)."""

    def __init__(self, limit: int = 10_000) -> None:
        self._items: dict[Any, tuple[float, Any]] = {}
        self._limit = limit

    def get(self, key: Any) -> Any:
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            self._items.pop(key, None)
            return None
        return item[1]

    def put(self, key: Any, value: Any, ttl_s: float) -> None:
        if ttl_s <= 0:
            return
        if len(self._items) >= self._limit:
            self._items.pop(next(iter(self._items)))
        self._items[key] = (time.monotonic() + ttl_s, value)

    def drop(self, key: Any) -> None:
        self._items.pop(key, None)


class Services:
    """Everything a request handler needs; ``start`` connects, ``stop`` releases."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self.started_at = time.time()
        self.coordinator: Any = None
        self.dashboard: aiohttp.ClientSession | None = None
        self.dashboard_url = ""
        self.keys: KeyCache | None = None
        self.logs: LogHub | None = None
        self.audit: AuditLog | None = None
        self.dev_mode = False
        self._memo = _Expiring()

    async def start(self) -> None:
        from ray_runtime.coordinator import aconnect

        if not ray.is_initialized():
            address = self.settings.ray_address or os.environ.get("RAY_ADDRESS") or "auto"
            await asyncio.to_thread(ray.init, address=address, log_to_driver=False)
        url = self.settings.dashboard_url or dashboard_url()
        self.dashboard_url = url if "://" in url else f"http://{url}"
        self.dashboard = aiohttp.ClientSession(
            base_url=self.dashboard_url,
            headers=ray_auth_headers(),
            timeout=aiohttp.ClientTimeout(total=None, connect=5, sock_read=60),
            connector=aiohttp.TCPConnector(limit=64),
        )
        self.coordinator = await aconnect(name=self.settings.coordinator_name)
        self.keys = KeyCache(self.coordinator, self.settings.keys_cache_s)
        self.logs = LogHub(
            self.dashboard,
            lambda submission_id: self.job_details(submission_id, fresh=True),
            poll_interval_s=self.settings.log_poll_interval_s,
            heartbeat_s=self.settings.log_heartbeat_s,
        )
        storage = Path(os.environ.get("RAY_RUNTIME_STORAGE", "~/.ray_runtime")).expanduser()
        self.audit = AuditLog(self.settings.audit_log or storage / "audit.jsonl")
        self.dev_mode = not await self.keys.any_keys()

    async def stop(self) -> None:
        if self.dashboard is not None:
            await self.dashboard.close()

    # ------------------------------------------------------------------------------------------- helpers

    def coordinator_for(self, caller: Caller) -> Any:
        """The coordinator acting for the caller's tenant."""
        return self.coordinator.for_tenant(caller.tenant)

    async def dashboard_request(self, method: str, path: str, **kwargs: Any) -> tuple[int, bytes, str]:
        """Call the dashboard's REST API; returns status, body and content type (unreachable: an error)."""
        assert self.dashboard is not None
        if "params" in kwargs:
            kwargs["params"] = query_params(kwargs["params"])
        try:
            async with self.dashboard.request(method, path, **kwargs) as reply:
                return reply.status, await reply.read(), reply.headers.get("content-type", "application/json")
        except TimeoutError_ as exc:
            raise TimeoutError(f"the Ray dashboard did not answer {method} {path} in time") from exc
        except aiohttp.ClientError as exc:
            raise UnavailableError(f"the Ray dashboard at {self.dashboard_url} is unreachable ({exc})") from exc

    async def dashboard_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the dashboard's REST API for JSON; its errors become ray_runtime errors."""
        status, body, _ = await self.dashboard_request(method, path, **kwargs)
        if status >= 400:
            raise _dashboard_error(status, body, path)
        return json.loads(body) if body else None

    async def job_details(self, submission_id: str, *, fresh: bool = False) -> dict[str, Any]:
        """Ray's JobDetails of a submission id (NotFoundError if Ray has no such job).

        A finished job's details are final, so they are kept for ``finished_job_cache_s``.
        """
        key = ("job", submission_id)
        cached = None if fresh else self._memo.get(key)
        if cached is not None:
            return cached
        details = await self.dashboard_json("GET", f"/api/jobs/{submission_id}")
        if JobStatus(details["status"]).terminal:
            self._memo.put(key, details, self.settings.finished_job_cache_s)
        return details

    async def all_jobs(self) -> list[dict[str, Any]]:
        """Ray's job list, reused for ``job_list_cache_s``; changes made through the façade clear it."""
        cached = self._memo.get("jobs")
        if cached is None:
            cached = await self.dashboard_json("GET", "/api/jobs/")
            self._memo.put("jobs", cached, self.settings.job_list_cache_s)
        return cached

    def jobs_changed(self, submission_id: str | None = None) -> None:
        """Forget what is cached about jobs after the façade changed one."""
        self._memo.drop("jobs")
        if submission_id is not None:
            self._memo.drop(("job", submission_id))

    async def run_of(self, coordinator: Any, tenant: str, run_id: str) -> Any:
        """A plugin run from the coordinator, or None; finished runs are final, so they are kept."""
        key = ("run", tenant, run_id)
        cached = self._memo.get(key)
        if cached is None:
            cached = await coordinator.runs.find(run_id)
            if cached is not None and cached.status != "running":
                self._memo.put(key, cached, 3600.0)
        return cached

    async def authenticate(self, headers: Mapping[str, str]) -> Caller:
        """The caller of a request: a key by Bearer or by Basic password; none needed in dev mode.

        ``X-Ray-Runtime-Tenant`` picks the tenant in dev mode; with a key it may only repeat the key's own tenant.
        """
        assert self.keys is not None
        key = _credential(headers.get("authorization"))
        asked = headers.get(TENANT_HEADER)
        if asked is not None:
            check_name(TENANT_HEADER, asked)
        if key is None:
            if self.dev_mode and not await self.keys.any_keys():
                return Caller(tenant=asked or "default", scope=Scope.ADMIN)
            self.dev_mode = False
            raise AuthenticationError("an API key is required: send 'Authorization: Bearer <key>'")
        caller = await self.keys.caller(key)
        if asked is not None and asked != caller.tenant:
            raise PermissionDeniedError(f"this key acts for tenant '{caller.tenant}', not '{asked}'")
        return caller


def _credential(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    if scheme.lower() == "basic" and value:
        import base64
        import binascii

        try:
            _, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthenticationError("malformed Basic credentials") from None
        return password or None
    raise AuthenticationError(
        "unsupported Authorization scheme; use 'Bearer <key>' (or Basic with the key as password)"
    )


def query_params(params: dict[str, Any]) -> list[tuple[str, str]]:
    """Query parameters as Ray's SDK (requests) sends them: lists repeat the key, other values as ``str``."""
    pairs = []
    for key, value in params.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            pairs.append((key, str(item)))
    return pairs


def _dashboard_error(status: int, body: bytes, path: str) -> RayRuntimeError:
    text = body[:1000].decode("utf-8", errors="replace")
    if status == 404 or "does not exist" in text:
        return NotFoundError(f"not found: {text.strip() or path}")
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    wire = parsed if isinstance(parsed, dict) and "error" in parsed else {"error": {"message": text}}
    return from_wire(wire, status)
