"""API keys: ``rrk_<key id>_<secret>``. Only a SHA-256 of the secret is stored (the secret is 256 random bits, so a
slow hash adds nothing), compared in constant time. Records live in the coordinator's system store, namespace
``api_keys``, so every façade replica, Serve endpoint and the CLI see the same keys. Secrets are never logged.

A key acts for one tenant with a scope (``read`` < ``submit`` < ``admin``), and may carry two grants that only a
cluster admin gives: ``cluster_admin`` (sees what belongs to no tenant, sets tenant limits, grants) and
``run_code`` (submits arbitrary code: raw entrypoints, packages, runtime_envs, Serve import paths).
"""

from __future__ import annotations

import base64
import binascii
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

__all__ = [
    "KEYS_NAMESPACE",
    "Caller",
    "KeyStore",
    "Scope",
    "StoredKey",
    "credential",
    "new_key",
    "parse_key",
    "verify",
]

KEYS_NAMESPACE = "api_keys"


class StoredKey(ApiKey):
    """A key as stored: its record plus the SHA-256 of its secret (never the secret)."""

    secret_sha256: str = Field(repr=False)

    def info(self) -> ApiKey:
        return ApiKey.model_validate(self.model_dump(exclude={"secret_sha256"}))


class Caller(BaseModel):
    """Who is calling: the tenant acted for, the scope, the grants, and the key (None in dev mode)."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    scope: Scope
    key_id: str | None = None
    cluster_admin: bool = False
    run_code: bool = False

    def owns(self, owner: str | None) -> bool:
        """Whether an object of ``owner`` is visible to this caller: its own tenant's, or (for a cluster admin)
        one that belongs to no tenant (made outside the façade)."""
        return owner == self.tenant or (owner is None and self.cluster_admin)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key(
    tenant: str, scope: Scope, name: str = "", *, cluster_admin: bool = False, run_code: bool = False
) -> tuple[str, StoredKey]:
    """A fresh key: the full key string (shown once) and the record to store."""
    key_id = new_id("k")[2:].upper()[-12:]
    secret = secrets.token_urlsafe(32)
    record = StoredKey(
        key_id=key_id,
        tenant=tenant,
        scope=scope,
        name=name,
        created_at=time.time(),
        cluster_admin=cluster_admin,
        run_code=run_code,
        secret_sha256=_digest(secret),
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
    """API keys from the coordinator's system store (an awaitable ``SystemKV``), each lookup trusted for ``ttl_s``
    (0: always asked)."""

    def __init__(self, kv: Any, ttl_s: float) -> None:
        self._kv = kv
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
        return Caller(
            tenant=record.tenant,
            scope=record.scope,
            key_id=key_id,
            cluster_admin=record.cluster_admin,
            run_code=record.run_code,
        )

    def forget(self, key_id: str) -> None:
        if self._records is not None:
            self._records.pop(key_id, None)
        if self._any is not None:
            self._any.clear()


def credential(authorization: str | None) -> str | None:
    """The API key in an ``Authorization`` header (Bearer, or the password of Basic), or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    if scheme.lower() == "basic" and value:
        try:
            _, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthenticationError("malformed Basic credentials") from None
        return password or None
    raise AuthenticationError(
        "unsupported Authorization scheme; use 'Bearer <key>' (or Basic with the key as password)"
    )
