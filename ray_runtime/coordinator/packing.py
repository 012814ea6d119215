"""How calls and answers cross into and out of the coordinator actor: one pickled ``bytes`` each way.

Ray moves one opaque buffer far faster than it serialises many arguments or nested results.
"""

from __future__ import annotations

import pickle
from typing import Any, TypeVar

from ray_runtime.errors import InvalidArgumentError

__all__ = ["pack", "read", "unpack"]

M = TypeVar("M")


def pack(value: Any) -> bytes:
    """Encode call arguments or answers for the trip through Ray."""
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


unpack = pickle.loads


def read(payload: bytes, kind: type[M]) -> M:
    """A call's message as the named tuple its method takes, from the fields it travelled as (a driver of another
    release, or a wrong call, gets an error naming the message instead of fields read out of place)."""
    fields = pickle.loads(payload)
    if not isinstance(fields, tuple) or len(fields) != len(kind._fields):  # type: ignore[attr-defined]
        raise InvalidArgumentError("message", f"is not a {kind.__name__} ({len(kind._fields)} fields)")  # type: ignore[attr-defined]
    return kind._make(fields)  # type: ignore[attr-defined]
