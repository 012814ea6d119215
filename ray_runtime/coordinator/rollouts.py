"""Agent Lightning 1.0 rollouts: each one a task of its tenant's ``agl.rollouts`` queue, with its protocol state.

The task carries what never changes (the input; the id, ``is_train``, config and metadata in its metadata) and its
status says where the rollout is (queued → ``queuing``, leased → ``running``, succeeded, and any other end →
``failed``). What the protocol changes besides (its status version, ``last_attempt_id``, ``k8s_job_name``, the error
message, where it stands in the order rollouts ended) is a record in the system store under the task's id, written
in the same change set. The rollout id the trainer chose is the task's idempotency key, so ids are per tenant.

Part of the coordinator's pure state (no Ray, no I/O). Finished rollouts are left alone by the queues' retention:
their trainer deletes them; :meth:`Rollouts.sweep` drops those nobody deleted after ``retention_s``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from ray_runtime._ids import new_id
from ray_runtime.checks import check_int, check_json, check_optional_text
from ray_runtime.coordinator.kv import SystemStore
from ray_runtime.coordinator.queues import NewTask, TaskQueues, TaskRecord
from ray_runtime.errors import ConflictError, InvalidArgumentError, NotFoundError
from ray_runtime.models.agl import DEFAULT_ATTEMPT, RolloutState, next_states
from ray_runtime.models.tasks import TaskStatus

__all__ = ["AGL_QUEUE", "NewRollout", "Rollouts", "rollout_state"]

AGL_QUEUE = "agl.rollouts"
_STATUS = "agl.rollout"  # system store: task id -> the protocol's mutable status
_ENDED = "agl.ended"  # system store: tenant -> how many of its rollouts have ended
_WORKER = "agl-controller"  # the worker a PATCH to running leases the task to
_PATCHABLE = ("state", "k8s_job_name", "last_attempt_id", "error_message")

_STATE_OF = {
    TaskStatus.QUEUED: RolloutState.QUEUING,
    TaskStatus.LEASED: RolloutState.RUNNING,
    TaskStatus.SUCCEEDED: RolloutState.SUCCEEDED,
}


def rollout_state(status: TaskStatus) -> RolloutState:
    """The rollout state a task status shows as (failed, cancelled and dead are all ``failed``)."""
    return _STATE_OF.get(status, RolloutState.FAILED)


NewRollout = tuple[str | None, str, str]  # (rollout id or None, input JSON, meta JSON: is_train, config, metadata)


class Rollouts:
    """Every tenant's AGL rollouts, over the task queues and the system store they share with the rest."""

    def __init__(
        self, tasks: TaskQueues, kv: SystemStore, *, clock: Callable[[], float], retention_s: float, max_lease_s: float
    ) -> None:
        self.tasks = tasks
        self.kv = kv
        self.clock = clock
        self.retention_s = retention_s
        self.max_lease_s = max_lease_s
        self._ended: dict[str, dict[int, str]] | None = None  # tenant -> end position -> task id (built on first use)

    # ------------------------------------------------------------------------------------------- calls

    def create(self, tenant: str, items: list[NewRollout]) -> list[dict[str, Any]]:
        """Add rollouts; one whose id the tenant already has is returned as it is (its events untouched)."""
        for position, (rollout_id, input_json, meta_json) in enumerate(items):
            check_optional_text(f"[{position}].rollout_id", rollout_id)
            check_json(f"[{position}].input", input_json, max_bytes=self.tasks.limits.max_payload_bytes)
            check_json(f"[{position}].meta", meta_json, max_bytes=self.tasks.limits.max_payload_bytes)
        created = []
        for rollout_id, input_json, meta_json in items:
            existing = self._find(tenant, rollout_id) if rollout_id else None
            if existing is not None:
                created.append(self._wire(existing))
                continue
            rollout_id = rollout_id or uuid.uuid4().hex
            meta = json.loads(meta_json)
            timeout = (meta.get("config") or {}).get("timeout_seconds", 3600)
            lease_s = max(1.0, min(float(timeout), self.max_lease_s))
            task = NewTask(new_id("task"), input_json, 0, 0.0, rollout_id, 1, lease_s, None, json.dumps(meta))
            [task_id] = self.tasks.enqueue(tenant, AGL_QUEUE, [task])
            self.kv.put(_STATUS, task_id, json.dumps({"version": 1, "updated_at": self.clock()}))
            created.append(self._wire(self.tasks.get(tenant, task_id)))
        return created

    def get(self, tenant: str, rollout_id: str) -> dict[str, Any]:
        """One rollout by the id its trainer knows it by."""
        return self._wire(self._record(tenant, rollout_id))

    def find(self, tenant: str, rollout_id: str) -> dict[str, Any] | None:
        """:meth:`get`, or None for an unknown id."""
        record = self._find(tenant, rollout_id)
        return None if record is None else self._wire(record)

    def list(self, tenant: str, states: list[str], limit: int) -> list[dict[str, Any]]:
        """Rollouts in any of ``states``, oldest first, at most ``limit``."""
        wanted = {RolloutState(state) for state in states}
        found: list[dict[str, Any]] = []
        if limit <= 0:
            return found
        for record in self.tasks.scan(tenant, AGL_QUEUE):
            if rollout_state(record.status) in wanted:
                found.append(self._wire(record))
                if len(found) >= limit:
                    break
        return found

    def ended(self, tenant: str, after: int, limit: int) -> dict[str, Any]:
        """Rollouts in the order they ended, from position ``after``: deleted ones keep their places."""
        after, limit = max(after, 0), max(limit, 1)
        total = self._ended_count(tenant)
        positions = range(after, min(after + limit, total)) if after < total else range(0)
        index = self._ended_index().get(tenant, {})
        items = []
        for position in positions:
            task_id = index.get(position)
            record = self.tasks.find(task_id) if task_id is not None else None
            if record is not None:
                meta = json.loads(record.metadata or "{}")
                items.append(
                    {
                        "rollout_id": record.idempotency_key,
                        "state": rollout_state(record.status).value,
                        "data_id": _data_id(json.loads(record.input)),
                        "is_train": meta.get("is_train", True),
                    }
                )
        return {"items": items, "next_after": after + len(positions), "total_terminal": total}

    def patch(self, tenant: str, rollout_id: str, changes_json: str) -> dict[str, Any]:
        """Change a rollout's status fields; a new state must be one its state may move to (else a conflict)."""
        record = self._record(tenant, rollout_id)
        changes = json.loads(changes_json)
        if not isinstance(changes, dict) or any(name not in _PATCHABLE for name in changes):
            raise InvalidArgumentError("status", f"may hold only {', '.join(_PATCHABLE)}")
        if not changes:
            return self._wire(record)
        status = self._status(record.id)
        if "state" in changes:
            current = rollout_state(record.status)
            wanted = changes["state"]
            if wanted not in [state.value for state in next_states(current)]:
                raise ConflictError(
                    f"Rollout {rollout_id}: cannot transition {current} -> {wanted}", rollout_id=rollout_id
                )
            status.update({k: v for k, v in changes.items() if k != "state"})
            self._move(tenant, record, RolloutState(wanted), changes.get("error_message", status.get("error_message")))
        else:
            status.update(changes)
        status["version"] = status.get("version", 1) + 1
        status["updated_at"] = self.clock()
        status["ended"] = self._status(record.id).get("ended")  # set by finished() if this move ended it
        self.kv.put(_STATUS, record.id, json.dumps(status))
        return self._wire(record)

    def delete(self, tenant: str, rollout_id: str) -> str | None:
        """Delete a rollout (nothing if there is none); returns the task id it had."""
        record = self._find(tenant, rollout_id)
        if record is None:
            return None
        self._drop(record)
        return record.id

    def claim(self, tenant: str, worker_id: str, max_rollouts: int) -> list[dict[str, Any]]:
        """Move up to ``max_rollouts`` queuing rollouts to running for a runner, oldest first, on attempt ``"0"``."""
        check_int("max_rollouts", max_rollouts, low=1, high=1000)
        claimed = []
        for record in list(self.tasks.scan(tenant, AGL_QUEUE)):
            if len(claimed) >= max_rollouts:
                break
            if record.status is TaskStatus.QUEUED and record.available_at <= self.clock():
                self.tasks.lease_task(tenant, record.id, worker_id, record.lease_s)
                status = self._status(record.id)
                status.update(version=status.get("version", 1) + 1, updated_at=self.clock())
                status["last_attempt_id"] = DEFAULT_ATTEMPT
                self.kv.put(_STATUS, record.id, json.dumps(status))
                claimed.append(self._wire(record))
        return claimed

    # ----------------------------------------------------------------------------------- housekeeping

    def finished(self, record: TaskRecord) -> None:
        """A rollout's task ended (by a PATCH, a runner, or its timeout): give it the next end position."""
        status = self._status(record.id)
        if status.get("ended") is not None:
            return
        position = self._ended_count(record.tenant)
        self.kv.put(_ENDED, record.tenant, json.dumps(position + 1))
        status["ended"] = position
        if record.status is TaskStatus.DEAD and status.get("error_message") is None:
            status["error_message"] = record.error  # its timeout ran out
        status["updated_at"] = self.clock()
        self.kv.put(_STATUS, record.id, json.dumps(status))
        self._ended_index().setdefault(record.tenant, {})[position] = record.id

    def sweep(self) -> list[tuple[str, str]]:
        """Delete ended rollouts nobody deleted within the retention; returns their (tenant, task id), whose events
        the caller drops from the event store."""
        horizon = self.clock() - self.retention_s
        doomed = [
            record
            for record in self.tasks.finished_in(AGL_QUEUE)
            if record.finished_at is not None and record.finished_at < horizon
        ]
        for record in doomed:
            self._drop(record)
        return [(record.tenant, record.id) for record in doomed]

    # ----------------------------------------------------------------------------------------- helpers

    def _find(self, tenant: str, rollout_id: str) -> TaskRecord | None:
        return self.tasks.keyed(tenant, AGL_QUEUE, rollout_id) if isinstance(rollout_id, str) else None

    def _record(self, tenant: str, rollout_id: str) -> TaskRecord:
        record = self._find(tenant, rollout_id)
        if record is None:
            raise NotFoundError(f"Rollout not found: {rollout_id}", rollout_id=rollout_id)
        return record

    def _status(self, task_id: str) -> dict[str, Any]:
        raw = self.kv.get(_STATUS, task_id)
        return json.loads(raw) if raw is not None else {"version": 1}

    def _move(self, tenant: str, record: TaskRecord, state: RolloutState, error: str | None) -> None:
        if state is RolloutState.RUNNING:
            self.tasks.lease_task(tenant, record.id, _WORKER, record.lease_s)
        elif state is RolloutState.SUCCEEDED:
            self.tasks.end(tenant, record.id, TaskStatus.SUCCEEDED, result="null")
        else:
            self.tasks.end(tenant, record.id, TaskStatus.FAILED, error=json.dumps(error or "failed"))

    def _drop(self, record: TaskRecord) -> None:
        status = self._status(record.id)
        self.tasks.remove(record.tenant, record.id)
        self.kv.delete(_STATUS, record.id)
        if status.get("ended") is not None:
            self._ended_index().get(record.tenant, {}).pop(status["ended"], None)

    def _ended_count(self, tenant: str) -> int:
        raw = self.kv.get(_ENDED, tenant)
        return int(json.loads(raw)) if raw is not None else 0

    def _ended_index(self) -> dict[str, dict[int, str]]:
        if self._ended is None:
            self._ended = {}
            for task_id, raw in self.kv.list(_STATUS):
                position = json.loads(raw).get("ended")
                record = self.tasks.find(task_id)
                if position is not None and record is not None:
                    self._ended.setdefault(record.tenant, {})[position] = task_id
        return self._ended

    def _wire(self, record: TaskRecord) -> dict[str, Any]:
        status = self._status(record.id)
        return {
            "rollout_id": record.idempotency_key,
            "task_id": record.id,
            "input": record.input,
            "meta": record.metadata,
            "status": {
                "state": rollout_state(record.status).value,
                "k8s_job_name": status.get("k8s_job_name"),
                "last_attempt_id": status.get("last_attempt_id"),
                "error_message": status.get("error_message"),
                "version": status.get("version", 1),
                "created_at": record.created_at,
                "updated_at": status.get("updated_at", record.created_at),
            },
        }


def _data_id(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("data_id") or value.get("instance_id") or "")
    return ""
