"""A sparse vector field: `{indices, values}` per point, an inverted index, exact dot-product scoring.

Storage: the field's CSR files (`index/sparse_store.py`) are its store of record, appended and fsynced
before the collection's SQLite commit like every other field's rows, so a batch is atomic and an
acknowledged write survives `kill -9`. Labels are the collection's (shared, never reused): an
overwrite or a delete clears the old label's `alive` bit here as everywhere.

The inverted index (`index/sparse_index.py`) is derived data and is **rebuilt at open** from the
stored rows rather than persisted: it is one stable argsort over the entries (about 0.1 s per million),
so a saved copy would buy little and would need a manifest, checksums and reconciliation of its own.
Writes land in the tail, which searches score from the stored rows; once the tail holds an eighth of
the indexed entries, the commit rebuilds the postings and publishes them with one reference store.

`modifier: idf`: the field keeps, per term, the number of live points that have it (df) and the number
of live points with this vector (N), updated by every commit, overwrite and delete; a query's weights
are multiplied by ln((N - df + 0.5) / (df + 0.5) + 1) at search time, as Qdrant does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from index.backends.base import I64
from index.contract import CollectionOptions, Query, SparseStats, SparseVec
from index.errors import InvalidVector
from index.labels import LabelMap, grow_bools
from index.selection import Selection
from index.sparse_index import (
    Postings,
    matching_rows,
    score_exhaustive,
    score_maxscore,
    score_rows,
    topk,
)
from index.sparse_store import SparseFiles, SparseSnapshot
from nestor_client.models import Metric, SparseVectorConfig

__all__ = ["SparseBatch", "SparseField", "check_sparse", "TailFolder"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
U32 = npt.NDArray[np.uint32]
Bools = npt.NDArray[np.bool_]
Ranked = tuple[list[int], list[float], str]
_MIN_TAIL = 8192  # tail entries scored from the rows before a rebuild is worth it
_PRUNE_MIN = 4096  # posting entries a query touches before MaxScore is tried
IDLE_SECONDS = 0.5  # writes paused this long: the background indexer folds the tail into the postings
_MAX_UINT32 = 2**32 - 1


@dataclass(frozen=True, slots=True)
class SparseBatch:
    indices: U32  # every present point's entries, each point's sorted by index
    values: F32
    counts: I64  # entries per point; 0 where a point omits this vector
    present: Bools | None  # None: every point of the batch has this vector


def check_sparse(v: SparseVec, what: str) -> SparseVec:
    """Validate one sparse vector (InvalidVector) and return it sorted by index, as stored."""
    idx = np.asarray(v.indices)
    val = np.asarray(v.values, dtype=np.float32)
    if idx.ndim != 1 or val.ndim != 1 or len(idx) != len(val):
        raise InvalidVector(f"{what}: {idx.size} indices but {val.size} values: they pair up one to one")
    if len(idx) and (idx.min() < 0 or idx.max() > _MAX_UINT32 or not np.issubdtype(idx.dtype, np.integer)):
        raise InvalidVector(f"{what}: sparse indices are integers from 0 to {_MAX_UINT32} (uint32)")
    if not np.isfinite(val).all():
        raise InvalidVector(f"{what}: sparse values must be finite (no NaN or Inf)")
    idx = idx.astype(np.uint32)
    order = np.argsort(idx, kind="stable")
    idx, val = idx[order], val[order]
    if len(idx) > 1 and (idx[1:] == idx[:-1]).any():
        raise InvalidVector(f"{what}: index {int(idx[1:][idx[1:] == idx[:-1]][0])} appears more than once")
    return SparseVec(idx, val)


class SparseField:
    kind = "sparse"
    metric = Metric.dot

    def __init__(
        self, name: str, directory: Path, config: SparseVectorConfig, options: CollectionOptions, labels: LabelMap
    ) -> None:
        self.name = name
        self.dir = directory
        self.config = config
        self.options = options
        self.labels = labels
        self.store = SparseFiles(directory, labels.n)
        self.alive: Bools = labels.alive.copy()  # the collection clears the labels of points that omit it
        self.postings = Postings.empty()  # with the document frequencies: one reference, swapped whole
        self.n_live = 0

    def open_index(self) -> None:
        """Build the postings and the document frequencies from the stored rows (`alive` is final now)."""
        snap = self.store.snapshot()
        n = self.labels.n
        self.postings = Postings.build(snap, n, self.alive)
        self.n_live = int(self.alive[:n].sum())

    # -- writes ----------------------------------------------------------------------------

    def prepare_batch(self, given: Sequence[SparseVec | None], n: int, *, stored: bool = False) -> SparseBatch:
        present = np.fromiter((v is not None for v in given), bool, n)
        rows = [check_sparse(v, f"vector {self.name!r}, point #{i}") for i, v in enumerate(given) if v is not None]
        counts = np.zeros(n, np.int64)
        counts[present] = [len(r.indices) for r in rows]
        indices = np.concatenate([r.indices for r in rows]) if rows else np.zeros(0, np.uint32)
        values = np.concatenate([r.values for r in rows]) if rows else np.zeros(0, np.float32)
        return SparseBatch(indices, values, counts, None if present.all() else present)

    def missing(self, n: int) -> SparseBatch:
        return SparseBatch(np.zeros(0, np.uint32), np.zeros(0, np.float32), np.zeros(n, np.int64), np.zeros(n, bool))

    def append(self, batch: SparseBatch, start: int) -> None:
        if self.store.n_docs != start:
            raise RuntimeError(f"sparse vector {self.name!r}: store holds {self.store.n_docs} labels, expected {start}")
        self.store.append(batch.indices, batch.values, batch.counts)

    def truncate(self, rows: int) -> None:
        self.store.truncate(rows)

    def commit(self, start: int, batch: SparseBatch, old: I64) -> None:
        """Make a committed batch visible: its labels alive (where present), the old ones dead; df and N."""
        end = start + len(batch.counts)
        alive = grow_bools(self.alive, end)
        alive[start:end] = True if batch.present is None else batch.present
        self.alive = alive
        self._retire(old)  # after the new labels: a reader sees the old version or the new, never neither
        self.n_live += len(batch.counts) if batch.present is None else int(batch.present.sum())
        self._count_terms(batch.indices, +1)
        if self.tail_entries(end) > max(_MIN_TAIL, self.postings.entries // 8):
            self.rebuild(end)

    def tail_entries(self, n: int | None = None) -> int:
        """Entries of the labels the postings do not cover yet (searches scan them from the rows)."""
        snap = self.store.snapshot()
        n = self.labels.n if n is None else n
        return int(snap.offsets[n] - snap.offsets[self.postings.upto])

    def rebuild(self, n: int | None = None) -> None:
        """New postings over every committed label, published with one reference store; the caller holds
        the collection's write lock (a write in between would change the counts under the build)."""
        n = self.labels.n if n is None else n
        self.postings = Postings.build(self.store.snapshot(), n, self.alive)

    def forget(self, labels: I64) -> None:
        self._retire(labels)

    def _retire(self, labels: I64) -> None:
        """Clear labels that die, and take their terms out of the document frequencies."""
        if not len(labels):
            return
        labels = labels[self.alive[labels]]
        self.alive[labels] = False
        _, terms = self.store.snapshot().gather(labels)
        self._count_terms(terms, -1)
        self.n_live -= len(labels)

    def _count_terms(self, terms: U32, sign: int) -> None:
        if not len(terms):
            return
        uniq, counts = np.unique(terms, return_counts=True)
        df = self.postings.delta  # the next rebuild counts afresh from the live rows
        for t, c in zip(uniq.tolist(), counts.tolist(), strict=True):
            left = df.get(t, 0) + sign * c
            if left:
                df[t] = left
            else:
                df.pop(t, None)

    def remove_from_index(self, labels: I64) -> None:
        """Nothing to do: dead labels are masked by `alive` and dropped at the next rebuild."""

    @property
    def count(self) -> int:
        return int(self.alive[: self.labels.n].sum())

    def vector_of(self, label: int) -> dict[str, list[int] | list[float]]:
        idx, val = self.store.snapshot().row(label)
        return {"indices": idx.tolist(), "values": val.tolist()}

    def store_files(self, labels: int) -> list[tuple[Path, int]]:
        return self.store.committed_files(labels)

    def close(self) -> None:
        self.store.close()

    @property
    def df(self) -> dict[int, int]:
        """Every term's document frequency (O(vocabulary): for tests and info)."""
        return self.postings.df_map()

    def ram_bytes(self) -> int:
        return self.store.ram_bytes() + self.postings.ram_bytes()

    # -- reads -----------------------------------------------------------------------------

    def term_stats(self, q: SparseVec) -> SparseStats:
        """This field's share of the IDF inputs for a query (a sharded collection sums the shards')."""
        qv = check_sparse(q, f"vector {self.name!r}: query")
        p = self.postings  # read once, before the live count, as `search` does
        return SparseStats(self.n_live, p.df(qv.indices))

    def query_weights(
        self, q: SparseVec, p: Postings | None = None, stats: SparseStats | None = None
    ) -> tuple[U32, F64]:
        """The query's terms (sorted) and weights, times the IDF under `modifier: idf` (from `stats`, the
        whole collection's, when given; else this field's own)."""
        qv = check_sparse(q, f"vector {self.name!r}: query")
        w = qv.values.astype(np.float64)
        if self.config.modifier == "idf":
            if stats is not None and len(stats.df) != len(qv.indices):
                raise InvalidVector(f"vector {self.name!r}: {len(stats.df)} document frequencies for {len(w)} terms")
            n = self.n_live if stats is None else stats.n
            got = (p or self.postings).df(qv.indices) if stats is None else stats.df
            # a reader between a write's two counts may see df above N for an instant: clamped, so never < 0
            df = np.minimum(got, n)
            w = w * np.log((n - df + 0.5) / (df + 0.5) + 1.0)  # Qdrant's (and Lucene's) IDF
        keep = w != 0
        return qv.indices[keep], w[keep]

    def score_labels(self, q: SparseVec, labels: I64) -> F32:
        """Exact scores of given live labels (a rescoring stage's input); 0 where a point shares no term."""
        terms, weights = self.query_weights(q)
        snap = self.store.snapshot()
        labels = np.asarray(labels, dtype=np.int64)
        return score_rows(snap, labels, terms, weights).astype(np.float32)

    def search(self, q: Query, allowed_of: Callable[[], Selection | None]) -> Ranked:
        if q.sparse is None:
            raise InvalidVector(f"vector {self.name!r} is sparse: search it with {{indices, values}}")
        p = self.postings  # read once, before the label count
        terms, weights = self.query_weights(q.sparse, p, q.sparse_stats)
        k = q.limit + q.offset
        n = max(self.labels.n, p.upto)  # a commit may publish postings just before it moves the count
        snap = self.store.snapshot()
        alive = self.alive
        sel = allowed_of()
        if sel is not None and len(sel) <= self.options.exact_filter_threshold:
            labels = sel.labels[sel.labels < n]
            labels = labels[alive[labels]]
            scores = score_rows(snap, labels, terms, weights)
            matched = _shares_term(snap, labels, terms)
            found = topk(labels[matched], scores[matched], k)
            return found[0].tolist(), found[1].tolist(), "sparse_rows_filtered"
        ok = alive
        if sel is not None:
            ok = np.zeros(len(alive), bool)
            ok[sel.labels] = True
            ok &= alive
        tail_l, tail_s = matching_rows(snap, p.upto, n, terms, weights)
        keep = ok[tail_l]
        tail = (tail_l[keep], tail_s[keep])
        slots, found_t = p.find(terms)
        slots, w = slots[found_t], weights[found_t]
        touched = int((p.starts[slots + 1] - p.starts[slots]).sum())
        pruned = score_maxscore(p, slots, w, ok, n, k, tail) if touched >= _PRUNE_MIN else None
        if pruned is not None:
            labels, scores, strategy = pruned[0], pruned[1], "sparse_maxscore"
        else:
            labels, scores = score_exhaustive(p, slots, w, ok, n)
            labels, scores = np.concatenate([labels, tail[0]]), np.concatenate([scores, tail[1]])
            strategy = "sparse_exact"
        if sel is not None:
            strategy += "_filtered"
        best = topk(labels, scores, k)
        return best[0].tolist(), best[1].tolist(), strategy


def _shares_term(snap: SparseSnapshot, labels: I64, terms: U32) -> Bools:
    """Which of `labels` have at least one of the query's terms (the others are no match at all)."""
    owners, idx = snap.gather(labels)
    if not len(idx) or not len(terms):
        return np.zeros(len(labels), bool)
    pos = np.minimum(np.searchsorted(terms, idx), len(terms) - 1)
    hit_owner = owners[terms[pos] == idx]
    return np.isin(labels, hit_owner)


class TailFolder:
    """The indexer's step for sparse fields: once writes pause, fold each tail into the postings, so that
    searches stop scanning it. The rebuild runs under the write lock (the build must see no write half
    done). A tail of a 64th of the indexed entries or less stays, so a trickle of writes does not rebuild
    a large index at every pause (the commit rebuilds at an eighth)."""

    def __init__(
        self,
        fields: Callable[[], Iterable[object]],
        write_lock: threading.Lock,
        last_write: Callable[[], float | None],
        wake: Callable[[], None],
    ) -> None:
        self._fields, self._lock, self._last_write, self._wake = fields, write_lock, last_write, wake
        self._timer: threading.Timer | None = None

    def step(self) -> bool:
        due = [f for f in self._fields() if isinstance(f, SparseField) and f.tail_entries() > f.postings.entries // 64]
        if not due:
            return False
        last = self._last_write()
        wait = 0.0 if last is None else IDLE_SECONDS - (time.time() - last)
        if wait > 0:  # writes still coming: look again once they may have paused
            if self._timer is None or not self._timer.is_alive():
                self._timer = threading.Timer(wait, self._wake)
                self._timer.daemon = True
                self._timer.start()
            return False
        for f in due:
            with self._lock:
                f.rebuild()
        return False

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
