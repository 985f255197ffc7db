"""Structured synthetic data for the quality tests of the reduction/quantization transforms.

A 16-dim latent with a decaying spectrum goes through a random linear map to 128 dims, plus small
isotropic noise, then each row is L2-normalised (faiss `SyntheticDataset` style). Uniform noise would
make every neighbour equally far and every recall number meaningless.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tests.synth import exact_topk, recall

__all__ = ["F32", "exact_topk", "lowrank", "ood_split", "recall", "rerank_recall", "topk"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def _normalise(x: npt.NDArray[np.float64]) -> F32:
    out: F32 = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return out


def lowrank(
    n_base: int = 5000,
    n_query: int = 100,
    dim: int = 128,
    latent: int = 16,
    seed: int = 0,
    noise: float = 0.05,
) -> tuple[F32, F32]:
    """`(base, queries)` from the same distribution: latent -> random linear map -> noise -> unit norm."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((latent, dim))
    scales = 1.0 / np.sqrt(1.0 + np.arange(latent))
    z = rng.standard_normal((n_base + n_query, latent)) * scales
    x = z @ mixing + noise * np.sqrt(latent) * rng.standard_normal((n_base + n_query, dim))
    x = _normalise(x)
    return x[:n_base], x[n_base:]


def ood_split(
    n_base: int = 5000,
    n_sample: int = 1000,
    n_query: int = 100,
    dim: int = 128,
    latent: int = 16,
    seed: int = 0,
) -> tuple[F32, F32, F32]:
    """`(base, query_sample, queries)` where queries live in other latent directions than the data's bulk.

    Data energy sits in the first 8 latent factors (strong) with 8 weak ones; queries put almost all
    their energy on the 8 weak factors. PCA on the data keeps the strong factors, which barely move
    a query's scores, so an OOD-aware map that keeps the weak ones should rank much better.
    """
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((latent, dim))
    half = latent // 2
    data_scales = np.r_[np.full(half, 1.0), np.full(latent - half, 0.25)]
    query_scales = np.r_[np.full(half, 0.05), np.full(latent - half, 1.0)]
    noise = 0.02 * np.sqrt(latent)
    x = rng.standard_normal((n_base, latent)) * data_scales @ mixing
    x = x + noise * rng.standard_normal((n_base, dim))
    q = rng.standard_normal((n_sample + n_query, latent)) * query_scales @ mixing
    q = q + noise * rng.standard_normal((n_sample + n_query, dim))
    q = _normalise(q)
    return _normalise(x), q[:n_sample], q[n_sample:]


def topk(scores: npt.NDArray[np.floating], k: int) -> I64:
    """Row-wise indices of the k best scores, best first, ties to the smaller index."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :k].astype(np.int64)


def rerank_recall(base: F32, queries: F32, candidates: I64, truth: I64, k: int = 10) -> float:
    """recall@k after re-scoring each query's candidate list exactly against the full vectors."""
    found = np.stack(
        [c[np.argsort(-(base[c] @ q), kind="stable")[:k]] for c, q in zip(candidates, queries, strict=True)]
    )
    return recall(found, truth, k)
