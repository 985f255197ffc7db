"""The background indexer: one thread per collection that keeps each vector's index current.

Per step and per dense vector (a multivector's FDEs included): train IVF-PQ or fit a compressed
index once enough points exist, refit it when the collection has grown (or the LeanVec-OOD query
sample changed), else move the next chunk of the unindexed tail into the index. A (re)build makes a
whole new index while the old one serves, then publishes both the index and its watermark in one
`IndexState`. Indexes are saved when writes pause, or at least every `save_max_seconds`.

A step that raises is retried with a growing pause (up to a minute), and the vector reports
`failing` with the error in its info, so a collection whose indexer cannot work says so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from index import quality
from index.backends.base import I64, VectorIndex
from index.backends.ivfpq import IvfPqIndex, auto_nlist
from index.dense import DenseField
from index.encoded import EncodedIndex
from index.factory import IVF_MIN_SAMPLE, IVF_SAMPLE_PER_LIST, new_ivf, sample_rows, train_encoded
from index.manifest import write_index
from nestor_client.models import IvfPqIndexConfig, LeanVecReduceConfig

__all__ = ["Indexer", "index_step", "save_index"]

log = logging.getLogger("nestor.collection")

INDEX_CHUNK = 4096
_FIT_SAMPLE = 50_000  # rows the learned transforms are fitted on
_RESERVOIR_REFIT = 256  # refit LeanVec-OOD once the query reservoir has this many (then doubled) rows
_MAX_BACKOFF = 60.0


def index_step(field: DenseField) -> bool:
    """Do one unit of background work on `field`; False when there is nothing to do."""
    if field.plain_flat:
        return quality.step(field)  # reports the exact scan's recall target as met
    cfg = field.config
    st = field.state
    if cfg.compressed:
        live = field.count
        if st.index is None:
            if live < cfg.training.threshold:
                return False
            _build_encoded(field)
            return True
        assert isinstance(st.index, EncodedIndex)
        if live >= cfg.training.refit_growth * max(st.index.trained_on, 1) or _sample_stale(field):
            _build_encoded(field)
            return True
    elif isinstance(cfg.index, IvfPqIndexConfig):
        live = field.count
        ivf = st.index
        if ivf is None and live >= cfg.index.train_threshold:
            _build_ivf(field, cfg.index)
            return True
        if isinstance(ivf, IvfPqIndex) and live >= cfg.index.retrain_growth * max(ivf.trained_on, 1):
            _build_ivf(field, cfg.index)
            return True
    index = st.index
    n = field.labels.n
    if index is None or st.upto >= n:
        return quality.step(field)  # a recall target recalibrates once a new or grown index is caught up
    field.phase = "indexing"
    lo = st.upto
    hi = min(n, lo + INDEX_CHUNK)
    labels = np.arange(lo, hi, dtype=np.int64)
    labels = labels[field.alive[lo:hi]]
    if len(labels):
        index.add(field.vectors.take(labels), labels)
    field.publish(index, hi)
    _recheck_dead(field, index, labels)
    field.dirty = True
    return True


def _recheck_dead(field: DenseField, index: VectorIndex, labels: I64) -> None:
    dead = labels[~field.alive[labels]]
    if len(dead):
        index.remove(dead)


def _build_ivf(field: DenseField, cfg: IvfPqIndexConfig) -> None:
    def make(labels: I64) -> IvfPqIndex:
        size = max(IVF_SAMPLE_PER_LIST * (cfg.nlist or auto_nlist(len(labels))), IVF_MIN_SAMPLE)
        sample = field.vectors.take(sample_rows(labels, size))
        return new_ivf(cfg, field.dim, field.space, sample, len(labels))

    _rebuild(field, make, None)


def _build_encoded(field: DenseField) -> None:
    """Fit the transforms on a sample (and the query sample), then build the compressed index."""
    red = field.config.reduce
    ood = isinstance(red, LeanVecReduceConfig) and red.mode == "ood"
    fingerprint = (field.query_sample.version, field.query_sample.filled)

    def make(labels: I64) -> EncodedIndex:
        qs = field.query_sample  # recent queries only when OOD opted in (a recall target keeps some too)
        queries = None
        if isinstance(red, LeanVecReduceConfig) and ood:
            queries = qs.rows() if red.query_reservoir else qs.api
        # codecs without a learned projection only need a mean or a range: a smaller sample does
        size = _FIT_SAMPLE if red is not None else _FIT_SAMPLE // 4
        sample = field.vectors.take(sample_rows(labels, size))
        threads = field.options.index_threads
        new = train_encoded(field.config, field.space, sample, queries, n_total=len(labels), threads=threads)
        new.sample_version, new.query_sample_rows = fingerprint
        return new

    _rebuild(field, make, fingerprint)


def _rebuild(field: DenseField, make: Callable[[I64], VectorIndex], fitted: tuple[int, int] | None) -> None:
    """Train a new index on the live rows, fill it, and publish it; the old one serves until then."""
    field.phase = "training"
    hi = field.labels.n
    labels = np.flatnonzero(field.alive[:hi]).astype(np.int64)
    new = make(labels)
    for s in range(0, len(labels), INDEX_CHUNK * 4):
        chunk = labels[s : s + INDEX_CHUNK * 4]
        new.add(field.vectors.take(chunk), chunk)
    refine = getattr(new, "refine", None)  # a graph re-selects its links once the bulk is in
    if refine is not None:
        refine()
    field.publish(new, hi, fitted=fitted)  # index and watermark together: readers never see a mix
    _recheck_dead(field, new, labels)
    field.dirty = True
    log.info("vector %r in %s: trained %s on %d vectors", field.name, field.dir, getattr(new, "spec", ""), len(labels))


def _sample_stale(field: DenseField) -> bool:
    red = field.config.reduce
    if not (isinstance(red, LeanVecReduceConfig) and red.mode == "ood"):
        return False
    qs = field.query_sample
    fitted_version, fitted_filled = field.state.fitted_sample
    grown = red.query_reservoir and qs.filled >= max(_RESERVOIR_REFIT, 2 * fitted_filled)
    return qs.version != fitted_version or (grown and qs.filled > fitted_filled)


def save_index(field: DenseField, seq: int) -> None:
    st = field.state
    if st.index is None or not field.dirty:
        return
    field.dirty = False
    man = write_index(field.dir / "index", st.index.save, labels_upto=st.upto, seq=seq)
    field.query_sample.save_reservoir()
    field.index_disk = man.disk_bytes
    field.last_optimized = man.saved_at


class Indexer(threading.Thread):
    """Runs `index_step` over a collection's dense vectors and saves their indexes; one per collection."""

    def __init__(
        self,
        name: str,
        fields: Callable[[], list[DenseField]],
        *,
        extra: Callable[[], bool] | None = None,
        paused: Callable[[], bool],
        last_write: Callable[[], float | None],
        seq: Callable[[], int],
        idle_seconds: float,
        max_seconds: float,
    ) -> None:
        super().__init__(name=f"indexer-{name}", daemon=True)
        self.coll_name = name
        self._fields, self._paused, self._last_write, self._seq = fields, paused, last_write, seq
        self._extra = extra  # derived work after the indexes are current (index/tenants.py); True: busy
        self._extra_after = 0.0  # monotonic time before which a failed extra step is not retried
        self._idle, self._max = idle_seconds, max_seconds
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._last_save = time.monotonic()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._halt.set()
        self._wake.set()
        self.join(timeout=120)

    def run(self) -> None:
        while not self._halt.is_set():
            busy, backoff = False, 0.0
            for field in self._fields():
                if self._paused():
                    break
                try:
                    busy |= index_step(field)
                    field.failures, field.last_error = 0, None
                except Exception as exc:
                    field.failures += 1
                    field.last_error = f"{type(exc).__name__}: {exc}"
                    field.phase = "ready"
                    backoff = max(backoff, min(_MAX_BACKOFF, 2.0 ** (field.failures - 1)))
                    log.exception("collection %s, vector %r: indexing step failed", self.coll_name, field.name)
            if not busy and self._extra is not None and not self._paused() and time.monotonic() >= self._extra_after:
                try:
                    busy = self._extra()
                except Exception:  # retried later; it must not hold up the indexes themselves
                    log.exception("collection %s: derived index step failed", self.coll_name)
                    self._extra_after = time.monotonic() + _MAX_BACKOFF / 4
            if backoff:
                self._halt.wait(backoff)
            self._maybe_save(busy)
            if not busy:
                for field in self._fields():
                    field.phase = "ready"
                self._wake.wait(timeout=self._idle)
                self._wake.clear()

    def _maybe_save(self, busy: bool) -> None:
        fields = [f for f in self._fields() if f.dirty]
        if not fields:
            return
        # Idle means no write for a while, not just "caught up": small steady writes leave the
        # indexer caught up most of the time, and saving a 100k graph every 2 s halved throughput.
        now = time.monotonic()
        last = self._last_write()
        quiet = last is None or time.time() - last >= self._idle
        due = now - self._last_save >= self._max
        if due or (not busy and quiet and now - self._last_save >= self._idle):
            self.save(fields)

    def save(self, fields: list[DenseField]) -> None:
        for field in fields:
            try:
                save_index(field, self._seq())
            except Exception:
                log.exception("collection %s, vector %r: saving the index failed", self.coll_name, field.name)
        self._last_save = time.monotonic()
