"""Matrix search: many unfiltered searches as one float32 matrix, answered as columns of ids and scores.

`POST .../search/batch` validates one pydantic model per search and answers one dict per hit: for a batch
of 1,000 searches at ef 32 that costs more than the searches (benchmarks/RESULTS.md, "REST batch"). Here
the body is one small model and the vectors one buffer (raw bytes in msgpack), read in place; the
searches go to the engine as one batch (`Collection.search` groups them into one native call) and the
answer is two lists of lists. A key with a scope filter gets its filter on every search, as everywhere.
"""

from __future__ import annotations

import base64
import binascii
import time

import numpy as np
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from index.contract import AnyCollection, Query, QueryResult
from index.errors import DimensionMismatch, InvalidVector, LimitExceeded, NotReady, PayloadTooLarge
from nestor_client.models import Filter, MatrixSearchRequest
from server.auth import Role, authorize, gate_only, require
from server.monitor import monitor
from server.settings import Settings
from server.wire import NestorRoute, body_schema, envelope, read_model

__all__ = ["router", "search_matrix_fast"]

router = APIRouter(prefix="/collections/{name}/points", tags=["search"], route_class=NestorRoute)


def _matrix(raw: str | bytes, dim: int) -> np.ndarray:
    if isinstance(raw, str):
        try:
            raw = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidVector(f"vectors: not valid base64 float32 ({exc})") from None
    if not raw or len(raw) % (4 * dim):
        raise DimensionMismatch(f"vectors: {len(raw)} bytes is not a whole number of rows of {dim} float32 values")
    return np.frombuffer(raw, dtype="<f4").reshape(-1, dim)


def _queries(coll: AnyCollection, body: MatrixSearchRequest, settings: Settings, scope: Filter | None) -> list[Query]:
    if body.limit > settings.max_search_limit:
        raise LimitExceeded(f"limit = {body.limit} exceeds max_search_limit {settings.max_search_limit}")
    name, vcfg = coll.vector_config(body.using)
    if vcfg.multivector is not None:
        raise InvalidVector("this vector holds multi-vector documents: a matrix search needs single vectors")
    mat = _matrix(body.vectors, vcfg.dim)
    if len(mat) > settings.max_search_batch:
        raise PayloadTooLarge(
            f"{len(mat)} searches in one request exceeds max_search_batch {settings.max_search_batch}"
        )
    p, k = body.params, body.limit
    return [Query(vector=v, limit=k, params=p, with_payload=False, filter=scope, using=name) for v in mat]


def _columns(results: list[QueryResult]) -> dict[str, list[list[object]]]:
    return {"ids": [[h.id for h in r.hits] for r in results], "scores": [[h.score for h in r.hits] for r in results]}


async def _search(request: Request) -> Response:
    started = time.perf_counter()
    app = request.app
    if not app.state.ready:
        raise NotReady("the server is still recovering its collections")
    scope = authorize(request, Role.read, filtered=True)  # before the body is read; its filter goes on every row
    body = await read_model(request, MatrixSearchRequest)
    name = request.path_params["name"]
    coll = app.state.catalog.get(name)
    queries = _queries(coll, body, app.state.settings, scope)
    monitor(request).searched(name, queries)
    results = await run_in_threadpool(coll.search, queries)
    monitor(request).planned(coll, queries, results)
    return envelope(request, _columns(results), started, strategy=results[0].strategy if results else None)


@router.post(
    "/search/matrix",
    summary="Many unfiltered searches as one float32 matrix; columnar hits",
    responses={200: {"description": '{"result": {"ids": [[...]], "scores": [[...]]}, "time", "strategy"}'}},
    openapi_extra=body_schema(MatrixSearchRequest),
    dependencies=[require(Role.read, filtered=True)],
)
async def search_matrix(name: str, request: Request) -> Response:
    """Documents the endpoint; requests are served by `search_matrix_fast`, which shares `_search`."""
    return await _search(request)


@gate_only  # read: any key the gate let through; `authorize` checks the role and the scope
async def search_matrix_fast(request: Request) -> Response:
    """The route as a plain Starlette endpoint, without FastAPI's dependency solving (`server.app`)."""
    return await _search(request)
