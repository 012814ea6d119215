"""Number types of the wire models: strict (``false`` or ``"3"`` is not a number) and finite."""

from __future__ import annotations

from typing import Annotated

from pydantic import AllowInfNan, Strict

__all__ = ["Integer", "Number"]

Number = Annotated[float, Strict(), AllowInfNan(False)]
"""A finite real number given as a JSON number (an integer is fine; a boolean or a string is not)."""

Integer = Annotated[int, Strict()]
"""An integer given as a JSON integer (not a boolean, a float or a string)."""
