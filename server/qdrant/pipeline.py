"""Qdrant's Query API on Nestor's query pipeline: `prefetch`, fusion and sparse vectors (`query.plan` routes here).

A Qdrant query (or prefetch) node is `{prefetch, query, using, filter, params, score_threshold, limit}`;
its `query` is a dense vector (a list), a multivector (a list of lists), a sparse vector
(`{"indices", "values"}`), a point id, `{"nearest": ...}` of any of those, `{"fusion": "rrf" | "dbsf"}`, or
`{"rrf": {"k": ..., "weights": ...}}`. Each node becomes an `index.pipeline.Stage`, and the whole tree is
checked (`index.pipeline.check`: vector names, dimensions, depth and candidate limits, ids the key may
see) before anything runs. Sparse vectors of collections: `sparse_vectors` `{name: {"modifier": "idf"}}`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import ValidationError

from index import pipeline as engine
from index.contract import AnyCollection, SparseVec
from index.fusion import DEFAULT_RRF_K
from nestor_client.models import CollectionConfig, Filter, SparseVector, SparseVectorConfig
from server.convert import sparse_vec
from server.pipeline import limits
from server.qdrant.filters import to_filter
from server.qdrant.ids import point_id
from server.qdrant.models import QueryRequest
from server.qdrant.wire import QdrantError
from server.scopes import and_filter
from server.settings import Settings

__all__ = ["needs_pipeline", "sparse_configs", "sparse_info", "sparse_vector", "tree"]

_NODE_KEYS = {"prefetch", "query", "using", "filter", "params", "score_threshold", "limit", "lookup_from"}
_SPARSE_INDEX = {"full_scan_threshold", "on_disk", "datatype"}  # tuning Nestor has no use for: harmless


def sparse_configs(raw: dict[str, Any]) -> dict[str, SparseVectorConfig]:
    """Qdrant's `sparse_vectors` of a create body as Nestor's sparse vector configs."""
    out = {}
    for name, params in raw.items():
        params = params or {}
        if not isinstance(params, dict) or set(params) - {"index", "modifier"}:
            raise QdrantError(f"Format error in JSON body: sparse vector {name!r}: give {{index, modifier}}")
        extra = set(params.get("index") or {}) - _SPARSE_INDEX
        if extra:
            raise QdrantError(f"Bad request: sparse vector {name!r}: index settings {sorted(extra)} are not supported")
        modifier = params.get("modifier")
        if modifier not in (None, "none", "idf"):
            raise QdrantError(f"Bad request: sparse vector {name!r}: modifier {modifier!r} (none or idf)")
        out[name] = SparseVectorConfig(modifier="idf" if modifier == "idf" else None)
    return out


def sparse_info(config: CollectionConfig) -> dict[str, Any]:
    """`config.params.sparse_vectors` of Qdrant's CollectionInfo."""
    return {name: {"modifier": s.modifier or "none"} for name, s in config.sparse_fields().items()}


def sparse_vector(raw: Any, what: str) -> SparseVec:
    """A Qdrant `SparseVector` (`{"indices", "values"}`) as the engine's (checked there: lengths, duplicates)."""
    try:
        return sparse_vec(SparseVector.model_validate(raw), what)
    except ValidationError:
        shape = "{indices: [int], values: [float]}"
        raise QdrantError(f"Format error in JSON body: {what}: a sparse vector is {shape}") from None


def _is_sparse(raw: Any) -> bool:
    return isinstance(raw, dict) and ("indices" in raw or _is_sparse(raw.get("nearest")))


def needs_pipeline(coll: AnyCollection, req: QueryRequest) -> bool:
    """Whether a query needs the pipeline: prefetch, a fusion, or a sparse vector."""
    q = req.query
    fused = isinstance(q, dict) and ("fusion" in q or "rrf" in q)
    sparse = req.using is not None and req.using in coll.config.sparse_fields()
    return req.prefetch is not None or fused or sparse or _is_sparse(q)


def tree(
    coll: AnyCollection, req: QueryRequest, settings: Settings, scope: Filter | None, limit: int, offset: int
) -> engine.Stage:
    """The checked engine tree of a Qdrant query (raises a 4xx before anything runs)."""
    root = _node(coll, {k: getattr(req, k) for k in _NODE_KEYS}, settings, "query")
    root.limit = limit
    root.filter = and_filter(scope, root.filter)
    engine.check(coll, root, offset=offset, limits=limits(settings), visible=scope, with_vector=req.with_vector)
    return root


def _node(coll: AnyCollection, raw: Any, settings: Settings, where: str) -> engine.Stage:
    if not isinstance(raw, dict):
        raise QdrantError(f"Format error in JSON body: {where}: a prefetch is an object")
    unknown = set(raw) - _NODE_KEYS
    if unknown:
        raise QdrantError(f"Format error in JSON body: {where}: unknown fields {sorted(unknown)}")
    if raw.get("lookup_from") is not None:
        raise QdrantError("Bad request: lookup_from is not supported by Nestor")
    from server.qdrant.query import search_params  # query imports this module: import late

    subs = raw.get("prefetch")
    subs = [subs] if isinstance(subs, dict) else subs or []
    if not isinstance(subs, list):
        raise QdrantError(f"Format error in JSON body: {where}: prefetch is an object or a list of them")
    limit = raw.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise QdrantError(f"Format error in JSON body: {where}: limit is a positive integer")
    return engine.Stage(
        query=_query(raw.get("query"), where),
        using=raw.get("using") or None,
        filter=to_filter(raw.get("filter"), settings),
        params=search_params(raw.get("params")),
        limit=limit or 10,
        score_threshold=raw.get("score_threshold"),
        prefetch=[_node(coll, sub, settings, f"{where}.prefetch[{i}]") for i, sub in enumerate(subs)],
    )


def _query(raw: Any, where: str) -> Any:
    if raw is None:
        return None
    if isinstance(raw, int | str):
        return point_id(raw)
    if isinstance(raw, list):
        try:
            with np.errstate(over="ignore"):  # past float32 becomes inf, which the engine refuses
                return np.asarray(raw, dtype=np.float32)
        except (TypeError, ValueError):
            raise QdrantError(f"Format error in JSON body: {where}: a vector is a list of numbers") from None
    if not isinstance(raw, dict):
        raise QdrantError(f"Format error in JSON body: {where}: unknown query {raw!r}")
    if "indices" in raw:
        return sparse_vector(raw, f"{where}: sparse query")
    if "nearest" in raw:
        if raw.get("mmr") is not None:
            raise QdrantError("Bad request: mmr is not supported by Nestor")
        return _query(raw["nearest"], where)
    if "fusion" in raw:
        if raw["fusion"] not in ("rrf", "dbsf"):
            raise QdrantError(f"Format error in JSON body: {where}: fusion is rrf or dbsf, not {raw['fusion']!r}")
        return engine.Fusion(raw["fusion"])
    if "rrf" in raw:
        return _rrf(raw["rrf"] or {}, where)
    kind = next(iter(raw), "?")
    raise QdrantError(f"Bad request: {where}: the {kind} query is not supported by Nestor inside a prefetch pipeline")


def _rrf(params: Any, where: str) -> engine.Fusion:
    k = params.get("k") if isinstance(params, dict) else None
    weights = params.get("weights") if isinstance(params, dict) else None
    if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
        raise QdrantError(f"Format error in JSON body: {where}: rrf k is a positive integer")
    if weights is not None and (
        not isinstance(weights, list) or not all(isinstance(w, int | float) and w >= 0 for w in weights)
    ):
        raise QdrantError(f"Format error in JSON body: {where}: rrf weights are numbers >= 0, one per prefetch")
    return engine.Fusion("rrf", k or DEFAULT_RRF_K, None if weights is None else tuple(float(w) for w in weights))
