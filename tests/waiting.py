"""Poll with a deadline, instead of sleeping and hoping: the one helper every test waits with."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["async_wait_until", "wait_until"]

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout_s: float = 60.0, *, interval_s: float = 0.1, what: str = "") -> T:
    """The first truthy value ``predicate`` returns, polling every ``interval_s``; fails the test after ``timeout_s``.

    ``predicate`` may raise ``AssertionError`` to stop early with its own message (e.g. a job that failed).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s:g}s waiting for {what or predicate}; last saw {value!r}")
        time.sleep(interval_s)


async def async_wait_until(
    predicate: Callable[[], Awaitable[T]], timeout_s: float = 60.0, *, interval_s: float = 0.1, what: str = ""
) -> T:
    """:func:`wait_until` for an awaitable predicate."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s:g}s waiting for {what or predicate}; last saw {value!r}")
        await asyncio.sleep(interval_s)
