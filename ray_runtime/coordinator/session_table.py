"""The registry of agent sessions: who owns each, where it runs, its status and how it got there, its counters, its
latest checkpoint and its transcript. The running agents live in session hosts (``ray_runtime.sessions``); this is
the durable record of them, journaled like the queues.

Part of the coordinator's pure state (no Ray, no I/O); :class:`CoordinatorState` composes it with the others.

A session's life (``SessionStatus``)::

    create ─► CREATING ─opened─► ACTIVE ─pause──────────► PAUSED ──resume─┐
                 │                 │  ├─idle (unload) / host died, recoverable ─► INACTIVE ─next turn─┤
                 └─abort (bad      │  └─idle (close) / lifetime / close ─► CLOSED                    │
                   config): gone   └─host died, nothing to recover ─► ERROR            ACTIVE ◄──opened┘

Any status but CLOSED can be closed. Counters, last activity and transcript turns arrive in batches from hosts.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ray_runtime._ids import is_id
from ray_runtime.checks import NAME, check_int, check_json, check_name
from ray_runtime.errors import (
    ConflictError,
    InvalidArgumentError,
    RateLimitError,
    SessionClosedError,
    SessionNotFoundError,
)
from ray_runtime.models.sessions import SessionStatus

__all__ = ["SessionRecord", "SessionTable"]

CREATING, ACTIVE, PAUSED, INACTIVE, CLOSED, ERROR = (
    SessionStatus.CREATING,
    SessionStatus.ACTIVE,
    SessionStatus.PAUSED,
    SessionStatus.INACTIVE,
    SessionStatus.CLOSED,
    SessionStatus.ERROR,
)
TRANSITIONS_KEPT = 50
TURNS_KEPT = 500
MAX_LISTING = 1000
_DUE_AGAIN_S = 30.0  # a due unload or close not done by then is handed out again
_ON_HOST = frozenset({CREATING, ACTIVE})


@dataclass(slots=True, eq=False)
class SessionRecord:
    """One session; payloads (config, metadata) stay JSON text."""

    id: str
    tenant: str
    template: str
    version: str
    status: SessionStatus
    isolation: str
    config: str
    metadata: str | None
    created_at: float
    last_activity_at: float
    expires_at: float | None
    idle_timeout_s: float | None
    on_idle: str
    recover: str
    invocations: int = 0
    tokens: int = 0
    seq: int = 0  # the highest protocol seq its host reported
    host: str | None = None
    checkpoint: dict[str, Any] | None = None  # {"key", "bytes", "at", "seq"}
    error: str | None = None
    parent_id: str | None = None  # the session it was forked from
    closed_at: float | None = None
    transitions: list[list[Any]] = field(default_factory=list)  # [at, to, cause]
    waiting_for: str | None = None  # while CREATING: what it waits for (its host to be placed)
    due_at: float = 0.0  # when a due unload/close was last handed out (not journaled)

    def wire(self) -> dict[str, Any]:
        """The fields of ``models.Session`` (payloads still JSON text)."""
        checkpoint = self.checkpoint or {}
        return {
            "id": self.id,
            "tenant": self.tenant,
            "template": self.template,
            "version": self.version,
            "status": self.status.value,
            "isolation": self.isolation,
            "config": self.config,
            "metadata": self.metadata,
            "created_at": self.created_at,
            "last_activity_at": self.last_activity_at,
            "expires_at": self.expires_at,
            "idle_timeout_s": self.idle_timeout_s,
            "invocations": self.invocations,
            "tokens": self.tokens,
            "host": self.host,
            "checkpoint_key": checkpoint.get("key"),
            "checkpoint_at": checkpoint.get("at"),
            "checkpoint_bytes": checkpoint.get("bytes"),
            "error": self.error,
            "parent_id": self.parent_id,
            "waiting_for": self.waiting_for,
            "transitions": [{"at": at, "to": to, "cause": cause} for at, to, cause in self.transitions],
        }

    def row(self) -> tuple[str, str, str]:
        """The journal row: id, tenant and the record as JSON."""
        data = {name: getattr(self, name) for name in self.__slots__ if name != "due_at"}  # type: ignore[attr-defined]
        data["status"] = self.status.value
        return self.id, self.tenant, json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_row(cls, data: str) -> SessionRecord:
        fields = json.loads(data)
        fields["status"] = SessionStatus(fields["status"])
        return cls(**fields)


class SessionTable:
    """Every tenant's sessions.

    Args:
        max_bytes: Cap on a config, metadata or transcript turn as JSON.
        retention_s: How long a closed session (and its snapshots) is kept.
        clock: Wall-clock seconds.
        max_sessions: The tenant's limit of sessions not closed (None: no limit).
    """

    def __init__(
        self,
        *,
        max_bytes: int,
        retention_s: float,
        clock: Callable[[], float],
        max_sessions: Callable[[str], int | None] = lambda tenant: None,
    ) -> None:
        self.max_bytes = max_bytes
        self.retention_s = retention_s
        self.clock = clock
        self.max_sessions = max_sessions
        self._sessions: dict[str, SessionRecord] = {}
        self._by_tenant: dict[str, list[SessionRecord]] = {}  # creation order, for listings
        self._open: Counter[str] = Counter()  # sessions not closed, per tenant
        self._turns: dict[str, deque[str]] = {}
        self._changed: dict[str, SessionRecord] = {}
        self._deleted: list[str] = []
        self._new_turns: list[tuple[str, str]] = []

    # ---------------------------------------------------------------------------------------------- create

    def create(
        self,
        tenant: str,
        session_id: str,
        template: str,
        version: str,
        *,
        isolation: str,
        config: str,
        metadata: str | None,
        idle_timeout_s: float | None,
        max_lifetime_s: float | None,
        on_idle: str,
        recover: str,
        parent_id: str | None = None,
    ) -> SessionRecord:
        """Record a new session (CREATING); the same id again returns the existing record unchanged."""
        check_name("tenant", tenant)
        if not is_id(session_id, "ses"):
            raise InvalidArgumentError("session_id", f"is not a session id: {session_id!r}")
        existing = self._sessions.get(session_id)
        if existing is not None:
            if existing.tenant != tenant:
                raise ConflictError(f"session id {session_id!r} is taken", session_id=session_id)
            return existing
        NAME.check("template", template)
        check_json("config", config, max_bytes=self.max_bytes)
        if metadata is not None:
            check_json("metadata", metadata, max_bytes=self.max_bytes)
        limit = self.max_sessions(tenant)
        if limit is not None and self._open[tenant] >= limit:
            raise RateLimitError(
                f"tenant {tenant!r} has {self._open[tenant]} sessions open, its limit; close some first",
                retry_after_s=5.0,
                limit="max_sessions",
            )
        now = self.clock()
        record = SessionRecord(
            id=session_id,
            tenant=tenant,
            template=template,
            version=str(version)[:64],
            status=CREATING,
            isolation=isolation,
            config=config,
            metadata=metadata,
            created_at=now,
            last_activity_at=now,
            expires_at=None if max_lifetime_s is None else now + max_lifetime_s,
            idle_timeout_s=idle_timeout_s,
            parent_id=parent_id,
            on_idle=on_idle,
            recover=recover,
        )
        self._add(record)
        self._move(record, CREATING, "requested", now)
        return record

    def _add(self, record: SessionRecord) -> None:
        self._sessions[record.id] = record
        self._by_tenant.setdefault(record.tenant, []).append(record)
        if record.status is not CLOSED:
            self._open[record.tenant] += 1

    # ------------------------------------------------------------------------------------------ transitions

    def opened(self, tenant: str, session_id: str, host: str, cause: str = "created") -> SessionRecord:
        """Its agent is loaded on ``host``: ACTIVE."""
        record = self._live(tenant, session_id)
        record.host = host
        record.error = None
        now = self.clock()
        record.last_activity_at = now
        self._move(record, ACTIVE, cause, now)
        return record

    def resuming(self, tenant: str, session_id: str) -> SessionRecord:
        """A resting session is being brought back to a host: CREATING (so a second caller waits for it)."""
        record = self._live(tenant, session_id)
        self._move(record, CREATING, "resuming", self.clock())
        return record

    def abort(self, tenant: str, session_id: str) -> None:
        """A create that failed on the caller's input (e.g. bad config): the session never existed."""
        record = self.get(tenant, session_id)
        if record.status is not CREATING:
            raise ConflictError(f"session {session_id!r} is {record.status.value}; only a creating one aborts")
        self._delete(record)

    def rested(
        self, tenant: str, session_id: str, status: str, checkpoint: dict[str, Any] | None, seq: int, cause: str
    ) -> SessionRecord:
        """Its agent was checkpointed and unloaded: PAUSED (an explicit pause) or INACTIVE (idle, host died)."""
        to = SessionStatus(status)
        if to not in (PAUSED, INACTIVE):
            raise InvalidArgumentError("status", f"a session rests as paused or inactive, not {status!r}")
        record = self._live(tenant, session_id)
        if checkpoint is not None:
            record.checkpoint = checkpoint
        record.seq = max(record.seq, seq)
        record.host = None
        self._move(record, to, cause, self.clock())
        return record

    def checkpointed(self, tenant: str, session_id: str, checkpoint: dict[str, Any], seq: int) -> SessionRecord:
        """A new checkpoint (every turn, or before a fork) while it keeps running."""
        record = self._live(tenant, session_id)
        record.checkpoint = checkpoint
        record.seq = max(record.seq, seq)
        self._changed[record.id] = record
        return record

    def failed(self, tenant: str, session_id: str, reason: str) -> SessionRecord:
        """It cannot go on: ERROR, with the reason."""
        record = self._live(tenant, session_id)
        record.error = str(reason)[:2000]
        record.host = None
        self._move(record, ERROR, record.error, self.clock())
        return record

    def closed(self, tenant: str, session_id: str, cause: str = "closed") -> SessionRecord:
        """Ended for good (closing a closed session again changes nothing)."""
        record = self.get(tenant, session_id)
        if record.status is CLOSED:
            return record
        now = self.clock()
        record.host = None
        record.closed_at = now
        self._open[record.tenant] -= 1
        self._move(record, CLOSED, cause, now)
        return record

    def refreshed(self, tenant: str, session_id: str) -> SessionRecord:
        """Reset its idle timer."""
        record = self._live(tenant, session_id)
        record.last_activity_at = self.clock()
        self._changed[record.id] = record
        return record

    def waiting(self, tenant: str, session_id: str, what: str) -> SessionRecord:
        """What a CREATING session waits for (its host to be placed), for whoever reads it meanwhile."""
        record = self._live(tenant, session_id)
        if record.status is CREATING:
            record.waiting_for = str(what)[:500]
            self._changed[record.id] = record
        return record

    def _move(self, record: SessionRecord, to: SessionStatus, cause: str, now: float) -> None:
        if to is not CREATING:
            record.waiting_for = None
        record.status = to
        record.transitions = [*record.transitions[-(TRANSITIONS_KEPT - 1) :], [now, to.value, str(cause)[:500]]]
        record.due_at = 0.0
        self._changed[record.id] = record

    # --------------------------------------------------------------------------------------------- reports

    def report(self, tenant: str, session_id: str, invocations: int, tokens: int, at: float, seq: int) -> None:
        """Counters and last activity from its host (a batch of turns since the last report)."""
        record = self._sessions.get(session_id)
        if record is None or record.tenant != tenant:
            return  # a session forgotten since (closed past its retention): nothing to count on
        check_int("invocations", invocations, low=0, high=10**9)
        check_int("tokens", tokens, low=0, high=10**15)
        record.invocations += invocations
        record.tokens += tokens
        record.last_activity_at = max(record.last_activity_at, float(at))
        record.seq = max(record.seq, int(seq))
        self._changed[record.id] = record

    def add_turn(self, tenant: str, session_id: str, turn: str) -> None:
        """Append a turn (JSON of ``models.TurnRecord``) to the transcript (the newest 500 are kept)."""
        record = self._sessions.get(session_id)
        if record is None or record.tenant != tenant:
            return
        check_json("turn", turn, max_bytes=self.max_bytes)
        self._turns.setdefault(session_id, deque(maxlen=TURNS_KEPT)).append(turn)
        self._new_turns.append((session_id, turn))

    def transcript(self, tenant: str, session_id: str) -> list[str]:
        """The kept turns, oldest first (JSON texts)."""
        self.get(tenant, session_id)
        return list(self._turns.get(session_id, ()))

    # ----------------------------------------------------------------------------------------------- reads

    def get(self, tenant: str, session_id: str) -> SessionRecord:
        """One session by id."""
        record = self._sessions.get(session_id) if isinstance(session_id, str) else None
        if record is None or record.tenant != tenant:
            raise SessionNotFoundError(str(session_id))
        return record

    def _live(self, tenant: str, session_id: str) -> SessionRecord:
        record = self.get(tenant, session_id)
        if record.status is CLOSED:
            raise SessionClosedError(session_id)
        return record

    def list(
        self,
        tenant: str,
        *,
        status: str | None = None,
        template: str | None = None,
        metadata: dict[str, Any] | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[SessionRecord], str | None]:
        """The tenant's sessions, newest first, filtered (``metadata``: these keys with these values)."""
        check_int("limit", limit, low=1, high=MAX_LISTING)
        wanted = SessionStatus(status) if status is not None else None
        records = self._by_tenant.get(tenant, [])
        end = _decode_cursor(cursor, len(records))
        page: list[SessionRecord] = []
        position = end
        while position > 0 and len(page) < limit:
            position -= 1
            record = records[position]
            if self._sessions.get(record.id) is not record:
                continue
            if wanted is not None and record.status is not wanted:
                continue
            if template is not None and record.template != template:
                continue
            if metadata and not _has(record.metadata, metadata):
                continue
            page.append(record)
        return page, (f"scur_{position:x}" if position > 0 and len(page) == limit else None)

    def counts(self, tenant: str | None = None) -> dict[str, int]:
        """Sessions per status (of one tenant, or all)."""
        totals: Counter[str] = Counter()
        for record in self._sessions.values():
            if tenant is None or record.tenant == tenant:
                totals[record.status.value] += 1
        return dict(totals)

    # --------------------------------------------------------------------------------------------- hosts

    def on_host(self, host: str) -> list[SessionRecord]:
        """The sessions a host holds (creating or active)."""
        return [r for r in self._sessions.values() if r.host == host and r.status in _ON_HOST]

    def hosts(self) -> set[str]:
        """Every host that holds a session now."""
        return {r.host for r in self._sessions.values() if r.host is not None and r.status in _ON_HOST}

    def pool_load(self, prefix: str) -> Counter[str]:
        """Sessions held by each host whose name starts with ``prefix`` (one pool)."""
        return Counter(
            r.host for r in self._sessions.values() if r.host and r.host.startswith(prefix) and r.status in _ON_HOST
        )

    def host_died(self, host: str, reason: str) -> list[SessionRecord]:
        """Its host is gone: each session it held comes back from its last checkpoint (INACTIVE, when its template
        recovers and it has one) or goes to ERROR with the reason. Returns them."""
        affected = self.on_host(host)
        for record in affected:
            if record.recover == "last_checkpoint" and record.checkpoint is not None:
                record.host = None
                self._move(record, INACTIVE, f"recovered from its last checkpoint after: {reason}", self.clock())
            else:
                self.failed(record.tenant, record.id, reason)
        return affected

    # ----------------------------------------------------------------------------------------- housekeeping

    def due(self) -> list[tuple[SessionRecord, str, str]]:
        """Sessions whose idle timeout or lifetime ran out: (record, "unload" or "close", cause). Each is handed
        out again only after a while, so the sweeper does not repeat itself while a host works on it."""
        now = self.clock()
        found = []
        for record in self._sessions.values():
            if record.status not in (ACTIVE, PAUSED, INACTIVE) or now - record.due_at < _DUE_AGAIN_S:
                continue
            if record.expires_at is not None and now >= record.expires_at:
                found.append((record, "close", "its max_lifetime_s ran out"))
            elif (
                record.status is ACTIVE
                and record.idle_timeout_s is not None
                and now - record.last_activity_at >= record.idle_timeout_s
            ):
                found.append((record, "unload" if record.on_idle == "unload" else "close", "idle_timeout"))
            else:
                continue
            record.due_at = now
        return found

    def retain(self) -> list[str]:
        """Forget closed sessions older than the retention; returns their ids (their snapshots go too)."""
        horizon = self.clock() - self.retention_s
        gone = [r for r in self._sessions.values() if r.status is CLOSED and (r.closed_at or 0) < horizon]
        for record in gone:
            self._delete(record)
        return [record.id for record in gone]

    def _delete(self, record: SessionRecord) -> None:
        del self._sessions[record.id]
        self._turns.pop(record.id, None)
        if record.status is not CLOSED:
            self._open[record.tenant] -= 1
        self._changed.pop(record.id, None)
        self._deleted.append(record.id)
        records = self._by_tenant.get(record.tenant, [])
        if len(records) > 1024 and len(self._sessions) * 2 < sum(map(len, self._by_tenant.values())):
            for tenant, kept in self._by_tenant.items():
                self._by_tenant[tenant] = [r for r in kept if self._sessions.get(r.id) is r]

    # ------------------------------------------------------------------------------------------ durability

    def load(self, records: Iterable[SessionRecord], turns: Iterable[tuple[str, str]]) -> None:
        """Rebuild from the journal."""
        for record in sorted(records, key=lambda r: r.created_at):
            self._add(record)
        for session_id, turn in turns:
            if session_id in self._sessions:
                self._turns.setdefault(session_id, deque(maxlen=TURNS_KEPT)).append(turn)

    def has_changes(self) -> bool:
        return bool(self._changed or self._deleted or self._new_turns)

    def take_changes(self) -> tuple[list[tuple[str, str, str]], list[str], list[tuple[str, str]]]:
        """Journal rows of sessions changed, ids of sessions deleted, and new transcript turns."""
        changed, deleted, turns = self._changed, self._deleted, self._new_turns
        self._changed, self._deleted, self._new_turns = {}, [], []
        gone = set(deleted)
        return [r.row() for r in changed.values()], deleted, [(s, t) for s, t in turns if s not in gone]


def _has(metadata: str | None, wanted: dict[str, Any]) -> bool:
    if metadata is None:
        return False
    found = json.loads(metadata)
    return isinstance(found, dict) and all(found.get(key) == value for key, value in wanted.items())


def _decode_cursor(cursor: str | None, size: int) -> int:
    if cursor is None:
        return size
    try:
        if isinstance(cursor, str) and cursor.startswith("scur_"):
            return min(size, int(cursor[5:], 16))
    except ValueError:
        pass
    raise InvalidArgumentError("cursor", f"is not a cursor a listing returned: {cursor!r}")
