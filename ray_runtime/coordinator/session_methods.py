"""The coordinator actor's session calls, and its watch over session hosts (a mixin of ``CoordinatorActor``).

The registry (``coordinator.sessions``) changes only through these calls, each journaled before it answers. Snapshot
bytes are written to the snapshot store outside the state lock, then recorded. The watch holds one call into every
host that holds sessions (``run_until_stopped``, which never returns): when a host's process or node dies, that call
fails with Ray's reason, and the host's sessions come back from their last checkpoint or go to ``error``. The
sweeper hands the hosts their idle unloads and lifetime closes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ray_runtime.coordinator.messages import (
    SessionCheckpoint,
    SessionClosed,
    SessionCreate,
    SessionFailed,
    SessionImport,
    SessionList,
    SessionOpened,
    SessionRef,
    SessionReport,
    SessionRest,
    SessionResume,
    SessionSnapshot,
    TenantRef,
)
from ray_runtime.coordinator.packing import pack, read
from ray_runtime.coordinator.session_table import SessionRecord
from ray_runtime.coordinator.snapshots import SnapshotStore
from ray_runtime.errors import InvalidArgumentError, RayRuntimeError

__all__ = ["SessionMethods", "host_name", "pool_prefix"]

logger = logging.getLogger(__name__)
_WATCH_EVERY_S = 0.5

MAX_IMPORT = 10_000  # sessions per import call


def pool_prefix(tenant: str, template: str, package: str) -> str:
    """The name prefix of a tenant's pool of shared hosts for a template's package (a pool never mixes tenants, nor
    versions of the template's code: a changed plugin gets a pool of its own)."""
    return f"rr-pool:{tenant}:{template}:{package}:"


def host_name(record: SessionRecord, options: dict[str, Any], load: dict[str, int]) -> str:
    """Where a session goes: a host of its own (dedicated: a new one for each life of the session, so a resume never
    meets the host of its last life on its way out), or the least loaded host of its pool with room, else a new one
    (the pool grows)."""
    if record.isolation == "dedicated":
        return f"rr-session:{record.id}:{len(record.transitions)}"
    prefix = pool_prefix(record.tenant, record.template, options.get("package", ""))
    per_host = int(options["sessions_per_host"])
    roomy = [name for name, count in load.items() if count < per_host]
    if roomy:
        return min(roomy, key=lambda name: (load[name], name))
    taken = {int(name[len(prefix) :]) for name in load if name[len(prefix) :].isdigit()}
    return f"{prefix}{min(set(range(len(taken) + 1)) - taken)}"


def _wire(record: SessionRecord) -> dict[str, Any]:
    return record.wire()


class SessionMethods:
    """Session calls of the coordinator actor (the shell's ``_call``, ``_durably`` and ``_state`` are its own)."""

    _state: Any
    namespace: str  # the coordinator's Ray namespace: its session hosts live there
    _snapshots: SnapshotStore
    _call: Callable[..., bytes]
    _durably: Callable[[], contextlib.AbstractContextManager[None]]

    def _start_session_watch(self) -> None:
        self._watched: dict[str, Any] = {}  # host name -> the ref of its run_until_stopped
        self._watch_lock = threading.Lock()
        for host in sorted(self._state.sessions.hosts()):
            self._watch(host)
        threading.Thread(target=self._watch_forever, name="session-host-watch", daemon=True).start()

    # ------------------------------------------------------------------------------------------- the calls

    def session_create(self, payload: bytes) -> bytes:
        """Record a session and choose its host; answers the record and the host's name."""
        tenant, session_id, template, version, options, config, metadata, parent_id = read(payload, SessionCreate)

        def create() -> dict[str, Any]:
            record = self._new_session(tenant, session_id, template, version, options, config, metadata, parent_id)
            host = self._place(record, options)
            self._wait_for_host(record, host, options)
            return {"session": record.wire(), "host": host}

        return self._call(dict, create)

    def session_import(self, payload: bytes) -> bytes:
        """Record many sessions as PAUSED at once, in one durable change (a migration, a seed); each starts fresh
        from its config when resumed. Answers their ids."""
        tenant, template, version, options, items = read(payload, SessionImport)
        if not isinstance(items, list) or len(items) > MAX_IMPORT:
            raise InvalidArgumentError("items", f"must be a list of at most {MAX_IMPORT} sessions")

        def import_all() -> list[str]:
            for session_id, config, metadata in items:
                self._new_session(tenant, session_id, template, version, options, config, metadata)
                self._state.sessions.rested(tenant, session_id, "paused", None, 0, "imported")
            return [item[0] for item in items]

        return self._call(list, import_all)

    def _new_session(
        self,
        tenant: str,
        session_id: str,
        template: str,
        version: str,
        options: dict[str, Any],
        config: str,
        metadata: str | None,
        parent_id: str | None = None,
    ) -> SessionRecord:
        """Record a session (CREATING) with the template's options."""
        return self._state.sessions.create(
            tenant,
            session_id,
            template,
            version,
            isolation=options["isolation"],
            config=config,
            metadata=metadata,
            idle_timeout_s=options["idle_timeout_s"],
            max_lifetime_s=options["max_lifetime_s"],
            on_idle=options["on_idle"],
            recover=options["recover"],
            parent_id=parent_id,
        )

    def _wait_for_host(self, record: SessionRecord, host: str, options: dict[str, Any]) -> None:
        what = f"its host {host} to be placed by Ray (it asks {options.get('asks') or 'nothing'})"
        self._state.sessions.waiting(record.tenant, record.id, what)

    def _place(self, record: SessionRecord, options: dict[str, Any]) -> str:
        load = self._state.sessions.pool_load(pool_prefix(record.tenant, record.template, options.get("package", "")))
        return host_name(record, options, dict(load))

    def session_resume(self, payload: bytes) -> bytes:
        """Bring a resting session back: PAUSED (only when ``explicit``) or INACTIVE becomes CREATING; answers the
        record, where it goes, and the checkpoint to restore. A session already coming back answers as it is."""
        from ray_runtime.errors import SessionClosedError, SessionPausedError

        tenant, session_id, explicit, options = read(payload, SessionResume)

        def resume() -> dict[str, Any]:
            record = self._state.sessions.get(tenant, session_id)
            status = record.status.value
            if status in ("closed", "error"):
                raise SessionClosedError(session_id, status, record.error)
            if status == "paused" and not explicit:
                raise SessionPausedError(session_id)
            if status in ("active", "creating"):
                return {
                    "session": record.wire(),
                    "host": record.host,
                    "restore": None,
                    "seq": record.seq,
                    "was": status,
                }
            checkpoint = record.checkpoint
            record = self._state.sessions.resuming(tenant, session_id)
            restore = [session_id, checkpoint["key"]] if checkpoint else None
            host = self._place(record, options)
            self._wait_for_host(record, host, options)
            return {"was": status, "session": record.wire(), "host": host, "restore": restore, "seq": record.seq}

        return self._call(dict, resume)

    def session_opened(self, payload: bytes) -> bytes:
        tenant, session_id, host, cause = read(payload, SessionOpened)
        answer = self._call(_wire, self._state.sessions.opened, tenant, session_id, host, cause)
        self._watch(host)
        return answer

    def session_abort(self, payload: bytes) -> bytes:
        return self._call(lambda _: None, self._state.sessions.abort, *read(payload, SessionRef))

    def session_failed(self, payload: bytes) -> bytes:
        return self._call(_wire, self._state.sessions.failed, *read(payload, SessionFailed))

    def session_rest(self, payload: bytes) -> bytes:
        """Its agent was snapshotted (the bytes come along) and let go: PAUSED or INACTIVE."""
        tenant, session_id, status, blob, seq, cause = read(payload, SessionRest)
        self._state.sessions.get(tenant, session_id)  # (read-only) a missing session stores no snapshot
        checkpoint = self._snapshots.put(session_id, blob) if blob is not None else None
        return self._call(_wire, self._state.sessions.rested, tenant, session_id, status, checkpoint, seq, cause)

    def session_checkpoint(self, payload: bytes) -> bytes:
        tenant, session_id, blob, seq = read(payload, SessionCheckpoint)
        self._state.sessions.get(tenant, session_id)
        checkpoint = self._snapshots.put(session_id, blob)
        return self._call(
            lambda record: record.checkpoint, self._state.sessions.checkpointed, tenant, session_id, checkpoint, seq
        )

    def session_closed(self, payload: bytes) -> bytes:
        return self._call(_wire, self._state.sessions.closed, *read(payload, SessionClosed))

    def session_refresh(self, payload: bytes) -> bytes:
        return self._call(_wire, self._state.sessions.refreshed, *read(payload, SessionRef))

    def session_report(self, payload: bytes) -> bytes:
        """A host's batch: counters per session, and transcript turns."""
        tenant, reports, turns = read(payload, SessionReport)

        def report() -> None:
            for session_id, invocations, tokens, at, seq in reports:
                self._state.sessions.report(tenant, session_id, invocations, tokens, at, seq)
            for session_id, turn in turns:
                self._state.sessions.add_turn(tenant, session_id, turn)

        return self._call(lambda _: None, report)

    def session_get(self, payload: bytes) -> bytes:
        return self._call(_wire, self._state.sessions.get, *read(payload, SessionRef))

    def session_list(self, payload: bytes) -> bytes:
        tenant, status, template, metadata, limit, cursor = read(payload, SessionList)

        def render(page: tuple[list[SessionRecord], str | None]) -> dict[str, Any]:
            return {"items": [r.wire() for r in page[0]], "next_cursor": page[1]}

        return self._call(
            render,
            self._state.sessions.list,
            tenant,
            status=status,
            template=template,
            metadata=metadata,
            limit=limit,
            cursor=cursor,
        )

    def session_transcript(self, payload: bytes) -> bytes:
        return self._call(list, self._state.sessions.transcript, *read(payload, SessionRef))

    def session_snapshot(self, payload: bytes) -> bytes:
        """The bytes of one of a session's snapshots (a host restoring or forking it)."""
        tenant, session_id, key = read(payload, SessionSnapshot)
        with self._durably():
            self._state.sessions.get(tenant, session_id)
        return pack(self._snapshots.get(session_id, key))

    def session_counts(self, payload: bytes) -> bytes:
        return self._call(dict, self._state.sessions.counts, *read(payload, TenantRef))

    # ------------------------------------------------------------------------------------ sweeping, watching

    def _sweep_sessions(self) -> None:
        """Hand out due idle unloads and lifetime closes; forget closed sessions past retention (and their
        snapshots). Called by the sweeper, outside the lock."""
        with self._durably():
            due = self._state.sessions.due()
            for record, action, cause in due:
                if record.host is None and action == "close":
                    self._state.sessions.closed(record.tenant, record.id, cause)
            gone = self._state.sessions.retain()
        for record, action, cause in due:
            if record.host is not None:
                self._tell_host(record, action, cause)
        for session_id in gone:
            self._snapshots.delete(session_id)

    def _tell_host(self, record: SessionRecord, action: str, cause: str) -> None:
        import ray

        try:
            host = ray.get_actor(record.host, namespace=self.namespace)
        except ValueError:
            return  # already gone: the watch settles its sessions
        (host.unload if action == "unload" else host.close).remote(record.id, cause)

    def _watch(self, host: str) -> None:
        import ray

        with self._watch_lock:
            if host in self._watched:
                return
            try:
                handle = ray.get_actor(host, namespace=self.namespace)
            except ValueError:
                self._watched[host] = None  # gone while we were away: settle its sessions now
                return
            self._watched[host] = handle.run_until_stopped.remote()

    def _watch_forever(self) -> None:
        import ray

        while True:
            with self._watch_lock:
                watched = dict(self._watched)
            refs = {ref: host for host, ref in watched.items() if ref is not None}
            dead = {host: "its host actor is gone" for host, ref in watched.items() if ref is None}
            if refs:
                ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=_WATCH_EVERY_S)
                for ref in ready:
                    try:
                        ray.get(ref)
                        reason = "its host stopped"
                    except Exception as exc:
                        reason = _death_reason(exc)
                    dead[refs[ref]] = reason
            else:
                time.sleep(_WATCH_EVERY_S)
            for host, reason in dead.items():
                with self._watch_lock:
                    self._watched.pop(host, None)
                with contextlib.suppress(RayRuntimeError), self._durably():
                    for record in self._state.sessions.host_died(host, reason):
                        logger.warning("session %s lost its host %s: %s", record.id, host, reason)


def _death_reason(exc: BaseException) -> str:
    """Ray's reason an actor died, in a line (Ray puts the cause last, after the actor's details)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.startswith("\t")]
    return lines[-1][:500] if lines else type(exc).__name__
