"""Seeded structured synthetic data: a low-dimensional latent bent non-linearly into `dim`
dimensions (like faiss's SyntheticDataset), so ANN recall means something. Uniform noise would
make every neighbour equally far and every recall number meaningless."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


def manifold(n: int, dim: int, *, latent: int = 10, seed: int = 0, normalize: bool = True) -> F32:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, latent)).astype(np.float32)
    w1 = rng.standard_normal((latent, 2 * dim)).astype(np.float32)
    w2 = rng.standard_normal((2 * dim, dim)).astype(np.float32) / np.sqrt(2 * dim)
    x = np.tanh(z @ w1) @ w2 + 0.02 * rng.standard_normal((n, dim)).astype(np.float32)
    if normalize:
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def split(n_base: int, n_query: int, dim: int, seed: int = 0) -> tuple[F32, F32]:
    x = manifold(n_base + n_query, dim, seed=seed)
    return x[:n_base], x[n_base:]


def exact_topk(base: F32, queries: F32, k: int, metric: str = "ip") -> npt.NDArray[np.int64]:
    if metric == "l2":
        s = -(np.sum(queries**2, 1)[:, None] - 2 * queries @ base.T + np.sum(base**2, 1)[None, :])
    else:
        s = queries @ base.T
    return np.argsort(-s, axis=1, kind="stable")[:, :k].astype(np.int64)


def recall(found: npt.NDArray[np.int64], truth: npt.NDArray[np.int64], k: int) -> float:
    pairs = zip(found, truth, strict=True)
    return float(np.mean([len(set(f[:k].tolist()) & set(t[:k].tolist())) / k for f, t in pairs]))
