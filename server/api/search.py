"""Search and batch search. The response says which strategy ran (`strategy`); the monitor counts them."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from index.catalog import Catalog
from index.contract import AnyCollection, Query
from index.errors import NotReady, PayloadTooLarge
from index.filters import check_filter
from nestor_client.models import BatchSearchRequest, Filter, ScoredPoint, SearchRequest
from server.auth import Role, authorize, gate_only, require
from server.convert import hit_dict, to_query
from server.deps import CatalogDep, ScopeFilterDep, SettingsDep
from server.dispatch import SearchDispatch
from server.embedding import embed_queries
from server.monitor import monitor
from server.scopes import and_filter
from server.settings import Settings
from server.wire import NestorRoute, body_schema, envelope, read_model

router = APIRouter(prefix="/collections/{name}/points", tags=["search"], route_class=NestorRoute)


def dispatch(request: Request) -> SearchDispatch:
    d: SearchDispatch = request.app.state.dispatch
    return d


def _query(coll: AnyCollection, req: SearchRequest, settings: Settings, scope: Filter | None) -> Query:
    """The request's query; its filter (checked against the limits) ANDed with the key's scope filter."""
    if req.filter is not None:
        check_filter(req.filter, max_depth=settings.max_filter_depth, max_conditions=settings.max_filter_conditions)
    if scope is not None:
        req = req.model_copy(update={"filter": and_filter(scope, req.filter)})
    return to_query(req, coll, settings.max_search_limit)


async def _search(request: Request, name: str, catalog: Catalog, settings: Settings) -> Response:
    started = time.perf_counter()
    scope = authorize(request, Role.read, filtered=True)  # the fast path has no dependencies: checked here
    body = await read_model(request, SearchRequest)
    coll = catalog.get(name)
    if body.text is not None:  # the encoder runs off the event loop
        body = (await run_in_threadpool(embed_queries, coll, [body]))[0]
    q = _query(coll, body, settings, scope)
    mon = monitor(request)
    mon.searched(name, (q,))  # counted, and kept for the recall probe
    # A cheap ANN lookup runs inline when alone (a thread hop would cost more than the search itself),
    # on a search thread when other requests are in progress (server/dispatch.py).
    # With ?partial=true, a sharded collection with a shard down answers from the others (flagged).
    # (Most requests have no query string: parsing an empty one cost about 10 us.)
    partial = bool(request.scope["query_string"]) and request.query_params.get("partial") == "true"
    if coll.is_cheap(q) and not partial:
        res = (await dispatch(request).run(lambda: coll.search([q])))[0]
    else:
        res = (await run_in_threadpool(lambda: coll.search([q], partial=partial)))[0]
    mon.planned(coll, (q,), (res,))
    hits = [hit_dict(h, body.with_payload, body.with_vector, coll.config) for h in res.hits]
    return envelope(request, hits, started, strategy=res.strategy)


@router.post(
    "/search",
    summary="k-NN search with optional filter",
    responses={200: {"model": list[ScoredPoint]}},
    openapi_extra=body_schema(SearchRequest),
    dependencies=[require(Role.read, filtered=True)],
)
async def search(name: str, request: Request, catalog: CatalogDep, settings: SettingsDep) -> Response:
    """Documents the endpoint; requests are served by `search_fast`, which shares `_search`."""
    return await _search(request, name, catalog, settings)


@gate_only  # read: any key the gate let through
async def search_fast(request: Request) -> Response:
    """The single-search hot path as a plain Starlette endpoint.

    FastAPI's dependency solving cost about a tenth of a whole search request in profiles.
    `server.app` mounts this ahead of the documented route above.
    """
    app = request.app
    if not app.state.ready:
        raise NotReady("the server is still recovering its collections")
    return await _search(request, request.path_params["name"], app.state.catalog, app.state.settings)


@router.post(
    "/search/batch",
    summary="Several searches in one request",
    responses={200: {"model": list[list[ScoredPoint]]}},
    dependencies=[require(Role.read, filtered=True)],
)
async def search_batch(
    name: str,
    body: BatchSearchRequest,
    request: Request,
    catalog: CatalogDep,
    settings: SettingsDep,
    scope: ScopeFilterDep,
) -> Response:
    started = time.perf_counter()
    if len(body.searches) > settings.max_search_batch:
        raise PayloadTooLarge(
            f"{len(body.searches)} searches in one request exceeds max_search_batch {settings.max_search_batch}"
        )
    coll = catalog.get(name)
    searches = body.searches
    if any(s.text is not None for s in searches):
        searches = await run_in_threadpool(embed_queries, coll, searches)
    queries = [_query(coll, s, settings, scope) for s in searches]
    monitor(request).searched(name, queries)
    results = await run_in_threadpool(coll.search, queries)
    monitor(request).planned(coll, queries, results)
    out = [
        [hit_dict(h, s.with_payload, s.with_vector, coll.config) for h in r.hits]
        for s, r in zip(searches, results, strict=True)
    ]
    return envelope(request, out, started, strategy=[r.strategy for r in results])
