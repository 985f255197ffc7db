"""A Qdrant query as a Nestor `Query`: the one place the translation happens (`plan`).

`query` may be a vector, a point id (search by that point's vector, leaving the point out), `{"nearest":
...}`, or `{"recommend": {"positive", "negative"}}` with the `average_vector` strategy (the mean of the
positives, pushed away from the mean of the negatives, as Qdrant computes it). No `query` at all lists
the matching points in id order with score 0, as Qdrant does. `prefetch`, fusion and the other query
`prefetch`, fusion (`{"fusion": ...}`, `{"rrf": ...}`) and sparse vectors go to Nestor's query pipeline
(`server.qdrant.pipeline`); the other query kinds are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from index import pipeline as engine
from index.contract import AnyCollection, Query
from index.errors import LimitExceeded
from nestor_client.models import Filter, HasIdCondition, SearchParams
from server.qdrant.filters import to_filter
from server.qdrant.ids import point_id
from server.qdrant.models import QueryRequest, WithPayload, WithVector
from server.qdrant.pipeline import needs_pipeline, tree
from server.qdrant.points import engine_with_payload, one_vector
from server.qdrant.wire import QdrantError
from server.scopes import and_filter
from server.settings import Settings

__all__ = ["Plan", "plan", "search_params"]

_PIPELINE = "Bad request: {what} is not supported by Nestor's Qdrant surface"
_REFUSED = ("formula", "order_by", "discover", "context", "sample", "relevance_feedback")


@dataclass(slots=True)
class Plan:
    """What a Qdrant query runs as: a vector search (`query`), a checked pipeline tree (`tree`), or a
    listing in id order (both None)."""

    query: Query | None
    filter: Filter | None
    limit: int
    offset: int
    with_payload: WithPayload
    with_vector: WithVector
    tree: engine.Stage | None = None


def search_params(raw: dict[str, Any] | None) -> SearchParams | None:
    """Qdrant's `params` (hnsw_ef, exact, quantization.rescore/oversampling); `indexed_only` is harmless."""
    if not raw:
        return None
    quant = raw.get("quantization") or {}
    return SearchParams(
        ef=raw.get("hnsw_ef"),
        exact=bool(raw.get("exact", False)),
        rescore=quant.get("rescore"),
        oversampling=quant.get("oversampling"),
    )


def _stored_vector(
    coll: AnyCollection, pid: Any, name: str, scope: Filter | None
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The `name` vector of point `pid`, to search by it; under a key's scope filter, only a point it matches."""
    pid = point_id(pid)
    if scope is None:
        hits = coll.get([pid], with_payload=False, with_vector=[name])
    else:
        flt = Filter(must=[HasIdCondition(has_id=[pid]), scope])
        hits, _ = coll.scroll(flt, limit=1, with_payload=False, with_vector=[name])
    vec = (hits[0].vectors or {}).get(name) if hits else None
    if vec is None:
        raise QdrantError(
            f"Not found: No point with id {pid} found"
            if not hits
            else f"Not found: point {pid} has no vector {name!r}",
            404,
        )
    return np.asarray(vec, dtype=np.float32)


def _vector_or_id(
    coll: AnyCollection, raw: Any, name: str, used: list[Any], scope: Filter | None
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """A query vector given inline, or as the id of a stored point (recorded in `used`, left out of the hits)."""
    if isinstance(raw, int | str) and not isinstance(raw, bool):
        used.append(point_id(raw))
        return _stored_vector(coll, raw, name, scope)
    return one_vector(raw, coll.vector_config(name)[1], "query")


def _recommend(
    coll: AnyCollection, rec: Any, name: str, used: list[Any], scope: Filter | None
) -> np.ndarray[Any, np.dtype[np.float32]]:
    if not isinstance(rec, dict):
        raise QdrantError("Format error in JSON body: recommend must be an object")
    strategy = rec.get("strategy") or "average_vector"
    if strategy != "average_vector":
        raise QdrantError(f"Bad request: recommend strategy {strategy} is not supported by Nestor (average_vector is)")
    pos = [_vector_or_id(coll, r, name, used, scope) for r in rec.get("positive") or []]
    neg = [_vector_or_id(coll, r, name, used, scope) for r in rec.get("negative") or []]
    if not pos:
        raise QdrantError("Bad request: recommend needs at least one positive example")
    mean = np.mean(pos, axis=0)
    return mean + (mean - np.mean(neg, axis=0)) if neg else mean  # type: ignore[no-any-return]


def plan(coll: AnyCollection, req: QueryRequest, settings: Settings, scope: Filter | None) -> Plan:
    if req.lookup_from is not None:
        raise QdrantError("Bad request: lookup_from is not supported by Nestor")
    limit, offset = req.limit or 10, req.offset or 0
    if limit + offset > settings.max_search_limit:
        raise LimitExceeded(f"limit + offset = {limit + offset} exceeds max_search_limit {settings.max_search_limit}")
    if needs_pipeline(coll, req):
        root = tree(coll, req, settings, scope, limit, offset)
        return Plan(None, root.filter, limit, offset, req.with_payload, req.with_vector, tree=root)
    flt = and_filter(scope, to_filter(req.filter, settings))
    if req.query is None:
        return Plan(None, flt, limit, offset, req.with_payload, req.with_vector)
    raw = req.query
    if isinstance(raw, dict) and (kind := next((k for k in _REFUSED if k in raw), None)) is not None:
        raise QdrantError(_PIPELINE.format(what=f"the {kind} query"))
    name, _ = coll.vector_config(req.using or None)
    used: list[Any] = []
    if isinstance(raw, dict) and "nearest" in raw:
        if raw.get("mmr") is not None:
            raise QdrantError(_PIPELINE.format(what="mmr"))
        vector = _vector_or_id(coll, raw["nearest"], name, used, scope)
    elif isinstance(raw, dict) and "recommend" in raw:
        vector = _recommend(coll, raw["recommend"], name, used, scope)
    else:
        vector = _vector_or_id(coll, raw, name, used, scope)
    if used:  # the example points themselves are not results (Qdrant leaves them out too)
        flt = Filter(must=[flt] if flt is not None else None, must_not=[HasIdCondition(has_id=used)])
    q = Query(
        vector=vector,
        limit=limit,
        offset=offset,
        filter=flt,
        params=search_params(req.params),
        with_payload=engine_with_payload(req.with_payload),
        with_vector=req.with_vector,
        score_threshold=req.score_threshold,
        using=name,
    )
    return Plan(q, flt, limit, offset, req.with_payload, req.with_vector)
