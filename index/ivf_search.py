"""One unfiltered query on IVF-PQ with a rerank: faiss's shortlist, reranked in native code, in one call.

The planner's IVF-PQ path (`planner._shortlist`) costs about as much Python and numpy as faiss's list scan:
Hits arrays, a by-index rescore, an argpartition, a sort, a liveness loop. Here one native call
(`IvfPqIndex.rerank`: `_graph.FaissIvf`, index/_faiss_ivf.h) runs faiss's C++ search into per-thread
buffers and scores the shortlist's rows against the float32 vectors with the GIL released (prefetching rows
ahead, which faiss's by-index kernel does not), skips dead labels, keeps the best k and returns the
user-facing lists. Rows not yet in the index (at most `planner.CHEAP_PENDING`) join the shortlist, so they
are scored exactly too: the planner's merge of the unindexed tail, in the same call.

None for every other case (no rescore, a filter, fewer than k live candidates, a large unindexed tail,
no native module): the planner serves it.

`answer` is `search.search_one` whole for the commonest such query (ids and scores only, no offset or
score threshold): the same call also checks the vector (`DenseField.prepare_one`'s checks), maps labels
to ids and makes the `Hit`s, which in Python cost ~10 us of a ~200 us query (benchmarks/RESULTS.md, issue 18).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from index.backends.base import F32, Space
from index.backends.ivfpq import IvfPqIndex
from index.contract import Query, QueryResult
from index.hit_class import plain, to_normalise
from index.planner import CHEAP_PENDING, Ranked, rerank_plan
from index.plans import kind
from nestor_client.models import Metric, SearchParams

try:
    from index import _graph
except ImportError:  # no native module: the planner serves IVF-PQ (index/backends/graph.py says why)
    _graph = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from index.dense import DenseField

__all__ = ["answer", "search"]


def answer(field: DenseField, index: IvfPqIndex, upto: int, q: Query, ids: list[Any]) -> QueryResult | None:
    """The whole result of an unfiltered query on `field` in one native call: `index` and `upto` from one read
    of its state, `ids` the collection's label -> id list. None: not the query this serves, or `search`'s None."""
    if not plain(field, q):
        return None
    plan = _plan(field, index, q.limit, q.params)
    if plan is None:
        return None
    k_ann, nprobe, l2, name = plan
    n = field.labels.n  # after the state, before `alive`, as `search`
    if n - upto > CHEAP_PENDING:
        return None
    cosine = field.metric is Metric.cosine
    rows = field.vectors.buffer()
    hits = index.hits(q.vector, k_ann, nprobe, rows, field.alive, upto, n, q.limit, l2, cosine, ids)
    if hits is None and (u := to_normalise(field, q.vector)) is not None:  # then as the general path does
        hits = index.hits(u, k_ann, nprobe, rows, field.alive, upto, n, q.limit, l2, cosine, ids)
    return None if hits is None else QueryResult(hits, name)


def search(
    field: DenseField, index: IvfPqIndex, upto: int, mat: F32, k: int, params: SearchParams | None
) -> Ranked | None:
    """The k best live rows of one query [1, dim]: `index` and `upto` from one read of the field's state."""
    if _graph is None or (params is not None and params.exact):
        return None
    plan = _plan(field, index, k, params)
    if plan is None:
        return None  # scores are the codes' own: the planner's path
    k_ann, nprobe, l2, name = plan
    n = field.labels.n  # after the state, before `alive`: each at least as new as the one before
    if n - upto > CHEAP_PENDING:
        return None
    # one native call: faiss's shortlist, the unindexed tail and the exact rerank (index/_faiss_ivf.h)
    got = index.rerank(mat, k_ann, nprobe, field.vectors.buffer(), field.alive, upto, n, k, l2)
    if got is None:
        return None  # too few found, or dead candidates left fewer than k: the planner's wider plan
    return got[0], got[1], name


Plan = tuple[int, "int | None", bool, str]  # (shortlist length, nprobe, L2, strategy name)


def _plan(field: DenseField, index: IvfPqIndex, k: int, params: SearchParams | None) -> Plan | None:
    """`rerank_plan`'s answer for this field and query (None: no rescore), kept on the field with the config
    and the knobs it was made for: deciding it again, and the strategy name, cost ~2.5 us of a ~150 us query."""
    if field.tuning is not None or (params is not None and params.funnel is not None):
        return _decide(field, index, k, params)  # knobs that change per query, or rerank_plan's error: not kept
    knobs = (k,) if params is None else (k, params.nprobe, params.oversampling, params.rescore)
    memo = field.native_ivf
    if memo is None or memo[0] is not field.config or memo[1] != knobs:
        memo = field.native_ivf = (field.config, knobs, _decide(field, index, k, params))
    got: Plan | None = memo[2]
    return got


def _decide(field: DenseField, index: IvfPqIndex, k: int, params: SearchParams | None) -> Plan | None:
    p = field.tuning.apply(params) if field.tuning is not None else params
    k_ann, rescore, _ = rerank_plan(field, index, k, p)
    if not rescore:
        return None
    return k_ann, p.nprobe if p is not None else None, field.space is Space.l2, kind(field)
