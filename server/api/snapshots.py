"""Snapshots: create, list, download, delete, and restore (from a stored snapshot or an upload).

Every route needs the admin role: a snapshot is a copy of the whole collection, and a restore
replaces one. The work is `index.snapshots`; it runs in the threadpool.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from index.catalog import Catalog
from index.snapshots import SnapshotStore
from nestor_client.models import CollectionInfo
from server.auth import Role, require
from server.deps import CatalogDep
from server.ingest.uploads import save_stream
from server.wire import NestorRoute, envelope

router = APIRouter(
    prefix="/collections/{name}/snapshots",
    tags=["snapshots"],
    route_class=NestorRoute,
    dependencies=[require(Role.admin)],
)

UPLOAD_SUFFIX = "/snapshots/upload"  # its body limit is max_snapshot_upload_bytes, not max_body_bytes
_SHA256 = r"^[0-9a-fA-F]{64}$"


class SnapshotInfo(BaseModel):
    name: str
    collection: str
    created_at: float
    size: int = Field(description="bytes of the snapshot file")
    sha256: str = Field(description="SHA-256 of the whole snapshot file")
    seq: int
    count: int
    index_included: bool = Field(description="false: the restored collection rebuilds its ANN index")


class SnapshotList(BaseModel):
    snapshots: list[SnapshotInfo]


class RestoreRequest(BaseModel):
    snapshot: str = Field(min_length=1, max_length=256, description="a snapshot name, as listed")
    source: str | None = Field(
        None, min_length=1, max_length=128, description="the collection the snapshot belongs to (default: this one)"
    )


async def _store(request: Request, catalog: CatalogDep) -> SnapshotStore:
    # Built on first use, next to the catalog's data; without an await, so two first requests
    # cannot both build one (its constructor clears the staging directory).
    store: SnapshotStore | None = getattr(request.app.state, "snapshots", None)
    if store is None:
        store = request.app.state.snapshots = SnapshotStore(catalog.data_dir)
    return store


StoreDep = Annotated[SnapshotStore, Depends(_store)]


@router.post(
    "", summary="Snapshot a collection (consistent under concurrent writes)", responses={200: {"model": SnapshotInfo}}
)
async def create_snapshot(name: str, request: Request, catalog: CatalogDep, store: StoreDep) -> Response:
    started = time.perf_counter()
    coll = catalog.get(name)
    snap = await run_in_threadpool(store.create, coll)
    return envelope(request, snap.to_dict(), started)


@router.get("", summary="List a collection's snapshots, oldest first", responses={200: {"model": SnapshotList}})
async def list_snapshots(name: str, request: Request, store: StoreDep) -> Response:
    started = time.perf_counter()
    snaps = await run_in_threadpool(store.list, name)
    return envelope(request, {"snapshots": [s.to_dict() for s in snaps]}, started)


@router.get(
    "/{snapshot}",
    summary="Download a snapshot (a tar; its SHA-256 is in the x-checksum-sha256 header)",
    response_class=FileResponse,
    responses={200: {"content": {"application/x-tar": {}}}},
)
async def download_snapshot(name: str, snapshot: str, store: StoreDep) -> FileResponse:
    info, path = store.get(name, snapshot)
    return FileResponse(
        path,
        media_type="application/x-tar",
        filename=f"{info.name}.tar",
        headers={"x-checksum-sha256": info.sha256},
    )


@router.delete("/{snapshot}", summary="Delete a snapshot")
async def delete_snapshot(name: str, snapshot: str, request: Request, store: StoreDep) -> Response:
    started = time.perf_counter()
    await run_in_threadpool(store.delete, name, snapshot)
    return envelope(request, True, started)


@router.post(
    "/restore",
    summary="Restore a stored snapshot into this collection (created, or replaced)",
    responses={200: {"model": CollectionInfo}},
)
async def restore_snapshot(
    name: str, body: RestoreRequest, request: Request, catalog: CatalogDep, store: StoreDep
) -> Response:
    started = time.perf_counter()
    Catalog.check_name(name)
    info, path = store.get(body.source or name, body.snapshot)
    coll = await run_in_threadpool(_restore, catalog, store, name, path, info.sha256)
    return envelope(request, coll, started)


@router.post(
    "/upload",
    summary="Restore an uploaded snapshot (the raw tar as the body) into this collection",
    responses={200: {"model": CollectionInfo}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload_snapshot(
    name: str,
    request: Request,
    catalog: CatalogDep,
    store: StoreDep,
    checksum: str | None = Query(None, pattern=_SHA256, description="the file's SHA-256, checked when given"),
) -> Response:
    started = time.perf_counter()
    Catalog.check_name(name)
    path = store.incoming()
    try:
        await save_stream(request.stream(), path)
        coll = await run_in_threadpool(_restore, catalog, store, name, path, checksum)
    finally:
        path.unlink(missing_ok=True)
    return envelope(request, coll, started)


def _restore(catalog: Catalog, store: SnapshotStore, name: str, path: Path, sha256: str | None) -> dict[str, Any]:
    staged, _ = store.unpack(path, sha256)
    try:
        return catalog.install(name, staged).info().model_dump(mode="json")
    finally:
        shutil.rmtree(staged, ignore_errors=True)  # gone already unless the install failed
