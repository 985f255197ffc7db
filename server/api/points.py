"""Points: upsert, delete, get, count. Validation here; the work is the collection's."""

from __future__ import annotations

import time

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from index.errors import InvalidVector, PayloadTooLarge
from index.filters import check_filter
from index.multivector import MultiVectorCollection
from nestor_client.models import CountRequest, DeleteRequest, GetRequest, Record, UpsertRequest
from server.convert import batch_matrix, hit_dict, points_matrix, points_multivectors
from server.deps import CatalogDep, SettingsDep
from server.embedding import embed_points
from server.settings import Settings
from server.wire import NestorRoute, envelope

router = APIRouter(prefix="/collections/{name}/points", tags=["points"], route_class=NestorRoute)


def _check_batch(n: int, settings: Settings) -> None:
    if n > settings.max_batch_points:
        raise PayloadTooLarge(f"{n} points in one request exceeds max_batch_points {settings.max_batch_points}")


@router.put("", summary="Upsert points (atomic batch; same id overwrites)")
async def upsert_points(
    name: str,
    body: UpsertRequest,
    request: Request,
    catalog: CatalogDep,
    settings: SettingsDep,
    wait: bool = Query(True, description="accepted for compatibility: acknowledged writes are always applied"),
) -> Response:
    started = time.perf_counter()
    coll = catalog.get(name)
    if isinstance(coll, MultiVectorCollection):
        if body.points is None:
            raise InvalidVector("a multi-vector collection takes points with a multivector each, not a batch")
        _check_batch(len(body.points), settings)
        sets = points_multivectors(body.points, coll.dim)
        ids, payloads = [p.id for p in body.points], [p.payload for p in body.points]
        res = await run_in_threadpool(coll.upsert, ids, sets, payloads)
        return envelope(request, {"upserted": res.count, "seq": res.seq}, started)
    if body.points is not None:
        _check_batch(len(body.points), settings)
        ids = [p.id for p in body.points]
        payloads = [p.payload for p in body.points]
        if any(p.text is not None for p in body.points):  # the encoder runs off the event loop
            vectors = await run_in_threadpool(embed_points, coll, body.points)
        else:
            vectors = points_matrix(body.points, coll.dim)
    else:
        assert body.batch is not None
        _check_batch(len(body.batch.ids), settings)
        ids = list(body.batch.ids)
        payloads = body.batch.payloads  # type: ignore[assignment]
        vectors = batch_matrix(body.batch, coll.dim)
    res = await run_in_threadpool(coll.upsert, ids, vectors, payloads)
    return envelope(request, {"upserted": res.count, "seq": res.seq}, started)


@router.post("/delete", summary="Delete points by ids or by filter")
async def delete_points(
    name: str, body: DeleteRequest, request: Request, catalog: CatalogDep, settings: SettingsDep
) -> Response:
    started = time.perf_counter()
    coll = catalog.get(name)
    if body.ids is not None:
        _check_batch(len(body.ids), settings)
        res = await run_in_threadpool(coll.delete, list(body.ids))
    else:
        assert body.filter is not None
        check_filter(body.filter, max_depth=settings.max_filter_depth, max_conditions=settings.max_filter_conditions)
        res = await run_in_threadpool(coll.delete_where, body.filter)
    return envelope(request, {"deleted": res.count, "seq": res.seq}, started)


@router.post("/get", summary="Get points by id", responses={200: {"model": list[Record]}})
async def get_points(
    name: str, body: GetRequest, request: Request, catalog: CatalogDep, settings: SettingsDep
) -> Response:
    started = time.perf_counter()
    coll = catalog.get(name)
    _check_batch(len(body.ids), settings)
    hits = await run_in_threadpool(
        coll.get, list(body.ids), with_payload=body.with_payload, with_vector=body.with_vector
    )
    out = []
    for h in hits:
        d = hit_dict(h, body.with_payload, body.with_vector)
        d.pop("score")
        out.append(d)
    return envelope(request, out, started)


@router.post("/count", summary="Count points, optionally under a filter")
async def count_points(
    name: str, body: CountRequest, request: Request, catalog: CatalogDep, settings: SettingsDep
) -> Response:
    started = time.perf_counter()
    coll = catalog.get(name)
    if body.filter is not None:
        check_filter(body.filter, max_depth=settings.max_filter_depth, max_conditions=settings.max_filter_conditions)
    n = await run_in_threadpool(coll.count_where, body.filter)
    return envelope(request, {"count": n}, started)
