"""A faiss float index given by a factory spec: an int8 brute-force scan (`SQ8`, `SQ8_direct`) or a flat
scan over reduced vectors (`Flat`). (Compressed HNSW is Nestor's own graph, `index/backends/graph.py`;
indexes saved with faiss HNSW specs such as `HNSW16,SQ8` by older versions still load.)

Vectors are numbered by position; `PositionMap` turns positions into labels and masks removed ones
(faiss HNSW cannot delete). faiss indexes are not safe for concurrent add and search, hence the lock.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index.backends.base import F32, I64, Hits, IndexParams, Space, empty_hits
from index.backends.positions import PositionMap
from index.rwlock import RWLock

__all__ = ["FaissFloatIndex"]

_faiss: Any = faiss


class FaissFloatIndex:
    def __init__(
        self, dim: int, space: Space, spec: str, *, ef: int = 64, ef_construction: int = 200, threads: int | None = None
    ) -> None:
        self.dim = dim
        self.space = space
        self.spec = spec
        self.ef = ef
        self.ef_construction = ef_construction
        self.threads = threads or os.cpu_count() or 1
        self._lock = RWLock()
        self._index: Any = None
        self._pos = PositionMap()
        self._params: dict[int, Any] = {}
        self.trained_on = 0

    @property
    def graph(self) -> bool:
        return self.spec.startswith("HNSW")

    @property
    def count(self) -> int:
        return self._pos.n - self._pos.n_dead

    @property
    def is_trained(self) -> bool:
        return self._index is not None and bool(self._index.is_trained)

    def train(self, sample: F32) -> None:
        metric = faiss.METRIC_INNER_PRODUCT if self.space is Space.ip else faiss.METRIC_L2
        index = faiss.index_factory(self.dim, self.spec, metric)
        if self.graph:
            _faiss.downcast_index(index).hnsw.efConstruction = self.ef_construction
        _faiss.omp_set_num_threads(self.threads)
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        with self._lock.write():
            self._index = index
            self.trained_on = len(sample)

    def add(self, vectors: F32, labels: I64) -> None:
        if self._index is None:
            raise RuntimeError(f"faiss index {self.spec} is not trained")
        _faiss.omp_set_num_threads(self.threads)
        with self._lock.write():
            self._pos.append(labels.astype(np.int64))
            self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def remove(self, labels: I64) -> None:
        if len(labels):
            with self._lock.write():
                self._pos.kill(labels.astype(np.int64))

    def search(self, queries: F32, k: int, params: IndexParams, allowed: I64 | None = None) -> Hits:
        if self._index is None or self._pos.n == 0:
            return empty_hits(len(queries), k)
        _faiss.omp_set_num_threads(1 if len(queries) == 1 else self.threads)
        with self._lock.read():
            sel = self._pos.selector(allowed)
            ef = max(params.ef or self.ef, k)
            if sel is None and self.graph:
                # faiss only reads its search parameters, so one object per ef is shared by all searches
                sp = self._params.get(ef)
                if sp is None:
                    sp = self._params[ef] = _faiss.SearchParametersHNSW(efSearch=ef)
            elif self.graph:
                sp = _faiss.SearchParametersHNSW(efSearch=ef, sel=sel[0])  # type: ignore[index]
            else:
                sp = None if sel is None else _faiss.SearchParameters(sel=sel[0])
            dist, pos = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=sp)
            labels = self._pos.to_labels(pos)
        scores = dist if self.space is Space.ip else -dist
        if (pos < 0).any():
            scores = np.where(pos < 0, -np.inf, scores).astype(np.float32)
        return Hits(labels, scores.astype(np.float32, copy=False))

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        with self._lock.read():
            if self._index is not None:
                faiss.write_index(self._index, str(directory / "float.faiss"))
            self._pos.save(directory)
        meta = {"kind": "faiss_float", "dim": self.dim, "space": self.space.value, "spec": self.spec}
        meta |= {"ef": self.ef, "ef_construction": self.ef_construction, "trained_on": self.trained_on}
        (directory / "meta.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: Path, *, threads: int | None = None) -> FaissFloatIndex:
        meta = json.loads((directory / "meta.json").read_text())
        idx = cls(
            int(meta["dim"]),
            Space(meta["space"]),
            meta["spec"],
            ef=int(meta["ef"]),
            ef_construction=int(meta["ef_construction"]),
            threads=threads,
        )
        idx.trained_on = int(meta["trained_on"])
        path = directory / "float.faiss"
        if path.exists():
            idx._index = faiss.read_index(str(path))
        idx._pos = PositionMap.load(directory)
        if idx._index is not None and idx._index.ntotal != idx._pos.n:
            raise ValueError(f"{directory}: {idx._index.ntotal} vectors in the index, {idx._pos.n} positions")
        return idx

    def memory(self) -> dict[str, int]:
        """Bytes held in RAM by part: the graph's links, the vector codes, and the label map."""
        index = self._index
        if index is None:
            return {"graph": 0, "codes": 0, "ids": self._pos.ram_bytes()}
        graph = 0
        storage = index
        if self.graph:
            hnsw_index = _faiss.downcast_index(index)
            h = hnsw_index.hnsw
            graph = 4 * (h.neighbors.size() + h.offsets.size()) + h.levels.size() * 4
            graph += h.assign_probas.size() * 8
            storage = _faiss.downcast_index(hnsw_index.storage)
        codes = int(storage.ntotal) * int(getattr(storage, "code_size", 4 * self.dim))
        return {"graph": int(graph), "codes": codes, "ids": self._pos.ram_bytes()}

    def ram_bytes(self) -> int:
        return sum(self.memory().values())
