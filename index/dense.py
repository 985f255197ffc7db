"""One dense vector of a collection's points: its row store, its index, and the state readers see.

A `DenseField` keeps one float32 row per label in `vectors.f32` (zeros where a point omits this
vector, which its own `alive` mask then excludes), and the ANN index over them. The index and the
label watermark it covers form one immutable `IndexState`, swapped by a single reference store:
a search reads it once, so it can never pair a new index with an old watermark (or the reverse)
and miss rows that were just acknowledged. Rows at or past the watermark are the unindexed tail,
which searches score exactly (`index/planner.py`). The background work (index the tail, train,
refit, persist) is `index/indexer.py`'s.

Files live in the field's directory: the collection's own for the default vector "" (the layout
of every directory written before named vectors), `vectors/<name>/` otherwise.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from index.backends.base import F32, I64, Space, VectorIndex
from index.contract import CollectionOptions
from index.errors import DimensionMismatch, InvalidVector
from index.factory import load_index, new_index, space_of
from index.labels import LabelMap, grow_bools
from index.manifest import read_manifest
from index.query_sample import QuerySample
from index.tuning import Tuning
from index.vectors import VectorStore
from nestor_client.models import FlatIndexConfig, LeanVecReduceConfig, Metric, VectorConfig

__all__ = ["DenseBatch", "DenseField", "IndexState", "check_rows", "field_dir"]

log = logging.getLogger("nestor.collection")
Bools = npt.NDArray[np.bool_]


def check_rows(vectors: F32, dim: int, metric: Metric, what: str = "", present: Bools | None = None) -> F32:
    """A batch's rows as a C-contiguous float32 [n, dim] matrix, or the 4xx that says which row is wrong:
    the wrong dimension, NaN or Inf, or (cosine) all zeros. `present` skips the rows of points that omit
    the vector (zero rows) in that last check."""
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        got = vectors.shape[-1] if vectors.ndim else 0
        raise DimensionMismatch(f"{what}expected vectors of dimension {dim}, got {got}")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        raise InvalidVector(f"{what}vector #{int(np.flatnonzero(~finite)[0])} contains NaN or Inf")
    if metric is Metric.cosine:
        zero = ~vectors.any(axis=1) if present is None else present & ~vectors.any(axis=1)
        if zero.any():
            raise InvalidVector(
                f"{what}vector #{int(np.flatnonzero(zero)[0])} is all zeros, which has no cosine direction"
            )
    return vectors


def field_dir(collection_dir: Path, name: str) -> Path:
    return collection_dir if name == "" else collection_dir / "vectors" / name


@dataclass(frozen=True, slots=True)
class IndexState:
    """What a search reads, once: the index and the labels below which it holds every live row."""

    index: VectorIndex | None
    upto: int
    fitted_sample: tuple[int, int] = (0, 0)  # (posted-sample version, reservoir fill) of the last fit


@dataclass(frozen=True, slots=True)
class DenseBatch:
    rows: F32  # [n, dim]: normalised where the metric asks; zeros where a point omits this vector
    present: Bools | None  # None: every point of the batch has this vector


class DenseField:
    kind = "dense"

    def __init__(
        self,
        name: str,
        directory: Path,
        config: VectorConfig,
        options: CollectionOptions,
        labels: LabelMap,
        *,
        dim: int | None = None,
        metric: Metric | None = None,
    ) -> None:
        """`dim` and `metric` override the config's (a multivector's FDE field stores other vectors)."""
        self.name = name
        self.dir = directory
        self.config = config
        self.options = options
        self.labels = labels
        self.dim = dim or config.dim
        self.metric = metric or config.metric
        self.space: Space = space_of(self.metric)
        directory.mkdir(parents=True, exist_ok=True)
        self.vectors = VectorStore(directory / "vectors.f32", self.dim, rows=labels.n, on_disk=config.on_disk)
        red = config.reduce
        reservoir = red.reservoir_size if isinstance(red, LeanVecReduceConfig) and red.query_reservoir else 0
        if config.quality is not None:  # real queries to calibrate a recall target on (index/quality.py)
            reservoir = max(reservoir, config.quality.queries)
        self.query_sample = QuerySample(directory, self.dim, reservoir)
        self.alive: Bools = labels.alive.copy()  # this field's live labels (the caller clears omitted ones)
        self.state = IndexState(None, 0)
        self.phase = "ready"  # ready | indexing | training
        self.dirty = False
        self.failures = 0  # consecutive failed indexer steps
        self.last_error: str | None = None
        self.index_disk = 0
        self.last_optimized: float | None = None
        self.tuning = Tuning(config.quality) if config.quality is not None else None  # index/quality.py
        self.native_codes: Any = None  # index/native.py's memos of the unrolled int8 plan, the latest first
        self.native_ivf: Any = None  # index/ivf_search.py's memo of the IVF-PQ rerank plan

    @property
    def plain_flat(self) -> bool:
        """An exact scan over everything: no index to build."""
        return isinstance(self.config.index, FlatIndexConfig) and not self.config.compressed

    def open_index(self) -> None:
        """Load the saved index (dropping labels that died since), or start a new one."""
        if self.plain_flat:
            return
        index_dir = self.dir / "index"
        try:
            man = read_manifest(index_dir)
            if man is not None:
                loaded = load_index(
                    index_dir, self.config, self.space, threads=self.options.index_threads, rows=self.vectors
                )
                upto = min(man.labels_upto, self.labels.n)
                loaded.remove(np.flatnonzero(~self.alive[:upto]).astype(np.int64))
                fitted = (getattr(loaded, "sample_version", 0), getattr(loaded, "query_sample_rows", 0))
                self.state = IndexState(loaded, upto, fitted)
                self.index_disk = man.disk_bytes
                self.last_optimized = man.saved_at or None
                return
        except Exception:  # a damaged index is derived data: rebuild it from the store
            log.exception("vector %r in %s: cannot load its index, rebuilding from the store", self.name, self.dir)
        fresh = new_index(self.config, self.dim, self.space, threads=self.options.index_threads, rows=self.vectors)
        self.state = IndexState(fresh, 0)

    def publish(self, index: VectorIndex | None, upto: int, *, fitted: tuple[int, int] | None = None) -> None:
        """Swap in a new index state: one reference store, so readers see old or new, never a mix."""
        st = self.state
        self.state = replace(st, index=index, upto=upto, fitted_sample=fitted or st.fitted_sample)

    # -- validation --------------------------------------------------------------------------

    def prepare_one(self, v: F32) -> F32:
        """One query vector, checked and normalised, as a [1, dim] matrix (the search hot path)."""
        if v.shape != (self.dim,):
            return self.prepare(v[None, :] if v.ndim == 1 else v)
        v = v.astype(np.float32, copy=False)
        sq = float(v.dot(v))  # ndarray.dot: a third cheaper a call than np.dot
        if not math.isfinite(sq):
            raise InvalidVector(f"{self._what()}vector #0 contains NaN or Inf")
        if self.metric is Metric.cosine and abs(sq - 1.0) > 1e-6:  # most models already give unit vectors
            if sq == 0.0:
                raise InvalidVector(f"{self._what()}vector #0 is all zeros, which has no cosine direction")
            v = v * np.float32(1.0 / math.sqrt(sq))
        return v[None, :]

    def prepare(self, vectors: F32, *, normalize: bool = True) -> F32:
        vectors = check_rows(vectors, self.dim, self.metric, self._what())
        if self.metric is Metric.cosine and normalize:
            vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors

    def _what(self) -> str:
        return f"vector {self.name!r}: " if self.name else ""

    def prepare_batch(self, given: F32 | list[F32 | None], n: int, *, stored: bool = False) -> DenseBatch:
        """The rows an upsert of `n` points writes: a matrix, or one vector (or None) per point.

        `stored`: the vectors come from another copy of this store (a replica's catch-up), already
        normalised: normalising again would change their last bits."""
        if isinstance(given, np.ndarray):
            return DenseBatch(self.prepare(given, normalize=not stored), None)
        present = np.fromiter((v is not None for v in given), bool, n)
        rows = np.zeros((n, self.dim), np.float32)
        idx = np.flatnonzero(present)
        if len(idx):
            stacked = [np.asarray(given[i], dtype=np.float32) for i in idx]
            for i, v in zip(idx.tolist(), stacked, strict=True):
                if v.shape != (self.dim,):
                    got = v.shape[-1] if v.ndim else 0
                    raise DimensionMismatch(f"{self._what()}point #{i}: expected dimension {self.dim}, got {got}")
            rows[idx] = self.prepare(np.stack(stacked), normalize=not stored)
        return DenseBatch(rows, None if present.all() else present)

    def missing(self, n: int) -> DenseBatch:
        return DenseBatch(np.zeros((n, self.dim), np.float32), np.zeros(n, bool))

    # -- writes (the collection holds its write lock) -----------------------------------------

    def append(self, batch: DenseBatch, start: int) -> None:
        if self.vectors.rows != start:
            raise RuntimeError(f"vector {self.name!r}: store holds {self.vectors.rows} rows, expected {start}")
        self.vectors.append(batch.rows)

    def truncate(self, rows: int) -> None:
        self.vectors.truncate(rows)

    def commit(self, start: int, batch: DenseBatch, old: I64) -> None:
        """Make a committed batch visible: its labels alive here (where present), the old ones dead."""
        end = start + len(batch.rows)
        self.alive = grow_bools(self.alive, end)
        self.alive[start:end] = True if batch.present is None else batch.present
        self.alive[old] = False

    def forget(self, labels: I64) -> None:
        self.alive[labels] = False

    def remove_from_index(self, labels: I64) -> None:
        # alive was cleared first, so an indexer racing with us re-checks and removes them too
        index = self.state.index
        if len(labels) and index is not None:
            index.remove(labels)

    def vector_of(self, labels: I64) -> F32:
        return self.vectors.take(labels)

    # -- the query sample (LeanVec-OOD) ----------------------------------------------------------

    def add_query_sample(self, vectors: F32, *, replace: bool = False) -> int:
        return self.query_sample.add(self.prepare(vectors), replace=replace)

    @property
    def count(self) -> int:
        return int(self.alive[: self.labels.n].sum())

    def store_files(self, labels: int) -> list[tuple[Path, int]]:
        """The files of record a snapshot at `labels` copies: (path, committed bytes, or -1 for all)."""
        out = [(self.dir / "vectors.f32", labels * 4 * self.dim)]
        for extra in ("query_sample.npy", "query_reservoir.npy"):  # rewritten atomically: one whole version
            if (self.dir / extra).is_file():
                out.append((self.dir / extra, -1))
        return out

    def close(self) -> None:
        self.vectors.close()
