"""The session and template calls of the clients, each written once as a request description (see ``_calls``)."""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping
from typing import Any

from ray_runtime.client._calls import _segment, _typed
from ray_runtime.client._http import Request
from ray_runtime.models.sessions import Invocation, SessionInfo, SessionPage, Template, TurnRecord, TurnRequest

__all__ = ["TURN_TIMEOUT_S", "SessionCalls", "turn_body"]

TURN_TIMEOUT_S = 3600.0  # how much longer than a plain call a turn's answer may take


def turn_body(request: Any) -> dict[str, Any]:
    """A turn's input as the façade takes it (``TurnRequest.of``: text, a turn request, or JSON data)."""
    return TurnRequest.of(request).body()


class SessionCalls:
    """Builders of the template and session calls; the clients wrap each ``_name`` into a public ``name``."""

    def _list_templates(
        self, *, tags: builtins.list[str] | None = None, name: str | None = None
    ) -> Request[builtins.list[Template]]:
        """Session templates, filtered by tags (all of them) and by a part of the id."""
        params: dict[str, Any] = {"tags": list(tags or [])}
        if name is not None:
            params["name"] = name
        return Request("GET", "/api/v1/templates", _typed(list[Template]), params=params)

    def _get_template(self, template_id: str) -> Request[Template]:
        """One template, with its config's JSON Schema."""
        return Request("GET", f"/api/v1/templates/{_segment(template_id)}", _typed(Template))

    def _create_session_record(
        self,
        template: str,
        *,
        config: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        idle_timeout_s: float | None = None,
    ) -> Request[SessionInfo]:
        body: dict[str, Any] = {"template": template, "config": dict(config or {}), "metadata": metadata}
        if idle_timeout_s is not None:
            body["idle_timeout_s"] = idle_timeout_s
        return Request("POST", "/api/v1/sessions", _typed(SessionInfo), json=body)

    def _get_session(self, session_id: str) -> Request[SessionInfo]:
        return Request("GET", f"/api/v1/sessions/{_segment(session_id)}", _typed(SessionInfo))

    def _list_sessions(
        self,
        *,
        status: str | None = None,
        template: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Request[SessionPage]:
        """The tenant's sessions, newest first; pass ``next_cursor`` for the next page."""
        params: dict[str, Any] = {"limit": limit}
        for key, value in (("status", status), ("template", template), ("cursor", cursor)):
            if value is not None:
                params[key] = getattr(value, "value", value)
        if metadata is not None:
            params["metadata"] = json.dumps(dict(metadata))
        return Request("GET", "/api/v1/sessions", _typed(SessionPage), params=params)

    def _invoke_session(self, session_id: str, request: Any) -> Request[Invocation]:
        """Run one turn and return its result (``InvocationError`` if the agent raised)."""
        path = f"/api/v1/sessions/{_segment(session_id)}/invoke"
        return Request("POST", path, _typed(Invocation), json=turn_body(request), extra_timeout_s=TURN_TIMEOUT_S)

    def _session_action(self, session_id: str, action: str, body: Any = None) -> Request[SessionInfo]:
        return Request("POST", f"/api/v1/sessions/{_segment(session_id)}/{action}", _typed(SessionInfo), json=body)

    def _cancel_turn(self, session_id: str, turn_id: str | None = None) -> Request[bool]:
        """Ask the running turn to stop; whether one was running."""
        return Request(
            "POST",
            f"/api/v1/sessions/{_segment(session_id)}/cancel",
            lambda response: bool(response.json()["cancelled"]),
            json={"turn_id": turn_id},
            idempotent=True,
        )

    def _close_session(self, session_id: str) -> Request[SessionInfo]:
        return Request("DELETE", f"/api/v1/sessions/{_segment(session_id)}", _typed(SessionInfo))

    def _session_transcript(self, session_id: str) -> Request[builtins.list[TurnRecord]]:
        """A session's turns, oldest first."""
        return Request("GET", f"/api/v1/sessions/{_segment(session_id)}/transcript", _typed(list[TurnRecord]))

    def _session_trace(self, session_id: str, format: str = "otlp") -> Request[Any]:
        """A session's turns as a trace: OTLP/JSON spans (``format="otlp"``) or AGL triplets (``"triplet"``)."""
        path = f"/api/v1/sessions/{_segment(session_id)}/trace"
        return Request("GET", path, _typed(Any), params={"format": format})

    def _rollout_trace(self, rollout_id: str, format: str = "otlp", attempt_id: str | None = None) -> Request[Any]:
        """An Agent Lightning rollout's attempt (default: its latest) as OTLP/JSON spans or AGL triplets."""
        params = {"format": format, **({"attempt_id": attempt_id} if attempt_id else {})}
        return Request("GET", f"/api/v1/rollouts/{_segment(rollout_id)}/trace", _typed(Any), params=params)

    def _invoke_agent(
        self, template: str, request: Any, *, config: Mapping[str, Any] | None = None
    ) -> Request[Invocation]:
        """One turn of a fresh session of ``template``, closed afterwards."""
        body = {"template": template, "config": dict(config or {}), "request": turn_body(request)}
        return Request("POST", "/api/v1/invocations", _typed(Invocation), json=body, extra_timeout_s=TURN_TIMEOUT_S)
