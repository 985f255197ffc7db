"""Fusing ranked lists into one, as Qdrant's Query API does: reciprocal rank fusion and DBSF.

Both take lists of `(id, score)` pairs, best first, with higher scores better (a caller fusing L2
distances negates them first), and return one list, best first.

- **RRF** (`rrf`): a point at 0-based position `pos` of a list with weight `w` gets
  `1 / ((pos + 1) / w + k - 1)`, which is `1 / (pos + k)` at the default weight 1; its scores over the
  lists are summed. Only the order of each list matters. `k` defaults to 2, Qdrant's `DEFAULT_RRF_K`
  (Cormack et al. used 60; Weaviate and Milvus too). A weight of 0 makes a list contribute nothing.
- **DBSF** (`dbsf`, distribution-based score fusion): each list's scores are normalised by the mean and
  sample standard deviation of that list (Welford's method, as Qdrant computes it), mapping
  `mean - 3 std` to 0 and `mean + 3 std` to 1, not clipped; a list of one point, or of equal scores,
  gives 0.5. The normalised scores are summed per point.

Ties are broken by first appearance (the earlier list, then the earlier position), so a fusion is
deterministic; Qdrant leaves ties in hash order.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

__all__ = ["DEFAULT_RRF_K", "Ranking", "dbsf", "rrf"]

DEFAULT_RRF_K = 2  # Qdrant's default (lib/segment/src/common/reciprocal_rank_fusion.rs)
Ranking = Sequence[tuple[Hashable, float]]  # (id, score) pairs, best first


def rrf(
    lists: Sequence[Ranking], *, k: int = DEFAULT_RRF_K, weights: Sequence[float] | None = None
) -> list[tuple[Hashable, float]]:
    """Reciprocal rank fusion of `lists` (each best first); `weights`: one per list (default 1)."""
    if k < 1:
        raise ValueError(f"rrf k must be at least 1, got {k}")
    if weights is not None and len(weights) != len(lists):
        raise ValueError(f"{len(weights)} rrf weights for {len(lists)} lists: give one per prefetch")
    acc: dict[Hashable, float] = {}
    for i, ranking in enumerate(lists):
        w = 1.0 if weights is None else float(weights[i])
        for pos, (pid, _) in enumerate(ranking):
            # a weight of 0 contributes nothing, but the point still takes part (as in Qdrant)
            acc[pid] = acc.get(pid, 0.0) + (1.0 / ((pos + 1) / w + k - 1) if w > 0 else 0.0)
    return _ordered(acc)


def dbsf(lists: Sequence[Ranking]) -> list[tuple[Hashable, float]]:
    """Distribution-based score fusion of `lists`: per-list 3-sigma normalisation, summed per point."""
    acc: dict[Hashable, float] = {}
    for ranking in lists:
        for pid, s in _normalised(ranking):
            acc[pid] = acc.get(pid, 0.0) + s
    return _ordered(acc)


def _normalised(ranking: Ranking) -> list[tuple[Hashable, float]]:
    if len(ranking) < 2:
        return [(pid, 0.5) for pid, _ in ranking]
    mean, agg = 0.0, 0.0
    for n, (_, s) in enumerate(ranking, start=1):  # Welford: one stable pass
        old = s - mean
        mean += old / n
        agg += old * (s - mean)
    std = math.sqrt(max(agg / (len(ranking) - 1), 0.0))
    lo, hi = mean - 3 * std, mean + 3 * std
    if lo == hi:  # all scores equal: no spread to normalise by
        return [(pid, 0.5) for pid, _ in ranking]
    return [(pid, (s - lo) / (hi - lo)) for pid, s in ranking]


def _ordered(acc: dict[Hashable, float]) -> list[tuple[Hashable, float]]:
    # dicts keep insertion order, and sorted() is stable: equal scores stay in order of first appearance
    return sorted(acc.items(), key=lambda kv: -kv[1])
