"""Setting environment variables for a while, then putting back what was there."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

__all__ = ["environ"]


@contextmanager
def environ(values: Mapping[str, str], *, restore: Iterable[str] = ()) -> Iterator[None]:
    """Set ``values`` in ``os.environ``; on exit, restore those and the ``restore`` names to what they were (unset
    ones unset again), e.g. variables that something called inside sets."""
    saved = {name: os.environ.get(name) for name in {*values, *restore}}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
