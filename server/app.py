"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from index.catalog import Catalog
from index.collection import CollectionOptions
from server.api import collections, health, points, search
from server.api import jobs as jobs_api
from server.errors import install_error_handlers
from server.ingest.runner import JobRunner
from server.settings import Settings

__all__ = ["create_app"]

log = logging.getLogger("nestor.server")
VERSION = "0.1.0"


class BodyLimit:
    """Refuses bodies over `max_bytes` with 413, whether announced by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int, uploads: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.uploads = dict(uploads or {})  # path -> its own limit (file uploads, streamed to disk)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope["path"] in self.uploads
        limit = self.uploads[scope["path"]] if upload else self.max_bytes
        for k, v in scope["headers"]:
            if k == b"content-length" and v.isdigit() and int(v) > limit:
                await self._refuse(send, limit, upload)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return msg

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(send, limit, upload)

    async def _refuse(self, send: Send, limit: int, upload: bool = False) -> None:
        setting = b"max_upload_bytes " if upload else b"max_body_bytes "
        body = (
            b'{"error":{"type":"payload_too_large","message":"request body exceeds '
            + setting
            + str(limit).encode()
            + b'"}}'
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def _operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        catalog = Catalog(
            settings.data_dir,
            CollectionOptions(
                exact_filter_threshold=settings.exact_filter_threshold,
                save_idle_seconds=settings.index_save_idle_seconds,
                save_max_seconds=settings.index_save_max_seconds,
                index_threads=settings.index_threads,
            ),
        )
        app.state.catalog = catalog
        await run_in_threadpool(catalog.open_all)
        jobs = JobRunner(
            catalog,
            settings.data_dir,
            workers=settings.job_workers,
            ingest_workers=settings.ingest_workers,
            queue_batches=settings.ingest_queue_batches,
        )
        await run_in_threadpool(jobs.start)  # re-queues the jobs a restart interrupted
        app.state.jobs = jobs
        app.state.ready = True
        log.info("nestor ready: %d collections in %s", len(catalog.names()), settings.data_dir)
        try:
            yield
        finally:
            app.state.ready = False
            await run_in_threadpool(jobs.stop)  # before the catalog: jobs write into its collections
            await run_in_threadpool(catalog.close)

    app = FastAPI(
        title="Nestor",
        version=VERSION,
        summary="Vector similarity search over HTTP",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    app.state.settings = settings
    app.state.ready = False
    for module in (health, collections, points, search, jobs_api):
        app.include_router(module.router)
    # Single search is served by a plain Starlette route ahead of its documented FastAPI twin.
    app.router.routes.insert(0, Route("/collections/{name}/points/search", search.search_fast, methods=["POST"]))
    install_error_handlers(app)
    app.add_middleware(
        BodyLimit, max_bytes=settings.max_body_bytes, uploads={jobs_api.UPLOAD_PATH: settings.max_upload_bytes}
    )
    return app
