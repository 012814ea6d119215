"""A session turn's model calls through the façade, kept in the session's trace.

A template with ``session: {model_proxy: true}`` gets, on each turn's context, ``openai_base_url`` (the façade's
recording proxy for that session and turn) and ``openai_api_key`` (a key of the session's tenant, submit scope, made
for the turn and deleted when it ends). Façades announce where the cluster reaches them in the coordinator's store
(``FACADES``: replica -> url and when it last said so); a turn uses the one heard from most recently.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ray_runtime.keys import KEYS_NAMESPACE, new_key
from ray_runtime.models.api import Scope

__all__ = ["ANNOUNCE_EVERY_S", "FACADES", "TurnGrant", "grant_turn", "revoke_turn", "session_trace_id"]

FACADES = "facades"  # system store namespace: façade replica -> {"url", "at"}
ANNOUNCE_EVERY_S = 30.0
_HEARD_WITHIN_S = 3 * ANNOUNCE_EVERY_S


def session_trace_id(session_id: str) -> str:
    """Where a session's model calls are kept in the event store (beside rollouts' tasks, never one of them)."""
    return f"session:{session_id}"


def current_facade(entries: dict[str, Any], now: float) -> str | None:
    """The URL of the façade heard from most recently, if within three announcements."""
    heard = [e for e in entries.values() if isinstance(e, dict) and now - float(e.get("at", 0)) <= _HEARD_WITHIN_S]
    return max(heard, key=lambda e: e["at"])["url"] if heard else None


@dataclass(frozen=True)
class TurnGrant:
    """What a turn's agent is given to call models through the façade."""

    base_url: str
    api_key: str
    key_id: str


async def grant_turn(store: Any, tenant: str, session_id: str, turn_id: str) -> TurnGrant | None:
    """A key for the turn and the proxy's URL for it (None when no façade has announced itself); ``store`` is the
    coordinator's system store (the host's own service, not the agent's code, writes there)."""
    url = current_facade(await store.items(FACADES), time.time())
    if url is None:
        return None
    key, record = new_key(tenant, Scope.SUBMIT, f"model calls of session {session_id}, turn {turn_id}")
    await store.put(KEYS_NAMESPACE, record.key_id, record.model_dump(mode="json"))
    path = f"/api/v1/sessions/{quote(session_id, safe='')}/turns/{quote(turn_id, safe='')}/openai/v1"
    return TurnGrant(url.rstrip("/") + path, key, record.key_id)


async def revoke_turn(store: Any, grant: TurnGrant) -> None:
    await store.delete(KEYS_NAMESPACE, grant.key_id)
