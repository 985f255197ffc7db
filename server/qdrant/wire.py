"""The Qdrant envelope and error shape, and what every Qdrant route needs from the Nestor app.

Success is `{"result", "status": "ok", "time"}`; an error is `{"status": {"error": msg}, "time"}` with
Qdrant's status codes (`errors_to_qdrant`). Writes answer Qdrant's `UpdateResult`.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import Request, Response

from index.catalog import Catalog
from index.contract import AnyCollection
from index.errors import NestorError, NotReady
from server.monitor import Monitor
from server.settings import Settings

__all__ = ["QdrantError", "catalog_of", "collection", "error", "nestor_monitor", "ok", "settings_of", "updated"]


class QdrantError(NestorError):
    """A request the Qdrant surface refuses: Qdrant's wording and status (400 unless said)."""

    status = 400
    type = "qdrant_bad_request"

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _dumps(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def ok(result: Any, started: float) -> Response:
    body = {"result": result, "status": "ok", "time": time.perf_counter() - started}
    return Response(_dumps(body), media_type="application/json")


def updated(seq: int, started: float, *, wait: bool = True) -> Response:
    """Qdrant's UpdateResult. Every acknowledged Nestor write is applied and durable: "completed" when
    the client waits; "acknowledged" (still true) when it asked not to."""
    return ok({"operation_id": seq, "status": "completed" if wait else "acknowledged"}, started)


def error(status: int, message: str) -> Response:
    return Response(
        _dumps({"status": {"error": message}, "time": 0.0}), status_code=status, media_type="application/json"
    )


def catalog_of(request: Request) -> Catalog:
    """The catalog of the Nestor app this surface is mounted in (the one the native routers use)."""
    parent = request.app.state.nestor
    catalog: Catalog | None = getattr(parent.state, "catalog", None)
    if catalog is None or not parent.state.ready:
        raise NotReady("the server is still recovering its collections")
    return catalog


def nestor_monitor(request: Request) -> Monitor:
    """The Nestor app's monitor: the dashboard's stats, metrics and the recall probe see this surface too."""
    monitor: Monitor = request.app.state.nestor.state.monitor
    return monitor


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.nestor.state.settings
    return settings


def collection(request: Request, name: str) -> AnyCollection:
    return catalog_of(request).get(name)
