"""The rules for names, numbers and JSON that every way in shares: one validator per kind of value.

The coordinator's state applies them to every call (the driver API is an edge too, not only HTTP); the façade
uses the same patterns for its path parameters and request models, so a name the API accepts is always a name the
coordinator accepts. Each check raises :class:`InvalidArgumentError` (or :class:`PayloadTooLargeError`) naming
the field, and returns the value it checked.

Pure Python: no Ray, no FastAPI.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from itertools import accumulate

from ray_runtime.errors import InvalidArgumentError, PayloadTooLargeError

__all__ = [
    "ID",
    "KEY",
    "MAX_JSON_DEPTH",
    "NAME",
    "NameRule",
    "check_int",
    "check_json",
    "check_name",
    "check_number",
    "check_optional_text",
    "json_depth",
]


@dataclass(frozen=True)
class NameRule:
    """One kind of name: its pattern (also used in OpenAPI) and how to say it in an error."""

    pattern: str
    rule: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", re.compile(self.pattern))

    def matches(self, value: object) -> bool:
        return isinstance(value, str) and self._compiled.match(value) is not None  # type: ignore[attr-defined]

    def check(self, field: str, value: object) -> str:
        """``value`` if it is such a name, else ``InvalidArgumentError`` naming ``field``."""
        if not self.matches(value):
            raise InvalidArgumentError(field, f"must be {self.rule}; got {_shown(value)}")
        return value  # type: ignore[return-value]


NAME = NameRule(
    r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$",
    "1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit",
)
"""Tenants, queues, workers, plugins, actions: names people choose and read."""

ID = NameRule(
    r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,255}$",
    "1-256 letters, digits, '.', '_', ':', '@' or '-', starting with a letter or digit",
)
"""Ids that may come from elsewhere (Ray submission ids, run ids): what the public routes accept in a path."""

KEY = NameRule(r"^[\w.:@/+=-]{1,256}$", "1-256 characters of letters, digits and ._:@/+=-")
"""Namespaces and keys of the coordinator's system store."""

MAX_JSON_DEPTH = 64
"""How deeply JSON may nest (objects and arrays). Deeper data is refused where it enters, so every stored value
can be parsed and served back by every reader (Python's json, pydantic, browsers)."""


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def check_name(field: str, value: object) -> str:
    """A tenant, queue, worker, plugin or action name (:data:`NAME`)."""
    return NAME.check(field, value)


def check_number(field: str, value: object, *, low: float, high: float, low_open: bool = False) -> float:
    """A finite real number within ``[low, high]`` (``(low, high]`` with ``low_open``); booleans are not numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgumentError(field, f"must be a finite number; got {_shown(value)}")
    if value < low or value > high or (low_open and value == low):
        bound = f"> {low}" if low_open else f">= {low}"
        raise InvalidArgumentError(field, f"must be {bound} and <= {high}; got {value!r}")
    return value


def check_int(field: str, value: object, *, low: int, high: int) -> int:
    """An integer within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(field, f"must be an integer; got {_shown(value)}")
    check_number(field, value, low=low, high=high)
    return value


def check_optional_text(field: str, value: object, max_length: int = 256) -> str | None:
    """None, or a string of 1 to ``max_length`` characters."""
    if value is not None and (not isinstance(value, str) or not 0 < len(value) <= max_length):
        raise InvalidArgumentError(field, f"must be a string of 1-{max_length} characters; got {_shown(value)}")
    return value


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth(text: str) -> int:
    """How deeply the JSON ``text`` nests (0 for a scalar), read from its brackets without parsing it."""
    if text.count("[") + text.count("{") == 0:
        return 0
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def check_json(field: str, text: object, *, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> str:
    """JSON text no larger than ``max_bytes`` (UTF-8) and no deeper than ``max_depth``.

    The text is assumed to be JSON (the coordinator's handle and the façade produce it); only its size and
    nesting are checked here, cheaply: a text with fewer brackets than ``max_depth`` is never scanned.
    """
    if not isinstance(text, str):
        raise InvalidArgumentError(field, "must be JSON text")
    size = len(text) if text.isascii() else len(text.encode("utf-8"))
    if size > max_bytes:
        raise PayloadTooLargeError(field, size, max_bytes)
    if text.count("[") + text.count("{") > max_depth and json_depth(text) > max_depth:
        raise InvalidArgumentError(field, f"nests deeper than {max_depth} levels of objects and arrays")
    return text
