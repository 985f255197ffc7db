"""Liveness and readiness."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response

from server.wire import NestorRoute, envelope, error_response

router = APIRouter(tags=["health"], route_class=NestorRoute)


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz(request: Request) -> Response:
    return envelope(request, True, time.perf_counter())


@router.get("/readyz", summary="Readiness: collections are recovered and serving")
async def readyz(request: Request) -> Response:
    if not getattr(request.app.state, "ready", False):
        return error_response(request, 503, "not_ready", "the server is still recovering its collections")
    return envelope(request, True, time.perf_counter())
