"""Qdrant's query routes: `query`, `query/batch` and `query/groups`, and the older `search`, `search/batch`, `recommend`
and `recommend/batch` (rewritten as queries). Every one goes through `query.plan`."""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from index import pipeline as engine
from index.contract import AnyCollection, Query, QueryResult
from index.errors import PayloadTooLarge
from nestor_client.models import Filter
from server.auth import Role, authorize, gate_only, require
from server.deps import ScopeFilterDep
from server.dispatch import SearchDispatch
from server.qdrant.groups import groups
from server.qdrant.models import (
    QueryBatch,
    QueryGroupsRequest,
    QueryRequest,
    RecommendBatch,
    RecommendRequest,
    SearchBatch,
    SearchRequest,
)
from server.qdrant.points import engine_with_payload, scored
from server.qdrant.query import Plan, plan
from server.qdrant.wire import QdrantError, collection, nestor_monitor, ok, settings_of
from server.settings import Settings

router = APIRouter(prefix="/collections/{name}/points", tags=["qdrant-query"])
READ = [require(Role.read, filtered=True)]


def _run(coll: AnyCollection, plans: list[Plan], searches: list[Query]) -> tuple[list[Any], list[QueryResult]]:
    """Every plan's ScoredPoints: the searches in one engine call, the listings (no query) by scroll."""
    done = coll.search(searches) if searches else []
    results = iter(done)
    out = []
    for p in plans:
        if p.tree is not None:  # prefetch, fusion or sparse: Nestor's query pipeline (checked by `plan`)
            payload = engine_with_payload(p.with_payload)
            found, _ = engine.run(coll, p.tree, offset=p.offset, with_payload=payload, with_vector=p.with_vector)
            hits = [(h, h.score + 0.0) for h in found]
        elif p.query is not None:
            hits = [(h, h.score + 0.0) for h in next(results).hits]  # + 0.0: no -0.0 on the wire
        else:
            page, _ = coll.scroll(
                p.filter,
                limit=p.offset + p.limit,
                with_payload=engine_with_payload(p.with_payload),
                with_vector=p.with_vector,
            )
            hits = [(h, 0.0) for h in page[p.offset :]]
        out.append([scored(h, s, p.with_payload, p.with_vector, coll) for h, s in hits])
    return out, done


async def _answer(request: Request, coll: AnyCollection, plans: list[Plan]) -> list[list[dict[str, Any]]]:
    """Run the plans; Nestor's monitor counts the searches and their plans, as for its own search route."""
    searches = [p.query for p in plans if p.query is not None]
    mon = nestor_monitor(request)
    mon.searched(coll.name, searches)
    if len(plans) == 1 and searches and coll.is_cheap(searches[0]):  # as Nestor's own search (server/dispatch.py)
        dispatch: SearchDispatch = request.app.state.nestor.state.dispatch
        out, done = await dispatch.run(lambda: _run(coll, plans, searches))
    else:
        out, done = await run_in_threadpool(_run, coll, plans, searches)
    mon.planned(coll, searches, done)
    return out


def _check_batch(n: int, settings: Settings) -> None:
    if n > settings.max_search_batch:
        raise PayloadTooLarge(f"{n} searches in one request exceeds max_search_batch {settings.max_search_batch}")


@router.post("/query", dependencies=READ)
async def query(name: str, body: QueryRequest, request: Request, scope: ScopeFilterDep) -> Response:
    """Documents the route; requests are served by `query_fast`, which does the same."""
    started = time.perf_counter()
    coll = collection(request, name)
    res = await _answer(request, coll, [plan(coll, body, settings_of(request), scope)])
    return ok({"points": res[0]}, started)


@gate_only  # read: any key the gate let through; the collection's scope is checked here
async def query_fast(request: Request) -> Response:
    """`query_points`, the hot path, as a plain Starlette route (mounted ahead of the one above).

    FastAPI's dependency solving and body handling cost as much as a small ANN search; Nestor's own
    search skips them the same way (`server.api.search.search_fast`)."""
    started = time.perf_counter()
    scope = authorize(request, Role.read, filtered=True)
    try:
        data = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise QdrantError(f"Format error in JSON body: {exc}") from None
    body = QueryRequest.model_validate(data)
    coll = collection(request, request.path_params["name"])
    res = await _answer(request, coll, [plan(coll, body, settings_of(request), scope)])
    return ok({"points": res[0]}, started)


@router.post("/query/groups", dependencies=READ)
async def query_groups(name: str, body: QueryGroupsRequest, request: Request, scope: ScopeFilterDep) -> Response:
    started = time.perf_counter()
    coll = collection(request, name)
    found = await run_in_threadpool(groups, coll, body, settings_of(request), scope)
    return ok({"groups": found}, started)


@router.post("/query/batch", dependencies=READ)
async def query_batch(name: str, body: QueryBatch, request: Request, scope: ScopeFilterDep) -> Response:
    started = time.perf_counter()
    coll, settings = collection(request, name), settings_of(request)
    _check_batch(len(body.searches), settings)
    res = await _answer(request, coll, [plan(coll, s, settings, scope) for s in body.searches]) if body.searches else []
    return ok([{"points": r} for r in res], started)


def _from_search(s: SearchRequest) -> QueryRequest:
    """The older search body: `vector` is a list, or `{"name", "vector"}` for a named vector."""
    named = isinstance(s.vector, dict) and "name" in s.vector
    return QueryRequest(
        query=s.vector["vector"] if named else s.vector,
        using=s.vector["name"] if named else None,
        **s.model_dump(
            include={"filter", "params", "limit", "offset", "with_payload", "with_vector", "score_threshold"}
        ),
    )


def _from_recommend(r: RecommendRequest) -> QueryRequest:
    rec = {"positive": r.positive, "negative": r.negative, "strategy": r.strategy}
    return QueryRequest(
        query={"recommend": rec},
        **r.model_dump(
            include={
                "using",
                "filter",
                "params",
                "limit",
                "offset",
                "with_payload",
                "with_vector",
                "score_threshold",
                "lookup_from",
            }
        ),
    )


async def _older(
    request: Request, name: str, bodies: list[QueryRequest], scope: Filter | None
) -> list[list[dict[str, Any]]]:
    coll, settings = collection(request, name), settings_of(request)
    _check_batch(len(bodies), settings)
    return await _answer(request, coll, [plan(coll, b, settings, scope) for b in bodies]) if bodies else []


@router.post("/search", dependencies=READ)
async def search(name: str, body: SearchRequest, request: Request, scope: ScopeFilterDep) -> Response:
    started = time.perf_counter()
    return ok((await _older(request, name, [_from_search(body)], scope))[0], started)


@router.post("/search/batch", dependencies=READ)
async def search_batch(name: str, body: SearchBatch, request: Request, scope: ScopeFilterDep) -> Response:
    started = time.perf_counter()
    return ok(await _older(request, name, [_from_search(s) for s in body.searches], scope), started)


@router.post("/recommend", dependencies=READ)
async def recommend(name: str, body: RecommendRequest, request: Request, scope: ScopeFilterDep) -> Response:
    started = time.perf_counter()
    return ok((await _older(request, name, [_from_recommend(body)], scope))[0], started)


@router.post("/recommend/batch", dependencies=READ)
async def recommend_batch(name: str, body: RecommendBatch, request: Request, scope: ScopeFilterDep) -> Response:
    started = time.perf_counter()
    return ok(await _older(request, name, [_from_recommend(r) for r in body.searches], scope), started)
