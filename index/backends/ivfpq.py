"""IVF-PQ through faiss: coarse k-means lists holding product-quantized residual codes.

4-bit codes use faiss's fast-scan layout (SIMD lookups in registers), which is both smaller and
faster than 8-bit PQ at equal recall once candidates are reranked. The spec is handed to
`faiss.index_factory`, so faiss's grammar is not re-implemented here. faiss indexes are not safe
for concurrent add and search, hence the lock.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index.backends.base import F32, I64, Hits, IndexParams, Space, empty_hits
from index.rwlock import NativeRWLock, shared

try:
    from index import _graph
except ImportError:  # no native module: index/ivf_search.py leaves IVF-PQ to the planner
    _graph = None  # type: ignore[assignment]

__all__ = ["FAST_SCAN_IMPLEM", "IvfPqIndex", "auto_nlist", "auto_pq_m"]

# faiss's bundled stubs miss the SWIG keyword constructors and some classes
_faiss: Any = faiss

_MIN_POINTS_PER_LIST = 39  # below this faiss k-means warns, and lists are poorly trained
# faiss's fast-scan kernel: 11 scans one query's lists with a reservoir of candidates. Its default (0)
# picks another for a single query, which took 212 us against 177 us CPU time per query at IVF512,
# nprobe 96 and a 120-candidate shortlist (a batch of 1,000: 97 ms against 101); the same hits either way.
FAST_SCAN_IMPLEM = 11
_LIBFAISS = os.path.join(os.path.dirname(faiss.__file__), "libfaiss.so")  # the faiss `_graph.FaissIvf` calls
Lists = tuple[list[int], list[float]]


def _tune(index: Any) -> Any:
    if hasattr(index, "implem"):  # only the fast-scan (4-bit) layouts have one
        index.implem = FAST_SCAN_IMPLEM
    return index


def auto_nlist(n: int) -> int:
    """About 2*sqrt(n) lists, a power of two, trainable from n points.

    faiss's guidance is 4-16*sqrt(n) for pure IVF, but with a full-precision rerank behind the codes
    fewer, larger lists win: on 100k MiniLM vectors IVF512 reached recall@10 0.961 at nprobe=96 and a
    16x shortlist, 26% faster than IVF1024 at the same recall, and trained in half the time.
    """
    target = 2.0 * math.sqrt(max(n, 1))
    nlist = 1 << max(0, round(math.log2(target)))
    while nlist > 1 and nlist * _MIN_POINTS_PER_LIST > n:
        nlist //= 2
    return nlist


def auto_pq_m(dim: int, nbits: int) -> int:
    """Sub-quantizers: dim/4 at 4 bits (half a byte per 4 dims), dim/8 at 8 bits; must divide dim."""
    target = max(1, dim // (4 if nbits == 4 else 8))
    for m in range(target, 0, -1):
        if dim % m == 0:
            return m
    return 1


class IvfPqIndex:
    def __init__(
        self,
        dim: int,
        space: Space,
        *,
        nlist: int | None = None,
        m: int | None = None,
        nbits: int = 4,
        nprobe: int = 32,
    ) -> None:
        self.dim = dim
        self.space = space
        self.nlist = nlist
        self.m = m or auto_pq_m(dim, nbits)
        if dim % self.m:
            raise ValueError(f"pq m={self.m} must divide dim={dim}")
        self.nbits = nbits
        self.nprobe = nprobe
        self._lock = shared()
        # the lock as `_graph.FaissIvf` takes it itself, without the GIL and a Python `with` (None: it cannot)
        self._native_lock = self._lock.native if isinstance(self._lock, NativeRWLock) else None
        self._threads = os.cpu_count() or 1
        self._params: dict[int, Any] = {}
        self._asked: dict[int | None, Any] = {}  # `_params` by the nprobe a query asks for (None: the default)
        self._index: faiss.Index | None = None
        # (the faiss index, its native search and rerank or None where this faiss cannot be called natively)
        self._native: tuple[Any, Any] = (None, None)
        self.trained_on = 0

    @property
    def spec(self) -> str:
        fs = "fs" if self.nbits == 4 else ""
        return f"IVF{self.nlist or 0},PQ{self.m}x{self.nbits}{fs}"

    @property
    def count(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    @property
    def is_trained(self) -> bool:
        return self._index is not None

    def train(self, sample: F32) -> None:
        nlist = self.nlist or auto_nlist(len(sample))
        metric = faiss.METRIC_INNER_PRODUCT if self.space is Space.ip else faiss.METRIC_L2
        fs = "fs" if self.nbits == 4 else ""
        index = faiss.index_factory(self.dim, f"IVF{nlist},PQ{self.m}x{self.nbits}{fs}", metric)
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        _tune(index)
        with self._lock.write():
            self._index = index
            self.nlist = nlist
            self._asked.clear()  # the nprobe they clamp to depends on nlist
            self.trained_on = len(sample)

    def _require(self) -> faiss.Index:
        if self._index is None:
            raise RuntimeError("IVF-PQ index is not trained")
        return self._index

    def add(self, vectors: F32, labels: I64) -> None:
        index = self._require()
        with self._lock.write():
            index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), labels.astype(np.int64))

    def remove(self, labels: I64) -> None:
        if self._index is None or not len(labels):
            return
        with self._lock.write():
            self._index.remove_ids(faiss.IDSelectorBatch(labels.astype(np.int64)))

    def search(self, queries: F32, k: int, params: IndexParams, allowed: I64 | None = None) -> Hits:
        if self._index is None or self._index.ntotal == 0:
            return empty_hits(len(queries), k)
        nprobe = min(params.nprobe or self.nprobe, self.nlist or 1)
        if allowed is None:
            # faiss only reads its search parameters, so one object per nprobe is shared by all searches
            sp = self._params.get(nprobe)
            if sp is None:
                sp = self._params[nprobe] = _faiss.SearchParametersIVF(nprobe=nprobe)
        else:
            # a list holds about `share` as many allowed codes as codes: probe 1/share as many lists, so a
            # filtered search scores about as many candidates as an unfiltered one (else the best allowed
            # point is often in a list it never opened)
            share = len(allowed) / max(self._index.ntotal, 1)
            nprobe = min(math.ceil(nprobe / max(share, 1e-9)), self.nlist or 1)
            sp = _faiss.SearchParametersIVF(nprobe=nprobe, sel=faiss.IDSelectorBatch(allowed.astype(np.int64)))
        # OpenMP's thread count is per calling thread: one query gains nothing from a team of threads
        # (faiss parallelises over queries) and measured ~25% slower with one under load.
        _faiss.omp_set_num_threads(1 if len(queries) == 1 else self._threads)
        with self._lock.read():
            dist, labels = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=sp)
        scores = dist if self.space is Space.ip else -dist
        if (labels < 0).any():  # faiss pads with -1 when fewer than k candidates were found
            scores = np.where(labels < 0, -np.inf, scores).astype(np.float32)
        return Hits(labels, scores)

    def _ivf_params(self, nprobe: int | None) -> Any:
        nprobe = min(nprobe or self.nprobe, self.nlist or 1)
        sp = self._params.get(nprobe)
        if sp is None:
            sp = self._params[nprobe] = _faiss.SearchParametersIVF(nprobe=nprobe)
        return sp

    def shortlist(self, query: F32, k: int, nprobe: int | None) -> I64 | None:
        """One unfiltered query [1, dim]: its k best labels by code score, in one faiss call and no other numpy
        work; None when fewer than k were found (`rerank` without the native search)."""
        index: Any = self._index  # the stubs miss `search_c`, the call under faiss's numpy wrapper
        if index is None:
            return None
        sp = self._ivf_params(nprobe)
        query = np.ascontiguousarray(query, dtype=np.float32)  # faiss reads the raw pointer
        dist = np.empty((1, k), dtype=np.float32)
        labels = np.empty((1, k), dtype=np.int64)
        _faiss.omp_set_num_threads(1)  # one query: faiss parallelises over queries (see `search`)
        with self._lock.read():
            index.search_c(1, _faiss.swig_ptr(query), k, _faiss.swig_ptr(dist), _faiss.swig_ptr(labels), sp)
        row = labels[0]
        return None if row[-1] < 0 else row

    def rerank(
        self, query: F32, k_ann: int, nprobe: int | None, rows: Any, alive: Any, upto: int, n: int, k: int, l2: bool
    ) -> Lists | None:
        """One unfiltered query [1, dim] (float32, C order): faiss's `k_ann` best labels by code score and the
        rows `upto..n` not yet indexed, scored exactly against `rows`; the k best live as (labels, scores)
        (L2: distances). None when faiss found fewer than `k_ann` or fewer than k are live, or without the
        native module. One native call where it can (`_graph.FaissIvf`, index/_faiss_ivf.h), else faiss's
        Python API for the shortlist, then `_graph.exact`."""
        index = self._index
        if index is None or _graph is None:
            return None
        sp, nat = self._call(index, nprobe)
        if nat is not None:
            if self._native_lock is not None:  # the native call holds the lock's read side while faiss searches
                got: Lists | None = nat.run(query, sp, k_ann, rows, alive, upto, n, k, l2)
                return got
            with self._lock.read():
                got = nat.run(query, sp, k_ann, rows, alive, upto, n, k, l2)
            return got
        cand = self.shortlist(query, k_ann, nprobe)
        if cand is None:
            return None
        if n > upto:
            cand = np.concatenate([cand, np.arange(upto, n, dtype=np.int64)])
        labels, scores = _graph.exact(query, rows, alive, n, cand, k, l2)[0]
        return None if len(labels) < k else (labels, scores)

    def hits(
        self,
        vector: Any,
        k_ann: int,
        nprobe: int | None,
        rows: Any,
        alive: Any,
        upto: int,
        n: int,
        k: int,
        l2: bool,
        cosine: bool,
        ids: list[Any],
    ) -> list[Any] | None:
        """`rerank` for a user's query vector [dim] as given, to the user's hits in the same native call
        (`_graph.FaissIvf.hits`: labels mapped through `ids`, a None id dropped). None: where `rerank`
        gives None, a vector `DenseField.prepare_one` would reject or normalise, or no such call here."""
        index = self._index
        if index is None or self._native_lock is None:
            return None
        sp, nat = self._call(index, nprobe)
        if nat is None:
            return None
        got: list[Any] | None = nat.hits(vector, sp, k_ann, rows, alive, upto, n, k, l2, cosine, ids)
        return got

    def _call(self, index: Any, nprobe: int | None) -> tuple[Any, Any]:
        """The search parameters for `nprobe` (kept per value) and `index`'s native call (None: none here)."""
        sp = self._asked.get(nprobe)
        if sp is None:
            sp = self._asked[nprobe] = self._ivf_params(nprobe)
        of, nat = self._native
        if of is not index:
            nat = self._bind(index)
        return sp, nat

    def _bind(self, index: Any) -> Any:
        """`index`'s native search and rerank, or None where this faiss build cannot be called natively."""
        make = getattr(_graph, "FaissIvf", None)  # None: a native module built before it
        try:
            if make is None:
                nat = None
            elif self._native_lock is not None:
                nat = make(index, _LIBFAISS, self._native_lock)
            else:
                nat = make(index, _LIBFAISS)
        except RuntimeError:  # another faiss (its class or search signature changed): its Python API then
            nat = None
        self._native = (index, nat)
        return nat

    def search_one(self, query: F32, k: int, params: IndexParams) -> tuple[I64, F32] | None:
        """One unfiltered query as (labels, scores); None when fewer than k were found."""
        hits = self.search(query, k, params)
        if hits.labels[0, -1] < 0:
            return None
        return hits.labels[0], hits.scores[0]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "kind": "ivf_pq",
            "dim": self.dim,
            "space": self.space.value,
            "nlist": self.nlist,
            "m": self.m,
            "nbits": self.nbits,
            "nprobe": self.nprobe,
            "trained_on": self.trained_on,
        }
        if self._index is not None:
            with self._lock.read():
                faiss.write_index(self._index, str(directory / "ivfpq.faiss"))
        (directory / "meta.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: Path) -> IvfPqIndex:
        meta = json.loads((directory / "meta.json").read_text())
        idx = cls(
            int(meta["dim"]),
            Space(meta["space"]),
            nlist=meta["nlist"],
            m=meta["m"],
            nbits=meta["nbits"],
            nprobe=meta["nprobe"],
        )
        idx.trained_on = int(meta["trained_on"])
        path = directory / "ivfpq.faiss"
        if path.exists():
            idx._index = _tune(faiss.read_index(str(path)))
        return idx

    def code_bytes_per_vector(self) -> int:
        return (self.m * self.nbits + 7) // 8

    def memory(self) -> dict[str, int]:
        """RAM by part: the lists (codes and their ids), centroids and codebooks all count as codes."""
        return {"graph": 0, "codes": self.ram_bytes(), "ids": 0}

    def ram_bytes(self) -> int:
        if self._index is None:
            return 0
        ivf = faiss.extract_index_ivf(self._index)
        inv = _faiss.downcast_InvertedLists(ivf.invlists)
        sizes = [inv.list_size(i) for i in range(inv.nlist)]
        ids = 8 * sum(sizes)  # faiss keeps an int64 id per entry
        if isinstance(inv, _faiss.BlockInvertedLists):
            # fast-scan lists are stored in whole blocks of n_per_block codes
            lists = sum(-(-s // inv.n_per_block) * inv.block_size for s in sizes) + ids
        else:
            lists = sum(sizes) * inv.code_size + ids
        centroids = ivf.nlist * self.dim * 4
        codebooks = self.m * (1 << self.nbits) * (self.dim // self.m) * 4
        return int(lists + centroids + codebooks)
