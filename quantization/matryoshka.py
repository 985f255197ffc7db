"""Matryoshka prefix truncation with renormalisation, optional PCA rotation, and a funnel re-ranker.

`x_k = x[:k] / ||x[:k]||` is only meaningful for Matryoshka-trained models. For other models,
`rotate="pca"` first rotates into the principal basis of a sample so the prefix keeps most energy
("PCA-Matryoshka", algorithms.md §5).

The rotation is the eigenbasis of the *uncentred* second moment `E[x x^T]`, applied to uncentred
vectors. Centring would subtract a vector-independent term from `q . x` (harmless alone), but the
per-vector renormalisation then divides by `||(x - mu)[:k]||`, which re-weights every candidate by a
different amount, so even at `k = D` the ranking would stop matching `q . x`. An orthogonal rotation of
the raw vectors keeps `k = D` exact (norms and inner products are preserved), and the uncentred basis
is by construction the one whose k-prefix keeps the most energy of the raw vectors, with no mean to store.
Measured on pypi-minilm at 128 dims (recall@10 before rerank): plain truncation 0.555, this basis 0.750,
the covariance basis on raw vectors 0.751 (a tie), centred vectors 0.662; renormalising is also why it
beats LeanVec-ID at the same size (0.729).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Self, cast

import numpy as np
import numpy.typing as npt

from quantization.base import FloatArray
from quantization.leanvec import NotFittedError, as_matrix, pca_basis, second_moment, subsample

__all__ = ["MatryoshkaTransform", "funnel", "truncate_renormalise"]

Rotate = Literal["pca"] | None
IntArray = npt.NDArray[np.int64]


def truncate_renormalise(x: FloatArray, dim: int) -> FloatArray:
    """First `dim` coordinates of each row, scaled to unit L2 norm (all-zero prefixes stay zero)."""
    if not 1 <= dim <= x.shape[1]:
        raise ValueError(f"dim must be in [1, {x.shape[1]}], got {dim}")
    prefix = np.asarray(x[:, :dim], dtype=np.float32)
    norms = np.linalg.norm(prefix.astype(np.float64), axis=1, keepdims=True)
    return cast(FloatArray, (prefix / np.where(norms > 0, norms, 1.0)).astype(np.float32))


class MatryoshkaTransform:
    """Keep the first `dim_out` coordinates (after an optional learned PCA rotation) and renormalise.

    Data and queries go through the same `transform`. `rotate(x)` gives the full-length rotated vectors
    that `funnel` shortlists over. `seed` only picks the fitting subsample when there are more than
    `max_fit_rows` rows.
    """

    def __init__(self, dim_out: int, rotate: Rotate = None, seed: int = 0, *, max_fit_rows: int = 100_000) -> None:
        if dim_out < 1:
            raise ValueError(f"dim_out must be >= 1, got {dim_out}")
        if rotate not in (None, "pca"):
            raise ValueError(f"rotate must be None or 'pca', got {rotate!r}")
        if max_fit_rows < 1:
            raise ValueError("max_fit_rows must be >= 1")
        self.dim_out = dim_out
        self.rotate_mode: Rotate = rotate
        self.seed = seed
        self.max_fit_rows = max_fit_rows
        self._d_in: int | None = None
        self._rotation: FloatArray | None = None

    @property
    def d_in(self) -> int:
        return self._fitted_d_in()

    @property
    def d_out(self) -> int:
        return self.dim_out

    @property
    def is_fitted(self) -> bool:
        return self._d_in is not None

    def fit(self, x: FloatArray, queries: FloatArray | None = None) -> Self:
        x = as_matrix(x)
        if self.dim_out > x.shape[1]:
            raise ValueError(f"dim_out={self.dim_out} exceeds the input dimension {x.shape[1]}")
        if self.rotate_mode == "pca":
            _, vecs = pca_basis(second_moment(subsample(x, self.max_fit_rows, self.seed)))
            self._rotation = np.ascontiguousarray(vecs, dtype=np.float32)
        self._d_in = x.shape[1]
        return self

    def rotate(self, x: FloatArray) -> FloatArray:
        """Full-length vectors in the truncation basis (the input itself when `rotate=None`)."""
        x = as_matrix(x, dim=self._fitted_d_in())
        return x if self._rotation is None else cast(FloatArray, x @ self._rotation)

    def transform(self, x: FloatArray) -> FloatArray:
        return truncate_renormalise(self.rotate(x), self.dim_out)

    def transform_queries(self, q: FloatArray) -> FloatArray:
        """Same map as `transform`: Matryoshka is symmetric."""
        return self.transform(q)

    def state(self) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        meta: dict[str, Any] = {
            "kind": "matryoshka",
            "version": 1,
            "dim_out": self.dim_out,
            "rotate": self.rotate_mode,
            "seed": self.seed,
            "max_fit_rows": self.max_fit_rows,
            "d_in": self._fitted_d_in(),
        }
        return meta, ({} if self._rotation is None else {"rotation": self._rotation})

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]) -> Self:
        if meta.get("kind") != "matryoshka":
            raise ValueError(f"not a matryoshka state: kind={meta.get('kind')!r}")
        obj = cls(int(meta["dim_out"]), meta["rotate"], int(meta["seed"]), max_fit_rows=int(meta["max_fit_rows"]))
        d_in = int(meta["d_in"])
        if obj.rotate_mode == "pca":
            rotation = np.asarray(arrays["rotation"], dtype=np.float32)
            if rotation.shape != (d_in, d_in):
                raise ValueError(f"rotation has shape {rotation.shape}, expected {(d_in, d_in)}")
            obj._rotation = rotation
        obj._d_in = d_in
        return obj

    def _fitted_d_in(self) -> int:
        if self._d_in is None:
            raise NotFittedError("MatryoshkaTransform is not fitted; call fit() first")
        return self._d_in


def _top(scores: npt.NDArray[np.float32], ids: IntArray, limit: int) -> tuple[IntArray, npt.NDArray[np.float32]]:
    # Best `limit` by score, best first, ties broken by the smaller id.
    if limit < scores.shape[0]:
        keep = np.argpartition(-scores, limit - 1)[:limit]
        scores, ids = scores[keep], ids[keep]
    order = np.lexsort((ids, -scores))
    return ids[order], scores[order]


def funnel(
    vectors: npt.NDArray[np.floating[Any]],
    query: npt.NDArray[np.floating[Any]],
    stages: Sequence[tuple[int, int]],
    *,
    candidates: npt.NDArray[np.integer[Any]] | None = None,
    k: int | None = None,
) -> tuple[IntArray, npt.NDArray[np.float32]]:
    """Adaptive retrieval: shortlist with longer and longer prefixes, then rank by the full vector.

    `vectors` [n, D] are full-length vectors in the truncation basis (`MatryoshkaTransform.rotate`),
    `query` [D] likewise. Each stage `(dim, limit)` scores the surviving candidates by the cosine of the
    renormalised `dim`-prefixes and keeps the best `limit`. The survivors are then ranked by the full inner
    product `vectors @ query`. `candidates` restricts the search to those row ids (e.g. an ANN shortlist).
    Returns `(ids, scores)`, best first, at most `k` of them (default: all survivors); ids index `vectors`.
    """
    if vectors.ndim != 2 or query.shape != (vectors.shape[1],):
        raise ValueError(f"need vectors [n, D] and query [D]; got {vectors.shape} and {query.shape}")
    last = 0
    for dim, limit in stages:
        if not last < dim <= vectors.shape[1] or limit < 1:
            raise ValueError(f"stage ({dim}, {limit}): dims must increase within [1, D] and limits be >= 1")
        last = dim
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    q = np.asarray(query, dtype=np.float32)
    ids: IntArray = (
        np.arange(vectors.shape[0], dtype=np.int64) if candidates is None else np.asarray(candidates, np.int64)
    )
    for stage, (dim, limit) in enumerate(stages):
        # A slice, not a gather, while every row is still a candidate: no copy of the whole base.
        whole = stage == 0 and candidates is None
        prefix = np.asarray(vectors[:, :dim] if whole else vectors[ids, :dim], dtype=np.float32)
        norms = np.linalg.norm(prefix, axis=1)
        # The query's own prefix norm is common to all candidates, so it is left out.
        scores = (prefix @ q[:dim]) / np.where(norms > 0, norms, 1.0)
        ids, _ = _top(scores.astype(np.float32), ids, limit)
    full = (np.asarray(vectors[ids], dtype=np.float32) @ q).astype(np.float32)
    return _top(full, ids, ids.shape[0] if k is None else min(k, ids.shape[0]))
