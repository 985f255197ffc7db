"""The query pipeline: prefetch, fuse, rescore (`POST /collections/{name}/points/query`)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from index import pipeline as engine
from index.contract import Hit
from nestor_client.query import QueryRequest, QueryResponse
from server.auth import Role, require
from server.convert import hit_dict
from server.deps import CatalogDep, ScopeFilterDep, SettingsDep
from server.hybrid import expand
from server.pipeline import embed_texts, has_text, limits, to_stage
from server.wire import NestorRoute, envelope

router = APIRouter(prefix="/collections/{name}/points", tags=["search"], route_class=NestorRoute)


@router.post(
    "/query",
    summary="Query pipeline: nested prefetch, fusion (RRF, DBSF) and exact rescoring",
    responses={200: {"model": QueryResponse}},
    dependencies=[require(Role.read, filtered=True)],
)
async def query(
    name: str,
    body: QueryRequest,
    request: Request,
    catalog: CatalogDep,
    settings: SettingsDep,
    scope: ScopeFilterDep,
) -> Response:
    started = time.perf_counter()
    coll = catalog.get(name)
    body = expand(coll, body)  # a text with no `using` searches dense and sparse vectors, fused
    texts = await run_in_threadpool(embed_texts, coll, body) if has_text(body) else {}
    root = to_stage(coll, body, settings, scope, texts)
    partial = request.query_params.get("partial") == "true"

    def work() -> tuple[list[Hit], engine.StageReport]:
        # nothing runs before the whole tree passes; a scoped key may query by the ids it can see only
        engine.check(
            coll, root, offset=body.offset, limits=limits(settings), visible=scope, with_vector=body.with_vector
        )
        return engine.run(
            coll,
            root,
            offset=body.offset,
            with_payload=body.with_payload,
            with_vector=body.with_vector,
            partial=partial,
        )

    hits, stages = await run_in_threadpool(work)
    points = [hit_dict(h, body.with_payload, body.with_vector, coll.config) for h in hits]
    return envelope(request, {"points": points, "stages": stages.as_dict()}, started)
