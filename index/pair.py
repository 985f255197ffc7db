"""The commonest query pipeline, a rescore of one `rescore: false` leaf with the same query on the same
vector, checked without the general walk and run as that vector's own search.

On a compressed vector (int8, binary, a reduction, IVF-PQ) or a MUVERA one, that pair is exactly what
the vector's search does with `oversampling` = the leaf's limit / k: candidates from the index, then an
exact rescore, in one native call. On a 0.1 ms int8 search the pipeline's own Python was the cost, so the
pair is recognised up front (`check_pair`) and compiled once per request shape (`_Pair`: the vector, its
search params from `fused_params`), and it runs as that one search (`run_fused`) with a stage report
built when first read (`_PairReport`): benchmarks/PIPELINE.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import numpy as np

from index.backends.base import F32
from index.contract import CollectionReader, Hit, Query, WithVector
from index.encoded import default_oversampling
from index.errors import InvalidRequest
from index.stages import PipelineLimits, Stage, StageReport, and_filters, finite
from nestor_client.models import (
    Filter,
    IvfPqIndexConfig,
    MatryoshkaReduceConfig,
    Metric,
    MuveraConfig,
    SearchParams,
    VectorConfig,
)

__all__ = ["check_pair", "fused_params", "run_fused"]


def check_pair(coll: CollectionReader, root: Stage, k: int, lim: PipelineLimits) -> bool:
    """`_check` of the commonest tree, a dense query rescoring one leaf of the same query on the same
    vector (the pipeline form of a compressed index's rerank), without the general walk: on a 0.1 ms int8
    search the walk was a measurable share. False (nothing set): not that tree, or something the general
    walk must refuse (it says why).

    A pair that runs as one search is compiled once per request shape (`_PAIRS`, a `_Pair`): the next
    one with the same collection config, limits, vector, root limit and leaf knobs skips the config
    lookups and every check that shape decides; what is left is the query itself: equal in both nodes,
    of the vector's dimension, and finite (a local collection's dense search checks that itself, so it
    is not checked twice). Each step of a remembered pair is one of the fewest Python operations found
    (benchmarks/PIPELINE.md): on this path every attribute read shows against the search."""
    pre = root.prefetch
    if len(pre) != 1 or root.params is not None:
        return False
    leaf = pre[0]
    pp = leaf.params
    q = root.query
    if pp is None or leaf.prefetch or q.__class__ is not _NDARRAY:
        return False  # (a leaf without params is never fused: the general walk checks it)
    using = root.using
    lq = leaf.query
    if leaf.using != using or (lq is not q and not _equal(lq, q)):  # type: ignore[arg-type]
        return False
    knobs = _fields_of(pp)  # (not `pp.ef`: each read of a pydantic field is a slow generic lookup)
    got: _Pair | None = _LAST[0]  # the last shape first: no key to build, hash and compare
    if (
        got is None
        or got.config is not coll.config
        or got.knobs != knobs  # one comparison in C for the leaf's six knobs
        or got.n != leaf.limit
        or got.k != k
        or got.using != using
        or got.lim is not lim
        or leaf.score_threshold is not None
    ):
        got = _remembered(coll, leaf, knobs, k, lim)
        if got is None:
            return _compile(coll, root, leaf, knobs, k, lim)
    if q.shape != got.shape:  # type: ignore[union-attr]
        # a multivector's token count varies: its axes and token dimension decide
        if got.shape is not None or q.ndim != 2 or q.shape[1] != got.dim or not q.size or not finite(q):  # type: ignore[union-attr]
            return False  # the general walk says why
    elif got.distributed and not finite(q):  # type: ignore[arg-type]
        return False  # (a local dense search refuses NaN or infinity itself: `DenseField.prepare_one`)
    _LAST[0] = got
    root.using = got.name  # (the leaf's are not read: `run_fused` answers both nodes)
    root.lower = got.lower
    root.fused = got.params
    return True


def _fusable(leaf: Stage, knobs: dict[str, Any]) -> bool:
    """A leaf whose pair may run as one search, as far as its own knobs say (`_fusion` decides the rest)."""
    return knobs["rescore"] is False and knobs["funnel"] is None and not knobs["exact"] and leaf.score_threshold is None


def _key(coll: CollectionReader, leaf: Stage, knobs: dict[str, Any], k: int, lim: PipelineLimits) -> tuple[object, ...]:
    return (id(coll.config), id(lim), leaf.using, k, leaf.limit, *knobs.values())


def _remembered(
    coll: CollectionReader, leaf: Stage, knobs: dict[str, Any], k: int, lim: PipelineLimits
) -> _Pair | None:
    """The compiled pair of this request shape from `_PAIRS` (shapes that alternate), or None."""
    if not _fusable(leaf, knobs):
        return None
    got = _PAIRS.get(_key(coll, leaf, knobs, k, lim))
    return got if got is not None and got.config is coll.config and got.lim is lim else None


def _compile(
    coll: CollectionReader, root: Stage, leaf: Stage, knobs: dict[str, Any], k: int, lim: PipelineLimits
) -> bool:
    """`check_pair` of a shape not seen before: checked in full (`_check_once`), and remembered when it
    runs as one search."""
    q = root.query
    using = root.using
    key = _key(coll, leaf, knobs, k, lim) if _fusable(leaf, knobs) else None
    if not _check_once(coll, root, leaf, q, k, lim):  # type: ignore[arg-type]
        return False
    if key is not None and root.fused is not None:
        if len(_PAIRS) > 256:
            _PAIRS.clear()
        shape, dim = (q.shape if q.ndim == 1 else None), q.shape[-1]  # type: ignore[union-attr]
        fused, name, lower, dist = root.fused, root.using, root.lower, coll.distributed
        got = _Pair(coll.config, lim, using, k, leaf.limit, dict(knobs), name, lower, fused, shape, dim, dist)
        _PAIRS[key] = _LAST[0] = got
    return True


_NDARRAY = np.ndarray  # compared by class: a subclass takes the general walk


def _equal(a: object, b: F32) -> bool:
    """Two queries are one: another float32 array of the same shape and bytes (both checked finite, so
    equal bytes are equal vectors; -0.0 only misses the quick check)."""
    return a.__class__ is _NDARRAY and a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class _Pair:
    """A checked pair's request shape, compiled: what every later query of that shape needs. The config
    and the limits are held, so their ids (in the key) stay theirs while the entry lives."""

    config: object
    lim: PipelineLimits
    using: str | None  # the key's: the vector as given, the root's limit, the leaf's limit and knobs
    k: int
    n: int
    knobs: dict[str, Any]  # a copy of the leaf's `SearchParams` fields
    name: str | None  # the vector, resolved
    lower: bool  # its scores are L2 distances
    params: SearchParams  # the one search that answers the pair (`fused_params`)
    shape: tuple[int, ...] | None  # a one-vector query's; None for a multivector, whose token count varies
    dim: int
    distributed: bool  # a sharded collection's (which the config decides): its query is checked finite here


_PAIRS: dict[tuple[object, ...], _Pair] = {}
# the shape used last, tried before `_PAIRS`: between two searches every object a check reads is out of
# the CPU caches (a check cost 4x its hot-loop time there: benchmarks/PIPELINE.md), so it reads few
_LAST: list[_Pair | None] = [None]
# a pydantic model's field values without an attribute lookup (`__dict__`'s own descriptor, bound)
_fields_of: Callable[[SearchParams], dict[str, Any]] = next(
    c.__dict__["__dict__"] for c in SearchParams.__mro__ if "__dict__" in c.__dict__
).__get__


def _check_once(coll: CollectionReader, root: Stage, leaf: Stage, q: F32, k: int, lim: PipelineLimits) -> bool:
    """`check_pair` without the memory: the limits, the vector's config, the query's shape and values."""
    if lim.max_depth < 1 or k > lim.max_limit or leaf.limit > lim.max_limit or k + leaf.limit > lim.max_candidates:
        return False
    using = root.using
    if using is not None and using in (coll.config.sparse_vectors or ()):
        return False
    try:
        name, vcfg = coll.vector_config(using)
    except InvalidRequest:
        return False
    if q.ndim != (1 if vcfg.multivector is None else 2) or q.size == 0 or q.shape[-1] != vcfg.dim:
        return False
    if not finite(q):
        return False
    root.using = leaf.using = name
    root.lower = leaf.lower = vcfg.metric is Metric.l2
    leaf.query, leaf.fused = q, None
    root.fused = _fusion(leaf, k, vcfg)
    return True


def run_fused(
    coll: CollectionReader,
    partial: bool,
    st: Stage,
    flt: Filter | None,
    k: int,
    with_payload: bool,
    with_vector: WithVector,
    offset: int = 0,
) -> tuple[list[Hit], StageReport]:
    """A candidates-then-rescore pair the field's own search runs in one call (`fused_params`), its hits
    from `offset`; kept lean (no runner, its report built when read): on an int8 index the pipeline's
    own Python is the cost."""
    started = perf_counter()
    pf = st.prefetch[0].filter
    p = st.fused
    # the `Query` without a class call, whose arguments cost ~3k instructions a query (a seventh of the
    # pipeline's own: benchmarks/PIPELINE.md, session 21); every field is set, as a test checks
    q = _new_query(Query)
    q.vector = st.query  # type: ignore[assignment]  # a dense array, as `fused_params` says
    q.limit = k
    q.offset = 0
    q.filter = flt if pf is None else and_filters(flt, pf)
    q.params = None if p is DEFAULT_SEARCH else p
    q.with_payload = with_payload
    q.with_vector = with_vector
    q.score_threshold = st.score_threshold
    q.using = st.using
    q.sparse = q.sparse_stats = None
    # `partial` only when set: a keyword through the collection's read gate costs a dict (0.2 µs)
    res = (coll.search([q], partial=True) if partial else coll.search([q]))[0]
    hits = res.hits
    report = _new_report(_PairReport)  # no `__init__` call: a class call costs 0.3 µs here
    report._ran = (st, k, len(hits), (perf_counter() - started) * 1000, res.strategy)
    return (hits[offset:] if offset else hits), report


class _PairReport(StageReport):
    """The fused pair's report: a rescore whose one child, the leaf, was "fused into the rescore". What
    it says is taken when the search returns (`_ran`: the tree, `k`, the hit count, the time and the
    search's strategy); the two `StageReport`s are built when it is first read (a caller that never
    reads it, as an in-process one often does, never builds them: about 0.3 µs a query in a hot loop).
    The tree's `using` and limits it reads were fixed by `check`."""

    __slots__ = ("_ran",)
    _ran: tuple[Stage, int, int, float, str]

    def __getattr__(self, name: str) -> object:  # only called for an empty field: fill them all
        if name == "_ran":
            raise AttributeError(name)
        st, k, n, ms, strategy = self._ran
        p = st.prefetch[0]
        # the leaf's vector is the root's (`check` fused them for it), set on the root alone
        child = StageReport("search", st.using, "fused into the rescore", p.limit, 0, 0, ms, [])
        fused = f"{strategy} (candidates and rescore in one search)"
        StageReport.__init__(self, "rescore", st.using, fused, k, p.limit, n, ms, [child])
        return object.__getattribute__(self, name)


_new_report = object.__new__
_new_query = object.__new__


def fused_params(coll: CollectionReader, st: Stage, k: int) -> SearchParams | None:
    """The search params that answer `st` in one search, or None.

    A rescore over a single leaf that takes `rescore: false` candidates from the same vector with the same
    query is what that vector's own search does when its index is compressed (codes, then float32 rows),
    IVF-PQ, or MUVERA (FDEs, then MaxSim): the leaf's limit is the search's `oversampling * limit`. That
    search runs both steps in one native call, where the tree would walk, look the candidates up by id
    and score them again (2.6x the CPU for int8: benchmarks/PIPELINE.md)."""
    if len(st.prefetch) != 1 or not isinstance(st.query, np.ndarray) or st.exclude is not None:
        return None
    p = st.prefetch[0]
    if p.prefetch or not isinstance(p.query, np.ndarray) or p.exclude is not None or p.using != st.using:
        return None
    if p.query is not st.query and (p.query.shape != st.query.shape or p.query.tobytes() != st.query.tobytes()):
        return None  # (both checked finite float32: equal bytes are equal vectors; -0.0 only misses the fusion)
    return _fusion(p, k, coll.vector_config(st.using)[1])


def _fusion(p: Stage, k: int, cfg: VectorConfig) -> SearchParams | None:
    """`fused_params` once the tree is the pair (one leaf `p`, the same query and vector): its params and
    the vector's config decide."""
    pp = p.params
    if pp is None or pp.rescore is not False or pp.exact or p.score_threshold is not None or p.limit < k:
        return None
    over = p.limit / k
    if math.ceil(k * over) != p.limit or over > 1000:  # the search must take exactly the leaf's candidates
        return None
    if cfg.rerank.store != "float32":  # an int8 rerank store picks by int8 scores: not the tree's float rescore
        return None
    if isinstance(cfg.reduce, MatryoshkaReduceConfig) and pp.funnel != []:
        return None  # the search would run the funnel's own stages
    compressed = cfg.quantize is not None or cfg.reduce is not None or isinstance(cfg.index, IvfPqIndexConfig)
    if not (compressed or isinstance(cfg.multivector, MuveraConfig)):
        return None
    if pp.funnel is not None:
        return pp.model_copy(update={"rescore": True, "oversampling": over})
    if pp.ef is None and pp.nprobe is None and _is_default(cfg, over):
        return DEFAULT_SEARCH
    return _rescore_params(pp.ef, pp.nprobe, over)


# The fused search is the vector's search without params (`_is_default`): its `Query` carries none, so it
# takes the plain search's way down to the same native call, its memo included (`native._codes_for`).
# With the explicit params it reached that call too, but through ~2.8k more instructions a query (each
# knob read through pydantic's `__getattr__`, another memo): benchmarks/PIPELINE.md, session 21.
DEFAULT_SEARCH = SearchParams(rescore=True)


def _is_default(cfg: VectorConfig, over: float) -> bool:
    """Whether the vector's own search with no params is the fused one: graph or flat codes (no IVF-PQ, no
    Matryoshka funnel, no multivector) reranked by default, `over` candidates per result by default, and
    no recall target to retune its knobs (`planner.rerank_plan` and `Tuning.apply` with no params)."""
    return (
        (cfg.quantize is not None or cfg.reduce is not None)
        and not isinstance(cfg.reduce, MatryoshkaReduceConfig)
        and not isinstance(cfg.index, IvfPqIndexConfig)
        and cfg.multivector is None
        and cfg.quality is None
        and cfg.rerank.enabled
        and (cfg.rerank.oversampling or default_oversampling(cfg)) == over
    )


_RESCORE_PARAMS: dict[tuple[int | None, int | None, float], SearchParams] = {}


def _rescore_params(ef: int | None, nprobe: int | None, over: float) -> SearchParams:
    """Shared `SearchParams(rescore=True, ...)` for the fused pair (nothing mutates params): a copy of a
    pydantic model per query is a measurable part of an int8 search's 0.3 ms."""
    key = (ef, nprobe, over)
    got = _RESCORE_PARAMS.get(key)
    if got is None:
        if len(_RESCORE_PARAMS) > 1024:
            _RESCORE_PARAMS.clear()
        got = _RESCORE_PARAMS[key] = SearchParams(ef=ef, nprobe=nprobe, oversampling=over, rescore=True)
    return got
