"""The hybrid shorthand of the query pipeline: one `text` searches the dense and the sparse vectors, fused.

A text query node with no `using` and no prefetch, on a collection whose sparse vectors have an encoder
(e.g. bm25), is rewritten before anything runs into the pipeline a user would write by hand:

    {"prefetch": [{"query": {"text": t}, "limit": depth},                   # the default dense vector
                  {"query": {"text": t}, "using": "<sparse>", "limit": depth}],  # each sparse one
     "query": {"fusion": "rrf"}}                                           # or {"fusion": "dbsf"}

`depth` is `HYBRID_DEPTH` (or the node's limit, if larger): fusion needs more than the final page from
each list to find the points that rank well in both. RRF uses the pipeline's (and Qdrant's) k = 2: on our
known-item benchmark it ranks better than the k = 60 of Cormack et al. (MRR@10 0.400 against 0.390, both
above either list alone: `benchmarks/HYBRID.md`). The node's `filter` and `score_threshold` stay on the fusion
node (the filter reaches both searches); its `params` tune the dense search. With one text-capable
vector only, the text simply searches it. The response's `stages` shows the rewritten tree.
"""

from __future__ import annotations

from index.contract import CollectionReader
from index.errors import InvalidRequest
from index.fusion import DEFAULT_RRF_K
from nestor_client.query import DocumentQuery, FusionQuery, Prefetch, QueryRequest

__all__ = ["HYBRID_DEPTH", "HYBRID_RRF_K", "expand", "text_vectors"]

HYBRID_DEPTH = 100  # candidates each side passes to the fusion
HYBRID_RRF_K = DEFAULT_RRF_K


def text_vectors(coll: CollectionReader) -> tuple[str | None, list[str]]:
    """The default dense vector if it has an encoder (None if not), and the sparse vectors with one."""
    sparse = [name for name, s in coll.config.sparse_fields().items() if s.encoder is not None]
    try:
        name, vcfg = coll.vector_config(None)
    except InvalidRequest:  # several named dense vectors and no default
        return None, sparse
    return (name if vcfg.encoder is not None else None), sparse


def expand(coll: CollectionReader, req: QueryRequest) -> QueryRequest:
    """`req` with every hybrid text node rewritten as prefetch + fusion (the same request if there is none)."""
    dense, sparse = text_vectors(coll)
    out = _node(req, dense, sparse, req.limit + req.offset)
    assert isinstance(out, QueryRequest)
    return out


def _node(p: Prefetch, dense: str | None, sparse: list[str], k: int) -> Prefetch:
    subs = [_node(sub, dense, sparse, sub.limit) for sub in p.prefetch or []]
    p = p.model_copy(update={"prefetch": subs}) if p.prefetch else p
    q = p.query
    if not isinstance(q, DocumentQuery):
        return p
    hybrid = p.using is None and not p.prefetch and bool(sparse)
    if q.fusion is not None and not (hybrid and (dense is not None or len(sparse) > 1)):
        raise InvalidRequest(
            "a text query's 'fusion' applies to the hybrid shorthand only: no 'using' and no prefetch, on a "
            "collection with a dense vector and a sparse vector that both have encoders"
        )
    if not hybrid:
        return p
    targets = ([dense] if dense is not None else []) + sparse
    if len(targets) == 1:  # one text-capable vector (a sparse one): the text just searches it
        return p.model_copy(update={"using": targets[0]})
    depth = max(k, HYBRID_DEPTH)
    prefetch = [  # one DocumentQuery each: embeddings are keyed by the query object
        Prefetch(
            query=DocumentQuery(text=q.text),
            using=None if t == dense else t,
            limit=depth,
            params=p.params if t == dense else None,
        )
        for t in targets
    ]
    fused = FusionQuery(fusion=q.fusion or "rrf")  # rrf at the pipeline's k, HYBRID_RRF_K
    return p.model_copy(update={"query": fused, "prefetch": prefetch, "params": None})
