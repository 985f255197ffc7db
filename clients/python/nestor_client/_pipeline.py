"""The query pipeline on the client side: the request body of `query(...)` and its result. No I/O here.

A query or a prefetch's `query` may be a numpy array (1-D: a vector, 2-D: a multivector's token
vectors), sent in the wire's compact form as `{"nearest": ...}`; a list of floats; a point id; or any
of the `nestor_client.query` models (or their dict form: `{"fusion": "rrf"}`, `{"text": "..."}`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel

from ._body import FilterLike, ParamsLike, plain
from ._codec import Wire, encode_multivector, encode_vector
from ._response import Envelope, _decode_vectors
from .query import Prefetch, QueryResponse

__all__ = ["PrefetchLike", "QueryLike", "parse_pipeline", "query_body"]

QueryLike = Any  # np.ndarray | list[float] | list[list[float]] | PointId | a query model | its dict form
PrefetchLike = Prefetch | Mapping[str, Any]


def _query(q: QueryLike, wire: Wire) -> Any:
    if isinstance(q, np.ndarray):
        return {"nearest": encode_multivector(q, wire) if q.ndim == 2 else encode_vector(q, wire)}
    return plain(q)


def _prefetch(p: PrefetchLike, wire: Wire) -> dict[str, Any]:
    if isinstance(p, BaseModel):
        out: dict[str, Any] = plain(p)
        if isinstance(p.query, BaseModel | np.ndarray):
            out["query"] = _query(p.query, wire)
        return out
    out = {key: plain(value) for key, value in p.items()}
    if "query" in out:
        out["query"] = _query(p["query"], wire)
    if isinstance(p.get("prefetch"), Sequence):
        out["prefetch"] = [_prefetch(sub, wire) for sub in p["prefetch"]]
    return out


def query_body(
    query: QueryLike | None,
    *,
    prefetch: Sequence[PrefetchLike] | PrefetchLike | None,
    using: str | None,
    filter: FilterLike | None,
    params: ParamsLike | None,
    limit: int,
    offset: int,
    score_threshold: float | None,
    with_payload: bool,
    with_vector: bool | list[str],
    wire: Wire,
) -> dict[str, Any]:
    body: dict[str, Any] = {"limit": limit, "offset": offset, "with_payload": with_payload, "with_vector": with_vector}
    if query is not None:
        body["query"] = _query(query, wire)
    if prefetch is not None:
        subs = [prefetch] if isinstance(prefetch, BaseModel | Mapping) else prefetch
        body["prefetch"] = [_prefetch(p, wire) for p in subs]
    for key, value in (("using", using), ("filter", filter), ("params", params), ("score_threshold", score_threshold)):
        if value is not None:
            body[key] = plain(value)
    return body


def parse_pipeline(env: Envelope) -> QueryResponse:
    result = env.result
    return QueryResponse.model_validate({"points": _decode_vectors(result["points"]), "stages": result["stages"]})
