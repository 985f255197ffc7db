"""Collections: create, list, inspect, delete; their payload indexes."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from index.catalog import Catalog
from index.errors import CollectionNotFound, InvalidRequest, LimitExceeded
from nestor_client.models import CollectionConfig, CollectionInfo, PayloadIndexRequest
from server.auth import Role, require
from server.deps import CatalogDep, GrantDep, SettingsDep
from server.embedding import check_encoder, has_encoder
from server.monitor import monitor
from server.openapi import CollectionList, OptimizeDone, OptimizeStarted
from server.scopes import CollectionScope
from server.wire import NestorRoute, envelope

router = APIRouter(prefix="/collections", tags=["collections"], route_class=NestorRoute)


@router.get(
    "",
    summary="List collections",
    responses={200: {"model": CollectionList}},
    dependencies=[require(Role.read, listing=True)],
)
async def list_collections(request: Request, catalog: CatalogDep, grant: GrantDep) -> Response:
    """A scoped key sees only the collections in its scope, and under a filter only the points it matches."""
    started = time.perf_counter()
    listed = catalog.list()
    if grant.collections is not None:
        scopes = grant.collections
        listed = [(n, c) for n, c in listed if n in scopes]
        if any(scopes[n].filter is not None for n, _ in listed):
            listed = await run_in_threadpool(_scoped_counts, catalog, listed, scopes)
    items = [{"name": n, "count": c} for n, c in listed]
    return envelope(request, {"collections": items}, started)


def _scoped_counts(
    catalog: Catalog, listed: list[tuple[str, int]], scopes: Mapping[str, CollectionScope]
) -> list[tuple[str, int]]:
    out = []
    for n, c in listed:
        flt = scopes[n].filter
        if flt is not None:
            try:
                c = catalog.get(n).count_where(flt)
            except CollectionNotFound:  # deleted since it was listed
                continue
        out.append((n, c))
    return out


@router.put(
    "/{name}",
    summary="Create a collection (idempotent for an identical config)",
    responses={200: {"model": CollectionInfo}},
    dependencies=[require(Role.admin)],
)
async def create_collection(
    name: str, config: CollectionConfig, request: Request, catalog: CatalogDep, settings: SettingsDep
) -> Response:
    started = time.perf_counter()
    for vname, vcfg in config.vector_fields().items():
        if vcfg.dim > settings.max_dim:
            what = f"vector {vname!r}: dim" if vname else "dim"
            raise LimitExceeded(f"{what} {vcfg.dim} exceeds max_dim {settings.max_dim}")
    existing = catalog.get(name).config if name in catalog.names() else None
    if has_encoder(config) or (existing is not None and has_encoder(existing)):
        # Normalises the encoder spec and loads its model (to learn its dimension): off the event loop.
        config = await run_in_threadpool(check_encoder, config, existing)
    coll, _ = await run_in_threadpool(catalog.create, name, config)
    return envelope(request, coll.info().model_dump(mode="json"), started)


@router.get(
    "/{name}",
    summary="Collection config, counts, index state and memory",
    responses={200: {"model": CollectionInfo}},
    dependencies=[require(Role.read)],  # not for a filtered scope: its counts cover every point
)
async def get_collection(name: str, request: Request, catalog: CatalogDep) -> Response:
    started = time.perf_counter()
    info = catalog.get(name).info().model_dump(mode="json")
    info["stats"] = monitor(request).stats(name)  # rates, latency percentiles, live recall: what the dashboard draws
    return envelope(request, info, started)


@router.delete("/{name}", summary="Delete a collection and its data", dependencies=[require(Role.admin)])
async def delete_collection(name: str, request: Request, catalog: CatalogDep) -> Response:
    started = time.perf_counter()
    await run_in_threadpool(catalog.delete, name)
    return envelope(request, True, started)


@router.post(
    "/{name}/optimize",
    summary="Compact the collection now, in the background (progress in GET /collections/{name})",
    status_code=202,
    responses={202: {"model": OptimizeStarted}, 200: {"model": OptimizeDone}},
    dependencies=[require(Role.admin)],
)
async def optimize_collection(
    name: str,
    request: Request,
    catalog: CatalogDep,
    wait: bool = Query(False, description="return once the compaction has finished (200), with its result"),
) -> Response:
    """202 (`started: false` when one is already running); 400 for a sharded collection."""
    started = time.perf_counter()
    coll = catalog.get(name)
    optimizer = getattr(coll, "optimizer", None)  # local collections (index/optimizer.py)
    if coll.distributed or optimizer is None:
        raise InvalidRequest(f"collection {name!r} is sharded: compaction runs on single-node collections only")
    began = await run_in_threadpool(coll.optimize)  # type: ignore[attr-defined]
    if not wait:
        return envelope(request, {"status": "acknowledged", "started": began}, started, status=202)
    status = await run_in_threadpool(optimizer.wait)
    return envelope(request, {"status": "completed", "started": began, **status.model_dump(mode="json")}, started)


@router.put(
    "/{name}/index",
    summary="Create a payload index on a payload key (built from the stored points)",
    dependencies=[require(Role.admin)],
)
async def create_payload_index(
    name: str,
    body: PayloadIndexRequest,
    request: Request,
    catalog: CatalogDep,
    wait: bool = Query(True, description="return once the index is built (else filters run unindexed until then)"),
) -> Response:
    started = time.perf_counter()
    coll = catalog.get(name)
    created = await run_in_threadpool(
        functools.partial(coll.create_payload_index, body.field_name, body.field_schema, wait=wait)
    )
    status = "completed" if wait or not created else "acknowledged"
    return envelope(request, {"status": status, "created": created}, started)


@router.delete(
    "/{name}/index/{field_name}", summary="Drop the payload index on a key", dependencies=[require(Role.admin)]
)
async def delete_payload_index(name: str, field_name: str, request: Request, catalog: CatalogDep) -> Response:
    started = time.perf_counter()
    deleted = await run_in_threadpool(catalog.get(name).delete_payload_index, field_name)
    return envelope(request, {"status": "completed", "deleted": deleted}, started)
