"""Qdrant's point routes: upsert, retrieve, delete, scroll, count, payload and vector updates, batch."""

from __future__ import annotations

import functools
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from index.contract import AnyCollection, Hit
from index.errors import PayloadTooLarge
from nestor_client.models import Filter, HasIdCondition
from server.auth import Role, require
from server.deps import ScopeFilterDep
from server.qdrant import updates
from server.qdrant.filters import to_filter
from server.qdrant.ids import point_id, point_ids
from server.qdrant.models import (
    CountRequest,
    DeletePayload,
    DeleteVectors,
    PointRequest,
    PointsSelector,
    ScrollRequest,
    SetPayload,
    UpdateOperations,
    UpdateVectors,
    UpsertPoints,
    WithVector,
)
from server.qdrant.points import engine_with_payload, record
from server.qdrant.wire import QdrantError, collection, nestor_monitor, ok, settings_of, updated
from server.scopes import and_filter

router = APIRouter(prefix="/collections/{name}/points", tags=["qdrant-points"])
READ = [require(Role.read, filtered=True)]
WRITE = [require(Role.write)]


def _read(
    coll: AnyCollection, ids: list[Any], scope: Filter | None, with_payload: bool, with_vector: WithVector
) -> list[Hit]:
    """The points of `ids` that exist (and match the key's scope filter), in request order."""
    if scope is None:
        return coll.get(ids, with_payload=with_payload, with_vector=with_vector)
    if not ids:
        return []
    page, _ = coll.scroll(
        Filter(must=[HasIdCondition(has_id=ids), scope]),
        limit=len(ids),
        with_payload=with_payload,
        with_vector=with_vector,
    )
    by_id = {(type(h.id), h.id): h for h in page}
    return [h for i in ids if (h := by_id.get((type(i), i))) is not None]


@router.put("", dependencies=WRITE)
async def upsert(name: str, body: UpsertPoints, request: Request, wait: bool = True) -> Response:
    started = time.perf_counter()
    coll = collection(request, name)
    res = await run_in_threadpool(updates.upsert, coll, body, settings_of(request))
    nestor_monitor(request).upserted(name, res.count)
    return updated(res.seq, started, wait=wait)


@router.post("", dependencies=READ)
async def retrieve(name: str, body: PointRequest, request: Request, scope: ScopeFilterDep) -> Response:
    started = time.perf_counter()
    coll = collection(request, name)
    ids = point_ids(body.ids)
    if len(ids) > settings_of(request).max_batch_points:
        raise PayloadTooLarge(f"{len(ids)} ids in one request exceeds max_batch_points")
    hits = await run_in_threadpool(_read, coll, ids, scope, engine_with_payload(body.with_payload), body.with_vector)
    return ok([record(h, body.with_payload, body.with_vector, coll) for h in hits], started)


@router.get("/{point}", dependencies=READ)
async def get_point(name: str, point: str, request: Request, scope: ScopeFilterDep) -> Response:
    started = time.perf_counter()
    coll = collection(request, name)
    pid = point_id(int(point) if point.isdigit() else point)
    hits = await run_in_threadpool(_read, coll, [pid], scope, True, True)
    if not hits:
        raise QdrantError(f"Not found: No point with id {pid} found", 404)
    return ok(record(hits[0], True, True, coll), started)


@router.post("/delete", dependencies=[require(Role.write, filtered=True)])
async def delete(
    name: str, body: PointsSelector, request: Request, scope: ScopeFilterDep, wait: bool = True
) -> Response:
    started = time.perf_counter()
    coll = collection(request, name)
    res = await run_in_threadpool(updates.delete, coll, body, settings_of(request), scope)
    return updated(res.seq, started, wait=wait)


@router.post("/scroll", dependencies=READ)
async def scroll(name: str, body: ScrollRequest, request: Request, scope: ScopeFilterDep) -> Response:
    started = time.perf_counter()
    coll = collection(request, name)
    settings = settings_of(request)
    if body.order_by is not None:
        raise QdrantError("Bad request: order_by is not supported by Nestor: scroll pages in id order")
    limit = body.limit or 10
    if limit > settings.max_batch_points:
        raise PayloadTooLarge(f"limit {limit} exceeds max_batch_points {settings.max_batch_points}")
    flt = and_filter(scope, to_filter(body.filter, settings))
    offset = point_id(body.offset) if body.offset is not None else None
    hits, nxt = await run_in_threadpool(
        functools.partial(
            coll.scroll,
            flt,
            limit=limit,
            offset=offset,
            with_payload=engine_with_payload(body.with_payload),
            with_vector=body.with_vector,
        )
    )
    points = [record(h, body.with_payload, body.with_vector, coll) for h in hits]
    return ok({"points": points, "next_page_offset": nxt}, started)


@router.post("/count", dependencies=READ)
async def count(name: str, body: CountRequest, request: Request, scope: ScopeFilterDep) -> Response:
    """Always exact (`exact: false` is answered exactly too)."""
    started = time.perf_counter()
    coll = collection(request, name)
    flt = and_filter(scope, to_filter(body.filter, settings_of(request)))
    return ok({"count": await run_in_threadpool(coll.count_where, flt)}, started)


async def _write(request: Request, name: str, op: str, body: Any, wait: bool) -> Response:
    started = time.perf_counter()
    coll = collection(request, name)
    res = await run_in_threadpool(updates.OPERATIONS[op][1], coll, body, settings_of(request))
    return updated(res.seq, started, wait=wait)


@router.post("/payload", dependencies=WRITE)
async def set_payload(name: str, body: SetPayload, request: Request, wait: bool = True) -> Response:
    return await _write(request, name, "set_payload", body, wait)


@router.put("/payload", dependencies=WRITE)
async def overwrite_payload(name: str, body: SetPayload, request: Request, wait: bool = True) -> Response:
    return await _write(request, name, "overwrite_payload", body, wait)


@router.post("/payload/delete", dependencies=WRITE)
async def delete_payload(name: str, body: DeletePayload, request: Request, wait: bool = True) -> Response:
    return await _write(request, name, "delete_payload", body, wait)


@router.post("/payload/clear", dependencies=WRITE)
async def clear_payload(name: str, body: PointsSelector, request: Request, wait: bool = True) -> Response:
    return await _write(request, name, "clear_payload", body, wait)


@router.put("/vectors", dependencies=WRITE)
async def update_vectors(name: str, body: UpdateVectors, request: Request, wait: bool = True) -> Response:
    return await _write(request, name, "update_vectors", body, wait)


@router.post("/vectors/delete", dependencies=WRITE)
async def delete_vectors(name: str, body: DeleteVectors, request: Request, wait: bool = True) -> Response:
    return await _write(request, name, "delete_vectors", body, wait)


@router.post("/batch", dependencies=WRITE)
async def batch_update(name: str, body: UpdateOperations, request: Request, wait: bool = True) -> Response:
    started = time.perf_counter()
    coll = collection(request, name)
    results = await run_in_threadpool(updates.apply, coll, body.operations, settings_of(request))
    status = "completed" if wait else "acknowledged"
    return ok([{"operation_id": r.seq, "status": status} for r in results], started)
