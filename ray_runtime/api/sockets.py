"""What every WebSocket route shares: credentials a browser can send, the subprotocol to answer with, and refusing a
connection the way an HTTP route would (the same status and JSON error body, before the upgrade).

Browsers cannot set headers on a WebSocket, so a key may come as the subprotocol ``rr.key.<key>`` (never in the
URL); a browser that offers subprotocols needs one of them chosen in the answer, so each route names its own
(``rr.agent.v1``, ``rr.logs.v1``) for the client to offer next to the key."""

from __future__ import annotations

from fastapi import WebSocket
from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders

from ray_runtime.errors import RayRuntimeError
from ray_runtime.models.agent import KEY_SUBPROTOCOL_PREFIX

__all__ = ["LOGS_SUBPROTOCOL", "accept", "refuse", "socket_headers"]

LOGS_SUBPROTOCOL = "rr.logs.v1"


def socket_headers(websocket: WebSocket) -> MutableHeaders:
    """The upgrade request's headers, with a key offered as a subprotocol turned into a Bearer credential."""
    headers = MutableHeaders(raw=list(websocket.headers.raw))
    if "authorization" not in headers:
        for offered in websocket.scope.get("subprotocols", []):
            if offered.startswith(KEY_SUBPROTOCOL_PREFIX):
                headers["authorization"] = f"Bearer {offered[len(KEY_SUBPROTOCOL_PREFIX) :]}"
    return headers


async def accept(websocket: WebSocket, subprotocol: str) -> None:
    """Accept, answering with ``subprotocol`` when the client offered it (never with the key's)."""
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol=subprotocol if subprotocol in offered else None)


async def refuse(websocket: WebSocket, error: RayRuntimeError) -> None:
    """Refuse before the upgrade with the error's HTTP status and body (uvicorn supports this). Where the server
    cannot (Serve's proxy), accept, send one ``error`` frame carrying the status, and close with 1008 (caller's
    fault) or 1011 (server's)."""
    body = error.to_wire()
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse(body, status_code=error.http_status))
        return
    await websocket.accept()
    await websocket.send_json({"type": "error", "status": error.http_status, **body})
    await websocket.close(code=1008 if error.http_status < 500 else 1011, reason=error.code)
