"""The native executor of a dense field's plan: a query (or a batch) in one call to C++.

On Nestor's graph (float32 HNSW, int8 HNSW, LeanVec-reduced float32 codes) the planner's per-query
work around the walk (the rescore from the float32 rows, the exact scan of the unindexed tail and its
merge, the tombstone check, a broad filter's test of the results) cost as much Python time as the walk
itself at low ef (benchmarks/NATIVE.md). Here it runs in C++ (`Graph.query`, `index/_graph_query.h`)
with the GIL released and without numpy arrays per query; the hits come back as lists, ready for
`index/hits.py`. A filter's exact plan (its few matches scored, on any index) is one call too
(`_graph.exact`, `index/_graph_exact.h`), reading the payload index's bitmap in place.

Validation, planning and result assembly stay in Python: `search` runs the plan `plans.decide` returns
(the one `planner.plan` runs with numpy) and returns None for every plan it does not run natively
(a whole-collection exact scan, funnels, the int8 rerank store, binary codes, filtered IVF-PQ and
hnswlib walks), which the planner then serves; unfiltered IVF-PQ with a rerank is `index/ivf_search.py`.
`ENABLED = False` (or NESTOR_NATIVE_SEARCH=0 in the environment) turns the path off: the tests compare
the two executors' hits on every plan.
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from pyroaring import BitMap

from index import ivf_search, plans
from index.backends.base import F32, Space
from index.backends.graph import GraphIndex
from index.backends.ivfpq import IvfPqIndex
from index.contract import Query, QueryResult
from index.encoded import EncodedIndex
from index.hit_class import plain, to_normalise
from index.planner import Ranked, rerank_plan
from index.plans import Plan, decide, kind
from index.selection import Selection
from nestor_client.models import LeanVecReduceConfig, Metric, SearchParams
from quantization.leanvec import LeanVecTransform

try:
    from index import _graph
except ImportError:  # no native graph built: the planner serves every plan (index/backends/graph.py says why)
    _graph = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from index.dense import DenseField

__all__ = ["ENABLED", "answer", "exact_bitmap", "exact_few", "exact_vector", "search", "search_batch"]

ENABLED = os.environ.get("NESTOR_NATIVE_SEARCH", "1") not in ("0", "false", "no")
_FEATURES = frozenset(getattr(_graph, "FEATURES", ()))  # what the native module says it can do
# `Graph.hits` (index/_graph_hits.h): False with a native module built before it, which `answer` then skips
GRAPH_HITS = _graph is not None and hasattr(_graph.Graph, "hits")
# ... and its `full` query, for a reduced walk (a module built before it: `_codes_unfiltered` serves those)
REDUCED_HITS = GRAPH_HITS and "hits_full" in _FEATURES

# the walks of `Graph.query` (index/_graph_query.h)
PLAIN, ACORN, CHECKED, POSTFILTER = 0, 1, 2, 3
_WALKS = {plans.ACORN: ACORN, plans.CHECKED: CHECKED, plans.POSTFILTER: POSTFILTER}  # a plan's walk, by number

Lists = tuple[list[int], list[float]]
Answer = QueryResult | None


class _Runner:
    """One field's native walks, over its state read once (the index and its watermark, then `n`, then
    `alive`, in the planner's order), with everything the native call needs but the walk and the filter."""

    __slots__ = ("alive", "enc", "field", "g", "index", "n", "name", "params", "upto")

    def __init__(
        self,
        field: DenseField,
        index: Any,
        upto: int,
        n: int,
        alive: Any,
        g: GraphIndex,
        enc: EncodedIndex | None,
        p: Any,
    ) -> None:
        self.field, self.index, self.upto, self.g, self.enc, self.params = field, index, upto, g, enc, p
        self.n, self.alive = n, alive
        self.name = "hnsw" if enc is None else kind(field)

    def call(
        self, mat: F32, width: int, walk: int, allowed: Any, threads: int, k: int = 0, ef: int | None = None
    ) -> list[Lists]:
        """Per query, the first `k` (default `width`) live hits of `planner._ann(width)`; with the
        postfilter walk, the first `k` of those the filter allows. `ef` overrides the params' beam."""
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
        ef = ef or (p.ef if p is not None else None) or self.g.ef
        got: list[Lists] = self.g._graph.query(
            gq, fq, k or width, width, k_ann, ef, rescore, rows, self.alive, upto, n, allowed, walk, threads
        )
        return got


class _NotNative(Exception):
    """A plan this path does not run (a funnel): the planner serves it."""


def _runner(field: DenseField, p: SearchParams | None, index: Any, upto: int, n: int, alive: Any) -> _Runner | None:
    """The field's native walks, or None when its index is not one this path runs."""
    if index is None or (p is not None and p.exact):
        return None
    if type(index) is GraphIndex:
        return _Runner(field, index, upto, n, alive, index, None, p)
    if type(index) is EncodedIndex and index.is_trained and _graph_codes(field, index):
        return _Runner(field, index, upto, n, alive, index.inner, index, p)
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


def answer(
    field: DenseField, index: GraphIndex | EncodedIndex, upto: int, q: Query, ids: list[Any]
) -> QueryResult | None:
    """`search.search_one` whole for the unrolled plans below (a float32 graph, or int8 codes the graph
    quantizes the query for, unfiltered, ids and scores only) in one native call that also checks the
    vector, maps labels to ids and makes the `Hit`s (`Graph.hits`, index/_graph_hits.h; `ivf_search.answer`
    for IVF-PQ): ~5 us of a ~125 us query at ef 16. `index` and `upto` from one read of the field's state.
    A LeanVec-reduced walk too: the query is projected here (numpy) and the call gets both, the user's
    vector checked natively; the general road around `_codes_unfiltered` cost ~20 us more a query.
    A cosine vector not of unit norm is normalised as the general path does it, then answered the same way.
    None: not that query, or a vector the general path must check."""
    if not GRAPH_HITS or field.tuning is not None or not plain(field, q):
        return None
    p = q.params
    k = q.limit
    if type(index) is GraphIndex:
        g, keep, rescore, name = index, k, False, "hnsw"
        ef = p.ef if p is not None else None
    else:
        assert isinstance(index, EncodedIndex)
        ef = p.ef if p is not None else None
        c = _codes_for(field, index, (None,) if p is None else (ef, p.rescore, p.oversampling), p)
        reduced = index.reducer is not None
        if not c.runs or not (c.as_is or (reduced and REDUCED_HITS)):
            return None  # a query to encode in Python: `_codes_unfiltered`
        g = index.inner  # the graph the memo was made for (`fits`)
        keep = max(k, math.ceil(k * c.over)) if c.rescore else k
        rescore, name = c.rescore, c.name
        if reduced:
            return _reduced_answer(field, index, g, upto, q, ids, k, keep, ef or g.ef, rescore, name)
    n = field.labels.n  # after the state, before `alive`, as `search`
    rows = field.vectors.buffer() if rescore or n > upto else None
    cosine = field.metric is Metric.cosine
    hits = g._graph.hits(q.vector, k, keep, ef or g.ef, rescore, rows, field.alive, upto, n, cosine, ids)
    if hits is None and (u := to_normalise(field, q.vector)) is not None:
        hits = g._graph.hits(u, k, keep, ef or g.ef, rescore, rows, field.alive, upto, n, cosine, ids)
    return None if hits is None else QueryResult(hits, name)


def _reduced_answer(
    field: DenseField,
    index: EncodedIndex,
    g: GraphIndex,
    upto: int,
    q: Query,
    ids: list[Any],
    k: int,
    keep: int,
    ef: int,
    rescore: bool,
    name: str,
) -> QueryResult | None:
    """`answer` for a LeanVec-reduced graph: the user's vector (of the field's shape, else None) projected
    as `_codes_unfiltered` does it, then walked, rescored and checked in one call."""
    v = q.vector
    if v.__class__ is not np.ndarray or v.shape != (field.dim,):
        return None
    n = field.labels.n  # after the state, before `alive`, as `search`
    rows = field.vectors.buffer()  # the rescore and the tail score the full vector
    cosine = field.metric is Metric.cosine
    r = index.reducer
    # LeanVec on inner products projects a query by one product (`EncodedIndex._reduce`, the same floats):
    # ~3 us less without `encode`'s wrapping. A NaN stays NaN: the native check turns it down.
    m = r.query_matrix if type(r) is LeanVecTransform and index.space is Space.ip else None
    gq = v @ m if m is not None else index.encode(v[None, :], queries=True)[0]
    hits = g._graph.hits(gq, k, keep, ef, rescore, rows, field.alive, upto, n, cosine, ids, v)
    if hits is None and (u := to_normalise(field, v)) is not None:
        gq = u @ m if m is not None else index.encode(u[None, :], queries=True)[0]
        hits = g._graph.hits(gq, k, keep, ef, rescore, rows, field.alive, upto, n, cosine, ids, u)
    return None if hits is None else QueryResult(hits, name)


def search(field: DenseField, mat: F32, k: int, params: SearchParams | None, sel: Selection | None) -> Ranked | None:
    """One query [1, dim], already validated, natively; None: a plan for `planner.plan`."""
    if not ENABLED:
        return None
    st = field.state
    index = st.index
    if sel is None and field.tuning is None:
        # the commonest plan unrolled (a float32 graph, unfiltered, no rescore): a microsecond a query
        if type(index) is GraphIndex and not (params is not None and params.exact):
            n = field.labels.n
            rows = field.vectors.buffer() if n > st.upto else None
            ef = (params.ef if params is not None else None) or index.ef
            got = index._graph.query(mat, None, k, k, k, ef, False, rows, field.alive, st.upto, n, None, PLAIN, 1)
            return got[0][0], got[0][1], "hnsw"
        if type(index) is EncodedIndex and not (params is not None and params.exact):
            got1 = _codes_unfiltered(field, st.upto, index, mat, k, params)
            if got1 is not None:
                return got1
    if sel is None and type(index) is IvfPqIndex:  # faiss's shortlist, reranked natively (index/ivf_search.py)
        return ivf_search.search(field, index, st.upto, mat, k, params)
    p = field.tuning.apply(params) if field.tuning is not None else params
    upto = st.upto
    n = field.labels.n  # after the state, before `alive`: each at least as new as the one before
    alive = field.alive
    pl = decide(field, index, upto, n, p, k, sel)
    if pl.walk == plans.EXACT:
        # a filter's few matches, scored in one call; a whole-collection scan stays with BLAS
        return None if sel is None or _graph is None else _exact(field, mat, k, sel.native(), n, alive, pl.strategy)
    run = _runner(field, p, index, upto, n, alive)
    if run is None:
        return None
    try:
        if sel is None:
            labels, scores = run.call(mat, k, PLAIN, None, 1)[0]
            return labels, scores, pl.strategy
        return _filtered(run, pl, mat, k, sel)
    except _NotNative:
        return None


class _Codes:
    """What `_codes_unfiltered` decides from a field's config, its index and a query's knobs, kept on the
    field until one of them changes: deciding it again cost ~2.5 us a query (benchmarks/NATIVE.md).
    The index and its graph are held weakly: a replaced index is not kept alive by its memo."""

    __slots__ = ("as_is", "config", "index", "inner", "knobs", "name", "over", "rescore", "runs")

    def __init__(self, field: DenseField, index: EncodedIndex, knobs: tuple[Any, ...], p: SearchParams | None) -> None:
        inner = index.inner
        self.index, self.config, self.knobs = weakref.ref(index), field.config, knobs
        self.inner: Any = weakref.ref(inner) if inner is not None else _no_inner
        self.runs = False  # whether this path runs the plan unrolled
        self.over, self.rescore, self.name, self.as_is = 1.0, False, kind(field), index.queries_as_is
        if not (index.is_trained and _graph_codes(field, index)):
            return
        k_ann, rescore, stages = rerank_plan(field, index, 10, p)
        if stages:
            return
        self.runs, self.rescore = True, rescore
        # k_ann = max(k, ceil(k * over)) when rescoring: rerank_plan's rule, with its `over` kept
        cfg = field.config
        self.over = (p.oversampling if p is not None else None) or cfg.rerank.oversampling or index.default_oversampling

    def fits(self, field: DenseField, index: EncodedIndex, knobs: tuple[Any, ...]) -> bool:
        inner = index.inner
        return (
            self.index() is index
            and self.inner() is inner
            and (inner is not None or not self.runs)
            and self.config is field.config
            and self.knobs == knobs
        )


_CODES_KEPT = 4  # plans kept per field: a server mixing plain searches and pipelines alternates two shapes


def _codes_for(field: DenseField, index: EncodedIndex, knobs: tuple[Any, ...], p: SearchParams | None) -> _Codes:
    """The field's memo for these knobs, the most recent first; one memo alone was rebuilt (~10 us) on every
    query when plain searches and a pipeline's params alternated on one field."""
    kept: list[_Codes] | None = field.native_codes
    if kept is not None:
        first = kept[0]
        if first.fits(field, index, knobs):
            return first
        for i in range(1, len(kept)):
            c = kept[i]
            if c.fits(field, index, knobs):
                field.native_codes = [c, *kept[:i], *kept[i + 1 :]]
                return c
    c = _Codes(field, index, knobs, p)
    field.native_codes = [c, *(kept or [])[: _CODES_KEPT - 1]]  # a new list: readers never see it half-made
    return c


# a pydantic model's field values without an attribute lookup (`__dict__`'s own descriptor, bound; as
# `index/pair.py`): between two searches even the lookup of `__dict__` is a few cache misses
_fields_of: Callable[[SearchParams], dict[str, Any]] = next(
    c.__dict__["__dict__"] for c in SearchParams.__mro__ if "__dict__" in c.__dict__
).__get__


def _no_inner() -> None:
    return None


def exact_few(field: DenseField, mat: F32, k: int, sel: Selection) -> Ranked | None:
    """A filter matching at most `exact_filter_threshold` points, scored exactly in one call: the plan
    `decide` gives it whatever the index state or the knobs, so it is not asked. None: not that few."""
    if not ENABLED or _graph is None or len(sel) > field.options.exact_filter_threshold:
        return None
    n = field.labels.n  # before `alive`: each at least as new as the one before
    return _exact(field, mat, k, sel.native(), n, field.alive, "exact_filtered")


def exact_bitmap(field: DenseField, mat: F32, k: int, bm: BitMap) -> Ranked | None:
    """`exact_few` for a payload index's bitmap the caller has counted (`search._dense_filtered`)."""
    if not ENABLED or _graph is None:
        return None
    n = field.labels.n  # before `alive`, as `exact_few`
    return _exact(field, mat, k, bm.serialize(), n, field.alive, "exact_filtered")


def exact_vector(field: DenseField, v: Any, k: int, allowed: bytes) -> Ranked | None:
    """A query as the user gave it, checked and normalised natively, then its exact top k among the
    roaring bytes `allowed` (`search._dense_filtered`): `prepare_one` and `exact_bitmap` in one call.
    None: the native path is off, or the vector needs `prepare_one` (another shape, or one it rejects).
    Under 256 rows it keeps the GIL (a few microseconds); from there it releases it as `_exact` does."""
    if not ENABLED or _graph is None:
        return None
    n = field.labels.n  # before `alive`, as `exact_few`
    metric = 2 if field.space is Space.l2 else 1 if field.metric is Metric.cosine else 0
    got = _graph.exact_vector(v, field.vectors.buffer(), field.alive, n, allowed, k, metric)
    return None if got is None else (got[0], got[1], "exact_filtered")


def _codes_unfiltered(
    field: DenseField, upto: int, index: EncodedIndex, mat: F32, k: int, params: SearchParams | None
) -> Ranked | None:
    """The unfiltered plan of a graph over codes (int8, LeanVec-reduced, or both; `_Runner.call` for PLAIN)
    without building a `_Runner`: about 4 us of the ~100 a query costs at 100k (benchmarks/NATIVE.md).
    None: not this plan."""
    p = params
    if p is None:
        knobs: tuple[Any, ...] = (None,)
        ef = None
    else:
        # the fields from the model's `__dict__`, read once: through a pydantic model's `__getattr__` each
        # attribute read is the slow generic lookup (a pipeline's fused pair passes params on every query)
        d = _fields_of(p)
        if d["funnel"] is not None:
            return None  # rerank_plan's checks and stages: the general road
        ef = d["ef"]
        knobs = (ef, d["rescore"], d["oversampling"])
    c = _codes_for(field, index, knobs, p)
    if not c.runs:
        return None
    g = index.inner  # the graph the memo was made for (`fits`)
    k_ann = max(k, math.ceil(k * c.over)) if c.rescore else k
    n = field.labels.n  # after the state, before `alive`, as `_Runner` reads them
    rows = field.vectors.buffer() if c.rescore or n > upto else None
    ef = ef or g.ef
    gq = mat if c.as_is else index.encode(mat, queries=True)  # the graph quantizes the query itself
    fq = mat if index.reducer is not None else None  # a reduced walk reranks with the full query
    got = g._graph.query(gq, fq, k, k, k_ann, ef, c.rescore, rows, field.alive, upto, n, None, PLAIN, 1)
    return got[0][0], got[0][1], c.name


def _exact(field: DenseField, mat: F32, k: int, allowed: Any, n: int, alive: Any, strategy: str) -> Ranked:
    """The exact top k of the live rows `allowed` (roaring bytes or labels) below `n`, in one native call."""
    labels, scores = _graph.exact(mat, field.vectors.buffer(), alive, n, allowed, k, field.space is Space.l2)[0]
    return labels, scores, strategy


def _filtered(run: _Runner, pl: Plan, mat: F32, k: int, sel: Selection) -> Ranked:
    """`pl` (a postfilter, ACORN or checked walk) natively, then its fallback when the walk ran short."""
    allowed = sel.native()
    want = min(k, len(sel))
    walk, strategy = pl.walk, pl.strategy
    if walk == plans.POSTFILTER:
        # an unfiltered walk for enough candidates that k of them match, the filter tested natively
        labels, scores = run.call(mat, math.ceil(2 * k / pl.share), POSTFILTER, allowed, 1, k)[0]
        if len(labels) >= want:
            return labels, scores, strategy
        walk, strategy = pl.fallback or plans.CHECKED, pl.fallback_strategy
    labels, scores = run.call(mat, k, _WALKS[walk], allowed, 1, ef=pl.ef)[0]
    if len(labels) < want:  # the walk ran out under the filter: exact over its labels
        return _exact(run.field, mat, k, allowed, run.n, run.alive, "exact_fallback")
    return labels, scores, strategy


def search_batch(
    field: DenseField, mat: F32, k: int, params: SearchParams | None, threads: int | None
) -> tuple[list[Lists], str] | None:
    """Unfiltered queries [nq, dim] in one call, on `threads` (None: all cores); None: a plan for
    `planner.plan`."""
    if not ENABLED:
        return None
    p = field.tuning.apply(params) if field.tuning is not None else params
    st = field.state
    n = field.labels.n
    run = _runner(field, p, st.index, st.upto, n, field.alive)
    if run is None:
        return None
    try:
        return run.call(mat, k, PLAIN, None, threads or os.cpu_count() or 1), run.name
    except _NotNative:
        return None
