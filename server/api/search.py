"""Search and batch search. The response says which strategy ran (`strategy`)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from index.collection import Collection, Query
from index.errors import PayloadTooLarge
from index.filters import check_filter
from nestor_client.models import BatchSearchRequest, ScoredPoint, SearchRequest
from server.convert import hit_dict, to_query
from server.deps import CatalogDep, SettingsDep
from server.settings import Settings
from server.wire import NestorRoute, envelope

router = APIRouter(prefix="/collections/{name}/points", tags=["search"], route_class=NestorRoute)


def _query(coll: Collection, req: SearchRequest, settings: Settings) -> Query:
    if req.filter is not None:
        check_filter(req.filter, max_depth=settings.max_filter_depth, max_conditions=settings.max_filter_conditions)
    return to_query(req, coll.dim, settings.max_search_limit)


@router.post("/search", summary="k-NN search with optional filter", responses={200: {"model": list[ScoredPoint]}})
async def search(
    name: str, body: SearchRequest, request: Request, catalog: CatalogDep, settings: SettingsDep
) -> Response:
    started = time.perf_counter()
    coll = catalog.get(name)
    q = _query(coll, body, settings)
    # A cheap ANN lookup runs inline: a thread hop would cost more than the search itself.
    res = coll.search([q])[0] if coll.is_cheap(q) else (await run_in_threadpool(coll.search, [q]))[0]
    hits = [hit_dict(h, body.with_payload, body.with_vector) for h in res.hits]
    return envelope(request, hits, started, strategy=res.strategy)


@router.post(
    "/search/batch",
    summary="Several searches in one request",
    responses={200: {"model": list[list[ScoredPoint]]}},
)
async def search_batch(
    name: str, body: BatchSearchRequest, request: Request, catalog: CatalogDep, settings: SettingsDep
) -> Response:
    started = time.perf_counter()
    if len(body.searches) > settings.max_search_batch:
        raise PayloadTooLarge(
            f"{len(body.searches)} searches in one request exceeds max_search_batch {settings.max_search_batch}"
        )
    coll = catalog.get(name)
    queries = [_query(coll, s, settings) for s in body.searches]
    results = await run_in_threadpool(coll.search, queries)
    out = [
        [hit_dict(h, s.with_payload, s.with_vector) for h in r.hits]
        for s, r in zip(body.searches, results, strict=True)
    ]
    return envelope(request, out, started, strategy=[r.strategy for r in results])
