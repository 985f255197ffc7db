"""HNSW over compact codes, through Nestor's own graph (`index/_graph.cpp`).

The codes are int8 with a per-dimension range (`quantization.scalar.Int8Quantizer`, a quarter of
float32) or plain float32 (reduced vectors). A float query is scored against int8 codes directly, and
`search_one` can rescore its candidates from the collection's float32 rows inside the same native
call, which is what makes the compressed single-query path fast (benchmarks/COMPRESSION.md).

The native graph has its own read-write lock (searches together, mutations alone, the GIL released
while waiting), so this wrapper takes none. Adds go in chunks so searches interleave with a build.

One copy of each vector: a plain float32 graph is given the collection's row store (`rows`, anything
with `buffer()` and `follow()`, i.e. `index.vectors.VectorStore`) and reads each node's vector from
its label's row, in place; it keeps no copy and saves links only. The store's current buffer goes with
every `add` (the store may have grown), and the store calls `rows_moved` when it moves its rows
elsewhere (to a memory map, over the RAM cap), so the graph lets go of the old ones. Graphs over
vectors only they hold (reduced vectors, int8 codes) keep their own, as before. A graph saved with its
own float32 codes (before this) loads over the rows too, and drops the codes.

The extension is optional: where it cannot be built, `pip install` still succeeds (setup.py), this
module still imports, `AVAILABLE` is False and `UNAVAILABLE_REASON` says why, so the engine can fall
back to hnswlib. A saved graph is checked whole when loaded; a damaged one raises ValueError.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import numpy as np
import numpy.typing as npt

from index.backends.base import F32, I64, Hits, IndexParams, Space, empty_hits
from quantization.base import load_state, save_state
from quantization.scalar import Int8Quantizer

try:
    from index import _graph
except ImportError as exc:  # built without a compiler, or for another platform
    _IMPORT_ERROR: ImportError | None = exc
else:
    _IMPORT_ERROR = None

__all__ = ["AVAILABLE", "MAX_M", "UNAVAILABLE_REASON", "Codec", "GraphIndex", "RowSource", "available_kernels"]

AVAILABLE: Final = _IMPORT_ERROR is None
UNAVAILABLE_REASON: Final = None if _IMPORT_ERROR is None else f"the native graph is not built: {_IMPORT_ERROR}"
MAX_M: Final = 128  # the largest m the graph takes (index/_graph.cpp kMaxM), as HnswIndexConfig allows

Codec = Literal["int8", "float32"]
_ADD_CHUNK = 256  # rows per write-lock hold
# A graph with its own codes is renumbered in breadth-first order (`Graph.reorder`) once it holds this
# many nodes (below, its codes stay in cache and their order does not matter), and again each time it
# has grown by _REORDER_GROWTH since: the nodes appended since, out of order, stay under a fifth.
_REORDER_MIN = 20_000
_REORDER_GROWTH = 1.25
# A bulk build of at least this many nodes ends with `Graph.refine` (one round, the closest 64 of each
# node's two-hop neighbourhood): on pypi-minilm 100k it takes the int8 walk to recall@10 0.95 with ~11 %
# fewer distance computations, for ~40 % more build time (benchmarks/NATIVE.md). Below, left
# as built.
_REFINE_MIN = 20_000
_REFINE_ROUNDS = 1
_REFINE_POOL = 64
_STATE = ("links0", "levels", "labels", "deleted", "upper", "codes")
_INT32_MAX = 2**31 - 1
# meta.json integers and their bounds (None: unbounded); the arrays are checked by the native loader.
# dim is capped as every dim in the config models is, so a hostile file cannot make the graph allocate
# gigabytes before its arrays are checked.
_META_INTS: dict[str, tuple[int, int | None]] = {
    "dim": (1, 65536),
    "m": (2, MAX_M),
    "ef_construction": (1, _INT32_MAX),
    "ef": (1, _INT32_MAX),
    "seed": (0, 2**64 - 1),
    "entry": (-1, _INT32_MAX),
    "max_level": (-1, _INT32_MAX),
}


class RowSource(Protocol):
    """The float32 rows a graph reads in place, one per label (`index.vectors.VectorStore`)."""

    def buffer(self) -> npt.NDArray[np.float32]:
        """The current C-contiguous [rows, dim] buffer: every committed row, perhaps spare capacity."""
        ...

    def follow(self, reader: Any) -> None:
        """Call `reader.rows_moved()` whenever the rows move to another buffer (held weakly)."""
        ...


def available_kernels() -> list[str]:
    """The distance kernels this CPU can run, worst to best (none without the extension)."""
    return _graph.available_kernels() if AVAILABLE else []


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
        rows: RowSource | None = None,
    ) -> None:
        """`rows`: read the float32 vectors from the collection's rows (label == row) instead of a copy."""
        self.dim = dim
        self.space = space
        self.codec = codec
        self.m = m
        self.ef_construction = ef_construction
        self.ef = ef
        self.seed = seed
        self.threads = threads or os.cpu_count() or 1
        self.quantizer: Int8Quantizer | None = None
        if _IMPORT_ERROR is not None:
            raise RuntimeError(UNAVAILABLE_REASON) from _IMPORT_ERROR
        self._graph = _graph.Graph(dim, space.value, codec, m, ef_construction, seed)
        self._ordered = 0  # the size at the last reorder
        self.rows = rows
        if rows is not None:
            self._graph.set_rows(rows.buffer())  # raises ValueError for an int8 graph
            rows.follow(self)

    @property
    def count(self) -> int:
        return int(self._graph.size) - int(self._graph.deleted)

    @property
    def nodes(self) -> int:
        """The nodes a walk passes: the live ones and those deleted but not yet compacted away."""
        return int(self._graph.size)

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
            rows = None if self.rows is None else self.rows.buffer()  # the store may have grown since
            self._graph.add(v, codes, labels[start : start + _ADD_CHUNK], self.threads, rows)
        self._reorder()

    def _reorder(self) -> None:
        """Renumber the nodes for locality (measured 4-5 % off an int8 walk at 100k, benchmarks/NATIVE.md)
        when the graph is large enough and has grown enough since the last time. A graph that reads the
        collection's rows follows their order, so it is never renumbered."""
        size = int(self._graph.size)
        if self.rows is None and size >= _REORDER_MIN and size >= _REORDER_GROWTH * self._ordered:
            self._graph.reorder()
            self._ordered = size

    def refine(self) -> None:
        """The last step of a bulk build (index/indexer.py `_rebuild`): level-0 links re-selected from each
        node's two-hop neighbourhood, then the nodes renumbered again for the new links."""
        size = int(self._graph.size)
        if size < _REFINE_MIN:
            return
        self._graph.refine(_REFINE_ROUNDS, _REFINE_POOL, self.threads)
        if self.rows is None and size >= _REORDER_MIN:
            self._graph.reorder()
            self._ordered = size

    def rows_moved(self) -> None:
        """The store serves its rows from another buffer now: read that one, and let the old one go."""
        if self.rows is not None:
            self._graph.set_rows(self.rows.buffer())

    def remove(self, labels: I64) -> None:
        if len(labels):  # looked up and marked under one lock: a reorder may move nodes between two calls
            self._graph.delete_labels(np.asarray(labels, np.int64))

    def search(
        self,
        queries: F32,
        k: int,
        params: IndexParams,
        allowed: I64 | bytes | None = None,
        rerank: npt.NDArray[np.float32] | None = None,
        candidates: int = 0,
    ) -> Hits:
        """With `rerank` (float32 rows by label) the walk's `candidates` best by code are rescored exactly
        in the same native call, and the scores are the exact ones."""
        if self._graph.size == 0:
            return empty_hits(len(queries), k)
        ef = max(params.ef or self.ef, k)
        threads = 1 if len(queries) == 1 else self.threads
        labels, scores = self._graph.search(
            np.ascontiguousarray(queries, np.float32),
            k,
            ef,
            None,
            threads,
            rerank,
            None,
            candidates,
            acorn=params.acorn and allowed is not None,
            allowed_list=allowed,  # made a bitset natively
        )
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
            if name in state:  # no codes where the graph reads the collection's rows
                np.save(directory / f"{name}.npy", state[name], allow_pickle=False)
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
            "vectors": "rows" if self._graph.external else "own",
        }
        (directory / "meta.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: Path, *, threads: int | None = None, rows: RowSource | None = None) -> GraphIndex:
        """Raises ValueError, naming the fault, for a damaged or foreign directory. `rows`: the collection's
        rows, which a plain float32 graph reads (one saved with its own codes, before, drops them)."""
        meta = _read_meta(directory)
        if meta.get("vectors") == "rows" and (rows is None or meta["codec"] != "float32"):
            raise ValueError(f"{directory}: the graph reads the collection's rows, and none were given")
        idx = cls(
            meta["dim"],
            Space(meta["space"]),
            meta["codec"],
            m=meta["m"],
            ef_construction=meta["ef_construction"],
            ef=meta["ef"],
            seed=meta["seed"],
            threads=threads,
            rows=rows if meta["codec"] == "float32" else None,
        )
        if meta["codec"] == "int8":
            try:
                quantizer = Int8Quantizer.from_state(*load_state(directory / "int8"))
            except (OSError, EOFError, KeyError, TypeError, ValueError) as exc:
                raise ValueError(
                    f"{directory / 'int8'}: cannot load the int8 quantizer: {type(exc).__name__}: {exc}"
                ) from exc
            try:
                idx.train_from(quantizer)
            except ValueError as exc:
                raise ValueError(f"{directory / 'int8'}: {exc}") from exc
        names = [n for n in _STATE if n != "codes" or idx.rows is None]
        state: dict[str, Any] = {name: _read_array(directory / f"{name}.npy") for name in names}
        state["entry"], state["max_level"] = meta["entry"], meta["max_level"]
        try:
            idx._graph.set_state(state)
        except ValueError as exc:
            raise ValueError(f"{directory}: damaged graph: {exc}") from exc
        idx._reorder()  # a state saved before its tail was reordered (or by an older version)
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


def _read_meta(directory: Path) -> dict[str, Any]:
    path = directory / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ValueError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("kind") != "graph":
        raise ValueError(f"{directory}: not a graph index")
    for key, (lo, hi) in _META_INTS.items():
        value = meta.get(key)
        # bool is an int subclass, and a float would be truncated silently
        if type(value) is not int or value < lo or (hi is not None and value > hi):
            bounds = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise ValueError(f"{path}: {key} must be an integer {bounds}, not {value!r}")
    if meta.get("space") not in {s.value for s in Space}:
        raise ValueError(f"{path}: space must be one of {[s.value for s in Space]}, not {meta.get('space')!r}")
    if meta.get("codec") not in ("int8", "float32"):
        raise ValueError(f"{path}: codec must be 'int8' or 'float32', not {meta.get('codec')!r}")
    if meta.get("vectors", "own") not in ("own", "rows"):  # absent: saved before graphs read rows
        raise ValueError(f"{path}: vectors must be 'own' or 'rows', not {meta.get('vectors')!r}")
    return meta


def _read_array(path: Path) -> npt.NDArray[Any]:
    try:
        arr: npt.NDArray[Any] = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError) as exc:  # missing, truncated, or not an .npy file
        raise ValueError(f"{path}: cannot read: {exc}") from exc
    return arr
