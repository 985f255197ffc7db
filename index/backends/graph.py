"""HNSW over compact codes, through Nestor's own graph (`index/_graph.cpp`).

The codes are int8 with a per-dimension range (`quantization.scalar.Int8Quantizer`, a quarter of
float32) or plain float32 (reduced vectors). A float query is scored against int8 codes directly, and
`search_one` can rescore its candidates from the collection's float32 rows inside the same native
call, which is what makes the compressed single-query path fast (benchmarks/COMPRESSION.md).

The native graph has its own read-write lock (searches together, mutations alone, the GIL released
while waiting), so this wrapper takes none. Adds go in chunks so searches interleave with a build.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from index._graph import Graph
from index.backends.base import F32, I64, Hits, IndexParams, Space, empty_hits
from quantization.base import load_state, save_state
from quantization.scalar import Int8Quantizer

__all__ = ["Codec", "GraphIndex"]

Codec = Literal["int8", "float32"]
_ADD_CHUNK = 256  # rows per write-lock hold
_STATE = ("links0", "levels", "labels", "deleted", "upper", "codes")


class GraphIndex:
    def __init__(
        self,
        dim: int,
        space: Space,
        codec: Codec,
        *,
        m: int = 16,
        ef_construction: int = 200,
        ef: int = 64,
        seed: int = 100,
        threads: int | None = None,
    ) -> None:
        self.dim = dim
        self.space = space
        self.codec = codec
        self.m = m
        self.ef_construction = ef_construction
        self.ef = ef
        self.seed = seed
        self.threads = threads or os.cpu_count() or 1
        self.quantizer: Int8Quantizer | None = None
        self._graph = Graph(dim, space.value, codec, m, ef_construction, seed)

    @property
    def count(self) -> int:
        return int(self._graph.size) - int(self._graph.deleted)

    @property
    def is_trained(self) -> bool:
        return self.codec == "float32" or self.quantizer is not None

    @property
    def kernel(self) -> str:
        return str(self._graph.kernel)

    def train(self, sample: F32) -> None:
        if self.codec == "int8":
            quantizer = Int8Quantizer().fit(sample)
            self.train_from(quantizer)

    def add(self, vectors: F32, labels: I64) -> None:
        if not self.is_trained:
            raise RuntimeError("the int8 graph is not trained")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        for start in range(0, len(labels), _ADD_CHUNK):
            v = vectors[start : start + _ADD_CHUNK]
            codes = None if self.quantizer is None else self.quantizer.transform(v)
            self._graph.add(v, codes, labels[start : start + _ADD_CHUNK], self.threads)

    def remove(self, labels: I64) -> None:
        if len(labels):
            pos = self._graph.positions(np.asarray(labels, np.int64))
            self._graph.mark_deleted(pos[pos >= 0])

    def search(self, queries: F32, k: int, params: IndexParams, allowed: I64 | None = None) -> Hits:
        if self._graph.size == 0:
            return empty_hits(len(queries), k)
        ef = max(params.ef or self.ef, k)
        threads = 1 if len(queries) == 1 else self.threads
        mask = None
        if allowed is not None:
            pos = self._graph.positions(np.asarray(allowed, np.int64))
            mask = np.zeros(int(self._graph.size), np.uint8)
            mask[pos[pos >= 0]] = 1
        labels, scores = self._graph.search(np.ascontiguousarray(queries, np.float32), k, ef, mask, threads)
        return Hits(labels, scores)

    def search_one(
        self,
        query: F32,
        k: int,
        ef: int | None,
        rerank: npt.NDArray[np.float32] | None = None,
        rerank_query: F32 | None = None,
        candidates: int = 0,
    ) -> tuple[I64, F32] | None:
        """One unfiltered query. With `rerank` (float32 rows by label) the `candidates` best by code are
        rescored exactly against `rerank_query` (default: the query) in the same native call.
        None when fewer than k come back (small or heavily deleted graphs)."""
        labels, scores = self._graph.search(
            query.reshape(1, -1), k, max(ef or self.ef, k), None, 1, rerank, rerank_query, candidates
        )
        if labels[0, -1] < 0:
            return None
        return labels[0], scores[0]

    # -- persistence ---------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        state = self._graph.get_state()
        for name in _STATE:
            np.save(directory / f"{name}.npy", state[name])
        if self.quantizer is not None:
            save_state(directory / "int8", *self.quantizer.state())
        meta: dict[str, Any] = {
            "kind": "graph",
            "dim": self.dim,
            "space": self.space.value,
            "codec": self.codec,
            "m": self.m,
            "ef_construction": self.ef_construction,
            "ef": self.ef,
            "seed": self.seed,
            "entry": int(state["entry"]),
            "max_level": int(state["max_level"]),
        }
        (directory / "meta.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: Path, *, threads: int | None = None) -> GraphIndex:
        meta = json.loads((directory / "meta.json").read_text())
        if meta.get("kind") != "graph":
            raise ValueError(f"{directory}: not a graph index")
        idx = cls(
            int(meta["dim"]),
            Space(meta["space"]),
            meta["codec"],
            m=int(meta["m"]),
            ef_construction=int(meta["ef_construction"]),
            ef=int(meta["ef"]),
            seed=int(meta["seed"]),
            threads=threads,
        )
        if meta["codec"] == "int8":
            idx.train_from(Int8Quantizer.from_state(*load_state(directory / "int8")))
        state: dict[str, Any] = {name: np.load(directory / f"{name}.npy") for name in _STATE}
        state["entry"], state["max_level"] = int(meta["entry"]), int(meta["max_level"])
        idx._graph.set_state(state)
        return idx

    def train_from(self, quantizer: Int8Quantizer) -> None:
        self._graph.set_int8_params(quantizer.offset, quantizer.state()[1]["delta"])
        self.quantizer = quantizer

    def memory(self) -> dict[str, int]:
        """Bytes held by the native graph, by part (measured from its arrays' allocations)."""
        mem = self._graph.memory()
        return {"graph": int(mem["graph"]), "codes": int(mem["codes"]), "ids": int(mem["ids"])}

    def ram_bytes(self) -> int:
        return sum(self.memory().values())
