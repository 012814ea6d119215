"""The façade's client of Ray's dashboard REST API (jobs, packages, the State API, Serve), with short caches.

One ``httpx.AsyncClient`` per façade process, carrying the cluster's own credentials (never a caller's key).
What the dashboard answers becomes a ray_runtime error here, in one place: the routes never see httpx.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from cachetools import TTLCache

from ray_runtime.errors import (
    ConflictError,
    NotFoundError,
    RayRuntimeError,
    TimeoutError,
    UnavailableError,
    from_wire,
)
from ray_runtime.models.api import JobStatus

__all__ = ["Dashboard", "dashboard_error", "query_params", "ray_auth_headers", "reason_of"]


def ray_auth_headers() -> dict[str, str]:
    """The cluster's own token header for the dashboard (empty when Ray's token auth is off).

    Ray has no public API for this; it reads the token the way Ray's own SDK clients do.
    """
    from ray._private.authentication.http_token_authentication import get_auth_headers_if_auth_enabled

    return dict(get_auth_headers_if_auth_enabled({}))


def query_params(params: dict[str, Any]) -> list[tuple[str, str]]:
    """Query parameters as Ray's SDK (requests) sends them: lists repeat the key, other values as ``str``."""
    pairs = []
    for key, value in params.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            pairs.append((key, str(item)))
    return pairs


class Dashboard:
    """Ray's dashboard for one façade process.

    Args:
        url: The dashboard's base URL.
        finished_job_ttl_s: How long a finished job's details are served from memory (they are final).
        job_list_ttl_s: How long Ray's job list is reused (changes made through the façade clear it).
    """

    def __init__(
        self, url: str, *, finished_job_ttl_s: float, job_list_ttl_s: float, running_job_ttl_s: float = 0.0
    ) -> None:
        self.url = url
        self._http = httpx.AsyncClient(
            base_url=url,
            headers=ray_auth_headers(),
            timeout=httpx.Timeout(60.0, connect=5.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )
        self._finished_jobs: TTLCache[str, dict[str, Any]] | None = (
            TTLCache(maxsize=10_000, ttl=finished_job_ttl_s) if finished_job_ttl_s > 0 else None
        )
        self._running_jobs: TTLCache[str, dict[str, Any]] | None = (
            TTLCache(maxsize=10_000, ttl=running_job_ttl_s) if running_job_ttl_s > 0 else None
        )
        self._job_list: TTLCache[str, list[dict[str, Any]]] | None = (
            TTLCache(maxsize=1, ttl=job_list_ttl_s) if job_list_ttl_s > 0 else None
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, bytes, str]:
        """Call the REST API; returns status, body and content type (unreachable: an error)."""
        if "params" in kwargs:
            kwargs["params"] = query_params(kwargs["params"])
        try:
            reply = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise TimeoutError(f"the Ray dashboard did not answer {method} {path} in time") from exc
        except httpx.TransportError as exc:
            raise UnavailableError(f"the Ray dashboard at {self.url} is unreachable ({exc})") from exc
        return reply.status_code, reply.content, reply.headers.get("content-type", "application/json")

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the REST API for JSON; its errors become ray_runtime errors."""
        status, body, _ = await self.request(method, path, **kwargs)
        if status >= 400:
            raise dashboard_error(status, body, path)
        return json.loads(body) if body else None

    @asynccontextmanager
    async def stream(self, path: str, params: dict[str, Any]) -> AsyncIterator[httpx.Response]:
        """A streamed GET (no read timeout): the response, its status checked by the caller."""
        try:
            async with self._http.stream(
                "GET", path, params=query_params(params), timeout=httpx.Timeout(None, connect=5.0)
            ) as reply:
                yield reply
        except httpx.TransportError as exc:
            raise UnavailableError(f"the Ray dashboard at {self.url} is unreachable ({exc})") from exc

    async def job_details(self, submission_id: str, *, fresh: bool = False) -> dict[str, Any]:
        """Ray's JobDetails of a submission id (``NotFoundError`` if Ray has no such job)."""
        if not fresh:
            for cache in (self._finished_jobs, self._running_jobs):
                cached = cache.get(submission_id) if cache is not None else None
                if cached is not None:
                    return cached
        details = await self.json("GET", f"/api/jobs/{submission_id}")
        cache = self._finished_jobs if JobStatus(details["status"]).terminal else self._running_jobs
        if cache is not None:
            cache[submission_id] = details
        return details

    async def all_jobs(self) -> list[dict[str, Any]]:
        """Ray's job list, reused for a moment; changes made through the façade clear it."""
        cached = self._job_list.get("jobs") if self._job_list is not None else None
        if cached is None:
            cached = await self.json("GET", "/api/jobs/")
            if self._job_list is not None:
                self._job_list["jobs"] = cached
        return cached

    def jobs_changed(self, submission_id: str | None = None) -> None:
        """Forget what is cached about jobs after the façade changed one."""
        if self._job_list is not None:
            self._job_list.clear()
        for cache in (self._finished_jobs, self._running_jobs):
            if submission_id is not None and cache is not None:
                cache.pop(submission_id, None)


def reason_of(text: str) -> str:
    """The one line of a Ray error text that says what went wrong (Ray often sends a whole traceback)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "no reason given"
    meaningful = [line for line in lines if not line.startswith(("Traceback", "File ", "^", "~"))]
    return (meaningful or lines)[-1][:500]


def dashboard_error(status: int, body: bytes, path: str) -> RayRuntimeError:
    """The ray_runtime error for a dashboard refusal (its reason kept, never a traceback)."""
    text = body[:20_000].decode("utf-8", errors="replace")
    if status == 404 or "does not exist" in text:
        return NotFoundError(f"not found: {path}")
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        return from_wire(parsed, status)
    if "already exists" in text:
        return ConflictError(f"Ray refused {path}: {reason_of(text)}")
    caller_fault = status < 500 or "ValueError" in text or "TypeError" in text
    wire = {
        "error": {
            "code": "bad_request" if caller_fault else "server_error",
            "message": f"Ray refused {path}: {reason_of(text)}",
        }
    }
    return from_wire(wire, 400 if caller_fault else status)
