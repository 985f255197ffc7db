"""Hamming search over packed sign codes in a faiss binary index: flat, HNSW or IVF.

The collection hands over packed codes (`quantization.binary`); scores are minus the Hamming
distance. Flat and HNSW number vectors by position and mask removed ones with a selector.
faiss's binary IVF takes no selector, so it stores labels as its ids, deletes for real, and
filters by over-fetching (the planner falls back to exact search when that comes up short).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
import numpy.typing as npt

from index.backends.base import I64, Hits, IndexParams, empty_hits
from index.backends.positions import PositionMap
from index.rwlock import RWLock

__all__ = ["BinaryIndex", "BinaryStructure"]

_faiss: Any = faiss
U8 = npt.NDArray[np.uint8]
BinaryStructure = Literal["flat", "hnsw", "ivf"]


class BinaryIndex:
    def __init__(
        self,
        nbits: int,
        structure: BinaryStructure,
        *,
        m: int = 32,
        ef_construction: int = 200,
        ef: int = 64,
        nlist: int = 256,
        nprobe: int = 32,
        threads: int | None = None,
    ) -> None:
        if nbits % 8:
            raise ValueError(f"binary codes need a multiple of 8 bits, got {nbits}")
        self.nbits = nbits
        self.structure: BinaryStructure = structure
        self.m, self.ef_construction, self.ef = m, ef_construction, ef
        self.nlist, self.nprobe = nlist, nprobe
        self.threads = threads or os.cpu_count() or 1
        self._lock = RWLock()
        self._index: Any = None
        self._pos = PositionMap()
        self._removed = 0  # IVF only: ids deleted from the lists
        self.trained_on = 0

    @property
    def count(self) -> int:
        if self.structure == "ivf":
            return 0 if self._index is None else int(self._index.ntotal)
        return self._pos.n - self._pos.n_dead

    @property
    def is_trained(self) -> bool:
        return self._index is not None

    def _make(self) -> Any:
        if self.structure == "flat":
            return _faiss.IndexBinaryFlat(self.nbits)
        if self.structure == "hnsw":
            index = _faiss.IndexBinaryHNSW(self.nbits, self.m)
            index.hnsw.efConstruction = self.ef_construction
            return index
        quantizer = _faiss.IndexBinaryFlat(self.nbits)
        index = _faiss.IndexBinaryIVF(quantizer, self.nbits, self.nlist)
        index.own_fields = True
        quantizer.this.disown()
        index.nprobe = self.nprobe
        return index

    def train(self, sample: U8) -> None:
        index = self._make()
        if self.structure == "ivf":
            _faiss.omp_set_num_threads(self.threads)
            index.train(np.ascontiguousarray(sample, dtype=np.uint8))
        with self._lock.write():
            self._index = index
            self.trained_on = len(sample)

    def add(self, codes: U8, labels: I64) -> None:
        if self._index is None:
            raise RuntimeError("binary index is not trained")
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        _faiss.omp_set_num_threads(self.threads)
        with self._lock.write():
            if self.structure == "ivf":
                self._index.add_with_ids(codes, labels.astype(np.int64))
            else:
                self._pos.append(labels.astype(np.int64))
                self._index.add(codes)

    def remove(self, labels: I64) -> None:
        if not len(labels) or self._index is None:
            return
        with self._lock.write():
            if self.structure == "ivf":
                self._index.remove_ids(faiss.IDSelectorBatch(labels.astype(np.int64)))
            else:
                self._pos.kill(labels.astype(np.int64))

    def search(self, queries: U8, k: int, params: IndexParams, allowed: I64 | None = None) -> Hits:
        if self._index is None or self.count == 0:
            return empty_hits(len(queries), k)
        queries = np.ascontiguousarray(queries, dtype=np.uint8)
        _faiss.omp_set_num_threads(1 if len(queries) == 1 else self.threads)
        with self._lock.read():
            if self.structure == "ivf":
                labels, dist = self._search_ivf(queries, k, params, allowed)
            else:
                sel = self._pos.selector(allowed)
                kw: dict[str, Any] = {} if sel is None else {"sel": sel[0]}
                if self.structure == "hnsw":
                    sp: Any = _faiss.SearchParametersHNSW(efSearch=max(params.ef or self.ef, k), **kw)
                else:
                    sp = _faiss.SearchParameters(**kw) if kw else None
                dist, pos = self._index.search(queries, k, params=sp)
                labels = self._pos.to_labels(pos)
        scores = np.where(labels >= 0, -dist.astype(np.float32), -np.inf).astype(np.float32)
        return Hits(labels, scores)

    def _search_ivf(
        self, queries: U8, k: int, params: IndexParams, allowed: I64 | None
    ) -> tuple[I64, npt.NDArray[np.int32]]:
        sp = _faiss.SearchParametersIVF(nprobe=min(params.nprobe or self.nprobe, self.nlist))
        if allowed is None:
            dist, labels = self._index.search(queries, k, params=sp)
            return labels, dist
        fetch = min(int(self._index.ntotal), 4 * k + 64)
        dist, labels = self._index.search(queries, fetch, params=sp)
        keep = np.isin(labels, allowed)
        order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
        labels = np.where(np.take_along_axis(keep, order, axis=1), np.take_along_axis(labels, order, axis=1), -1)
        return labels, np.take_along_axis(dist, order, axis=1)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        with self._lock.read():
            if self._index is not None:
                faiss.write_index_binary(self._index, str(directory / "binary.faiss"))
            self._pos.save(directory)
        meta = {
            "kind": "binary",
            "nbits": self.nbits,
            "structure": self.structure,
            "m": self.m,
            "ef_construction": self.ef_construction,
            "ef": self.ef,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "trained_on": self.trained_on,
        }
        (directory / "meta.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: Path, *, threads: int | None = None) -> BinaryIndex:
        meta = json.loads((directory / "meta.json").read_text())
        idx = cls(
            int(meta["nbits"]),
            meta["structure"],
            m=int(meta["m"]),
            ef_construction=int(meta["ef_construction"]),
            ef=int(meta["ef"]),
            nlist=int(meta["nlist"]),
            nprobe=int(meta["nprobe"]),
            threads=threads,
        )
        idx.trained_on = int(meta["trained_on"])
        path = directory / "binary.faiss"
        if path.exists():
            idx._index = faiss.read_index_binary(str(path))
        idx._pos = PositionMap.load(directory)
        return idx

    def memory(self) -> dict[str, int]:
        index = self._index
        if index is None:
            return {"graph": 0, "codes": 0, "ids": self._pos.ram_bytes()}
        code_size = self.nbits // 8
        n = int(index.ntotal)
        graph = 0
        ids = self._pos.ram_bytes()
        if self.structure == "hnsw":
            h = index.hnsw
            graph = 4 * (h.neighbors.size() + h.offsets.size() + h.levels.size())
        elif self.structure == "ivf":
            graph = self.nlist * code_size  # the coarse centroids
            ids = 8 * n
        return {"graph": int(graph), "codes": n * code_size, "ids": int(ids)}

    def ram_bytes(self) -> int:
        return sum(self.memory().values())
