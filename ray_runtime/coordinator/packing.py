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
    """A call's message, checked to be the one its method takes (a driver of another release, or a wrong call,
    gets an error naming both instead of fields read out of place)."""
    message = pickle.loads(payload)
    if type(message) is not kind:
        raise InvalidArgumentError("message", f"expected {kind.__name__}, got {type(message).__name__}")
    return message
