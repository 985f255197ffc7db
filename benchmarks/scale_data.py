"""The scaled data sets of the benchmarks: N perturbed copies of the real MiniLM base, and their exact ground truth.

`scaled(base, copies)` makes `copies` copies of every base vector, each plus seeded gaussian noise of norm
`NOISE`, renormalised (copy c of point i has id `c * n + i`). Why the noise is as large as it is: a copy at
noise norm 1.0 lies at cosine ~0.71 from its original, about as far as a real nearest neighbour is on this
data (top-1 0.62, top-10 0.50 on a 20k sample), so a copy's nearest neighbours are mostly other points, not
only its nine siblings. A small noise (0.25, cosine 0.97) makes clumps of ten near-duplicates: the HNSW
heuristic then keeps ~5 level-0 links a node instead of ~24, a degenerate graph and not a bigger collection.

`cached_scaled` and `cached_truth` keep the vectors and the exact top-100 (faiss `IndexFlatIP`, ids and
scores) under a cache folder (`$NESTOR_BENCH_CACHE`, else `$XDG_CACHE_HOME/nestor-bench`, else
`~/.cache/nestor-bench`), never in git; a file's name carries everything it depends on (the source's size,
copies, noise, seed, query count), so a changed input never reads a stale file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

NOISE = 1.0  # norm of the gaussian noise added to a copy before renormalising (see the module docstring)
SEED = 11


def scaled(base: F32, copies: int, seed: int = SEED, noise: float = NOISE) -> F32:
    """`copies` perturbed copies of `base` (noise of norm `noise`, renormalised); `base` itself for 1."""
    if copies == 1:
        return base
    rng = np.random.default_rng(seed)
    n, d = base.shape
    out = np.empty((n * copies, d), dtype=np.float32)
    for c in range(copies):
        x = base + rng.standard_normal((n, d), dtype=np.float32) * np.float32(noise / np.sqrt(d))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[c * n : (c + 1) * n] = x
    return out


def cache_dir() -> Path:
    env = os.environ.get("NESTOR_BENCH_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "nestor-bench"


def _atomic_save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, arr)
    tmp.replace(path)


def cached_scaled(base: F32, copies: int, tag: str, seed: int = SEED) -> tuple[F32, Path | None]:
    """`scaled(base, copies)`, from the cache when there (memory-mapped) and written there when not. `tag`
    names the source (its name and size). One copy is `base` itself and is not cached."""
    if copies == 1:
        return base, None
    path = cache_dir() / f"{tag}_n{base.shape[0]}_x{copies}_noise{NOISE:g}_seed{seed}.npy"
    if not path.exists():
        _atomic_save(path, scaled(base, copies, seed))
    return np.load(path, mmap_mode="r"), path


def exact_truth(base: F32, queries: F32, k: int, threads: int = 1) -> tuple[I64, F32]:
    """Exact top-k by inner product with faiss `IndexFlatIP`: ids [q, k] and scores [q, k], best first."""
    import faiss

    faiss.omp_set_num_threads(threads)
    index = faiss.IndexFlatIP(base.shape[1])
    step = 200_000  # add in slices: a memory-mapped base is read once, not copied whole
    for s in range(0, base.shape[0], step):
        index.add(np.ascontiguousarray(base[s : s + step], dtype=np.float32))
    scores, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    faiss.omp_set_num_threads(1)
    return ids.astype(np.int64), scores.astype(np.float32)


def cached_truth(base: F32, queries: F32, k: int, tag: str, threads: int = 1) -> tuple[I64, F32, bool]:
    """`exact_truth`, cached under `tag` (which must name the base: source, size, copies). The last value says
    whether it was computed now."""
    stem = cache_dir() / f"{tag}_n{base.shape[0]}_q{queries.shape[0]}_k{k}_gt"
    ids_path, scores_path = stem.with_name(stem.name + "_ids.npy"), stem.with_name(stem.name + "_scores.npy")
    if ids_path.exists() and scores_path.exists():
        return np.load(ids_path), np.load(scores_path), False
    ids, scores = exact_truth(base, queries, k, threads)
    _atomic_save(scores_path, scores)
    _atomic_save(ids_path, ids)
    return ids, scores, True


def recall_with_ties(found: list[list[int]], kth: F32, base: F32, queries: F32, k: int) -> float:
    """Recall@k: the share of the exact top k found, a point scoring at least the k-th exact score (less
    1e-5) counting as found. The MiniLM base holds duplicate vectors, so ids alone would punish a tie."""
    ids = np.full((len(found), k), -1, dtype=np.int64)
    for i, row in enumerate(found):
        ids[i, : min(k, len(row))] = row[:k]
    valid = ids >= 0
    safe = np.where(valid, ids, 0)
    vecs = np.asarray(base[np.sort(np.unique(safe))], dtype=np.float32)  # one gather from a memory map
    pos = np.searchsorted(np.sort(np.unique(safe)), safe)
    scores = np.einsum("qkd,qd->qk", vecs[pos], queries)
    ok = valid & (scores >= kth[:, None] - 1e-5)
    return float(ok.sum() / (k * len(found)))
