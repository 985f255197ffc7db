"""Points: upsert, delete, get, count, scroll. Validation here; the work is the collection's."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from index.errors import PayloadTooLarge
from index.filters import check_filter
from nestor_client.models import (
    CountRequest,
    DeleteRequest,
    Filter,
    GetRequest,
    HasIdCondition,
    Record,
    ScrollRequest,
    ScrollResult,
    UpsertRequest,
)
from server.auth import Role, require
from server.columnar import embed_batch_texts
from server.convert import batch_vectors, hit_dict, point_vectors, points_matrix
from server.deps import CatalogDep, ScopeFilterDep, SettingsDep
from server.embedding import embed_point_texts
from server.monitor import monitor
from server.scopes import and_filter
from server.settings import Settings
from server.wire import NestorRoute, envelope

router = APIRouter(prefix="/collections/{name}/points", tags=["points"], route_class=NestorRoute)


def _check_batch(n: int, settings: Settings) -> None:
    if n > settings.max_batch_points:
        raise PayloadTooLarge(f"{n} points in one request exceeds max_batch_points {settings.max_batch_points}")


def _check_payloads(payloads: Sequence[Mapping[str, Any] | None] | None, settings: Settings) -> None:
    # Measured as the JSON the store keeps; orjson makes this a small fraction of the write itself.
    limit = settings.max_payload_bytes
    for i, p in enumerate(payloads or ()):
        if p and len(size := orjson.dumps(p)) > limit:
            raise PayloadTooLarge(f"payload of point #{i} is {len(size)} bytes of JSON, over max_payload_bytes {limit}")


@router.put("", summary="Upsert points (atomic batch; same id overwrites)", dependencies=[require(Role.write)])
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
    config = coll.config
    vectors: Any
    if body.points is not None:
        points = body.points
        _check_batch(len(points), settings)
        ids = [p.id for p in points]
        payloads = [p.payload for p in points]
        plain = not config.named and config.multivector is None
        if plain and all(p.text is None and p.vector is not None and not isinstance(p.vector, dict) for p in points):
            vectors = points_matrix(points, coll.vector_config(None)[1].dim)  # the common case, one matrix
        else:
            vectors = point_vectors(points, config)
            if any(p.text is not None for p in points):  # the encoders run off the event loop
                await run_in_threadpool(embed_point_texts, coll, points, vectors)
    else:
        assert body.batch is not None
        _check_batch(len(body.batch.ids), settings)
        ids = list(body.batch.ids)
        payloads = body.batch.payloads  # type: ignore[assignment]
        vectors = batch_vectors(body.batch, config)
        if body.batch.texts is not None:  # the encoders run off the event loop
            vectors = await run_in_threadpool(embed_batch_texts, coll, body.batch, vectors)
    _check_payloads(payloads, settings)
    res = await run_in_threadpool(coll.upsert, ids, vectors, payloads)
    monitor(request).upserted(name, res.count)
    return envelope(request, {"upserted": res.count, "seq": res.seq}, started)


@router.post("/delete", summary="Delete points by ids or by filter", dependencies=[require(Role.write, filtered=True)])
async def delete_points(
    name: str,
    body: DeleteRequest,
    request: Request,
    catalog: CatalogDep,
    settings: SettingsDep,
    scope: ScopeFilterDep,
) -> Response:
    """Under a key whose scope has a filter, only points matching it are deleted (one engine call)."""
    started = time.perf_counter()
    coll = catalog.get(name)
    if body.ids is not None:
        _check_batch(len(body.ids), settings)
        if scope is None:
            res = await run_in_threadpool(coll.delete, list(body.ids))
        elif not body.ids:
            return envelope(request, {"deleted": 0, "seq": coll.seq}, started)
        else:
            scoped = Filter(must=[HasIdCondition(has_id=list(body.ids)), scope])
            res = await run_in_threadpool(coll.delete_where, scoped)
    else:
        assert body.filter is not None
        check_filter(body.filter, max_depth=settings.max_filter_depth, max_conditions=settings.max_filter_conditions)
        flt = and_filter(scope, body.filter)
        assert flt is not None
        res = await run_in_threadpool(coll.delete_where, flt)
    return envelope(request, {"deleted": res.count, "seq": res.seq}, started)


@router.post(
    "/get",
    summary="Get points by id",
    responses={200: {"model": list[Record]}},
    dependencies=[require(Role.read, filtered=True)],
)
async def get_points(
    name: str,
    body: GetRequest,
    request: Request,
    catalog: CatalogDep,
    settings: SettingsDep,
    scope: ScopeFilterDep,
) -> Response:
    started = time.perf_counter()
    coll = catalog.get(name)
    _check_batch(len(body.ids), settings)
    ids = list(body.ids)
    if scope is None:
        hits = await run_in_threadpool(coll.get, ids, with_payload=body.with_payload, with_vector=body.with_vector)
    elif not ids:
        hits = []
    else:
        # The ids that match the scope's filter, read in one engine call (a scroll over them), in request order.
        page, _ = await run_in_threadpool(
            functools.partial(
                coll.scroll,
                Filter(must=[HasIdCondition(has_id=ids), scope]),
                limit=len(ids),
                with_payload=body.with_payload,
                with_vector=body.with_vector,
            )
        )
        by_id = {(type(h.id), h.id): h for h in page}
        hits = [h for i in ids if (h := by_id.get((type(i), i))) is not None]
    out = []
    for h in hits:
        d = hit_dict(h, body.with_payload, body.with_vector, coll.config)
        d.pop("score")
        out.append(d)
    return envelope(request, out, started)


@router.post(
    "/count", summary="Count points, optionally under a filter", dependencies=[require(Role.read, filtered=True)]
)
async def count_points(
    name: str,
    body: CountRequest,
    request: Request,
    catalog: CatalogDep,
    settings: SettingsDep,
    scope: ScopeFilterDep,
) -> Response:
    started = time.perf_counter()
    coll = catalog.get(name)
    if body.filter is not None:
        check_filter(body.filter, max_depth=settings.max_filter_depth, max_conditions=settings.max_filter_conditions)
    n = await run_in_threadpool(coll.count_where, and_filter(scope, body.filter))
    return envelope(request, {"count": n}, started)


@router.post(
    "/scroll",
    summary="Page through the points matching a filter, in id order",
    responses={200: {"model": ScrollResult}},
    dependencies=[require(Role.read, filtered=True)],
)
async def scroll_points(
    name: str,
    body: ScrollRequest,
    request: Request,
    catalog: CatalogDep,
    settings: SettingsDep,
    scope: ScopeFilterDep,
) -> Response:
    """Integer ids ascending, then string ids; `offset` is the first id of the page (inclusive), and
    `next_page_offset` the one to pass next (null after the last page). Filters use the payload indexes."""
    started = time.perf_counter()
    coll = catalog.get(name)
    _check_batch(body.limit, settings)
    if body.filter is not None:
        check_filter(body.filter, max_depth=settings.max_filter_depth, max_conditions=settings.max_filter_conditions)
    hits, nxt = await run_in_threadpool(
        functools.partial(
            coll.scroll,
            and_filter(scope, body.filter),
            limit=body.limit,
            offset=body.offset,
            with_payload=body.with_payload,
            with_vector=body.with_vector,
        )
    )
    points = []
    for h in hits:
        d = hit_dict(h, body.with_payload, body.with_vector, coll.config)
        d.pop("score")
        points.append(d)
    return envelope(request, {"points": points, "next_page_offset": nxt}, started)
