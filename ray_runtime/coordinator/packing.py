"""How calls and answers cross into and out of the coordinator actor: one pickled ``bytes`` each way.

Ray moves one opaque buffer far faster than it serialises many arguments or nested results.
"""

from __future__ import annotations

import pickle
from typing import Any

__all__ = ["pack", "unpack"]


def pack(value: Any) -> bytes:
    """Encode call arguments or answers for the trip through Ray."""
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


unpack = pickle.loads
