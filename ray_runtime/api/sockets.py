"""What every WebSocket route shares: refusing a connection the way an HTTP route would (the same status and JSON
error body, before the upgrade), where the server allows it."""

from __future__ import annotations

from fastapi import WebSocket
from fastapi.responses import JSONResponse

from ray_runtime.errors import RayRuntimeError

__all__ = ["refuse"]


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
