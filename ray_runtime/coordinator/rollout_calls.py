"""The rollout calls of the coordinator's driver handle (``coord.rollouts``): Agent Lightning 1.0 rollouts, each a task
of the tenant's ``agl.rollouts`` queue (see ``coordinator.rollouts``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ray_runtime._twins import awaitable, blocking
from ray_runtime.coordinator.calls import Awaitable, Blocking, Call, Handle, to_json
from ray_runtime.coordinator.messages import (
    RolloutClaim,
    RolloutCreate,
    RolloutList,
    RolloutPatch,
    RolloutRef,
    RolloutsEnded,
)
from ray_runtime.models.agl import Rollout, RolloutMetadata, TerminalPage
from ray_runtime.models.agl import RolloutCreate as NewRollout

__all__ = ["AsyncRollouts", "RolloutCalls", "Rollouts", "StoredRollout", "parse_rollout"]


class StoredRollout(Rollout):
    """A rollout as the coordinator keeps it: the protocol's fields and the task that carries it."""

    task_id: str


def parse_rollout(wire: dict[str, Any]) -> StoredRollout:
    meta = json.loads(wire["meta"] or "{}")
    return StoredRollout.model_validate(
        {
            "rollout_id": wire["rollout_id"],
            "task_id": wire["task_id"],
            "input": json.loads(wire["input"]),
            "is_train": meta.get("is_train", True),
            "config": meta.get("config") or {},
            "metadata": meta.get("metadata") or {},
            "status": wire["status"],
        }
    )


def _parse_many(raw: list[dict[str, Any]]) -> list[StoredRollout]:
    return [parse_rollout(wire) for wire in raw]


def _new(item: NewRollout) -> tuple[str | None, str, str]:
    metadata = item.metadata
    if isinstance(metadata, Mapping):
        metadata = RolloutMetadata(**metadata)
    meta = {
        "is_train": item.is_train,
        "config": item.config.model_dump(mode="json") if item.config is not None else {},
        "metadata": (metadata or RolloutMetadata()).model_dump(mode="json"),
    }
    return item.rollout_id or None, to_json("input", item.input), json.dumps(meta)


class RolloutCalls(Handle):
    """Builders of the rollout calls."""

    def _create(self, items: Iterable[NewRollout]) -> Call[list[StoredRollout]]:
        """Add rollouts; an id the tenant already has returns that rollout unchanged."""
        return Call("rollout_create", RolloutCreate(self.tenant, [_new(item) for item in items]), _parse_many)

    def _get(self, rollout_id: str) -> Call[StoredRollout]:
        return Call("rollout_get", RolloutRef(self.tenant, rollout_id), parse_rollout)

    def _find(self, rollout_id: str) -> Call[StoredRollout | None]:
        """A rollout, or None if the tenant has none by that id."""
        return Call(
            "rollout_find", RolloutRef(self.tenant, rollout_id), lambda raw: None if raw is None else parse_rollout(raw)
        )

    def _list(self, states: Iterable[str], limit: int = 500) -> Call[list[StoredRollout]]:
        """Rollouts in any of ``states``, oldest first."""
        return Call("rollout_list", RolloutList(self.tenant, [str(s) for s in states], limit), _parse_many)

    def _ended(self, after: int = 0, limit: int = 1000) -> Call[TerminalPage]:
        """Ended rollouts in the order they ended, from position ``after``."""
        return Call("rollouts_ended", RolloutsEnded(self.tenant, after, limit), TerminalPage.model_validate)

    def _patch(self, rollout_id: str, changes: Mapping[str, Any]) -> Call[StoredRollout]:
        """Set status fields (``state``, ``last_attempt_id``, ``k8s_job_name``, ``error_message``)."""
        return Call("rollout_patch", RolloutPatch(self.tenant, rollout_id, json.dumps(dict(changes))), parse_rollout)

    def _delete(self, rollout_id: str) -> Call[str | None]:
        """Delete a rollout if there is one; returns the id of the task it was."""
        return Call("rollout_delete", RolloutRef(self.tenant, rollout_id), lambda task_id: task_id)

    def _claim(self, worker_id: str, max_rollouts: int = 1) -> Call[list[StoredRollout]]:
        """Move queuing rollouts to running for a runner, oldest first."""
        return Call("rollout_claim", RolloutClaim(self.tenant, worker_id, max_rollouts), _parse_many)


class Rollouts(RolloutCalls, Blocking):
    """Agent Lightning rollouts (blocking); ``coord.rollouts``."""

    create = blocking(RolloutCalls._create)
    get = blocking(RolloutCalls._get)
    find = blocking(RolloutCalls._find)
    list = blocking(RolloutCalls._list)
    ended = blocking(RolloutCalls._ended)
    patch = blocking(RolloutCalls._patch)
    delete = blocking(RolloutCalls._delete)
    claim = blocking(RolloutCalls._claim)


class AsyncRollouts(RolloutCalls, Awaitable):
    """Agent Lightning rollouts (awaitable); ``coord.aio.rollouts``."""

    create = awaitable(RolloutCalls._create)
    get = awaitable(RolloutCalls._get)
    find = awaitable(RolloutCalls._find)
    list = awaitable(RolloutCalls._list)
    ended = awaitable(RolloutCalls._ended)
    patch = awaitable(RolloutCalls._patch)
    delete = awaitable(RolloutCalls._delete)
    claim = awaitable(RolloutCalls._claim)
