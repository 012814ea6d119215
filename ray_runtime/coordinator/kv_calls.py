"""The system store's calls (``coord.kv``): JSON values by namespace and key, not tenant-scoped, for the façade's
own records (API keys, tenant limits, Serve application owners)."""

from __future__ import annotations

import json
from typing import Any

from ray_runtime._twins import awaitable, blocking
from ray_runtime.coordinator.calls import Awaitable, Blocking, Call, Handle, from_json, to_json
from ray_runtime.coordinator.messages import KvKey, KvList, KvPut

__all__ = ["AsyncSystemKV", "KVCalls", "SystemKV"]


class KVCalls(Handle):
    """Builders of the system key-value calls (JSON values; not tenant-scoped: for the façade's own records)."""

    def _put(self, namespace: str, key: str, value: Any, *, if_absent: bool = False) -> Call[bool]:
        """Store a JSON value; with ``if_absent`` only when the key is free. Returns whether it was written."""
        return Call("kv_put", KvPut(namespace, key, to_json("value", value), if_absent), bool)

    def _get(self, namespace: str, key: str) -> Call[Any]:
        """The value, or None."""
        return Call("kv_get", KvKey(namespace, key), from_json)

    def _delete(self, namespace: str, key: str) -> Call[bool]:
        """Remove a key; returns whether it was there."""
        return Call("kv_delete", KvKey(namespace, key), bool)

    def _items(self, namespace: str, prefix: str = "") -> Call[dict[str, Any]]:
        """The namespace's keys starting with ``prefix`` and their values."""
        return Call("kv_list", KvList(namespace, prefix), lambda raw: {key: json.loads(value) for key, value in raw})


class SystemKV(KVCalls, Blocking):
    """The coordinator's system key-value store (blocking); ``coord.kv``."""

    put = blocking(KVCalls._put)
    get = blocking(KVCalls._get)
    delete = blocking(KVCalls._delete)
    items = blocking(KVCalls._items)


class AsyncSystemKV(KVCalls, Awaitable):
    """The coordinator's system key-value store (awaitable); ``coord.aio.kv``."""

    put = awaitable(KVCalls._put)
    get = awaitable(KVCalls._get)
    delete = awaitable(KVCalls._delete)
    items = awaitable(KVCalls._items)
