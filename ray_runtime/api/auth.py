"""Who is calling: the API key of a request (Bearer, or the HTTP Basic password), its tenant, and dev mode."""

from __future__ import annotations

from collections.abc import Mapping

from ray_runtime.checks import check_name
from ray_runtime.errors import AuthenticationError, PermissionDeniedError
from ray_runtime.keys import Caller, KeyStore, credential
from ray_runtime.models.api import TENANT_HEADER, Scope

__all__ = ["Authenticator"]


class Authenticator:
    """Turns request headers into a :class:`Caller`.

    Dev mode (no key exists at all, loopback only) lets every caller in as a cluster admin acting for tenant
    ``default`` (``X-Ray-Runtime-Tenant`` picks another); it ends for good the moment a key exists.
    """

    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys
        self.dev_mode = False

    async def start(self) -> None:
        self.dev_mode = not await self.keys.any_keys()

    async def authenticate(self, headers: Mapping[str, str]) -> Caller:
        """The caller of a request; ``X-Ray-Runtime-Tenant`` may only repeat the key's own tenant."""
        key = credential(headers.get("authorization"))
        asked = headers.get(TENANT_HEADER)
        if asked is not None:
            check_name(TENANT_HEADER, asked)
        if key is None:
            if self.dev_mode and not await self.keys.any_keys():
                return Caller(tenant=asked or "default", scope=Scope.ADMIN, cluster_admin=True, run_code=True)
            self.dev_mode = False
            raise AuthenticationError(
                "an API key is required: send 'Authorization: Bearer <key>', or, from a client that cannot send "
                "headers, the key as the HTTP Basic password (http://any:<key>@host:port/)"
            )
        caller = await self.keys.caller(key)
        if asked is not None and asked != caller.tenant:
            raise PermissionDeniedError(f"this key acts for tenant '{caller.tenant}', not '{asked}'")
        return caller
