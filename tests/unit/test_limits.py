"""The façade's per-tenant request limiter, on its own clock: a second's worth of burst, then one request per
1/rate seconds, and a refusal that says when the next token is free."""

from __future__ import annotations

import asyncio

import pytest

from ray_runtime.api.limits import TenantLimiter
from ray_runtime.errors import RateLimitError
from ray_runtime.models.api import LIMITS_NAMESPACE


class Store:
    """The system store's get, for limits kept under tenants' names."""

    def __init__(self, limits: dict[str, dict]) -> None:
        self.limits = limits

    async def get(self, namespace: str, key: str) -> dict | None:
        assert namespace == LIMITS_NAMESPACE
        return self.limits.get(key)


class Clock:
    def __init__(self) -> None:
        self.now = 1024.0

    def __call__(self) -> float:
        return self.now


def admitted(limiter: TenantLimiter, tenant: str, times: int) -> list[float | None]:
    """For each of ``times`` requests: None if admitted, else the Retry-After it was refused with."""

    async def one() -> float | None:
        try:
            await limiter.admit(tenant)
        except RateLimitError as refused:
            return refused.details["retry_after_s"]
        return None

    return [asyncio.run(one()) for _ in range(times)]


def test_a_burst_of_one_seconds_worth_then_one_per_interval():
    clock = Clock()
    limiter = TenantLimiter(Store({"t": {"requests_per_second": 64}}), clock=clock)  # binary fractions: exact
    outcomes = admitted(limiter, "t", 65)
    assert outcomes[:64] == [None] * 64
    assert outcomes[64] == 1 / 64
    clock.now += 1 / 64
    assert admitted(limiter, "t", 2) == [None, 1 / 64]
    clock.now += 10  # idle: the bucket refills to one second's worth, no more
    assert admitted(limiter, "t", 65).count(None) == 64


def test_a_rate_below_one_still_admits_one_request_then_says_how_long_to_wait():
    clock = Clock()
    limiter = TenantLimiter(Store({"t": {"requests_per_second": 0.1}}), clock=clock)
    assert admitted(limiter, "t", 2) == [None, pytest.approx(10)]
    clock.now += 10
    assert admitted(limiter, "t", 1) == [None]


def test_tenants_have_buckets_of_their_own_and_no_limit_means_none():
    clock = Clock()
    limiter = TenantLimiter(Store({"a": {"requests_per_second": 1}}), clock=clock)
    assert admitted(limiter, "a", 2)[1] is not None
    assert admitted(limiter, "b", 1000) == [None] * 1000
