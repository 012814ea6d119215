"""The coordinator's system key-value store: the façade's own records (API keys, ownership), not tenant-scoped.

Part of the coordinator's pure state (no Ray, no I/O); :class:`CoordinatorState` composes it with the others.
"""

from __future__ import annotations

from collections.abc import Iterable

from ray_runtime.checks import KEY, check_json

__all__ = ["SystemStore"]


class SystemStore:
    """JSON values under (namespace, key)."""

    def __init__(self, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: dict[tuple[str, str], str] = {}
        self._changed: dict[tuple[str, str], str | None] = {}

    def put(self, namespace: str, key: str, value: str, *, if_absent: bool = False) -> bool:
        """Store ``value`` (JSON text); with ``if_absent``, only if none is there. Returns whether it was written."""
        KEY.check("namespace", namespace)
        KEY.check("key", key)
        check_json("value", value, max_bytes=self.max_bytes)
        if if_absent and (namespace, key) in self._items:
            return False
        self._items[(namespace, key)] = value
        self._changed[(namespace, key)] = value
        return True

    def get(self, namespace: str, key: str) -> str | None:
        """The value under ``namespace``/``key``, or None."""
        return self._items.get((namespace, key))

    def delete(self, namespace: str, key: str) -> bool:
        """Remove ``namespace``/``key``; returns whether it was there."""
        if self._items.pop((namespace, key), None) is None:
            return False
        self._changed[(namespace, key)] = None
        return True

    def list(self, namespace: str, prefix: str = "") -> list[tuple[str, str]]:
        """(key, value) pairs of a namespace whose keys start with ``prefix``, sorted by key."""
        return sorted((k, v) for (ns, k), v in self._items.items() if ns == namespace and k.startswith(prefix))

    def load(self, items: Iterable[tuple[str, str, str]]) -> None:
        """Rebuild from the journal."""
        for namespace, key, value in items:
            self._items[(namespace, key)] = value

    def has_changes(self) -> bool:
        return bool(self._changed)

    def take_changes(self) -> list[tuple[str, str, str | None]]:
        """(namespace, key, value) written since the last call; None for deleted keys."""
        changed, self._changed = self._changed, {}
        return [(namespace, key, value) for (namespace, key), value in changed.items()]
