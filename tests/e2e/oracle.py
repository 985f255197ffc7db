"""Checks for the crash rounds: stored vectors bit for bit, and an exact search against a numpy oracle.

Both return a list of problems (empty: all good), so a round can report them all at once. The
collections use the `dot` metric: the server stores the vectors exactly as sent (cosine would
normalise them), and the score of a hit is the plain dot product, which numpy recomputes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from nestor_client import NestorClient

__all__ = ["check_exact_search", "check_vectors", "stored_vectors"]

F32 = npt.NDArray[np.float32]
CHUNK = 5000
SCORE_TOL = 1e-4  # float32 sums in another order; the vectors are N(0, 1) in 16 dimensions


def stored_vectors(c: NestorClient, name: str, ids: Sequence[int]) -> dict[int, F32]:
    """The vectors the server returns for `ids` (missing ids are left out)."""
    out: dict[int, F32] = {}
    for s in range(0, len(ids), CHUNK):
        for rec in c.get(name, list(ids[s : s + CHUNK]), with_payload=False, with_vector=True):
            out[int(rec.id)] = np.asarray(rec.vector, dtype=np.float32)  # type: ignore[arg-type]
    return out


def check_vectors(c: NestorClient, name: str, want: Mapping[int, F32]) -> list[str]:
    """Every id of `want` is stored with exactly its vector: the same float32 bits, not just close."""
    ids = sorted(want)
    got = stored_vectors(c, name, ids)
    problems = []
    for i in ids:
        v = got.get(i)
        if v is None:
            problems.append(f"id {i}: no vector")
        elif v.shape != want[i].shape or not np.array_equal(v.view(np.uint32), want[i].view(np.uint32)):
            problems.append(f"id {i}: stored vector differs from the acknowledged one")
    return problems


def check_exact_search(c: NestorClient, name: str, truth: Mapping[int, F32], query: F32, limit: int) -> list[str]:
    """An exact search (`params.exact`) ranks exactly as numpy does over `truth`, the live points.

    Checked: the number of hits; every hit is a live id whose score is its dot product with the
    query; the scores are numpy's top `limit`; and the ids are numpy's, in order, wherever the
    oracle has no near-tie that could swap two of them."""
    ids = np.fromiter(truth, dtype=np.int64, count=len(truth))
    matrix = np.stack([truth[int(i)] for i in ids]) if len(ids) else np.zeros((0, query.size), np.float32)
    scores = matrix.astype(np.float64) @ query.astype(np.float64)
    order = np.argsort(-scores, kind="stable")[:limit]
    hits = c.search(name, query, limit=limit, params={"exact": True})
    if len(hits) != len(order):
        return [f"exact search returned {len(hits)} hits, the oracle {len(order)}"]
    by_id = dict(zip(ids.tolist(), scores.tolist(), strict=True))
    problems = []
    for rank, h in enumerate(hits):
        true = by_id.get(int(h.id))  # type: ignore[arg-type]
        if true is None:
            problems.append(f"hit {rank}: id {h.id} is not a live acknowledged point")
        elif abs(true - h.score) > SCORE_TOL:
            problems.append(f"hit {rank}: id {h.id} scored {h.score}, its vector gives {true}")
    got_scores = np.array([h.score for h in hits])
    if not np.allclose(got_scores, scores[order], rtol=0, atol=SCORE_TOL):
        problems.append("exact search scores are not the oracle's top scores")
    want_ids = ids[order].tolist()
    got_ids = [int(h.id) for h in hits]  # type: ignore[arg-type]
    ranked = scores[np.argsort(-scores, kind="stable")[: len(order) + 1]]
    close = np.abs(np.diff(ranked)) <= 2 * SCORE_TOL  # close[r]: ranks r and r + 1 could swap
    for r in range(len(order)):
        tie = (r > 0 and close[r - 1]) or (r < len(close) and close[r])
        if got_ids[r] != want_ids[r] and not tie:
            problems.append(f"rank {r}: id {got_ids[r]}, the oracle has {want_ids[r]}")
    return problems
