"""Qdrant's collection snapshots on Nestor's (`index.snapshots`): create, list, download, delete, recover.

`recover` takes Qdrant's `location`: a snapshot's name, or the URL or path of a stored snapshot
(`.../collections/{source}/snapshots/{name}`, as its download URL is). Nestor never fetches a remote
URL (the server would reach wherever a request says); move a snapshot between servers by downloading it
and uploading it to Nestor's own `POST /collections/{name}/snapshots/upload`.
"""

from __future__ import annotations

import re
import shutil
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from index.catalog import Catalog
from index.snapshots import SnapshotInfo, SnapshotStore
from server.auth import Role, require
from server.qdrant.models import RecoverRequest
from server.qdrant.wire import QdrantError, catalog_of, collection, ok

router = APIRouter(
    prefix="/collections/{name}/snapshots", tags=["qdrant-snapshots"], dependencies=[require(Role.admin)]
)
_LOCATION = re.compile(r"(?:^|/)collections/(?P<source>[^/]+)/snapshots/(?P<snapshot>[^/?#]+)/?$")


def _store(request: Request) -> SnapshotStore:
    # The one store of the Nestor app (its native snapshot routes build the same one, on first use).
    parent = request.app.state.nestor
    store: SnapshotStore | None = getattr(parent.state, "snapshots", None)
    if store is None:
        store = parent.state.snapshots = SnapshotStore(catalog_of(request).data_dir)
    return store


def _description(s: SnapshotInfo) -> dict[str, Any]:
    created = datetime.fromtimestamp(s.created_at, UTC).replace(tzinfo=None).isoformat(timespec="seconds")
    return {"name": s.name, "creation_time": created, "size": s.size, "checksum": s.sha256}


@router.post("")
async def create_snapshot(name: str, request: Request) -> Response:
    started = time.perf_counter()
    coll = collection(request, name)
    snap = await run_in_threadpool(_store(request).create, coll)
    return ok(_description(snap), started)


@router.get("")
async def list_snapshots(name: str, request: Request) -> Response:
    started = time.perf_counter()
    collection(request, name)
    snaps = await run_in_threadpool(_store(request).list, name)
    return ok([_description(s) for s in snaps], started)


@router.get("/{snapshot}")
async def download_snapshot(name: str, snapshot: str, request: Request) -> FileResponse:
    info, path = _store(request).get(name, snapshot)
    return FileResponse(path, media_type="application/x-tar", filename=f"{info.name}.tar")


@router.delete("/{snapshot}")
async def delete_snapshot(name: str, snapshot: str, request: Request) -> Response:
    started = time.perf_counter()
    await run_in_threadpool(_store(request).delete, name, snapshot)
    return ok(True, started)


@router.put("/recover")
async def recover_snapshot(name: str, body: RecoverRequest, request: Request) -> Response:
    started = time.perf_counter()
    Catalog.check_name(name)
    found = _LOCATION.search(body.location)
    source, snapshot = (found["source"], found["snapshot"]) if found else (name, body.location)
    if "/" in snapshot or ":" in snapshot:
        raise QdrantError(
            "Bad request: Nestor recovers stored snapshots only: give a snapshot's name or its URL on this server"
        )
    store, catalog = _store(request), catalog_of(request)
    info, path = store.get(source, snapshot.removesuffix(".tar"))
    if body.checksum is not None and body.checksum.lower() != info.sha256:
        raise QdrantError(f"Bad request: checksum mismatch: the snapshot's SHA-256 is {info.sha256}")

    def restore() -> None:
        staged, _ = store.unpack(path, info.sha256)
        try:
            catalog.install(name, staged)
        finally:
            shutil.rmtree(staged, ignore_errors=True)

    await run_in_threadpool(restore)
    return ok(True, started)
