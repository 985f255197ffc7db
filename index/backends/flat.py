"""Exact search: the oracle every other backend is tested against.

`exact_search` scores queries against a matrix of rows in blocks; the collection uses it for its
unindexed rows and for selective filters. `FlatIndex` wraps it as a standalone `VectorIndex`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from index.backends.base import F32, I64, Hits, IndexParams, Space, empty_hits

__all__ = ["FlatIndex", "exact_search", "gather_scores", "score_rows", "top_k"]

_BLOCK = 65536
_faiss: Any = faiss  # the bundled stubs lack the by-index distance kernels


def score_rows(queries: F32, rows: F32, space: Space) -> F32:
    """Scores [n_queries, n_rows], higher is better."""
    s: F32 = queries @ rows.T
    if space is Space.l2:
        s *= 2.0
        s -= np.einsum("ij,ij->i", rows, rows)[None, :]
        s -= np.einsum("ij,ij->i", queries, queries)[:, None]
    return s


def gather_scores(matrix: F32, queries: F32, labels: I64, space: Space) -> F32:
    """Scores [n, K] of each query against the rows `labels[i]` of `matrix`; -1 labels score -inf.

    faiss's by-index kernels read the rows in place. Gathering them into a temporary with numpy
    first doubles the memory traffic, and for a few hundred random rows that is most of the cost.
    """
    n, kk = labels.shape
    out = np.empty((n, kk), dtype=np.float32)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    ids = np.ascontiguousarray(labels, dtype=np.int64)
    d = matrix.shape[1]
    kernel = _faiss.fvec_inner_products_by_idx if space is Space.ip else _faiss.fvec_L2sqr_by_idx
    kernel(faiss.swig_ptr(out), faiss.swig_ptr(q), faiss.swig_ptr(matrix), faiss.swig_ptr(ids), d, n, kk)
    if space is Space.l2:
        np.negative(out, out=out)
    out[ids < 0] = -np.inf
    return out


def top_k(scores: F32, k: int) -> tuple[I64, F32]:
    """Column positions and scores of the k best per row, best first."""
    n, m = scores.shape
    kk = min(k, m)
    if kk == 0:
        return np.empty((n, 0), np.int64), np.empty((n, 0), np.float32)
    if n == 1:  # the single-query hot path: 1-D operations are several times cheaper
        row = scores[0]
        cand = np.argpartition(-row, kk - 1)[:kk] if kk < m else np.arange(m)
        best = cand[np.argsort(-row[cand], kind="stable")]
        return best[None, :].astype(np.int64), row[best][None, :]
    if kk < m:
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    else:
        part = np.broadcast_to(np.arange(m), (n, m)).copy()
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64), np.take_along_axis(part_scores, order, axis=1)


def exact_search(
    rows: F32,
    labels: I64 | None,
    queries: F32,
    k: int,
    space: Space,
    mask: npt.NDArray[np.bool_] | None = None,
) -> Hits:
    """Exact top-k of `queries` among `rows`.

    `labels[i]` names row i (default: its position). Rows with `mask[i]` False are skipped.
    """
    n = len(queries)
    out = empty_hits(n, k)
    if len(rows) == 0 or k == 0:
        return out
    for start in range(0, len(rows), _BLOCK):
        block = rows[start : start + _BLOCK]
        s = score_rows(queries, block, space)
        if mask is not None:
            s[:, ~mask[start : start + len(block)]] = -np.inf
        pos, sc = top_k(s, k)
        blk_labels = (pos + start) if labels is None else labels[start:][pos]
        blk_labels = np.where(np.isneginf(sc), -1, blk_labels)
        merged_l = np.concatenate([out.labels, blk_labels], axis=1)
        merged_s = np.concatenate([out.scores, sc], axis=1)
        p, ms = top_k(merged_s, k)
        out = Hits(np.take_along_axis(merged_l, p, axis=1), ms.astype(np.float32))
    if out.labels.shape[1] < k:
        pad = empty_hits(n, k - out.labels.shape[1])
        out = Hits(np.concatenate([out.labels, pad.labels], 1), np.concatenate([out.scores, pad.scores], 1))
    return out


class FlatIndex:
    """Brute force over every added vector."""

    def __init__(self, dim: int, space: Space) -> None:
        self.dim = dim
        self.space = space
        self._rows: F32 = np.empty((0, dim), np.float32)
        self._labels: I64 = np.empty(0, np.int64)
        self._live: npt.NDArray[np.bool_] = np.empty(0, bool)

    @property
    def count(self) -> int:
        return int(self._live.sum())

    @property
    def is_trained(self) -> bool:
        return True

    def train(self, sample: F32) -> None:
        return None

    def add(self, vectors: F32, labels: I64) -> None:
        self.remove(labels)
        self._rows = np.concatenate([self._rows, vectors.astype(np.float32)])
        self._labels = np.concatenate([self._labels, labels.astype(np.int64)])
        self._live = np.concatenate([self._live, np.ones(len(labels), bool)])

    def remove(self, labels: I64) -> None:
        if len(self._labels):
            self._live &= ~np.isin(self._labels, labels)

    def search(self, queries: F32, k: int, params: IndexParams, allowed: I64 | None = None) -> Hits:
        mask = self._live if allowed is None else self._live & np.isin(self._labels, allowed)
        return exact_search(self._rows, self._labels, queries, k, self.space, mask)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        keep = self._live
        np.save(directory / "rows.npy", self._rows[keep])
        np.save(directory / "labels.npy", self._labels[keep])
        (directory / "meta.json").write_text(json.dumps({"kind": "flat", "dim": self.dim, "space": self.space}))

    @classmethod
    def load(cls, directory: Path) -> FlatIndex:
        meta = json.loads((directory / "meta.json").read_text())
        idx = cls(int(meta["dim"]), Space(meta["space"]))
        idx.add(np.load(directory / "rows.npy"), np.load(directory / "labels.npy"))
        return idx

    def ram_bytes(self) -> int:
        return int(self._rows.nbytes + self._labels.nbytes + self._live.nbytes)
