"""Turning a `QueryRequest` (the wire's pipeline tree) into the engine's `Stage` tree.

Vectors become arrays here (lists, base64 or msgpack bytes), texts are embedded by the encoder of the
vector each node uses, filters are checked against the limits and the key's scope filter is ANDed into
the root's (so it reaches every leaf). The engine (`index/pipeline.py`) checks the tree's meaning.
"""

from __future__ import annotations

import numpy as np

from index.backends.base import F32
from index.contract import CollectionReader, SparseVec
from index.errors import InvalidVector
from index.filters import check_filter
from index.pipeline import Fusion, PipelineLimits, Stage
from nestor_client.models import Filter, SearchRequest, SparseVector
from nestor_client.query import DocumentQuery, FusionQuery, NearestQuery, Prefetch, QueryRequest, RrfQuery
from server.convert import multivector_array, sparse_vec, vector_array
from server.embedding import embed_queries
from server.scopes import and_filter
from server.settings import Settings

__all__ = ["embed_texts", "has_text", "limits", "to_stage"]

Texts = dict[int, F32 | SparseVec]  # a text query's embedding, by id() of its DocumentQuery


def limits(settings: Settings) -> PipelineLimits:
    return PipelineLimits(
        max_depth=settings.max_query_depth,
        max_candidates=settings.max_query_candidates,
        max_limit=settings.max_search_limit,
    )


def _nodes(p: Prefetch) -> list[Prefetch]:
    out = [p]
    for sub in p.prefetch or []:
        out += _nodes(sub)
    return out


def has_text(req: QueryRequest) -> bool:
    return any(isinstance(n.query, DocumentQuery) for n in _nodes(req))


def embed_texts(coll: CollectionReader, req: QueryRequest) -> Texts:
    """Every text query embedded by its vector's encoder (blocking: run it in the threadpool)."""
    nodes = [n for n in _nodes(req) if isinstance(n.query, DocumentQuery)]
    asks = [SearchRequest(text=n.query.text, using=n.using) for n in nodes if isinstance(n.query, DocumentQuery)]
    out: Texts = {}
    for n, done in zip(nodes, embed_queries(coll, asks), strict=True):
        if isinstance(done.vector, SparseVector):  # a sparse vector's encoder (bm25)
            out[id(n.query)] = sparse_vec(done.vector, "text embedding")
            continue
        dim = coll.vector_config(n.using)[1].dim
        if done.multivector is not None:
            out[id(n.query)] = multivector_array(done.multivector, dim, "text embedding")
        elif isinstance(done.vector, SparseVector):
            raise InvalidVector(f"a text query on the sparse vector {n.using!r} is not in the pipeline yet")
        elif done.vector is not None:
            out[id(n.query)] = vector_array(done.vector)
    return out


def to_stage(
    coll: CollectionReader, req: QueryRequest, settings: Settings, scope: Filter | None, texts: Texts
) -> Stage:
    """The engine's tree of `req`, with the scope filter ANDed into the root's."""
    for n in _nodes(req):
        if n.filter is not None:
            check_filter(n.filter, max_depth=settings.max_filter_depth, max_conditions=settings.max_filter_conditions)
    root = _stage(coll, req, texts)
    root.filter = and_filter(scope, root.filter)
    return root


def _stage(coll: CollectionReader, p: Prefetch, texts: Texts) -> Stage:
    return Stage(
        query=_query(coll, p, texts),
        using=p.using,
        filter=p.filter,
        params=p.params,
        limit=p.limit,
        score_threshold=p.score_threshold,
        prefetch=[_stage(coll, sub, texts) for sub in p.prefetch or []],
    )


def _query(coll: CollectionReader, p: Prefetch, texts: Texts) -> F32 | SparseVec | int | str | Fusion | None:
    q = p.query
    if q is None or isinstance(q, int | str):
        return q
    if isinstance(q, NearestQuery) and isinstance(q.nearest, SparseVector):
        q = q.nearest
    if isinstance(q, SparseVector):  # the engine checks it against `using` (422 on a dense vector)
        return sparse_vec(q, "sparse query")
    if isinstance(q, FusionQuery):
        return Fusion(q.fusion)
    if isinstance(q, RrfQuery):
        w = q.rrf.weights
        return Fusion("rrf", q.rrf.k, None if w is None else tuple(w))
    if isinstance(q, DocumentQuery):
        return texts[id(q)]
    raw = q.nearest if isinstance(q, NearestQuery) else q
    if isinstance(raw, str | bytes):  # base64 or raw float32: the vector's config says its shape
        vcfg = coll.vector_config(p.using)[1]
        if vcfg.multivector is not None:
            return multivector_array(raw, vcfg.dim, "query multivector")
        return vector_array(raw, "query vector")
    try:
        with np.errstate(over="ignore"):  # a value past float32 becomes inf, which the engine refuses (422)
            return np.asarray(raw, dtype=np.float32)
    except ValueError:
        raise InvalidVector("a multivector query's token vectors must all have the same dimension") from None
