"""The web console at ``/ui``: static pages in the package (``api/console``) that use the façade's public API.

It is plain HTML, CSS and one JavaScript module written here: no build step, no third-party code, no request to
any other host (it works on an air-gapped cluster). The pages hold no data and need no key; every call they make
is an API call with the key the user typed (kept in the tab's session storage, never in a URL).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from ray_runtime.errors import NotFoundError

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
CONSOLE = Path(__file__).resolve().parent.parent / "console"
_ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}
_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


@router.get("/ui")
async def console_root() -> RedirectResponse:
    return RedirectResponse("/ui/")


@router.get("/ui/")
async def console() -> FileResponse:
    return FileResponse(CONSOLE / "index.html", media_type="text/html", headers=_HEADERS)


@router.get("/ui/static/{name}")
async def asset(name: str) -> FileResponse:
    if name not in _ASSETS:
        raise NotFoundError(f"the console has no file {name!r}")
    return FileResponse(CONSOLE / name, media_type=_ASSETS[name], headers=_HEADERS)
