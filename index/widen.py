"""The planner's rescore widened as the native one is (`Graph::walk_rescored`, index/_graph.cpp).

int8 codes resolve scores to about a step of their grid. Where the candidates of a search sit closer
together than that (a broad filter whose matches all lie in the densest band of scores, far from the
query), the top k by code is not the top k: 20 candidates found the top 10 at recall 0.17 on pypi-minilm.
A rescore sees it, since it has both scores of every candidate: when the k-th exact score does not clear
the last candidate's code score by the codes' error on this query (the exact-minus-code residuals' mean
plus z standard deviations), a candidate the walk dropped could beat it, so the walk runs again with
twice the candidates. The native path does this inside its one call; this is the same rule for the
planner's path, so both give the same hits.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, TypeGuard

import numpy as np

from index.backends.base import F32, Hits, IndexParams
from index.backends.flat import gather_scores
from index.backends.graph import GraphIndex
from index.encoded import EncodedIndex

try:
    from index import _graph
except ImportError:  # no native module: no int8 graph either
    _graph = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from index.backends.base import I64
    from index.dense import DenseField

__all__ = ["rescore_widened", "vouches", "widens"]

Z, TIMES, MOST = _graph.WIDEN if _graph is not None else (3.0, 64, 4096)


def widens(index: object) -> TypeGuard[EncodedIndex]:
    """An index whose rescore widens: int8 codes of the rows themselves in a native graph (a reduced one's
    residuals hold its projection's error, which its own oversampling answers)."""
    return (
        isinstance(index, EncodedIndex)
        and index.reducer is None
        and not index.has_int8_store
        and isinstance(index.inner, GraphIndex)
        and index.inner.codec == "int8"
    )


def vouches(code: F32, exact: F32, k: int) -> bool:
    """The k-th best exact score clears the lowest code score by the codes' error on these candidates."""
    if len(code) < 2:
        return True
    r = exact.astype(np.float64) - code
    kth = float(np.partition(exact, len(exact) - k)[len(exact) - k])
    return kth >= float(code.min()) + float(r.mean()) + Z * float(r.std())


def rescore_widened(
    field: DenseField,
    index: EncodedIndex,
    queries: F32,
    ann: Hits,
    exact_ann: F32,
    out: Hits,
    keep: int,
    ip: IndexParams,
    allowed: I64 | None,
) -> int:
    """`out` (each query's `keep` candidates of `ann`, by code score, rescored to the top k; `exact_ann`
    their exact scores, as the rescore computed them) with the rows whose rescore does not vouch for them
    (`vouches`) rescored again, twice as wide each time: first more of the walk's own beam (its `ef` best
    by code), then a walk with twice the beam, as the native path does. Rows are replaced in place.
    Returns how many rows were widened."""
    k = out.labels.shape[1]
    cap = max(keep, min(keep * TIMES, MOST))
    ef = max(ip.ef or index.inner.ef, keep)  # type: ignore[union-attr]  # the beam `GraphIndex.search` walks
    widened = 0
    for row in range(len(queries)):
        q = queries[row : row + 1]
        labels, code = ann.labels[row], ann.scores[row]
        ok = labels >= 0
        if ok.sum() < k or vouches(code[ok], exact_ann[row][ok], k):
            continue
        labels, exact = _widen(field, index, q, keep, ef, cap, k, ip, allowed)
        top = np.argsort(-exact, kind="stable")[:k]
        out.labels[row] = -1
        out.scores[row] = -np.inf
        out.labels[row, : len(top)], out.scores[row, : len(top)] = labels[top], exact[top]
        widened += 1
    return widened


def _widen(
    field: DenseField,
    index: EncodedIndex,
    q: F32,
    keep: int,
    beam: int,
    cap: int,
    k: int,
    ip: IndexParams,
    allowed: I64 | None,
) -> tuple[I64, F32]:
    """One query's widened candidates and their exact scores (`Graph::walk_rescored`'s steps). The first
    `keep` did not vouch (the caller checked them), so the first look is at twice as many."""
    first = True
    while True:
        got = index.search(q, beam, dataclasses.replace(ip, ef=beam), allowed)  # the whole beam, best first
        ok = got.labels[0] >= 0
        found, codes = got.labels[0][ok], got.scores[0][ok]
        take = min(len(found), keep * 2 if first else keep, cap)
        first = False
        while True:
            labels, code = found[:take], codes[:take]
            exact = gather_scores(field.vectors.buffer(), q, labels[None, :], field.space)[0]
            if len(labels) < k or vouches(code, exact, k):
                return labels, exact
            if take >= len(found) or take >= cap:
                break
            take = min(take * 2, len(found), cap)
        if len(found) < beam or beam >= cap:
            return labels, exact
        keep = take * 2
        beam = min(max(beam * 2, keep), cap)
