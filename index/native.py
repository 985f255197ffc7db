"""The native search path: a dense field's ANN plan for a query (or a batch) in one call to the graph.

On Nestor's graph (float32 HNSW, int8 HNSW, LeanVec-reduced float32 codes) the planner's per-query
work around the walk (the rescore from the float32 rows, the exact scan of the unindexed tail and its
merge, the tombstone check, a broad filter's test of the results) cost as much Python time as the walk
itself at low ef (benchmarks/NATIVE.md). Here it runs in C++ (`Graph.query`, `index/_graph_query.h`)
with the GIL released and without numpy arrays per query; the hits come back as lists, ready for
`index/hits.py`.

Validation, planning and result assembly stay in Python: `search` picks the strategy `planner.plan`
would (the same thresholds, the same names) and returns None for every plan it does not run natively
(exact scans, funnels, the int8 rerank store, binary codes, IVF-PQ, hnswlib), which the planner then
serves. `ENABLED = False` (or NESTOR_NATIVE_SEARCH=0 in the environment) turns the path off: the tests
compare the two paths' hits on every plan.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

from index.backends.base import F32
from index.backends.graph import GraphIndex
from index.encoded import EncodedIndex
from index.planner import ACORN_MIN_SHARE, Ranked, exact_rows, kind, rerank_plan, to_user, walk_floor
from index.selection import Selection
from nestor_client.models import LeanVecReduceConfig, SearchParams

if TYPE_CHECKING:
    from index.dense import DenseField

__all__ = ["ENABLED", "search", "search_batch"]

ENABLED = os.environ.get("NESTOR_NATIVE_SEARCH", "1") not in ("0", "false", "no")

# the walks of `Graph.query` (index/_graph_query.h)
PLAIN, ACORN, CHECKED, POSTFILTER = 0, 1, 2, 3

Lists = tuple[list[int], list[float]]


class _Plan:
    """One field's search, read once from its state (the index and its watermark, then `n`, then `alive`,
    in the planner's order), with everything the native call needs but the walk and the filter."""

    __slots__ = ("alive", "enc", "field", "g", "index", "n", "name", "params", "upto")

    def __init__(
        self, field: DenseField, index: Any, upto: int, g: GraphIndex, enc: EncodedIndex | None, p: Any
    ) -> None:
        self.field, self.index, self.upto, self.g, self.enc, self.params = field, index, upto, g, enc, p
        self.n = field.labels.n  # after the state, before `alive`: each at least as new as the one before
        self.alive = field.alive
        self.name = "hnsw" if enc is None else kind(field)

    def call(self, mat: F32, width: int, walk: int, allowed: Any, threads: int, k: int = 0) -> list[Lists]:
        """Per query, the first `k` (default `width`) live hits of `planner._ann(width)`; with the
        postfilter walk, the first `k` of those the filter allows."""
        field, p = self.field, self.params
        if self.enc is None:  # a plain float32 graph: no rescore (rerank_plan's answer, without its checks)
            k_ann, rescore, gq, fq = width, False, mat, None
        else:
            k_ann, rescore, stages = rerank_plan(field, self.index, width, p)
            if stages:
                raise _NotNative
            gq = self.enc.encode(mat, queries=True)
            fq = mat if self.enc.reducer is not None else None
        n, upto = self.n, self.upto
        rows = field.vectors.buffer() if rescore or n > upto else None
        ef = (p.ef if p is not None else None) or self.g.ef
        got: list[Lists] = self.g._graph.query(
            gq, fq, k or width, width, k_ann, ef, rescore, rows, self.alive, upto, n, allowed, walk, threads
        )
        return got


class _NotNative(Exception):
    """A plan this path does not run (a funnel): the planner serves it."""


def plan(field: DenseField, params: SearchParams | None) -> _Plan | None:
    """The field's native plan, or None when its index is not one this path runs."""
    p = field.tuning.apply(params) if field.tuning is not None else params
    st = field.state
    index = st.index
    if index is None or (p is not None and p.exact):
        return None
    if type(index) is GraphIndex:
        return _Plan(field, index, st.upto, index, None, p)
    if type(index) is EncodedIndex and index.is_trained and _graph_codes(field, index):
        return _Plan(field, index, st.upto, index.inner, index, p)
    return None


def _graph_codes(field: DenseField, index: EncodedIndex) -> bool:
    """Compressed codes in Nestor's graph whose walk, rescore and tail this path can run: int8 codes or
    LeanVec-reduced float32 (the graph's space is the field's), no binary codes, no int8 rerank store."""
    red = field.config.reduce
    return (
        isinstance(index.inner, GraphIndex)
        and index.binary is None
        and not index.has_int8_store
        and (red is None or isinstance(red, LeanVecReduceConfig))
        and index.inner_space is field.space
    )


def search(field: DenseField, mat: F32, k: int, params: SearchParams | None, sel: Selection | None) -> Ranked | None:
    """One query [1, dim], already validated, natively; None: a plan for `planner.plan`."""
    if not ENABLED:
        return None
    if sel is None and field.tuning is None:
        # the commonest plan unrolled (a float32 graph, unfiltered, no rescore): a microsecond a query
        st = field.state
        index = st.index
        if type(index) is GraphIndex and not (params is not None and params.exact):
            n = field.labels.n
            rows = field.vectors.buffer() if n > st.upto else None
            ef = (params.ef if params is not None else None) or index.ef
            got = index._graph.query(mat, None, k, k, k, ef, False, rows, field.alive, st.upto, n, None, PLAIN, 1)
            return got[0][0], got[0][1], "hnsw"
        if type(index) is EncodedIndex and index.reducer is None and not (params is not None and params.exact):
            got1 = _codes_unfiltered(field, st.upto, index, mat, k, params)
            if got1 is not None:
                return got1
    pl = plan(field, params)
    if pl is None:
        return None
    try:
        if sel is None:
            labels, scores = pl.call(mat, k, PLAIN, None, 1)[0]
            return labels, scores, pl.name
        return _filtered(pl, mat, k, sel)
    except _NotNative:
        return None


def _codes_unfiltered(
    field: DenseField, upto: int, index: EncodedIndex, mat: F32, k: int, params: SearchParams | None
) -> Ranked | None:
    """The int8 graph's unfiltered plan (`_Plan.call` for PLAIN) without building a `_Plan`: about 4 us
    of the ~100 a query costs at 100k (benchmarks/NATIVE.md). None: not this plan."""
    if not (index.is_trained and _graph_codes(field, index)):
        return None
    k_ann, rescore, stages = rerank_plan(field, index, k, params)
    if stages:
        return None
    g = index.inner
    assert isinstance(g, GraphIndex)
    n = field.labels.n  # after the state, before `alive`, as `_Plan` reads them
    rows = field.vectors.buffer() if rescore or n > upto else None
    ef = (params.ef if params is not None else None) or g.ef
    gq = index.encode(mat, queries=True)
    got = g._graph.query(gq, None, k, k, k_ann, ef, rescore, rows, field.alive, upto, n, None, PLAIN, 1)
    return got[0][0], got[0][1], kind(field)


def _filtered(pl: _Plan, mat: F32, k: int, sel: Selection) -> Ranked | None:
    """`planner.plan` under a filter: the postfilter of a broad one (then the checked walk if too few
    matched), ACORN for a narrower one, exact (the planner's) below both; exact when a walk ran short."""
    field = pl.field
    if len(sel) <= max(field.options.exact_filter_threshold, walk_floor(pl.index, pl.params, k)):
        return None
    share = len(sel) / max(pl.index.count + pl.n - pl.upto, 1)
    if share < ACORN_MIN_SHARE:
        return None
    allowed = sel.native()
    want = min(k, len(sel))
    if share >= field.options.filter_walk_fraction:
        # an unfiltered walk for enough candidates that k of them match, the filter tested natively
        labels, scores = pl.call(mat, math.ceil(2 * k / share), POSTFILTER, allowed, 1, k)[0]
        if len(labels) >= want:
            return labels, scores, f"{pl.name}_postfilter"
        walk, strategy = CHECKED, f"{pl.name}_filtered"
    else:
        walk, strategy = ACORN, f"{pl.name}_acorn"
    labels, scores = pl.call(mat, k, walk, allowed, 1)[0]
    if len(labels) < want:  # the walk ran out under the filter: exact over its labels
        listed = sel.labels
        hits = exact_rows(field, mat, k, listed[listed < pl.n], pl.alive)
        labels, scores = to_user(field, hits.labels[0], hits.scores[0])
        return labels, scores, "exact_fallback"
    return labels, scores, strategy


def search_batch(
    field: DenseField, mat: F32, k: int, params: SearchParams | None, threads: int | None
) -> tuple[list[Lists], str] | None:
    """Unfiltered queries [nq, dim] in one call, on `threads` (None: all cores); None: a plan for
    `planner.plan`."""
    if not ENABLED:
        return None
    pl = plan(field, params)
    if pl is None:
        return None
    try:
        return pl.call(mat, k, PLAIN, None, threads or os.cpu_count() or 1), pl.name
    except _NotNative:
        return None
