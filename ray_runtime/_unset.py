"""``UNSET``: an argument left out, to mean "use the default", where ``None`` already means "no limit"."""

from __future__ import annotations

__all__ = ["UNSET", "Unset"]


class Unset:
    """The type of :data:`UNSET`: "not given, use the default".

    Not ``None``, because ``None`` means "no limit" in ray_runtime's API (a timeout that never ends, a session that
    never idles out), while an argument left out means "whatever the server or the template says".
    """

    _instance: Unset | None = None

    def __new__(cls) -> Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "UNSET"  # pickles as a reference to the module's one instance, through Ray too


UNSET = Unset()
