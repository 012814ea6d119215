"""What the façade talks to, set up once per process: Ray, the dashboard, the coordinator, keys, logs, audit."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import httpx
import ray

from ray_runtime._ray import dashboard_url
from ray_runtime.api.audit import AuditLog
from ray_runtime.api.keys import KEYS_NAMESPACE, Caller, StoredKey, parse_key, verify
from ray_runtime.api.logtail import LogHub
from ray_runtime.api.settings import ApiSettings
from ray_runtime.errors import (
    AuthenticationError,
    NotFoundError,
    RayRuntimeError,
    TimeoutError,
    UnavailableError,
    from_wire,
)
from ray_runtime.models.api import JobStatus, Scope

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


class Services:
    """Everything a request handler needs; ``start`` connects, ``stop`` releases."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self.started_at = time.time()
        self.coordinator: Any = None
        self.dashboard: httpx.AsyncClient | None = None
        self.dashboard_url = ""
        self.keys: KeyCache | None = None
        self.logs: LogHub | None = None
        self.audit: AuditLog | None = None
        self.dev_mode = False

    async def start(self) -> None:
        from ray_runtime.coordinator import aconnect

        if not ray.is_initialized():
            address = self.settings.ray_address or os.environ.get("RAY_ADDRESS") or "auto"
            await asyncio.to_thread(ray.init, address=address, log_to_driver=False)
        url = self.settings.dashboard_url or dashboard_url()
        self.dashboard_url = url if "://" in url else f"http://{url}"
        self.dashboard = httpx.AsyncClient(
            base_url=self.dashboard_url,
            headers=ray_auth_headers(),
            timeout=httpx.Timeout(30.0, connect=5.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )
        self.coordinator = await aconnect(name=self.settings.coordinator_name)
        self.keys = KeyCache(self.coordinator, self.settings.keys_cache_s)
        self.logs = LogHub(
            self.dashboard,
            self.job_details,
            poll_interval_s=self.settings.log_poll_interval_s,
            heartbeat_s=self.settings.log_heartbeat_s,
        )
        storage = Path(os.environ.get("RAY_RUNTIME_STORAGE", "~/.ray_runtime")).expanduser()
        self.audit = AuditLog(self.settings.audit_log or storage / "audit.jsonl")
        self.dev_mode = not await self.keys.any_keys()

    async def stop(self) -> None:
        if self.dashboard is not None:
            await self.dashboard.aclose()

    # ------------------------------------------------------------------------------------------- helpers

    def coordinator_for(self, caller: Caller) -> Any:
        """The coordinator acting for the caller's tenant."""
        return self.coordinator.for_tenant(caller.tenant)

    async def dashboard_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the dashboard's REST API; its errors become ray_runtime errors."""
        assert self.dashboard is not None
        try:
            reply = await self.dashboard.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise TimeoutError(f"the Ray dashboard did not answer {method} {path} in time") from exc
        except httpx.TransportError as exc:
            raise UnavailableError(f"the Ray dashboard at {self.dashboard_url} is unreachable ({exc})") from exc
        if reply.status_code >= 400:
            raise _dashboard_error(reply)
        return reply.json() if reply.content else None

    async def job_details(self, submission_id: str) -> dict[str, Any]:
        """Ray's JobDetails of a submission id (NotFoundError if Ray has no such job)."""
        return await self.dashboard_json("GET", f"/api/jobs/{submission_id}")

    async def job_status(self, submission_id: str) -> JobStatus:
        return JobStatus((await self.job_details(submission_id))["status"])

    async def authenticate(self, authorization: str | None) -> Caller:
        """The caller of a request: a key by Bearer or by Basic password; none needed in dev mode."""
        assert self.keys is not None
        key = _credential(authorization)
        if key is None:
            if self.dev_mode and not await self.keys.any_keys():
                return Caller(tenant="default", scope=Scope.ADMIN)
            self.dev_mode = False
            raise AuthenticationError("an API key is required: send 'Authorization: Bearer <key>'")
        return await self.keys.caller(key)


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


def _dashboard_error(reply: httpx.Response) -> RayRuntimeError:
    text = reply.text[:1000]
    if reply.status_code == 404 or "does not exist" in text:
        return NotFoundError(f"not found: {text.strip() or reply.request.url.path}")
    try:
        body = reply.json()
    except ValueError:
        body = {"error": {"message": text}}
    error = from_wire(
        body if isinstance(body, dict) and "error" in body else {"error": {"message": text}}, reply.status_code
    )
    return error
