"""The Qdrant-compatible surface: a FastAPI app mounted in Nestor's at `PREFIX` (`/qdrant`).

It is its own app so that its errors take Qdrant's shape (`{"status": {"error"}, "time"}`) while
Nestor's own routes keep theirs; it shares the Nestor app's catalog, settings and middleware (the
API-key gate and body limit run before either app sees a request).
"""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.routing import Route

from encoders import EncoderError
from index.errors import CollectionExists, CollectionNotFound, NestorError, Unprocessable
from server.qdrant import routes_collections, routes_points, routes_query, routes_snapshots
from server.qdrant.wire import QdrantError, error

__all__ = ["PREFIX", "QDRANT_VERSION", "create_qdrant_app", "version_info"]

log = logging.getLogger("nestor.qdrant")
PREFIX = "/qdrant"
QDRANT_VERSION = "1.20.0"  # the Qdrant REST API this surface follows (qdrant-client checks it)


def _message(exc: NestorError) -> str:
    """Qdrant's wording for a Nestor error."""
    if isinstance(exc, QdrantError):
        return exc.message
    if isinstance(exc, CollectionNotFound):
        return f"Not found: Collection `{exc.name}` doesn't exist!"
    if isinstance(exc, CollectionExists):
        return f"Wrong input: {exc.message}"
    if isinstance(exc, Unprocessable):
        return f"Wrong input: {exc.message}"
    prefix = {400: "Bad request", 403: "Forbidden", 404: "Not found", 503: "Service unavailable"}.get(exc.status)
    return f"{prefix}: {exc.message}" if prefix else exc.message


def _status(exc: NestorError) -> int:
    # Qdrant answers input that parses but is wrong (dimensions, vector names, values) with 400.
    return 400 if isinstance(exc, Unprocessable) else exc.status


def _validation(errors: list[dict[str, object]]) -> Response:
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    loc = [str(p) for p in first.get("loc", ()) or () if p != "body"]  # type: ignore[attr-defined]
    where = ".".join(loc)
    text = f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
    kind = str(first.get("type", ""))
    if kind in ("json_invalid", "missing") or kind.endswith(("_type", "_parsing")):
        return error(400, f"Format error in JSON body: {text}")
    return error(422, f"Validation error in JSON body: [{text}]")


async def version_info(request: Request) -> Response:
    """`GET /qdrant`: Qdrant's root answers its version bare (no envelope); qdrant-client checks it at start."""
    body = {"title": "nestor (Qdrant-compatible REST)", "version": QDRANT_VERSION, "commit": None}
    return Response(orjson.dumps(body), media_type="application/json")


def create_qdrant_app(nestor: FastAPI) -> FastAPI:
    app = FastAPI(title="Nestor: Qdrant-compatible REST", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.nestor = nestor
    app.state.route_prefix = PREFIX  # how Nestor's request metrics label these routes

    app.add_route("/", version_info, methods=["GET"])

    @app.get("/healthz")
    @app.get("/livez")
    async def live() -> Response:
        return Response("healthz check passed", media_type="text/plain")

    @app.get("/readyz")
    async def ready() -> Response:
        if not nestor.state.ready:
            return error(503, "Service unavailable: the server is still recovering its collections")
        return Response("all shards are ready", media_type="text/plain")

    for router in (
        routes_collections.router,
        routes_collections.aliases,
        routes_points.router,
        routes_query.router,
        routes_snapshots.router,
    ):
        app.include_router(router)
    # query_points is served by a plain Starlette route ahead of its FastAPI twin (see query_fast)
    app.router.routes.insert(0, Route("/collections/{name}/points/query", routes_query.query_fast, methods=["POST"]))

    async def on_domain(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, NestorError)
        return error(_status(exc), _message(exc))

    async def on_encoder(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, EncoderError)
        return error(exc.status, exc.message)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError | ValidationError)
        return _validation(list(exc.errors()))  # type: ignore[arg-type]

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error(exc.status_code, str(exc.detail))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error(500, "Service internal error")

    app.add_exception_handler(NestorError, on_domain)
    app.add_exception_handler(EncoderError, on_encoder)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(ValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
    return app
