"""The session registry's calls on the coordinator: ``coord.session_registry`` (blocking) and its awaitable twin.

These are the bookkeeping steps (record, open, rest, report, read); ``coord.sessions`` composes them with the calls
into session hosts into what users call (create, invoke, pause, resume, fork, close).
"""

from __future__ import annotations

import json
from typing import Any

from ray_runtime._twins import awaitable, blocking
from ray_runtime.coordinator.handle import _Awaitable, _Blocking, _Call, _from_json, _Handle, _to_json
from ray_runtime.models.sessions import Session, SessionPage, TurnRecord

__all__ = ["AsyncSessionRegistry", "SessionRegistry", "parse_session"]


def parse_session(wire: dict[str, Any]) -> Session:
    """A session as the actor sent it, payloads parsed."""
    return Session.model_validate(
        {**wire, "config": json.loads(wire["config"]), "metadata": _from_json(wire["metadata"])}
    )


def _placed(raw: dict[str, Any]) -> dict[str, Any]:
    return {**raw, "session": parse_session(raw["session"])}


class _RegistryCalls(_Handle):
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
    ) -> _Call[dict[str, Any]]:
        """Record a new session (forked from ``parent_id``); answers ``{"session", "host"}`` (its host)."""
        args = (
            self.tenant,
            session_id,
            template,
            version,
            options,
            _to_json("config", config),
            None if metadata is None else _to_json("metadata", metadata),
            parent_id,
        )
        return _Call("session_create", args, _placed)

    def _resume(self, session_id: str, options: dict[str, Any], *, explicit: bool) -> _Call[dict[str, Any]]:
        """Begin bringing a resting session back; ``{"session", "host", "restore", "seq"}``."""
        return _Call("session_resume", (self.tenant, session_id, explicit, options), _placed)

    def _opened(self, session_id: str, host: str, cause: str = "created") -> _Call[Session]:
        return _Call("session_opened", (self.tenant, session_id, host, cause), parse_session)

    def _abort(self, session_id: str) -> _Call[None]:
        return _Call("session_abort", (self.tenant, session_id), lambda _: None)

    def _failed(self, session_id: str, reason: str) -> _Call[Session]:
        return _Call("session_failed", (self.tenant, session_id, reason), parse_session)

    def _rest(self, session_id: str, status: str, snapshot: bytes | None, seq: int, cause: str) -> _Call[Session]:
        return _Call("session_rest", (self.tenant, session_id, status, snapshot, seq, cause), parse_session)

    def _checkpoint(self, session_id: str, snapshot: bytes, seq: int) -> _Call[dict[str, Any]]:
        return _Call("session_checkpoint", (self.tenant, session_id, snapshot, seq), dict)

    def _close(self, session_id: str, cause: str = "closed") -> _Call[Session]:
        return _Call("session_closed", (self.tenant, session_id, cause), parse_session)

    def _refresh(self, session_id: str) -> _Call[Session]:
        return _Call("session_refresh", (self.tenant, session_id), parse_session)

    def _report(self, reports: list[tuple[Any, ...]], turns: list[tuple[str, str]]) -> _Call[None]:
        return _Call("session_report", (self.tenant, reports, turns), lambda _: None)

    def _get(self, session_id: str) -> _Call[Session]:
        return _Call("session_get", (self.tenant, session_id), parse_session)

    def _list(
        self,
        *,
        status: str | None = None,
        template: str | None = None,
        metadata: dict[str, Any] | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> _Call[SessionPage]:
        return _Call(
            "session_list",
            (self.tenant, status, template, metadata, limit, cursor),
            lambda raw: SessionPage(items=[parse_session(w) for w in raw["items"]], next_cursor=raw["next_cursor"]),
        )

    def _transcript(self, session_id: str) -> _Call[list[TurnRecord]]:
        return _Call(
            "session_transcript",
            (self.tenant, session_id),
            lambda raw: [TurnRecord.model_validate_json(t) for t in raw],
        )

    def _import(
        self, template: str, version: str, options: dict[str, Any], items: list[tuple[str, Any, Any]]
    ) -> _Call[list[str]]:
        """Record many PAUSED sessions at once: ``items`` are (session id, config, metadata)."""
        rows = [
            (session_id, _to_json("config", config), None if metadata is None else _to_json("metadata", metadata))
            for session_id, config, metadata in items
        ]
        return _Call("session_import", (self.tenant, template, version, options, rows), list)

    def _snapshot(self, session_id: str, key: str) -> _Call[bytes]:
        return _Call("session_snapshot", (self.tenant, session_id, key), bytes)

    def _counts(self) -> _Call[dict[str, int]]:
        return _Call("session_counts", (self.tenant,), dict)


class SessionRegistry(_RegistryCalls, _Blocking):
    """The session registry of one tenant (blocking): ``coord.session_registry``."""

    create = blocking(_RegistryCalls._create)
    resume = blocking(_RegistryCalls._resume)
    opened = blocking(_RegistryCalls._opened)
    abort = blocking(_RegistryCalls._abort)
    failed = blocking(_RegistryCalls._failed)
    rest = blocking(_RegistryCalls._rest)
    checkpoint = blocking(_RegistryCalls._checkpoint)
    close = blocking(_RegistryCalls._close)
    refresh = blocking(_RegistryCalls._refresh)
    report = blocking(_RegistryCalls._report)
    get = blocking(_RegistryCalls._get)
    list = blocking(_RegistryCalls._list)
    transcript = blocking(_RegistryCalls._transcript)
    snapshot = blocking(_RegistryCalls._snapshot)
    counts = blocking(_RegistryCalls._counts)
    import_paused = blocking(_RegistryCalls._import)


class AsyncSessionRegistry(_RegistryCalls, _Awaitable):
    """The session registry of one tenant (awaitable): ``coord.aio.session_registry``."""

    create = awaitable(_RegistryCalls._create)
    resume = awaitable(_RegistryCalls._resume)
    opened = awaitable(_RegistryCalls._opened)
    abort = awaitable(_RegistryCalls._abort)
    failed = awaitable(_RegistryCalls._failed)
    rest = awaitable(_RegistryCalls._rest)
    checkpoint = awaitable(_RegistryCalls._checkpoint)
    close = awaitable(_RegistryCalls._close)
    refresh = awaitable(_RegistryCalls._refresh)
    report = awaitable(_RegistryCalls._report)
    get = awaitable(_RegistryCalls._get)
    list = awaitable(_RegistryCalls._list)
    transcript = awaitable(_RegistryCalls._transcript)
    snapshot = awaitable(_RegistryCalls._snapshot)
    counts = awaitable(_RegistryCalls._counts)
    import_paused = awaitable(_RegistryCalls._import)
