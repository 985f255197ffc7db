"""`GET /metrics`: Prometheus text format (see `server.metrics` for the series)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from server.auth import Role, require
from server.metrics import CONTENT_TYPE
from server.monitor import monitor

__all__ = ["router"]

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    summary="Prometheus metrics (text format)",
    response_class=Response,
    dependencies=[require(Role.read)],
)
async def metrics(request: Request) -> Response:
    # Reading every collection's info lists index directories: off the event loop.
    body = await run_in_threadpool(monitor(request).metrics.render)
    return Response(body, media_type=CONTENT_TYPE)
