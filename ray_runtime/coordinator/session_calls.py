"""The session registry's calls, on the driver side: ``coord.session_registry`` (blocking) and its awaitable twin;
the actor side of each call is in ``session_methods``.

These are the bookkeeping steps (record, open, rest, report, read); ``coord.sessions`` (``ray_runtime.sessions``)
composes them with the calls into session hosts into what users call (create, invoke, pause, resume, fork, close).
"""

from __future__ import annotations

import json
from typing import Any

from ray_runtime._twins import awaitable, blocking
from ray_runtime.coordinator.calls import Awaitable, Blocking, Call, Handle, from_json, to_json
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
from ray_runtime.models.sessions import SessionInfo, SessionPage, TurnRecord

__all__ = ["AsyncSessionRegistryHandle", "SessionRegistryCalls", "SessionRegistryHandle", "parse_session"]


def parse_session(wire: dict[str, Any]) -> SessionInfo:
    """A session as the actor sent it, payloads parsed."""
    return SessionInfo.model_validate(
        {**wire, "config": json.loads(wire["config"]), "metadata": from_json(wire["metadata"])}
    )


def _placed(raw: dict[str, Any]) -> dict[str, Any]:
    return {**raw, "session": parse_session(raw["session"])}


class SessionRegistryCalls(Handle):
    """Builders of the registry calls (the tenant is the handle's)."""

    def _create(
        self,
        session_id: str,
        template: str,
        version: str,
        options: dict[str, Any],
        config: Any,
        metadata: Any = None,
        parent_id: str | None = None,
    ) -> Call[dict[str, Any]]:
        """Record a new session (forked from ``parent_id``); answers ``{"session", "host"}`` (its host)."""
        message = SessionCreate(
            tenant=self.tenant,
            session_id=session_id,
            template=template,
            version=version,
            options=options,
            config=to_json("config", config),
            metadata=None if metadata is None else to_json("metadata", metadata),
            parent_id=parent_id,
        )
        return Call("session_create", message, _placed)

    def _resume(self, session_id: str, options: dict[str, Any], *, explicit: bool) -> Call[dict[str, Any]]:
        """Begin bringing a resting session back; ``{"session", "host", "restore", "seq"}``."""
        return Call("session_resume", SessionResume(self.tenant, session_id, explicit, options), _placed)

    def _opened(self, session_id: str, host: str, cause: str = "created") -> Call[SessionInfo]:
        return Call("session_opened", SessionOpened(self.tenant, session_id, host, cause), parse_session)

    def _abort(self, session_id: str) -> Call[None]:
        return Call("session_abort", SessionRef(self.tenant, session_id), lambda _: None)

    def _failed(self, session_id: str, reason: str) -> Call[SessionInfo]:
        return Call("session_failed", SessionFailed(self.tenant, session_id, reason), parse_session)

    def _rest(self, session_id: str, status: str, snapshot: bytes | None, seq: int, cause: str) -> Call[SessionInfo]:
        message = SessionRest(self.tenant, session_id, status, snapshot, seq, cause)
        return Call("session_rest", message, parse_session)

    def _checkpoint(self, session_id: str, snapshot: bytes, seq: int) -> Call[dict[str, Any]]:
        return Call("session_checkpoint", SessionCheckpoint(self.tenant, session_id, snapshot, seq), dict)

    def _close(self, session_id: str, cause: str = "closed") -> Call[SessionInfo]:
        return Call("session_closed", SessionClosed(self.tenant, session_id, cause), parse_session)

    def _refresh(self, session_id: str) -> Call[SessionInfo]:
        return Call("session_refresh", SessionRef(self.tenant, session_id), parse_session)

    def _report(self, reports: list[tuple[Any, ...]], turns: list[tuple[str, str]]) -> Call[None]:
        return Call("session_report", SessionReport(self.tenant, reports, turns), lambda _: None)

    def _get(self, session_id: str) -> Call[SessionInfo]:
        return Call("session_get", SessionRef(self.tenant, session_id), parse_session)

    def _list(
        self,
        *,
        status: str | None = None,
        template: str | None = None,
        metadata: dict[str, Any] | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Call[SessionPage]:
        return Call(
            "session_list",
            SessionList(self.tenant, status, template, metadata, limit, cursor),
            lambda raw: SessionPage(items=[parse_session(w) for w in raw["items"]], next_cursor=raw["next_cursor"]),
        )

    def _transcript(self, session_id: str) -> Call[list[TurnRecord]]:
        return Call(
            "session_transcript",
            SessionRef(self.tenant, session_id),
            lambda raw: [TurnRecord.model_validate_json(t) for t in raw],
        )

    def _import(
        self, template: str, version: str, options: dict[str, Any], items: list[tuple[str, Any, Any]]
    ) -> Call[list[str]]:
        """Record many PAUSED sessions at once: ``items`` are (session id, config, metadata)."""
        rows = [
            (session_id, to_json("config", config), None if metadata is None else to_json("metadata", metadata))
            for session_id, config, metadata in items
        ]
        return Call("session_import", SessionImport(self.tenant, template, version, options, rows), list)

    def _snapshot(self, session_id: str, key: str) -> Call[bytes]:
        return Call("session_snapshot", SessionSnapshot(self.tenant, session_id, key), bytes)

    def _counts(self) -> Call[dict[str, int]]:
        return Call("session_counts", TenantRef(self.tenant), dict)


class SessionRegistryHandle(SessionRegistryCalls, Blocking):
    """The session registry of one tenant (blocking): ``coord.session_registry``."""

    create = blocking(SessionRegistryCalls._create)
    resume = blocking(SessionRegistryCalls._resume)
    opened = blocking(SessionRegistryCalls._opened)
    abort = blocking(SessionRegistryCalls._abort)
    failed = blocking(SessionRegistryCalls._failed)
    rest = blocking(SessionRegistryCalls._rest)
    checkpoint = blocking(SessionRegistryCalls._checkpoint)
    close = blocking(SessionRegistryCalls._close)
    refresh = blocking(SessionRegistryCalls._refresh)
    report = blocking(SessionRegistryCalls._report)
    get = blocking(SessionRegistryCalls._get)
    list = blocking(SessionRegistryCalls._list)
    transcript = blocking(SessionRegistryCalls._transcript)
    snapshot = blocking(SessionRegistryCalls._snapshot)
    counts = blocking(SessionRegistryCalls._counts)
    import_paused = blocking(SessionRegistryCalls._import)


class AsyncSessionRegistryHandle(SessionRegistryCalls, Awaitable):
    """The session registry of one tenant (awaitable): ``coord.aio.session_registry``."""

    create = awaitable(SessionRegistryCalls._create)
    resume = awaitable(SessionRegistryCalls._resume)
    opened = awaitable(SessionRegistryCalls._opened)
    abort = awaitable(SessionRegistryCalls._abort)
    failed = awaitable(SessionRegistryCalls._failed)
    rest = awaitable(SessionRegistryCalls._rest)
    checkpoint = awaitable(SessionRegistryCalls._checkpoint)
    close = awaitable(SessionRegistryCalls._close)
    refresh = awaitable(SessionRegistryCalls._refresh)
    report = awaitable(SessionRegistryCalls._report)
    get = awaitable(SessionRegistryCalls._get)
    list = awaitable(SessionRegistryCalls._list)
    transcript = awaitable(SessionRegistryCalls._transcript)
    snapshot = awaitable(SessionRegistryCalls._snapshot)
    counts = awaitable(SessionRegistryCalls._counts)
    import_paused = awaitable(SessionRegistryCalls._import)
