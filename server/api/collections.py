"""Collections: create, list, inspect, delete."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from nestor_client.models import CollectionConfig, CollectionInfo, CollectionSummary
from server.deps import CatalogDep
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
