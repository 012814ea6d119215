"""API keys: ``rrk_<key id>_<secret>``. Only a SHA-256 of the secret is stored (the secret is 256 random bits, so a
slow hash adds nothing), compared in constant time. Records live in the coordinator's system store, namespace
``api_keys``, so every façade replica and the CLI see the same keys. Secrets are never logged or stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

from cachetools import TTLCache
from pydantic import BaseModel, ConfigDict, Field

from ray_runtime._ids import new_id
from ray_runtime.errors import AuthenticationError
from ray_runtime.models.api import ApiKey, Scope

__all__ = ["KEYS_NAMESPACE", "Caller", "KeyStore", "Scope", "StoredKey", "new_key", "parse_key", "verify"]

KEYS_NAMESPACE = "api_keys"


class StoredKey(ApiKey):
    """A key as stored: its record plus the SHA-256 of its secret (never the secret)."""

    secret_sha256: str = Field(repr=False)

    def info(self) -> ApiKey:
        return ApiKey.model_validate(self.model_dump(exclude={"secret_sha256"}))


class Caller(BaseModel):
    """Who is calling: the tenant acted for, the scope, and the key (None in dev mode)."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    scope: Scope
    key_id: str | None = None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key(tenant: str, scope: Scope, name: str = "") -> tuple[str, StoredKey]:
    """A fresh key: the full key string (shown once) and the record to store."""
    key_id = new_id("k")[2:].upper()[-12:]
    secret = secrets.token_urlsafe(32)
    record = StoredKey(
        key_id=key_id, tenant=tenant, scope=scope, name=name, created_at=time.time(), secret_sha256=_digest(secret)
    )
    return f"rrk_{key_id}_{secret}", record


def parse_key(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "rrk" or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def verify(record: StoredKey | None, secret: str) -> bool:
    """Whether ``secret`` belongs to this live key (constant-time comparison)."""
    if record is None or record.revoked_at is not None:
        hmac.compare_digest(_digest(secret), _digest("x"))  # same work either way
        return False
    return hmac.compare_digest(_digest(secret), record.secret_sha256)


class KeyStore:
    """API keys from the coordinator's system store, each lookup trusted for ``ttl_s`` (0: always asked)."""

    def __init__(self, coordinator: Any, ttl_s: float) -> None:
        self._kv = coordinator.kv
        self._records: TTLCache[str, StoredKey | None] | None = TTLCache(100_000, ttl_s) if ttl_s > 0 else None
        self._any: TTLCache[str, bool] | None = TTLCache(1, ttl_s) if ttl_s > 0 else None

    async def any_keys(self) -> bool:
        """Whether any live key exists (no keys: dev mode, on loopback only)."""
        answer = self._any.get("any") if self._any is not None else None
        if answer is None:
            records = await self._kv.items(KEYS_NAMESPACE)
            answer = any(record.get("revoked_at") is None for record in records.values())
            if self._any is not None:
                self._any["any"] = answer
        return answer

    async def record(self, key_id: str) -> StoredKey | None:
        """The stored record of a key id (cached), or None."""
        if self._records is not None and key_id in self._records:
            return self._records[key_id]
        raw = await self._kv.get(KEYS_NAMESPACE, key_id)
        record = StoredKey.model_validate(raw) if raw is not None else None
        if self._records is not None:
            self._records[key_id] = record
        return record

    async def caller(self, key: str) -> Caller:
        """The caller a key stands for; ``AuthenticationError`` for an unknown, malformed or revoked key."""
        parsed = parse_key(key)
        if parsed is None:
            raise AuthenticationError("malformed API key; keys look like rrk_<id>_<secret>")
        key_id, secret = parsed
        record = await self.record(key_id)
        if not verify(record, secret):
            raise AuthenticationError("unknown or revoked API key")
        return Caller(tenant=record.tenant, scope=record.scope, key_id=key_id)

    def forget(self, key_id: str) -> None:
        if self._records is not None:
            self._records.pop(key_id, None)
        if self._any is not None:
            self._any.clear()
