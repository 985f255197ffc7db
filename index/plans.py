"""The one decision of a dense field's search: which plan, from the index state, the filter's size and the knobs.

`decide` is the planner's rule, written once; two executors run its `Plan`: `planner.plan` with numpy
(every index type) and `native.search` in one C++ call (Nestor's graph, and the exact scan of any
float32 rows). A plan names its walk, the strategy a response reports, the walk to take when the first
comes up short, and the knobs the walk needs (the filter's share, a widened beam).

The rule (benchmarks/FILTERS.md has the measurements behind each threshold):
- exact: `params.exact`, no trained index, or a filter matching at most `exact_filter_threshold` points
  (or fewer than a walk's beam);
- no filter: the index (`ann`);
- a broad filter (at least `filter_walk_fraction` of the points) on Nestor's graph: an unfiltered walk for
  `2 k / share` candidates tested against the filter (`postfilter`), else the walk that checks the filter;
- a narrower one: ACORN's walk, which scores only allowed nodes and looks through the rest. Its density
  is the filter's share of the graph's *nodes*: deleted nodes stay in the graph, walked through but never
  allowed, until a compaction, so a graph holding 3 dead nodes a live one walks a 10 % filter as if it
  were 2.5 %. Below `ACORN_MIN_SHARE` of the nodes the filter is scored exactly; above it the beam is
  widened by the nodes-to-live ratio (at most `MAX_WIDEN`), so the walk meets as many allowed nodes as on
  a compacted graph;
- any other index under a filter: its own filtered search (`filtered`); on IVF-PQ, a filter matching no
  more points than the rerank's shortlist is scored exactly (the rerank alone would score as many rows).
A walk that finds fewer than `limit` hits falls back to exact over the filter (`exact_fallback`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from index.backends.base import VectorIndex
from index.backends.graph import GraphIndex
from index.encoded import EncodedIndex
from nestor_client.models import IvfPqIndexConfig, SearchParams

if TYPE_CHECKING:
    from index.dense import DenseField
    from index.selection import Selection

__all__ = [
    "ACORN",
    "ACORN_MIN_SHARE",
    "ANN",
    "CHECKED",
    "EXACT",
    "FILTERED",
    "RERANK_MIN_K",
    "MAX_WIDEN",
    "POSTFILTER",
    "Plan",
    "decide",
    "graph_nodes",
    "ivf_shortlist",
    "kind",
    "walk_floor",
    "walks_natively",
]

ACORN_MIN_SHARE = 0.02  # a filter matching less of the graph's nodes than this is scored exactly, not walked
MAX_WIDEN = 4.0  # the most an ACORN beam is widened for the dead nodes it walks through
# An IVF-PQ rerank takes at least a top-10 search's shortlist: 4-bit codes miss near-ties, and a limit-1
# search reranking 16 candidates found the true best at ~0.8 (filtered or not); 160 rows cost microseconds.
RERANK_MIN_K = 10

# the walks a plan can take
EXACT, ANN, POSTFILTER, ACORN, CHECKED, FILTERED = "exact", "ann", "postfilter", "acorn", "checked", "filtered"


@dataclass(frozen=True, slots=True)
class Plan:
    walk: str  # one of the walks above
    strategy: str  # what the response's `strategy` says when this walk answers
    fallback: str | None = None  # the walk when this one finds fewer than `limit` (a postfilter: CHECKED)
    fallback_strategy: str = "exact_fallback"
    share: float = 1.0  # the filter's share of the points (a postfilter's candidates: 2 k / share)
    ef: int | None = None  # the beam the walk takes, when the plan sets it (a widened ACORN walk)


def decide(
    field: DenseField,
    index: VectorIndex | None,
    upto: int,
    n: int,
    params: SearchParams | None,
    k: int,
    sel: Selection | None,
) -> Plan:
    """The plan for a search of `field` (its state read once: `index`, `upto`, then `n`) for `k` hits,
    under the filter `sel` (None: unfiltered). `params` has the field's tuning applied."""
    if (params is not None and params.exact) or index is None or not index.is_trained:
        return Plan(EXACT, "exact" if sel is None else "exact_filtered")
    name = kind(field)
    if sel is None:
        return Plan(ANN, name)
    m = len(sel)
    opts = field.options
    if m <= max(opts.exact_filter_threshold, walk_floor(index, params, k)):
        return Plan(EXACT, "exact_filtered")
    tail = n - upto
    share = m / max(index.count + tail, 1)
    if not walks_natively(index):
        ivf = field.config.index
        if isinstance(ivf, IvfPqIndexConfig) and m <= ivf_shortlist(ivf, params, k)[0]:
            return Plan(EXACT, "exact_filtered")  # fewer matches than the rerank would score anyway
        return Plan(FILTERED, f"{name}_filtered", EXACT, share=share)
    if share >= opts.filter_walk_fraction:
        return Plan(POSTFILTER, f"{name}_postfilter", CHECKED, f"{name}_filtered", share=share)
    nodes = graph_nodes(index)
    density = m / max(nodes + tail, 1)
    if density < ACORN_MIN_SHARE:
        # too sparse to walk: two or three hops find too few allowed nodes to navigate by (on 1M points
        # at 1 %, ACORN needed ef 384 and 18.7 ms for recall 0.95; scoring the 10,000 rows takes 1-3 ms)
        return Plan(EXACT, "exact_filtered")
    ef = None
    if nodes > index.count:  # dead nodes in the graph: widen the beam by the share of them
        base = beam(index, params)
        ef = math.ceil(base * min(MAX_WIDEN, nodes / max(index.count, 1))) if base else None
    return Plan(ACORN, f"{name}_acorn", EXACT, share=share, ef=ef)


def kind(field: DenseField) -> str:
    """The strategy name of an ANN search: the index type, prefixed by the compression."""
    c = field.config
    parts = [b.type for b in (c.reduce, c.quantize) if b is not None]
    return "_".join([*parts, c.index.type])


def beam(index: VectorIndex, params: SearchParams | None) -> int:
    """The beam (ef) a walk of `index` takes with `params`: the query's, else the index's; 0 when none."""
    inner = index.inner if isinstance(index, EncodedIndex) else index
    ef = params.ef if params is not None and params.ef else getattr(inner, "ef", 0)
    return int(ef or 0)


def walk_floor(index: VectorIndex, params: SearchParams | None, k: int) -> int:
    """Matches below which no walk pays: a graph scores at least its beam (ef) of nodes, so fewer matches
    are scored exactly, whatever `exact_filter_threshold` says (a walk could not even fill its beam)."""
    return max(k, beam(index, params))


def ivf_shortlist(cfg: IvfPqIndexConfig, params: SearchParams | None, k: int) -> tuple[int, bool]:
    """(candidates an IVF-PQ search of `k` takes from its codes, whether the rerank rescores them)."""
    rescore = params.rescore if params is not None and params.rescore is not None else cfg.rescore
    if not rescore:
        return k, False
    over = params.oversampling if params is not None and params.oversampling else cfg.oversampling
    return math.ceil(max(k, RERANK_MIN_K) * over), True


def walks_natively(index: VectorIndex) -> bool:
    """The index is Nestor's graph, which takes a filter as a byte mask and can walk it ACORN's way."""
    return isinstance(index.inner if isinstance(index, EncodedIndex) else index, GraphIndex)


def graph_nodes(index: VectorIndex) -> int:
    """The nodes a walk of Nestor's graph passes: the live ones and those deleted but not yet compacted."""
    inner = index.inner if isinstance(index, EncodedIndex) else index
    return inner.nodes if isinstance(inner, GraphIndex) else index.count
