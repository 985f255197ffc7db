"""The search planner of a dense vector: pick a strategy from the index state, the filter and the knobs.

Strategies, in the order they are tried:
- the fast path: one unfiltered query on a fully indexed HNSW or compressed index goes straight from
  the backend's lists to labels, without the general planner's numpy bookkeeping;
- exact: no trained index, `params.exact`, or a filter matching at most `exact_filter_threshold` points
  (the cardinality comes from the payload indexes, or SQL; scoring a few thousand rows beats any walk);
- ANN: the index (restricted to the filter's labels), its candidates rescored (compressed indexes,
  IVF-PQ) or funnelled (Matryoshka), merged with an exact scan of the unindexed tail; if a filtered
  walk found fewer than `limit` hits, exact over the filter's labels.
  On Nestor's graph a filter matching less than `filter_walk_fraction` of the points is walked ACORN's
  way (`*_acorn`: only allowed nodes are scored, rejected neighbours looked through); a broader one by
  the plain walk that checks each result (`*_filtered`), which then costs little more than no filter.
  benchmarks/FILTERS.md has the measurements behind the two thresholds.

Each search reads the field's `IndexState` once, then the committed label count, then the liveness
mask (in that order: each is at least as new as the one before).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from index.backends.base import F32, I64, Hits, IndexParams, Space, VectorIndex, empty_hits
from index.backends.flat import exact_search, gather_scores, top_k
from index.backends.graph import GraphIndex
from index.backends.hnsw import HnswIndex
from index.backends.ivfpq import IvfPqIndex
from index.contract import Query
from index.encoded import EncodedIndex
from index.errors import InvalidRequest
from index.plans import (
    ACORN,
    ACORN_MIN_SHARE,
    CHECKED,
    EXACT,
    POSTFILTER,
    decide,
    ivf_shortlist,
    kind,
    walk_floor,
    walks_natively,
)
from index.selection import Selection
from index.widen import rescore_widened, widens
from nestor_client.models import FunnelStage, IvfPqIndexConfig, MatryoshkaReduceConfig, SearchParams
from quantization.matryoshka import funnel

if TYPE_CHECKING:
    from index.dense import DenseField

__all__ = [
    "ACORN_MIN_SHARE",
    "CHEAP_PENDING",
    "Ranked",
    "check_params",
    "drop_dead",
    "exact_rows",
    "is_cheap",
    "kind",
    "merge",
    "plan",
    "walk_floor",
    "walks_natively",
    "search_fast",
    "to_user",
]

CHEAP_PENDING = 1024  # unindexed rows a search may scan exactly and still count as cheap
Ranked = tuple[list[int], list[float], str]  # labels, user-facing scores (best first), strategy


def check_params(field: DenseField, p: SearchParams | None) -> None:
    if p is not None and p.funnel is not None and not isinstance(field.config.reduce, MatryoshkaReduceConfig):
        raise InvalidRequest("a funnel needs a vector with reduce.type='matryoshka'")


def is_cheap(field: DenseField, q: Query) -> bool:
    """A sub-millisecond ANN lookup: no filter, a few payload rows, little unindexed data."""
    st = field.state
    return (
        q.filter is None
        and q.limit + q.offset <= 100
        and st.index is not None
        and st.index.is_trained
        and not (q.params is not None and q.params.exact)
        and field.labels.n - st.upto <= CHEAP_PENDING
    )


def to_user(field: DenseField, labels: I64, scores: F32) -> tuple[list[int], list[float]]:
    """Planner rows (-1 padded, higher is better) as labels and user-facing scores (L2: the distance)."""
    pairs = [(lab, sc) for lab, sc in zip(labels.tolist(), scores.tolist(), strict=True) if lab >= 0]
    if field.space is Space.l2:
        return [lab for lab, _ in pairs], [math.sqrt(max(-sc, 0.0)) for _, sc in pairs]
    return [lab for lab, _ in pairs], [sc for _, sc in pairs]


def search_fast(field: DenseField, q: Query, mat: F32) -> Ranked | None:
    """The common case: one unfiltered query, fully indexed. None: take the general planner."""
    st = field.state
    index, p = st.index, q.params if field.tuning is None else field.tuning.apply(q.params)
    if q.filter is not None or index is None or st.upto != field.labels.n or (p is not None and p.exact):
        return None
    k = q.limit + q.offset
    strategy = "hnsw"
    got: tuple[list[int], list[float]] | None
    if isinstance(index, HnswIndex):
        got = index.search_one(mat, k, p.ef if p is not None else None)
    elif isinstance(index, GraphIndex):
        arrays = index.search_one(mat, k, p.ef if p is not None else None)
        got = None if arrays is None else (arrays[0].tolist(), arrays[1].tolist())
    elif isinstance(index, (EncodedIndex, IvfPqIndex)) and index.is_trained:
        got, strategy = _shortlist(field, index, mat, k, p), kind(field)
    else:
        return None
    if got is None:
        return None
    labels, scores = got
    alive = field.alive
    if not all(alive[lab] for lab in labels):
        return None
    if field.space is Space.l2:
        scores = [math.sqrt(max(-s, 0.0)) for s in scores]
    return labels, scores, strategy


def _shortlist(
    field: DenseField, index: EncodedIndex | IvfPqIndex, mat: F32, k: int, p: SearchParams | None
) -> tuple[list[int], list[float]] | None:
    """One query through a compressed index and its rerank, in as few numpy calls as possible."""
    k_ann, rescore, stages = rerank_plan(field, index, k, p)
    if stages:
        return None
    ip = IndexParams(ef=p.ef if p is not None else None, nprobe=p.nprobe if p is not None else None)
    if rescore and isinstance(index, EncodedIndex) and index.reranks_natively:
        done = index.search_reranked(mat, k, k_ann, ip, field.vectors.buffer())
        return None if done is None else (done[0].tolist(), done[1].tolist())
    got = index.search_one(mat, k_ann, ip)
    if got is None:
        return None
    labels, scores = got
    if rescore:
        scores = _candidate_scores(field, index, mat, labels[None, :])[0]
        if len(labels) > k:
            top = np.argpartition(-scores, k - 1)[:k]
            labels, scores = labels[top], scores[top]
        if isinstance(index, EncodedIndex) and index.has_int8_store:
            scores = gather_scores(field.vectors.buffer(), mat, labels[None, :], field.space)[0]
        order = np.argsort(-scores, kind="stable")
        labels, scores = labels[order], scores[order]
    return labels.tolist(), scores.tolist()


def plan(
    field: DenseField, queries: F32, k: int, params: SearchParams | None, allowed: Selection | I64 | None
) -> tuple[Hits, str]:
    """Decide the plan (`index/plans.py`) and run it with numpy. Returns labels/scores, higher is better."""
    sel = allowed if allowed is None or isinstance(allowed, Selection) else Selection(labels=allowed)
    if field.tuning is not None:  # the recall target's knobs, where the query sets none (index/quality.py)
        params = field.tuning.apply(params)
    st = field.state
    index, upto = st.index, st.upto
    n = field.labels.n
    alive = field.alive
    pl = decide(field, index, upto, n, params, k, sel)
    if pl.walk == EXACT or index is None:
        return _exact(field, queries, k, sel, n, alive), pl.strategy
    if sel is None:
        return _ann(field, index, queries, k, params, None, acorn=False, upto=upto, n=n), pl.strategy
    walk, strategy = pl.walk, pl.strategy
    if walk == POSTFILTER:
        # broad: an unfiltered walk for enough candidates that k of them match, then test just those
        hits = _postfilter(field, index, queries, k, params, sel, pl.share, upto, n)
        if hits is not None:
            return hits, strategy
        walk, strategy = pl.fallback or CHECKED, pl.fallback_strategy
    ann = _ann(field, index, queries, k, params, sel.labels, acorn=walk == ACORN, upto=upto, n=n, ef=pl.ef)
    short = (ann.labels[:, :k] >= 0).sum(axis=1) < min(k, len(sel))
    if short.any():  # the graph walk ran out under the filter: fall back to exact
        ann, strategy = _exact(field, queries, k, sel, n, alive), "exact_fallback"
    return Hits(ann.labels[:, :k], ann.scores[:, :k]), strategy


def _ann(
    field: DenseField,
    index: VectorIndex,
    queries: F32,
    k: int,
    params: SearchParams | None,
    allowed: I64 | None,
    *,
    acorn: bool,
    upto: int,
    n: int,
    ef: int | None = None,
) -> Hits:
    """The index's top k (of `allowed`), funnelled and rescored, merged with the unindexed tail below `n`,
    live only. `index` and `upto` come from one read of the field's state; `ef` overrides the params' beam."""
    alive = field.alive
    ef = ef or (params.ef if params else None)
    ip = IndexParams(ef=ef, nprobe=params.nprobe if params else None, acorn=acorn)
    k_ann, rescore, stages = rerank_plan(field, index, k, params)
    ann = index.search(queries, k_ann, ip, allowed)
    if stages and isinstance(index, EncodedIndex):
        ann = _funnel(field, index, queries, ann, stages)
    if rescore:
        first, exact = ann, _candidate_scores(field, index, queries, ann.labels)
        ann = _rescore(field, index, queries, ann, exact, k)
        if not stages and widens(index):  # as the native rescore widens (index/widen.py)
            rescore_widened(field, index, queries, first, exact, ann, k_ann, ip, allowed)
    if n > upto:  # rows not yet in the index are searched exactly
        mask = alive[upto:n].copy()
        if allowed is not None:
            mask &= np.isin(np.arange(upto, n), allowed)
        if mask.any():
            tail = np.arange(upto, n, dtype=np.int64)
            ann = merge(ann, exact_search(field.vectors.view()[upto:n], tail, queries, k, field.space, mask), k)
    # read again: the graph is shared with the indexer, so the walk may return labels committed after `alive`
    return drop_dead(ann, field.alive)


def _postfilter(
    field: DenseField,
    index: VectorIndex,
    queries: F32,
    k: int,
    params: SearchParams | None,
    sel: Selection,
    share: float,
    upto: int,
    n: int,
) -> Hits | None:
    """Top k of an unfiltered search for `2 k / share` candidates that the filter keeps; None when a query
    kept fewer than k (then the caller walks with the filter)."""
    wide = math.ceil(2 * k / share)
    ann = _ann(field, index, queries, wide, params, None, acorn=False, upto=upto, n=n)
    keep = sel.contains(ann.labels) & (ann.labels >= 0)
    want = min(k, len(sel))
    if (keep.sum(axis=1) < want).any():
        return None
    out = empty_hits(len(queries), k)
    for row in range(len(queries)):
        labels, scores = ann.labels[row][keep[row]][:k], ann.scores[row][keep[row]][:k]
        out.labels[row, : len(labels)] = labels
        out.scores[row, : len(labels)] = scores
    return out


def _exact(
    field: DenseField, queries: F32, k: int, sel: Selection | None, n: int, alive: npt.NDArray[np.bool_]
) -> Hits:
    if sel is None:
        return exact_search(field.vectors.view()[:n], None, queries, k, field.space, alive[:n])
    allowed = sel.labels
    return exact_rows(field, queries, k, allowed[allowed < n], alive)


def exact_rows(field: DenseField, queries: F32, k: int, allowed: I64, alive: npt.NDArray[np.bool_]) -> Hits:
    """Exact top k among committed labels `allowed`, skipping the dead ones."""
    allowed = allowed[alive[allowed]]
    out = empty_hits(len(queries), k)
    if not len(allowed):
        return out
    # scored in place by faiss's by-index kernel: 3-4x cheaper than gathering the rows first
    scores = gather_scores(
        field.vectors.buffer(),
        queries,
        allowed[None, :] if len(queries) == 1 else np.broadcast_to(allowed, (len(queries), len(allowed))),
        field.space,
    )
    pos, best = top_k(scores, k)
    out.labels[:, : pos.shape[1]] = allowed[pos]
    out.scores[:, : pos.shape[1]] = best
    return out


def rerank_plan(
    field: DenseField, index: VectorIndex, k: int, p: SearchParams | None
) -> tuple[int, bool, list[FunnelStage]]:
    """(candidates to take from the index, whether to rescore them, funnel stages to run first)."""
    cfg = field.config
    if isinstance(index, EncodedIndex):
        red = cfg.reduce
        stages = list(p.funnel) if p is not None and p.funnel is not None else []
        if isinstance(red, MatryoshkaReduceConfig):
            stages = stages if p is not None and p.funnel is not None else list(red.funnel)
            last = red.dim
            for i, st in enumerate(stages):
                if not (last <= st.dim if i == 0 else last < st.dim) or st.dim > field.dim:
                    raise InvalidRequest(f"funnel dims must increase from reduce.dim={red.dim} up to {field.dim}")
                last = st.dim
        elif stages:
            raise InvalidRequest("a funnel needs a vector with reduce.type='matryoshka'")
        rescore = cfg.rerank.enabled if p is None or p.rescore is None else p.rescore
        over = (p.oversampling if p is not None else None) or cfg.rerank.oversampling or index.default_oversampling
        k_ann = max(k, math.ceil(k * over)) if rescore or stages else k
        if stages and isinstance(red, MatryoshkaReduceConfig) and stages[0].dim == red.dim:
            k_ann, stages = max(k, stages[0].limit), stages[1:]  # a stage at the index's own dim sizes the shortlist
        return k_ann, rescore or bool(stages), stages
    if p is not None and p.funnel is not None:
        raise InvalidRequest("a funnel needs a vector with reduce.type='matryoshka'")
    ivf = cfg.index
    if not isinstance(ivf, IvfPqIndexConfig):
        return k, False, []
    return (*ivf_shortlist(ivf, p, k), [])


def _funnel(field: DenseField, index: EncodedIndex, queries: F32, hits: Hits, stages: list[FunnelStage]) -> Hits:
    """Matryoshka funnel: rescore the shortlist on longer and longer prefixes, keep each stage's limit."""
    width = max(stages[-1].limit, 1)
    out = Hits(np.full((len(queries), width), -1, np.int64), np.full((len(queries), width), -np.inf, np.float32))
    steps = [(st.dim, st.limit) for st in stages]
    for row in range(len(queries)):
        cand = hits.labels[row][hits.labels[row] >= 0]
        if not len(cand):
            continue
        rotated = index.rotate(field.vectors.take(cand))
        ids, sc = funnel(rotated, index.rotate(queries[row : row + 1])[0], steps)
        out.labels[row, : len(ids)] = cand[ids]
        out.scores[row, : len(ids)] = sc
    return out


def _candidate_scores(field: DenseField, index: Any, queries: F32, labels: I64) -> F32:
    """Exact scores [nq, m] of candidate labels (-1 padded): the int8 rerank store if the index keeps one,
    else faiss's by-index kernel over the float32 rows (no gathered copy)."""
    if isinstance(index, EncodedIndex) and index.has_int8_store:
        return index.rerank_scores(queries, labels)
    return gather_scores(field.vectors.buffer(), queries, labels, field.space)


def _rescore(field: DenseField, index: VectorIndex, queries: F32, hits: Hits, scores: F32, k: int) -> Hits:
    """Rerank ANN candidates by their `scores` (`_candidate_scores`: full precision or the int8 rerank store)."""
    pos, sc = top_k(scores, k)
    labels = np.take_along_axis(hits.labels, pos, axis=1)
    if isinstance(index, EncodedIndex) and index.has_int8_store:
        # the int8 store picked the k; they are ordered (and scored) by float32, which costs k rows, even on disk
        sc = gather_scores(field.vectors.buffer(), queries, labels, field.space)
        order = np.argsort(-sc, axis=1, kind="stable")
        labels, sc = np.take_along_axis(labels, order, axis=1), np.take_along_axis(sc, order, axis=1)
    return Hits(labels, sc)


def merge(a: Hits, b: Hits, k: int) -> Hits:
    labels = np.concatenate([a.labels, b.labels], axis=1)
    scores = np.concatenate([a.scores, b.scores], axis=1)
    # a label can be in both when the indexer moved it while we searched: keep its best copy
    order = np.argsort(-scores, axis=1, kind="stable")
    labels = np.take_along_axis(labels, order, axis=1)
    scores = np.take_along_axis(scores, order, axis=1)
    for row in range(len(labels)):
        _, first = np.unique(labels[row], return_index=True)
        dup = np.ones(labels.shape[1], bool)
        dup[first] = False
        dup &= labels[row] >= 0
        if dup.any():
            scores[row, dup] = -np.inf
            labels[row, dup] = -1
    order = np.argsort(-scores, axis=1, kind="stable")[:, : max(k, a.labels.shape[1])]
    return Hits(np.take_along_axis(labels, order, axis=1), np.take_along_axis(scores, order, axis=1))


def drop_dead(h: Hits, alive: npt.NDArray[np.bool_]) -> Hits:
    """Hits without the labels `alive` calls dead, or does not know: a label past its end was committed after
    this reader took it (a writer grows `alive` by replacing the array), so it is not in this reader's view."""
    lab = h.labels
    if lab.size == 0 or (lab.min() >= 0 and lab.max() < len(alive) and alive[lab].all()):
        return h  # the norm: index removals are synchronous with deletes
    known = (lab >= 0) & (lab < len(alive))
    dead = (lab >= 0) & ~(known & alive[np.where(known, lab, 0)])
    if not dead.any():
        return h
    scores = np.where(dead, -np.inf, h.scores).astype(np.float32)
    labels = np.where(dead, -1, h.labels)
    order = np.argsort(-scores, axis=1, kind="stable")
    return Hits(np.take_along_axis(labels, order, axis=1), np.take_along_axis(scores, order, axis=1))
