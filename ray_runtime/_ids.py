"""Opaque, prefixed, time-ordered ids (``task_…``, ``res_…``): sortable like ULIDs, so SQLite appends."""

from __future__ import annotations

import os
import re
import time

__all__ = ["ID_BODY_LENGTH", "is_id", "new_id"]

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
ID_BODY_LENGTH = 26
_BODY = re.compile(f"^[{_ALPHABET}]{{{ID_BODY_LENGTH}}}$")


def new_id(prefix: str) -> str:
    """A new id: ``prefix_`` + 48 bits of milliseconds + 80 random bits, in Crockford base32."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(ID_BODY_LENGTH):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return f"{prefix}_{''.join(reversed(chars))}"


def is_id(value: object, prefix: str) -> bool:
    """Whether ``value`` has the form of an id made by :func:`new_id` with this prefix."""
    return isinstance(value, str) and value.startswith(prefix + "_") and bool(_BODY.match(value[len(prefix) + 1 :]))
