"""The resources calls of the coordinator's driver handle (``coord.resources``): add, update, get, latest,
wait_newer, history; versions are immutable, so the ones seen are kept in a small cache and ``get`` of one is
answered here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cachetools import LRUCache
from pydantic import ValidationError as PydanticValidationError

from ray_runtime._twins import awaitable, blocking
from ray_runtime.coordinator.calls import Awaitable, Blocking, Call, Handle
from ray_runtime.coordinator.messages import AddResources, ResourcesHistory, ResourcesRef, TenantRef, WaitResources
from ray_runtime.errors import ValidationError
from ray_runtime.models import NamedResources, ResourcesUpdate, named_resources_adapter
from ray_runtime.models.resources import RESOURCE_TYPES

__all__ = ["AsyncResources", "ResourceCalls", "Resources"]

_RESOURCE_CACHE_SIZE = 64


def _resources_update(wire: dict[str, Any]) -> ResourcesUpdate:
    return ResourcesUpdate(
        resources_id=wire["resources_id"],
        version=wire["version"],
        created_at=wire["created_at"],
        resources=named_resources_adapter.validate_json(wire["body"]),
    )


class ResourceCalls(Handle):
    """Builders of the resources calls, with a cache of versions (they are immutable)."""

    def __init__(self, actor: Any, **options: Any) -> None:
        super().__init__(actor, **options)
        self._cache: LRUCache[str, ResourcesUpdate] = LRUCache(maxsize=_RESOURCE_CACHE_SIZE)

    def _remember(self, wire: dict[str, Any]) -> ResourcesUpdate:
        update = self._cache.get(wire["resources_id"]) or _resources_update(wire)
        self._cache[update.resources_id] = update
        return update

    def _body(self, named: Mapping[str, Any]) -> str:
        try:
            return named_resources_adapter.dump_json(named_resources_adapter.validate_python(dict(named))).decode()
        except PydanticValidationError as exc:
            raise ValidationError.from_pydantic("resources", exc, tags=RESOURCE_TYPES) from None

    def _add(self, named: NamedResources | Mapping[str, Any]) -> Call[ResourcesUpdate]:
        """Publish a new immutable version made of exactly these named resources; it becomes the latest.

        Example:
            >>> coord.resources.add({"llm": LLM(endpoint="http://vllm:8000/v1", model="qwen"),
            ...                      "prompt": PromptTemplate(template="Solve: {question}")})
        """
        return Call("add_resources", AddResources(self.tenant, self._body(named), False), self._remember)

    def _update(self, named: NamedResources | Mapping[str, Any], *, replace_prefix: str = "") -> Call[ResourcesUpdate]:
        """Publish a new version: the latest one with these names added or replaced (atomic on the actor).

        With ``replace_prefix`` the latest version's names that start with it go first, so ``named`` becomes the
        whole of that family (e.g. the ``agl/`` endpoints registered through Agent Lightning's routes).
        """
        message = AddResources(self.tenant, self._body(named), True, replace_prefix)
        return Call("add_resources", message, self._remember)

    def _get(self, resources_id: str) -> Call[ResourcesUpdate]:
        """One version by id (served from a local cache when seen before)."""
        cached = self._cache.get(resources_id)
        if cached is not None:
            return Call(None, None, lambda _: cached)
        return Call("get_resources", ResourcesRef(self.tenant, resources_id), self._remember)

    def _latest(self) -> Call[ResourcesUpdate]:
        """The newest version."""
        return Call("latest_resources", TenantRef(self.tenant), self._remember)

    def _wait_newer(self, after_version: int = 0, *, timeout_s: float = 30.0) -> Call[ResourcesUpdate | None]:
        """Wait until a version newer than ``after_version`` is published; it, or None after ``timeout_s``."""
        return Call(
            "wait_resources",
            WaitResources(self.tenant, after_version, timeout_s),
            lambda raw: None if raw is None else self._remember(raw),
            sleeps_s=max(timeout_s, 0.001),
        )

    def _history(self, limit: int = 100) -> Call[list[ResourcesUpdate]]:
        """Kept versions, newest first."""
        return Call(
            "resources_history", ResourcesHistory(self.tenant, limit), lambda raw: [self._remember(w) for w in raw]
        )


class Resources(ResourceCalls, Blocking):
    """Versioned named resources of one tenant (blocking); reach it as ``coord.resources``."""

    add = blocking(ResourceCalls._add)
    update = blocking(ResourceCalls._update)
    get = blocking(ResourceCalls._get)
    latest = blocking(ResourceCalls._latest)
    history = blocking(ResourceCalls._history)
    wait_newer = blocking(ResourceCalls._wait_newer)


class AsyncResources(ResourceCalls, Awaitable):
    """Versioned named resources of one tenant (awaitable); reach it as ``coord.aio.resources``."""

    add = awaitable(ResourceCalls._add)
    update = awaitable(ResourceCalls._update)
    get = awaitable(ResourceCalls._get)
    latest = awaitable(ResourceCalls._latest)
    history = awaitable(ResourceCalls._history)
    wait_newer = awaitable(ResourceCalls._wait_newer)
