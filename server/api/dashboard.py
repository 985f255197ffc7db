"""The admin page, `GET /dashboard`: one self-contained HTML document that reads the public JSON API.

Its CSS and JS live next to it in `server/dashboard/` and are inlined into the page when it is first
served, so the page is one request, works offline, needs no build step, and sits behind exactly one
public path (the auth gate lets `/dashboard` through; every data call carries the operator's key).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

__all__ = ["router"]

router = APIRouter(tags=["dashboard"])

ASSETS = Path(__file__).resolve().parent.parent / "dashboard"
_INLINE = re.compile(r"<!-- inline:([\w.-]+) -->")


@cache
def page() -> str:
    """index.html with each `<!-- inline:NAME -->` replaced by that file, in a style or script tag."""

    def inline(m: re.Match[str]) -> str:
        name = m.group(1)
        text = (ASSETS / name).read_text()
        return f"<style>\n{text}</style>" if name.endswith(".css") else f"<script>\n{text}</script>"

    return _INLINE.sub(inline, (ASSETS / "index.html").read_text())


@router.get("/dashboard", include_in_schema=False, response_class=HTMLResponse)
async def dashboard() -> HTMLResponse:
    # no-cache: after an upgrade the browser must not keep running the old script against the new API
    return HTMLResponse(page(), headers={"cache-control": "no-cache"})


@router.get("/dashboard/", include_in_schema=False)
async def dashboard_slash() -> RedirectResponse:
    return RedirectResponse("/dashboard")
