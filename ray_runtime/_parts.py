"""Parts of a coordinator handle supplied from above it: ``coord.sessions`` is the sessions package's, yet every
handle has it, and the coordinator never imports that package.

A layer above (the package face) says how to make a part (:func:`supply`); a handle makes it on first use
(:func:`make`). Pure Python, no imports: the coordinator and whoever supplies its parts both sit above it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["make", "supply"]

_FACTORIES: dict[str, Callable[[Any], Any]] = {}


def supply(name: str, factory: Callable[[Any], Any]) -> None:
    """Every coordinator handle has ``name``, made by ``factory(handle)`` the first time it is read."""
    _FACTORIES[name] = factory


def make(name: str, handle: Any) -> Any:
    """The part ``name`` of ``handle``; ``AttributeError`` when nothing supplies it."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise AttributeError(f"{type(handle).__name__!r} object has no attribute {name!r}")
    return factory(handle)
