"""Per-tenant limits in the façade: requests per second (a token bucket per tenant, per façade process) and running
jobs. Queued tasks and sessions are counted where they live, in the coordinator. A cluster admin sets the limits;
they are kept in the coordinator's system store and read here at most every few seconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache

from ray_runtime.errors import RateLimitError
from ray_runtime.models.api import LIMITS_NAMESPACE, TenantLimits

__all__ = ["TenantLimiter"]


class TenantLimiter:
    """Reads each tenant's limits (cached for ``ttl_s``) and admits its requests.

    Args:
        kv: Where the limits are kept (the coordinator's system store).
        ttl_s: How long a tenant's limits are cached.
        clock: Monotonic seconds (the token buckets' time).
    """

    def __init__(self, kv: Any, ttl_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._kv = kv
        self._clock = clock
        self._limits: TTLCache[str, TenantLimits] = TTLCache(maxsize=10_000, ttl=ttl_s)
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant -> (tokens, when)

    async def limits(self, tenant: str) -> TenantLimits:
        cached = self._limits.get(tenant)
        if cached is None:
            raw = await self._kv.get(LIMITS_NAMESPACE, tenant)
            cached = self._limits[tenant] = TenantLimits.model_validate(raw or {})
        return cached

    def forget(self, tenant: str) -> None:
        """Read the tenant's limits afresh next time (after they were set through this process)."""
        self._limits.pop(tenant, None)

    async def admit(self, tenant: str) -> None:
        """Take one request token of the tenant, or raise ``RateLimitError`` saying when one is free. The bucket
        holds a second's worth of requests (at least one)."""
        rate = (await self.limits(tenant)).requests_per_second
        if rate is None:
            return
        now, burst = self._clock(), max(float(rate), 1.0)
        tokens, when = self._buckets.get(tenant, (burst, now))
        tokens = min(burst, tokens + (now - when) * rate)
        if tokens < 1:
            self._buckets[tenant] = (tokens, now)
            raise RateLimitError(
                f"tenant {tenant!r} is over its {rate:g} requests per second; slow down",
                retry_after_s=(1 - tokens) / rate,
                limit="requests_per_second",
            )
        self._buckets[tenant] = (tokens - 1, now)

    async def check_running_jobs(self, tenant: str, running: int) -> None:
        """Refuse a new job while the tenant has ``max_running_jobs`` pending or running."""
        limit = (await self.limits(tenant)).max_running_jobs
        if limit is not None and running >= limit:
            raise RateLimitError(
                f"tenant {tenant!r} has {running} jobs pending or running, its limit; wait for one to end",
                retry_after_s=5,
                limit="max_running_jobs",
            )
