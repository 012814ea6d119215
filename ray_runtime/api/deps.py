"""Request dependencies: the services, the authenticated caller, and scope checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated

from fastapi import Depends, Path, Request

from ray_runtime.api.services import Services
from ray_runtime.checks import ID
from ray_runtime.errors import PermissionDeniedError
from ray_runtime.keys import Caller
from ray_runtime.models.api import Scope

__all__ = [
    "Admin",
    "ClusterAdmin",
    "CodeRunner",
    "ItemId",
    "Reader",
    "ServicesDep",
    "SubmissionId",
    "Submitter",
    "admitted",
    "authenticated",
    "require",
]

SubmissionId = Annotated[str, Path(pattern=ID.pattern, description="A Ray submission (or job) id.")]
ItemId = Annotated[str, Path(pattern=ID.pattern, description="An id or name.")]


def services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(services)]


async def admitted(request: Request, headers: Mapping[str, str]) -> Caller:
    """The caller these headers name, kept on the request for the audit log, within its tenant's request rate."""
    services = request.app.state.services
    caller = await services.auth.authenticate(headers)
    request.state.caller = caller
    await services.limiter.admit(caller.tenant)
    return caller


async def authenticated(request: Request) -> Caller:
    """The caller of a request."""
    return await admitted(request, request.headers)


def require(scope: Scope, who: Callable[..., Awaitable[Caller]] = authenticated) -> Callable[..., Awaitable[Caller]]:
    """A dependency that lets the call through only with at least ``scope`` (``who`` tells the caller)."""

    async def check(caller: Caller = Depends(who)) -> Caller:  # a default: ``who`` is local, unseen by annotations
        if not caller.scope.allows(scope):
            raise PermissionDeniedError(f"this needs a key with scope '{scope.value}' (yours: '{caller.scope.value}')")
        return caller

    return check


async def _code_runner(caller: Annotated[Caller, Depends(require(Scope.SUBMIT))]) -> Caller:
    if not caller.run_code:
        raise PermissionDeniedError(
            "running arbitrary code (raw entrypoints, packages, runtime_envs, import paths) needs a key a cluster "
            "admin granted run_code; submit an installed plugin instead"
        )
    return caller


async def _cluster_admin(caller: Annotated[Caller, Depends(authenticated)]) -> Caller:
    if not caller.cluster_admin:
        raise PermissionDeniedError("this needs a cluster admin's key")
    return caller


Reader = Annotated[Caller, Depends(require(Scope.READ))]
Submitter = Annotated[Caller, Depends(require(Scope.SUBMIT))]
Admin = Annotated[Caller, Depends(require(Scope.ADMIN))]
CodeRunner = Annotated[Caller, Depends(_code_runner)]
"""A submitter whose key was granted ``run_code``."""
ClusterAdmin = Annotated[Caller, Depends(_cluster_admin)]
