"""The messages that cross Ray between drivers and the coordinator actor: one named tuple per call, defined here
once and imported by both sides (the builders in ``*_calls`` make them, the actor's methods read them).

Payloads (inputs, results, metadata, configs) travel as JSON text, which the actor stores as it is. A message
travels as its fields, pickled as one buffer (``packing``), and is read back as its named tuple (``packing.read``,
which checks its arity), so it costs what the positional tuple it replaced cost, while every field is named where
the message is made and where it is read.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ray_runtime.coordinator.queues import NewTask

__all__ = [
    "POLL_GROUP",
    "AddResources",
    "Claim",
    "Complete",
    "CompleteAndClaim",
    "CompleteMany",
    "CompleteManyAndClaim",
    "Completion",
    "Enqueue",
    "Fail",
    "Heartbeat",
    "Info",
    "KvKey",
    "KvList",
    "KvPut",
    "NewTask",
    "Query",
    "QueueRef",
    "ResourcesHistory",
    "ResourcesRef",
    "RunFinish",
    "RunList",
    "RunProgress",
    "RunRef",
    "RunStart",
    "SessionCheckpoint",
    "SessionClosed",
    "SessionCreate",
    "SessionFailed",
    "SessionImport",
    "SessionList",
    "SessionOpened",
    "SessionRef",
    "SessionReport",
    "SessionRest",
    "SessionResume",
    "SessionSnapshot",
    "TaskRef",
    "TenantRef",
    "Wait",
    "WaitResources",
]

POLL_GROUP = "poll"  # the actor's concurrency group for calls that may sleep (long polls, waits)


class Info(NamedTuple):
    """``info``: who the coordinator is and how its last start went."""


class TenantRef(NamedTuple):
    """Calls about a tenant as a whole: ``queues``, ``workers``, ``latest_resources``, ``session_counts``."""

    tenant: str


# ------------------------------------------------------------------------------------------- queues


class Enqueue(NamedTuple):
    tenant: str
    queue: str
    tasks: list[NewTask]


class Claim(NamedTuple):
    tenant: str
    queue: str
    worker_id: str
    max_tasks: int
    lease_s: float | None
    wait_s: float
    node_id: str | None
    request_id: str


class Heartbeat(NamedTuple):
    tenant: str
    attempt_id: str
    extend_s: float | None


class Complete(NamedTuple):
    tenant: str
    attempt_id: str
    result: str  # JSON
    request_id: str


Completion = tuple[str, str, str]
"""One result of a batch: (attempt id, result as JSON, the pair's own request id); a plain tuple, as a batch
carries hundreds of them."""


class CompleteMany(NamedTuple):
    tenant: str
    items: list[Completion]


class CompleteManyAndClaim(NamedTuple):
    tenant: str
    items: list[Completion]
    queue: str
    worker_id: str
    max_tasks: int
    lease_s: float | None
    node_id: str | None
    claim_id: str


class CompleteAndClaim(NamedTuple):
    tenant: str
    attempt_id: str
    result: str  # JSON
    request_id: str
    queue: str
    worker_id: str
    max_tasks: int
    lease_s: float | None
    wait_s: float
    node_id: str | None
    claim_id: str


class Fail(NamedTuple):
    tenant: str
    attempt_id: str
    error: str  # a TaskError as JSON
    retryable: bool
    request_id: str


class TaskRef(NamedTuple):
    """``get``, ``cancel``, ``retry``."""

    tenant: str
    task_id: str


class QueueRef(NamedTuple):
    """``stats``, ``purge``."""

    tenant: str
    queue: str


class Query(NamedTuple):
    tenant: str
    queue: str | None
    status: str | None
    limit: int
    cursor: str | None
    resources_id: str | None


class Wait(NamedTuple):
    tenant: str
    task_ids: list[str]
    timeout_s: float
    first: bool


# ---------------------------------------------------------------------------------------- resources


class AddResources(NamedTuple):
    tenant: str
    body: str  # the named resources as JSON
    merge: bool  # onto the latest version (update) rather than replacing it (add)
    replace_prefix: str = ""  # merging: the latest version's names with this prefix are dropped first


class WaitResources(NamedTuple):
    tenant: str
    after_version: int
    timeout_s: float


class ResourcesRef(NamedTuple):
    tenant: str
    resources_id: str


class ResourcesHistory(NamedTuple):
    tenant: str
    limit: int


# --------------------------------------------------------------------------------------------- runs


class RunStart(NamedTuple):
    tenant: str
    run_id: str
    plugin: str
    action: str
    params: str  # JSON
    metadata: str | None


class RunProgress(NamedTuple):
    tenant: str
    run_id: str
    done: float
    total: float | None
    message: str


class RunFinish(NamedTuple):
    tenant: str
    run_id: str
    result: str | None  # JSON
    error: str | None  # a TaskError as JSON


class RunRef(NamedTuple):
    """``run_get``, ``run_find``."""

    tenant: str
    run_id: str


class RunList(NamedTuple):
    tenant: str
    plugin: str | None
    limit: int


# ------------------------------------------------------------------------------------- system store


class KvPut(NamedTuple):
    namespace: str
    key: str
    value: str  # JSON
    if_absent: bool


class KvKey(NamedTuple):
    """``kv_get``, ``kv_delete``."""

    namespace: str
    key: str


class KvList(NamedTuple):
    namespace: str
    prefix: str


# ----------------------------------------------------------------------------------------- rollouts


class RolloutCreate(NamedTuple):
    tenant: str
    items: list[tuple[str | None, str, str]]  # (rollout id or None, input JSON, meta JSON)


class RolloutRef(NamedTuple):
    """``rollout_get``, ``rollout_find``, ``rollout_delete``."""

    tenant: str
    rollout_id: str


class RolloutList(NamedTuple):
    tenant: str
    states: list[str]
    limit: int


class RolloutsEnded(NamedTuple):
    tenant: str
    after: int
    limit: int


class RolloutPatch(NamedTuple):
    tenant: str
    rollout_id: str
    changes: str  # JSON: the status fields the caller set


class RolloutClaim(NamedTuple):
    tenant: str
    worker_id: str
    max_rollouts: int


# ----------------------------------------------------------------------------------------- sessions


class SessionCreate(NamedTuple):
    tenant: str
    session_id: str
    template: str
    version: str
    options: dict[str, Any]  # the template's session options, with its package and what its host asks
    config: str  # JSON
    metadata: str | None
    parent_id: str | None


class SessionImport(NamedTuple):
    tenant: str
    template: str
    version: str
    options: dict[str, Any]
    items: list[tuple[str, str, str | None]]  # (session id, config JSON, metadata JSON)


class SessionResume(NamedTuple):
    tenant: str
    session_id: str
    explicit: bool  # an explicit resume may bring back a paused session; a turn only an inactive one
    options: dict[str, Any]


class SessionOpened(NamedTuple):
    tenant: str
    session_id: str
    host: str
    cause: str


class SessionRef(NamedTuple):
    """``session_get``, ``session_abort``, ``session_refresh``, ``session_transcript``."""

    tenant: str
    session_id: str


class SessionFailed(NamedTuple):
    tenant: str
    session_id: str
    reason: str


class SessionRest(NamedTuple):
    tenant: str
    session_id: str
    status: str  # paused or inactive
    snapshot: bytes | None
    seq: int
    cause: str


class SessionCheckpoint(NamedTuple):
    tenant: str
    session_id: str
    snapshot: bytes
    seq: int


class SessionClosed(NamedTuple):
    tenant: str
    session_id: str
    cause: str


class SessionReport(NamedTuple):
    """A host's batch: counters per session, and transcript turns."""

    tenant: str
    reports: list[tuple[str, int, int, float, int]]  # (session id, invocations, tokens, last activity, seq)
    turns: list[tuple[str, str]]  # (session id, a TurnRecord as JSON)


class SessionList(NamedTuple):
    tenant: str
    status: str | None
    template: str | None
    metadata: dict[str, Any] | None
    limit: int
    cursor: str | None


class SessionSnapshot(NamedTuple):
    tenant: str
    session_id: str
    key: str
