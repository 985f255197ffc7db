"""A recall target Nestor meets by itself: calibration at each index build, then the live probe's feedback.

Calibration (`calibrate`, run by the indexer once an index is built, refitted, or has doubled or halved since the
last one, or its real queries have doubled, and caught up with the data) measures recall@k against exact search
and picks the fastest knobs whose recall meets the target with a margin. The queries are real ones when the vector
has at least `_MIN_SAMPLE`: its query sample (posted rows, and the reservoir of recent queries a recall target
keeps, `quality.queries` of them); then the lower end of the one-sided 95 % Wilson interval on per-neighbour hits
and the normal one on the mean per-query recall must both reach the target (a query's neighbours are found or
missed together, which makes the Wilson one narrow; a query searched twice counts once). Otherwise they are
held-out rows of the data: random live rows, each moved by Gaussian noise 1.5 times as long as the distance to its
nearest neighbour, the row itself left out of both answers (it is not a held-out point, so finding it proves
nothing). Such queries differ from real ones (easier at large settings), so on them the aim is `_ROWS_MARGIN` of
the way from the target to 1.

The knobs: `ef` of a graph (hnswlib or Nestor's), `nprobe` of IVF-PQ, and `oversampling` when the index's
candidates are reranked. For each oversampling (increasing), a binary search finds the smallest ef or nprobe on a
ladder (sixteen rungs per doubling) that meets the target (recall grows with both); a pair whose ef / nprobe is
no smaller than the previous pair's is dropped (the same search with more to rerank: at pypi-minilm 100k, int8
HNSW at 0.99 met the target at ef 256 for every oversampling from 1.25 to 20, and the clock's noise chose 8); of
the rest the fastest by measured time wins (`index/knob_clock.py`: single-query searches, as users run them).
The loop stops once even the smallest ef / nprobe at the next oversampling is slower than the fastest pair so far.

Live adjustment (`observe`): each probe round adds its per-neighbour hits to a window kept since the knobs last
changed, and the same queries' hits one rung below (`below`) to a second window. When the first window's whole
interval is below the target, the knobs go up one rung. When the rung below meets the target on its window, or
this one's lower end is `_COMFORT` above the target (at most half the gap to 1), for `_SLOW` rounds in a row,
they go down one rung (twice as many rounds to go below what calibration found necessary). So in service the
knobs settle on evidence from real queries, which keeps growing, where calibration had only its sample. The
ladders bound both ways.
"""

from __future__ import annotations

import bisect
import math
import time
from typing import TYPE_CHECKING

import numpy as np

from index import planner
from index.backends.base import F32, I64, VectorIndex
from index.backends.binary import BinaryIndex
from index.backends.graph import GraphIndex
from index.backends.hnsw import HnswIndex
from index.backends.ivfpq import IvfPqIndex
from index.encoded import EncodedIndex
from index.knob_clock import KnobClock
from index.tuning import Tuning, estimate, wilson
from nestor_client.models import (
    BinaryQuantizeConfig,
    IvfPqIndexConfig,
    SearchParams,
)

if TYPE_CHECKING:
    from index.dense import DenseField

__all__ = ["EF_LADDER", "NPROBE_LADDER", "OVER_LADDER", "below", "calibrate", "due", "observe", "sample_grew", "step"]


def _ladder(top: int) -> tuple[int, ...]:
    """1, 2, ... 16, then sixteen rungs per doubling (17, 18, ... 32, 34, ... 64, 68, ... 128, 136, ...) up to
    `top`: one rung is at most a sixteenth more work. Eighths were too coarse: a 0.99 target landed two eighths
    above the bare need (0.79-0.83 of its QPS), and int8 HNSW at 0.90 one eighth (ef 24 for 22: 0.86)."""
    out, v = list(range(1, 17)), 16
    while v < top:
        out += [v + j * v // 16 for j in range(1, 17)]
        v *= 2
    return tuple(out)


EF_LADDER = tuple(v for v in _ladder(16384) if v >= 8)
NPROBE_LADDER = _ladder(4096)
# quarter steps up to 3 (int8 HNSW at 0.99 chose 3 for the oracle's 2 at 0.81 of its QPS), then about an eighth
OVER_LADDER: tuple[float, ...] = (1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0)
OVER_LADDER += (8.0, 10.0, 12.0, 14.0, 16.0, 20.0, 24.0, 28.0, 32.0, 40.0, 48.0, 56.0, 64.0, 128.0, 256.0, 512.0)
OVER_LADDER += (1000.0,)  # 16 to 24 cost IVF-PQ 0.99 25 %
MIN_POINTS = 1000  # fewer indexed points: nothing to calibrate yet (and little to gain over exact)
_MIN_SAMPLE = 50  # query-sample rows needed to calibrate on them
_ROWS_MARGIN = 0.15  # share of the gap to 1 that calibration on data rows adds to the target
_NOISE = 1.5  # a row's perturbation, in distances to its nearest neighbour
_TIE = 1e-4  # an answer scoring as well as the exact k-th (within this) counts as found
_COMFORT = 0.01  # how far above the target a window's lower end must be to lower the knobs; at most half the
# gap to 1 (`_comfort`): at 0.99 a fixed 0.01 asked for a lower end of 1.0, and the knobs never came down
_SLOW = 3
_MIN_WINDOW = 100  # neighbours a live window needs before it moves anything
_EXACT = SearchParams(exact=True)
# Calibration promises recall >= target, a one-sided claim: the lower end of the one-sided 95 % interval
# (the two-sided one's is 97.5 %, a rung or two more than the claim needs at 0.99)
ONE_SIDED_Z = 1.644854


def due(field: DenseField) -> bool:
    """A calibration is due: the index is new (built, refitted) or has doubled or halved, or a new query sample
    was posted, and the index has caught up."""
    t = field.tuning
    if t is None:
        return False
    if field.plain_flat:
        t.state = "exact"
        return False
    st = field.state
    index = st.index
    if index is None or not index.is_trained or st.upto < field.labels.n or index.count < MIN_POINTS:
        return False
    n = field.count
    qs = field.query_sample
    new_sample = len(qs) >= _MIN_SAMPLE and (qs.version != t.sample_version or sample_grew(field))
    return new_sample or id(index) != t.index_id or n >= 2 * t.calibrated_count or 2 * n <= t.calibrated_count


def sample_grew(field: DenseField) -> bool:
    """The real queries (posted rows and recent ones) have doubled since the last calibration (or filled the
    reservoir): calibrating again on them is worth it. Cheap: the search path asks after keeping a query."""
    t, index = field.tuning, field.state.index
    if t is None or index is None or index.count < MIN_POINTS:
        return False
    real = len(field.query_sample)
    return real >= _MIN_SAMPLE and real > t.sample_rows and real >= min(2 * t.sample_rows, t.config.queries)


def step(field: DenseField) -> bool:
    """The indexer's hook: calibrate when due; True when it did."""
    if not due(field):
        return False
    calibrate(field)
    return True


# -- the knobs -------------------------------------------------------------------------------------


def _axes(field: DenseField, index: VectorIndex) -> tuple[str | None, tuple[float, ...], tuple[float, ...]]:
    """(the primary knob's name, its ladder, the oversampling ladder or (0,) when nothing is reranked)."""
    qc = field.tuning.config if field.tuning is not None else None
    assert qc is not None
    inner = index.inner if isinstance(index, EncodedIndex) else index
    name: str | None = None
    ladder: tuple[float, ...] = (0.0,)
    if isinstance(inner, (HnswIndex, GraphIndex)) or (isinstance(inner, BinaryIndex) and inner.structure == "hnsw"):
        name, ladder = "ef", tuple(float(v) for v in EF_LADDER if v <= qc.max_ef)
    elif isinstance(inner, IvfPqIndex):
        nlist = inner.nlist or 1
        name, ladder = "nprobe", tuple(float(v) for v in NPROBE_LADDER if v < nlist) + (float(nlist),)
    cfg = field.config
    reranks = cfg.rerank.enabled if cfg.compressed else isinstance(cfg.index, IvfPqIndexConfig) and cfg.index.rescore
    over = tuple(v for v in OVER_LADDER if v <= qc.max_oversampling) if reranks else (0.0,)
    return name, ladder, over


def _params(name: str | None, value: float, over: float) -> SearchParams:
    p: dict[str, float | int] = {}
    if name is not None:
        p[name] = int(value)
    if over:
        p["oversampling"] = over
    return SearchParams.model_validate(p)


# -- measuring ------------------------------------------------------------------------------------


def _queries(field: DenseField, sample: F32, m: int, rng: np.random.Generator) -> tuple[F32, I64 | None, str]:
    """Calibration queries: (vectors, the data row each was made from or None, where they came from)."""
    if len(sample) >= _MIN_SAMPLE:
        pick = rng.choice(len(sample), min(m, len(sample)), replace=False)
        return np.ascontiguousarray(sample[pick], np.float32), None, "query sample"
    live = np.flatnonzero(field.alive[: field.labels.n]).astype(np.int64)
    rows = np.sort(rng.choice(live, min(m, len(live)), replace=False))
    x = field.vectors.take(rows)
    near, _ = planner.plan(field, x, 2, _EXACT, None)
    other = np.where(near.labels[:, 0] == rows, near.labels[:, 1], near.labels[:, 0])
    gap = np.linalg.norm(x - field.vectors.take(np.maximum(other, 0)), axis=1)
    noise = rng.standard_normal(x.shape).astype(np.float32) * (_NOISE * gap / math.sqrt(field.dim))[:, None]
    return field.prepare(x + noise), rows, "perturbed rows"


def _answers(field: DenseField, q: F32, k: int, params: SearchParams, selfs: I64 | None) -> tuple[I64, F32]:
    """Top k labels and scores per query, the query's own data row left out."""
    hits, _ = planner.plan(field, q, k + (selfs is not None), params, None)
    if selfs is None:
        return hits.labels[:, :k], hits.scores[:, :k]
    keep = hits.labels != selfs[:, None]
    labels = np.full((len(q), k), -1, np.int64)
    scores = np.full((len(q), k), -np.inf, np.float32)
    for row in range(len(q)):
        got, sc = hits.labels[row][keep[row]][:k], hits.scores[row][keep[row]][:k]
        labels[row, : len(got)], scores[row, : len(got)] = got, sc
    return labels, scores


def _hits(truth: I64, kth: F32, labels: I64, scores: F32) -> I64:
    """Exact neighbours found per query, a tie with the exact k-th counting as found."""
    out = np.zeros(len(truth), np.int64)
    for row in range(len(truth)):
        want = truth[row][truth[row] >= 0]
        found = np.isin(labels[row], want) | ((labels[row] >= 0) & (scores[row] >= kth[row] - _TIE))
        out[row] = min(int(found.sum()), len(want))
    return out


def _low(found: I64, want: I64) -> float:
    """The lower end of the recall's one-sided 95 % interval: the smaller of the Wilson one on per-neighbour hits
    and the normal one on the mean per-query recall. A query's neighbours are found or missed together, so the
    first alone is too narrow: on real queries at pypi-minilm 100k, 500 a fold, six held-out halves in eighteen
    fell 0.001 to 0.015 short of what it promised (benchmarks/QUALITY.md run 5)."""
    lo = wilson(int(found.sum()), int(want.sum()), ONE_SIDED_Z)[0]
    per = found / np.maximum(want, 1)
    if len(per) > 1:
        lo = min(lo, float(per.mean() - ONE_SIDED_Z * per.std(ddof=1) / math.sqrt(len(per))))
    return lo


def calibrate(field: DenseField) -> None:
    """Measure and choose the knobs of `field` (see the module doc); publishes them on `field.tuning`."""
    t = field.tuning
    index = field.state.index
    if t is None or index is None:
        return
    qc = t.config
    k = qc.k
    points = field.count  # before the first search: rows written meanwhile make the next calibration due
    sample_version, sample = field.query_sample.version, field.query_sample.rows()  # one copy: searches add more
    # a query searched again (an exact check of the same vector, a retry) is one query's evidence, not two
    distinct = np.unique(sample, axis=0) if len(sample) else sample
    rng = np.random.default_rng(points)  # the same data, the same queries: a reopened collection chooses the same
    t.state = "calibrating"
    q, selfs, source = _queries(field, distinct, qc.queries, rng)
    truth, truth_scores = _answers(field, q, k, _EXACT, selfs)
    kth = truth_scores[np.arange(len(q)), np.maximum((truth >= 0).sum(axis=1) - 1, 0)]
    want = (truth >= 0).sum(axis=1)
    total = int(want.sum())
    name, ladder, overs = _axes(field, index)
    seen: dict[tuple[float, float], I64] = {}

    def found(value: float, over: float) -> I64:
        if (value, over) not in seen:
            seen[(value, over)] = _hits(truth, kth, *_answers(field, q, k, _params(name, value, over), selfs))
        return seen[(value, over)]

    def hits(value: float, over: float) -> int:
        return int(found(value, over).sum())

    # rows of the data make easier queries than real ones (the graph walks to the row, then to its neighbours):
    # aim higher on them; the live probe, which sees the real queries, lowers the knobs when it can
    aim = qc.recall_target + (_ROWS_MARGIN * (1 - qc.recall_target) if selfs is not None else 0.0)

    def meets(value: float, over: float) -> bool:
        return _low(found(value, over), want) >= aim

    clock = KnobClock(field, q, k) if len(overs) > 1 else None  # one oversampling: nothing to weigh
    fastest = math.inf
    met: list[tuple[float, float]] = []  # per oversampling, the smallest ef / nprobe meeting the target, if smaller
    hi = len(ladder) - 1
    for over in overs:
        if clock is not None and met and clock.seconds(_params(name, ladder[0], over)) >= fastest:
            break  # every later oversampling is slower even at the smallest ef / nprobe
        if not meets(ladder[hi], over):
            continue
        lo = 0
        while lo < hi:  # the smallest rung that meets the target; it never grows with the oversampling
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if meets(ladder[mid], over) else (mid + 1, hi)
        if met and ladder[hi] == met[-1][0]:
            continue  # the same walk and more to rerank: never faster, and timing it lets noise choose it
        met.append((ladder[hi], over))
        if clock is not None:
            fastest = min(fastest, clock.seconds(_params(name, ladder[hi], over)))
        if hi == 0:
            break  # the smallest rung already: more oversampling only adds work
    if not met:
        chosen = (ladder[-1], overs[-1])
        t.state, t.message = "unmet", _advice(field, name, hits(*chosen) / max(total, 1))
    else:
        chosen = met[0]
        if clock is not None:
            pick = clock.settle([_params(name, *c) for c in met])
            chosen = next(c for c in met if _params(name, *c) == pick)
        t.state, t.message = "met", None
    p = _params(name, *chosen)
    timed = [(_params(name, *c), clock.seconds(_params(name, *c))) for c in met] if clock is not None else []
    with t.lock:
        t.candidates = timed
        t.params = t.calibrated = p
        t.live, t.window, t.below, t.comfortable, t.adjustments = None, [0, 0, 0], [0, 0], 0, 0
        t.index_id, t.calibrated_count, t.sample_version = id(index), points, sample_version
        t.sample_rows = len(sample)
        t.calibration = estimate(hits(*chosen), total, len(q), source, time.time())


def _advice(field: DenseField, name: str | None, recall: float) -> str:
    """Why the target cannot be met at the largest knobs, and what to change."""
    cfg = field.config
    qc = cfg.quality
    assert qc is not None
    got = f"recall@{qc.k} reaches only {recall:.3f} (target {qc.recall_target}) at the largest settings"
    if cfg.compressed and not cfg.rerank.enabled:
        return f"{got}: compressed candidates are not reranked; enable rerank"
    if cfg.reduce is not None:
        return f"{got}: reduce.dim={cfg.reduce.dim} loses too much; raise reduce.dim or quality.max_oversampling"
    if isinstance(cfg.quantize, BinaryQuantizeConfig):
        return f"{got}: binary codes lose too much; use int8 or raise quality.max_oversampling"
    if name == "nprobe":
        return f"{got}: the PQ codes lose too much; raise index.m or nbits, or quality.max_oversampling"
    if name == "ef":
        return f"{got}: raise quality.max_ef, or rebuild the graph with a larger m or ef_construction"
    return f"{got}: raise quality.max_oversampling"


# -- live feedback ----------------------------------------------------------------------------------


def below(field: DenseField) -> SearchParams | None:
    """The knobs one rung below those in force: what the probe also measures, so the knobs come down on
    evidence about the rung they would come down to. None: no target, not calibrated, or at the bottom."""
    t = field.tuning
    return None if t is None else _neighbour(field, t, -1)


def observe(
    field: DenseField, hits: int, total: int, queries: int, lower: tuple[SearchParams, int, int] | None = None
) -> None:
    """One probe round's recall on `field` (exact neighbours found, of `total`): adjust the knobs. `lower`:
    the same queries' hits at the rung below (`below`: its params, neighbours found, of how many)."""
    t = field.tuning
    index = field.state.index
    if t is None or t.params is None or total <= 0 or index is None:
        return
    with t.lock:
        w = t.window
        w[0], w[1], w[2] = w[0] + hits, w[1] + total, w[2] + queries
        if lower is not None and lower[0] == _neighbour(field, t, -1):  # not moved since the probe asked
            t.below[0], t.below[1] = t.below[0] + lower[1], t.below[1] + lower[2]
        t.live = estimate(w[0], w[1], w[2], "recall probe", time.time())
        if w[1] < _MIN_WINDOW:
            return
        low, high = wilson(w[0], w[1])
        target = t.config.recall_target
        if high < target:
            t.comfortable = 0
            if _move(field, t, +1):
                t.state = "below_target"
            else:
                t.state = "unmet"
                t.message = _advice(field, _axes(field, index)[0], w[0] / w[1])
            return
        t.state, t.message = "met", None  # the interval reaches the target
        # the rung below, measured on the same queries, meets the target too; or this one does by a margin
        b = t.below
        below_meets = b[1] >= _MIN_WINDOW and wilson(b[0], b[1])[0] >= target
        t.comfortable = t.comfortable + 1 if below_meets or low >= target + _comfort(target) else 0
        below_floor = _rank(field, t, t.params) <= _rank(field, t, t.calibrated)
        if t.comfortable >= (2 * _SLOW if below_floor else _SLOW):
            _move(field, t, -1)
            t.comfortable = 0


def _comfort(target: float) -> float:
    return min(_COMFORT, (1.0 - target) / 2)


def _rank(field: DenseField, t: Tuning, p: SearchParams | None) -> tuple[int, int]:
    """Where `p` stands on the ladders: (primary rung, oversampling rung)."""
    index = field.state.index
    if p is None or index is None:
        return 0, 0
    name, ladder, overs = _axes(field, index)
    value = float(getattr(p, name) or 0) if name else 0.0
    return bisect.bisect_left(ladder, value), bisect.bisect_left(overs, p.oversampling or 0.0)


def _neighbour(field: DenseField, t: Tuning, direction: int) -> SearchParams | None:
    """The knobs one rung up (+1) or down (-1): the primary knob first, oversampling when it is at its end;
    None at the end of both ladders."""
    index = field.state.index
    if index is None or t.params is None:
        return None
    name, ladder, overs = _axes(field, index)
    at, over_at = _rank(field, t, t.params)
    value, over = (ladder[min(at, len(ladder) - 1)] if name else 0.0), (t.params.oversampling or 0.0)
    if name and 0 <= at + direction < len(ladder):
        value = ladder[at + direction]
    elif len(overs) > 1 and 0 <= over_at + direction < len(overs):
        over = overs[over_at + direction]
    else:
        return None
    return _params(name, value, over)


def _move(field: DenseField, t: Tuning, direction: int) -> bool:
    """One rung up (+1) or down (-1); a new window (and rung below) starts."""
    p = _neighbour(field, t, direction)
    if p is None:
        return False
    t.params = p
    t.window, t.below, t.adjustments = [0, 0, 0], [0, 0], t.adjustments + 1
    return True
