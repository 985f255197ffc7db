"""The single-search lane: `POST /collections/{name}/points/search` through our own middlewares only.

A search request used to pass a dozen ASGI layers before its endpoint: FastAPI's telemetry check, Starlette's
server-error and exception middlewares, FastAPI's body-limit and exception-telemetry middlewares, our
gates, the write admission, an exit stack, the router (three path patterns tried) and the endpoint's
request/response wrapper. With the search itself at a third of a request's CPU, those layers were a
tenth of it. `NestorApp` sends a single search down a shorter stack built from the same middleware
classes, in the same order, so every guarantee is theirs: the follower's freshness check
(`FollowerGate`), the key (`AuthGate`: 401 before the body is read), `BodyLimit` (413), and
`RequestMetrics` (the same series and per-collection stats). The write admission has nothing to do for a
read. Errors go to the app's own exception handlers (server/errors.py), as Starlette would send them.

Everything else, and a search when FastAPI's OpenTelemetry instrumentation is on (a provider is
configured) or the app has a root path, takes the full stack.
"""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["NestorApp", "SearchEndpoint", "server_errors"]

_SEARCH = re.compile(r"/collections/([^/]+)/points/search")
_OTEL_EVERY = 1.0  # seconds between two looks for an OpenTelemetry provider
Handler = Callable[[Request, Exception], Any]  # a Response, or an awaitable of one


class NestorApp(FastAPI):
    """FastAPI, with single searches sent down `search_lane` once it is set (server/app.py)."""

    search_lane: ASGIApp | None = None
    _otel_at = -_OTEL_EVERY  # when `_otel` was last asked of FastAPI (time.monotonic)
    _otel = False

    def _instrumented(self) -> bool:
        """FastAPI's OpenTelemetry instrumentation is on (a provider is configured). Asking costs ~6 us (it
        looks the global providers up), so the answer is kept for a second."""
        now = time.monotonic()
        if now - self._otel_at >= _OTEL_EVERY:
            telemetry = getattr(self, "_native_telemetry", None)
            self._otel, self._otel_at = telemetry is not None and bool(telemetry.enabled()), now
        return self._otel

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = self.search_lane
        if lane is not None and scope["type"] == "http" and scope["method"] == "POST" and not self.root_path:
            m = _SEARCH.fullmatch(scope["path"])
            if m is not None and not self._instrumented():
                scope["app"] = self
                scope["path_params"] = {"name": m.group(1)}
                await lane(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _handler(handlers: dict[Any, Handler], exc: Exception) -> Handler | None:
    """The handler of the nearest class of `exc` that has one (Starlette's rule), bar the catch-all."""
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None


class SearchEndpoint:
    """The lane's innermost app: `endpoint(request)`, and an error with a handler of its own answered by it
    (Starlette's exception middleware). Any other exception goes up: to `BodyLimit` for its own, and to the
    lane's outermost layer (`server_errors`) for the rest, as in the full stack."""

    def __init__(self, app: FastAPI, endpoint: Callable[[Request], Awaitable[Response]]) -> None:
        self.app = app
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["endpoint"] = self.endpoint  # RequestMetrics names the route by it, as the router would
        request = Request(scope, receive)
        try:
            response = await self.endpoint(request)
        except Exception as exc:
            handler = _handler(self.app.exception_handlers, exc)
            if handler is None:
                raise
            answer = handler(request, exc)
            response = await answer if inspect.isawaitable(answer) else answer
        await response(scope, receive, send)


def server_errors(app: FastAPI, lane: ASGIApp) -> ASGIApp:
    """Starlette's server-error middleware around `lane`, with the app's 500 handler, as in the full stack."""
    handler = app.exception_handlers.get(500) or app.exception_handlers.get(Exception)
    return ServerErrorMiddleware(lane, handler=handler, debug=app.debug)
