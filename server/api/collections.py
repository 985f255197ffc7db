"""Collections: create, list, inspect, delete."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from nestor_client.models import CollectionConfig, CollectionInfo, CollectionSummary
from server.deps import CatalogDep
from server.embedding import check_encoder
from server.wire import NestorRoute, envelope

router = APIRouter(prefix="/collections", tags=["collections"], route_class=NestorRoute)


@router.get("", summary="List collections", responses={200: {"model": list[CollectionSummary]}})
async def list_collections(request: Request, catalog: CatalogDep) -> Response:
    started = time.perf_counter()
    items = [{"name": n, "count": c} for n, c in catalog.list()]
    return envelope(request, {"collections": items}, started)


@router.put(
    "/{name}",
    summary="Create a collection (idempotent for an identical config)",
    responses={200: {"model": CollectionInfo}},
)
async def create_collection(name: str, config: CollectionConfig, request: Request, catalog: CatalogDep) -> Response:
    started = time.perf_counter()
    existing = catalog.get(name).config if name in catalog.names() else None
    if config.encoder is not None or (existing is not None and existing.encoder is not None):
        # Normalises the encoder spec and loads its model (to learn its dimension): off the event loop.
        config = await run_in_threadpool(check_encoder, config, existing)
    coll, _ = await run_in_threadpool(catalog.create, name, config)
    return envelope(request, coll.info(), started)


@router.get(
    "/{name}",
    summary="Collection config, counts, index state and memory",
    responses={200: {"model": CollectionInfo}},
)
async def get_collection(name: str, request: Request, catalog: CatalogDep) -> Response:
    started = time.perf_counter()
    return envelope(request, catalog.get(name).info(), started)


@router.delete("/{name}", summary="Delete a collection and its data")
async def delete_collection(name: str, request: Request, catalog: CatalogDep) -> Response:
    started = time.perf_counter()
    await run_in_threadpool(catalog.delete, name)
    return envelope(request, True, started)
