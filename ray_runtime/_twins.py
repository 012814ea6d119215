"""Blocking and awaitable twins of one call description, as httpx shares one request builder between its clients.

A twin class defines ``_run(call)`` (blocking) or ``async _run(call)`` (awaitable); each public method is made from
a builder that only describes the call (validating and encoding its arguments). Used by the HTTP clients and the
coordinator's driver handle alike. Pure Python.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

__all__ = ["awaitable", "blocking"]

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C")


def blocking(build: Callable[Concatenate[Any, P], C]) -> Callable[Concatenate[Any, P], Any]:
    """The public blocking method of a call builder: ``self._run(build(...))``."""

    @functools.wraps(build)
    def method(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> Any:
        return self._run(build(self, *args, **kwargs))

    method.__name__ = method.__qualname__ = build.__name__.lstrip("_")
    return method


def awaitable(build: Callable[Concatenate[Any, P], C]) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, Any]]:
    """The public awaitable method of a call builder: ``await self._run(build(...))``."""

    @functools.wraps(build)
    async def method(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> Any:
        return await self._run(build(self, *args, **kwargs))

    method.__name__ = method.__qualname__ = build.__name__.lstrip("_")
    return method
