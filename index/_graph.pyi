# Type stubs for the native HNSW graph (index/_graph.cpp).
from typing import Any

import numpy as np
import numpy.typing as npt

MAX_M: int
WIDEN: tuple[float, int, int]  # how a rescore widens its walk: (z, times the first candidates, most)

def available_kernels() -> list[str]:
    """The kernels this CPU can run, worst to best: a subset of plain, avx2, avx512, avx512-vnni."""

def set_kernel(name: str) -> str:
    """Forces the kernel of graphs made or loaded from now on ('auto': the best); returns the previous setting."""

def exact(
    queries: npt.NDArray[np.float32],
    rows: npt.NDArray[np.float32],
    alive: npt.NDArray[np.bool_],
    n: int,
    allowed: bytes | npt.NDArray[np.int64] | None,
    k: int,
    l2: bool,
) -> list[tuple[list[int], list[float]]]:
    """The k best live rows of `allowed` (roaring bytes, labels or None: all below n) per query, exactly."""

def exact_vector(
    vector: npt.NDArray[np.float32],
    rows: npt.NDArray[np.float32],
    alive: npt.NDArray[np.bool_],
    n: int,
    allowed: bytes | npt.NDArray[np.int64] | None,
    k: int,
    metric: int,
) -> tuple[list[int], list[float]] | None:
    """One query vector checked and normalised (metric 0 ip, 1 cosine, 2 l2), then its k best live rows of
    `allowed`, exactly; None: not one finite row of the rows' dimension (or all zeros under cosine)."""

class FaissIvf:
    """faiss's IVF search and the exact rerank of its shortlist in one call (index/_faiss_ivf.h)."""

    def __init__(self, index: Any, lib: str, lock: RWLock | None = None) -> None:
        """`index` a faiss IVF index (kept alive), `lib` the libfaiss.so it runs on, `lock` a lock whose read
        side each search holds (None: the caller holds one); RuntimeError where that
        faiss's class or search signature is not one this module can call."""

    def run(
        self,
        query: npt.NDArray[np.float32],
        params: Any,
        k_ann: int,
        rows: npt.NDArray[np.float32],
        alive: npt.NDArray[np.bool_],
        upto: int,
        n: int,
        k: int,
        l2: bool,
    ) -> tuple[list[int], list[float]] | None:
        """faiss's `k_ann` best for one query [1, dim] (with `params`, faiss SearchParameters) and the labels
        upto..n, scored exactly: the k best live as (labels, scores), or None when faiss found fewer than
        `k_ann` or fewer than k are live."""

    def hits(
        self,
        vector: npt.NDArray[np.float32],
        params: Any,
        k_ann: int,
        rows: npt.NDArray[np.float32],
        alive: npt.NDArray[np.bool_],
        upto: int,
        n: int,
        k: int,
        l2: bool,
        cosine: bool,
        ids: list[Any],
    ) -> list[Any] | None:
        """`run` for a user's vector [dim] (finite; of unit norm when `cosine`), straight to `set_hit_class`'s
        objects `Hit(ids[label], score)`, a label whose id is None dropped; None: not that vector, or too few
        candidates (the caller's general path)."""

class RWLock:
    """A writer-preferring readers-writer lock native code shares (index/rwlock.py `NativeRWLock`); blocking
    waits release the GIL."""

    def acquire_read(self) -> None: ...
    def acquire_write(self) -> None: ...
    def release(self) -> None: ...

def exact_kernel() -> str:
    """The four-row float32 kernel the exact scans use: plain, avx2 or avx512."""

def make_hits(ids: list[Any], scores: list[Any]) -> list[Any]:
    """`[Hit(id, score) ...]` for equal-length lists, without Hit's `__init__` (`set_hit_class` first)."""

def set_hit_class(cls: type, fields: list[str]) -> None:
    """The class `FaissIvf.hits` makes and its slots: id, score, then fields whose default is None."""

def maxsim(
    query: npt.NDArray[np.float32],
    codes: npt.NDArray[Any],
    scale: npt.NDArray[np.float32] | None,
    offsets: npt.NDArray[np.int64],
    docs: npt.NDArray[np.int64] | None,
    n_docs: int,
) -> npt.NDArray[np.float32]:
    """Exact MaxSim of `query` [t, dim] against the documents `docs` (or 0..n_docs) of CSR token rows `codes`
    (float32, float16, or int8 with a float32 `scale` per row), read in place; -inf for a document without tokens."""

def _allowed_labels(allowed: bytes | npt.NDArray[np.uint32] | npt.NDArray[np.int64]) -> list[int]:
    """Tests only: the labels a `Graph.query` `allowed` argument allows, ascending."""

def _fail_after(count: int) -> None:
    """Tests only: the count-th insert or query from now on raises RuntimeError (0 turns it off)."""

class Graph:
    def __init__(
        self, dim: int, metric: str, codec: str, m: int = 16, ef_construction: int = 200, seed: int = 100
    ) -> None: ...
    def set_int8_params(self, offset: npt.ArrayLike, delta: npt.ArrayLike) -> None: ...
    def add(
        self,
        vectors: npt.NDArray[np.float32],
        codes: npt.NDArray[np.int8] | None,
        labels: npt.NDArray[np.int64],
        threads: int = 1,
        rows: npt.NDArray[np.float32] | None = None,
    ) -> None: ...
    def set_rows(self, rows: npt.NDArray[np.float32]) -> None: ...
    def mark_deleted(self, positions: npt.NDArray[np.int64]) -> int: ...
    def delete_labels(self, labels: npt.NDArray[np.int64]) -> int: ...
    def positions(self, labels: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]: ...
    def reorder(self) -> bool: ...
    def refine(self, rounds: int = 1, pool: int = 64, threads: int = 1) -> bool: ...
    def search(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        ef: int,
        allowed: npt.NDArray[np.uint8] | None = None,
        threads: int = 1,
        rerank: npt.NDArray[np.float32] | None = None,
        rerank_queries: npt.NDArray[np.float32] | None = None,
        candidates: int = 0,
        allowed_labels: npt.NDArray[np.uint8] | None = None,
        acorn: bool = False,
        allowed_list: npt.NDArray[np.uint32] | npt.NDArray[np.int64] | bytes | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
    def query(
        self,
        queries: npt.NDArray[np.float32],
        rerank_queries: npt.NDArray[np.float32] | None,
        k: int,
        width: int,
        keep: int,
        ef: int,
        rescore: bool,
        rows: npt.NDArray[np.float32] | None,
        alive: npt.NDArray[np.bool_],
        upto: int,
        n: int,
        allowed: bytes | npt.NDArray[np.uint32] | npt.NDArray[np.int64] | None,
        walk: int,
        threads: int,
    ) -> list[tuple[list[int], list[float]]]:
        """A dense field's ANN plan per query (index/native.py): (labels, user-facing scores), best first."""
    def hits(
        self,
        vector: npt.NDArray[np.float32],
        k: int,
        keep: int,
        ef: int,
        rescore: bool,
        rows: npt.NDArray[np.float32] | None,
        alive: npt.NDArray[np.bool_],
        upto: int,
        n: int,
        cosine: bool,
        ids: list[Any],
        full: npt.NDArray[np.float32] | None = None,
    ) -> list[Any] | None:
        """`query`'s plain walk (k = width; `keep` rescored from `rows` when `rescore`) for a user's vector
        [dim] (finite; of unit norm when `cosine`), straight to `set_hit_class`'s objects
        `Hit(ids[label], score)`, a label whose id is None dropped; None: not that vector (the general path).
        A reduced graph's walk: `vector` is the reduced query [graph dim] and `full` the user's vector [rows
        dim], checked instead, which the rescore and the tail score."""
    def get_state(self) -> dict[str, Any]: ...
    def set_state(self, state: dict[str, Any]) -> None: ...
    def memory(self) -> dict[str, int]: ...
    @property
    def size(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    @property
    def deleted(self) -> int: ...
    @property
    def widened(self) -> int:
        """Rescored walks run again with twice the candidates, since the build (`walk_rescored`)."""
    @property
    def max_level(self) -> int: ...
    @property
    def kernel(self) -> str: ...
    @property
    def external(self) -> bool: ...
