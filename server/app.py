"""The FastAPI application factory."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from index.catalog import Catalog
from index.contract import CollectionOptions
from index.follow import FollowerCatalog
from index.fsutil import makedirs
from index.runtime import configure_threads
from index.stamp import install as install_stamp
from server.admission import WriteAdmission
from server.api import collections, health, pipeline, points, queries, search, search_matrix, snapshots
from server.api import dashboard as dashboard_api
from server.api import jobs as jobs_api
from server.api import metrics as metrics_api
from server.auth import AuthGate, KeyRing
from server.dispatch import SearchDispatch, default_threads
from server.errors import install_error_handlers
from server.ingest.runner import JobRunner
from server.lane import NestorApp, SearchEndpoint, server_errors
from server.metrics import RequestMetrics
from server.monitor import Monitor
from server.openapi import install_openapi
from server.processes import UDS_PATH_ENV, FollowerGate, is_follower, process_stamp
from server.qdrant.app import PREFIX as QDRANT_PREFIX
from server.qdrant.app import create_qdrant_app, version_info
from server.settings import Settings

__all__ = ["create_app"]

log = logging.getLogger("nestor.server")
VERSION = "0.1.0"


class BodyLimit:
    """Refuses bodies over `max_bytes` with 413, whether announced by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int, uploads: Mapping[str, tuple[int, str]] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # path -> its own limit and setting (file uploads, streamed to disk); "*suffix" matches a path's end
        self.uploads = dict(uploads or {})
        self._suffixes = tuple(p[1:] for p in self.uploads if p.startswith("*"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        upload = path in self.uploads or (bool(self._suffixes) and path.endswith(self._suffixes))
        if upload and path not in self.uploads:
            path = "*" + next(s for s in self._suffixes if path.endswith(s))
        limit, setting = self.uploads[path] if upload else (self.max_bytes, "max_body_bytes")
        for k, v in scope["headers"]:
            if k == b"content-length" and v.isdigit() and int(v) > limit:
                await self._refuse(send, limit, setting)
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
            await self._refuse(send, limit, setting)

    async def _refuse(self, send: Send, limit: int, setting: str) -> None:
        body = (
            b'{"error":{"type":"payload_too_large","message":"request body exceeds '
            + setting.encode()
            + b" "
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


def create_app(settings: Settings | None = None) -> NestorApp:
    configure_threads()  # a no-op after `nestor serve`, which calls it before faiss loads
    settings = settings or Settings()
    follower = is_follower()  # a read-only process of `nestor serve --processes N`
    keyring = KeyRing.from_settings(settings.api_keys, settings.api_keys_file, settings.auth)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        makedirs(settings.data_dir)
        cluster = None
        if settings.ray_address:  # only then is ray imported (cluster/ needs the `ray` extra)
            from cluster.sharded import RayCluster

            cluster = await run_in_threadpool(RayCluster, settings.ray_address)
            log.info("sharded collections on the Ray cluster at %s", settings.ray_address)
        stamp = process_stamp()  # several processes: the primary bumps it on each write (index/stamp.py)
        if stamp is not None and not follower:
            install_stamp(stamp)
        catalog = (FollowerCatalog if follower else Catalog)(  # server/processes.py
            settings.data_dir,
            CollectionOptions(
                exact_filter_threshold=settings.exact_filter_threshold,
                filter_walk_fraction=settings.filter_walk_fraction,
                save_idle_seconds=settings.index_save_idle_seconds,
                save_max_seconds=settings.index_save_max_seconds,
                index_threads=settings.index_threads,
                search_threads=1 if settings.search_threads == 0 else settings.search_threads,
                vacuum_threshold=settings.vacuum_threshold,
                disk_min_free=settings.disk_min_free_bytes,
                ram_cap=settings.ram_cap_bytes,
                vacuum_min_points=settings.vacuum_min_points,
                optimizer_interval=settings.optimizer_interval,
            ),
            cluster=cluster,
        )
        if isinstance(catalog, FollowerCatalog):
            catalog.catch_up_enabled = settings.follower_catch_up
            catalog.map_vectors = settings.follower_vectors == "mapped"
            catalog.stamp = stamp
        app.state.catalog = catalog
        await run_in_threadpool(catalog.open_all)
        if stamp is not None and not follower:
            stamp.bump()  # a restarted primary recovered the store: followers check it again
        jobs = JobRunner(
            catalog,
            settings.data_dir,
            workers=settings.job_workers,
            ingest_workers=settings.ingest_workers,
            queue_batches=settings.ingest_queue_batches,
            ingest_roots=settings.ingest_roots,
        )
        if not follower:  # jobs write: the primary runs them
            await run_in_threadpool(jobs.start)  # re-queues the jobs a restart interrupted
        app.state.jobs = jobs
        app.state.monitor.start(catalog)  # the live recall probe's thread
        app.state.ready = True
        if not keyring.enabled:
            log.warning(
                "auth is OFF: every request has the admin role. Configure API keys (NESTOR_API_KEYS or "
                "NESTOR_API_KEYS_FILE, see docs/security.md) before exposing %s:%d",
                settings.host,
                settings.port,
            )
        log.info("nestor ready: %d collections in %s", len(catalog.names()), settings.data_dir)
        try:
            yield
        finally:
            app.state.ready = False
            await run_in_threadpool(app.state.monitor.stop)
            await run_in_threadpool(app.state.dispatch.close)  # searches in flight end before the catalog closes
            await run_in_threadpool(jobs.stop)  # before the catalog: jobs write into its collections
            await run_in_threadpool(catalog.close)
            if stamp is not None:
                install_stamp(None)
                stamp.close()
            if cluster is not None:
                await run_in_threadpool(cluster.shutdown)

    app = NestorApp(
        title="Nestor",
        version=VERSION,
        summary="Vector similarity search over HTTP",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    app.state.settings = settings
    app.state.ready = False
    monitor = app.state.monitor = Monitor(settings)
    threads = settings.search_threads
    # server/dispatch.py; with several processes on few cores, each searches inline
    app.state.dispatch = SearchDispatch(default_threads(settings.processes) if threads is None else threads)
    monitor.metrics.attach(app.state)  # points, memory, jobs and recall, read at each scrape
    for module in (health, collections, points, search, search_matrix, pipeline, queries, jobs_api, snapshots):
        app.include_router(module.router)
    # Single search is served by a plain Starlette route ahead of its documented FastAPI twin.
    app.router.routes.insert(0, Route("/collections/{name}/points/search", search.search_fast, methods=["POST"]))
    matrix = Route("/collections/{name}/points/search/matrix", search_matrix.search_matrix_fast, methods=["POST"])
    app.router.routes.insert(0, matrix)
    for module in (dashboard_api, metrics_api):
        app.include_router(module.router)
    # Qdrant's REST dialect, for qdrant-client (server/qdrant); first, so its requests skip matching every route
    app.router.routes.insert(0, Mount(QDRANT_PREFIX, create_qdrant_app(app)))
    app.add_route(QDRANT_PREFIX, version_info, methods=["GET"])  # its root without the slash, as the client asks
    install_error_handlers(app)
    install_openapi(app)  # documents the envelope the responses really have
    max_rss = settings.max_rss_mb * 2**20 if settings.max_rss_mb is not None else None
    app.add_middleware(WriteAdmission, max_pending=settings.max_pending_writes, max_rss=max_rss)  # 503 past them
    app.add_middleware(RequestMetrics, metrics=monitor.metrics, monitor=monitor)  # inside the gate and body limit
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        uploads={
            jobs_api.UPLOAD_PATH: (settings.max_upload_bytes, "max_upload_bytes"),
            "*" + snapshots.UPLOAD_SUFFIX: (settings.max_snapshot_upload_bytes, "max_snapshot_upload_bytes"),
        },
    )
    app.add_middleware(AuthGate, keyring=keyring)  # outermost: a request without a valid key reads no body
    if follower:  # outside the gate: what the primary answers, it also authenticates
        app.add_middleware(FollowerGate, uds=os.environ[UDS_PATH_ENV])
    # A single search skips the framework's layers but not ours: the same classes, in the same order (server/lane.py)
    lane: ASGIApp = RequestMetrics(SearchEndpoint(app, search.search_fast), metrics=monitor.metrics, monitor=monitor)
    lane = AuthGate(BodyLimit(lane, max_bytes=settings.max_body_bytes), keyring=keyring)
    lane = FollowerGate(lane, uds=os.environ[UDS_PATH_ENV]) if follower else lane
    app.search_lane = server_errors(app, lane)
    return app
