"""Seeded clustered token sets for multi-vector tests.

Tokens are noisy copies of a few topic centres, and each document mixes 2 or 3 topics, like the
token embeddings of a short text. Many documents share each topic, so which ones win on MaxSim is
decided by the noise: a candidate generator must actually track MaxSim to find them.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


def _sets(
    rng: np.random.Generator, centres: F32, n: int, tokens: tuple[int, int], topics: int, noise: float
) -> list[F32]:
    out = []
    for _ in range(n):
        mine = rng.choice(len(centres), size=topics, replace=False)
        t = int(rng.integers(tokens[0], tokens[1] + 1))
        jitter = rng.standard_normal((t, centres.shape[1])) * (noise / np.sqrt(centres.shape[1]))
        x = centres[mine[rng.integers(0, topics, size=t)]] + jitter
        out.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    return out


def clustered_token_sets(
    n_docs: int, n_queries: int, dim: int, *, n_topics: int = 48, noise: float = 0.6, seed: int = 0
) -> tuple[list[F32], list[F32]]:
    """(documents, queries): unit token vectors, 3-12 per document and 3-6 per query."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_topics, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    docs = _sets(rng, centres, n_docs, (3, 12), 3, noise)
    queries = _sets(rng, centres, n_queries, (3, 6), 2, noise)
    return docs, queries


def maxsim_truth(docs: list[F32], queries: list[F32], k: int) -> npt.NDArray[np.int64]:
    """Exact top-k document positions by MaxSim (float64), ties by smaller position."""
    tokens = np.concatenate(docs).astype(np.float64)
    starts = np.concatenate([[0], np.cumsum([len(d) for d in docs])[:-1]])
    out = np.empty((len(queries), k), np.int64)
    for i, q in enumerate(queries):
        scores = np.maximum.reduceat(q.astype(np.float64) @ tokens.T, starts, axis=1).sum(axis=0)
        out[i] = np.lexsort((np.arange(len(docs)), -scores))[:k]
    return out
