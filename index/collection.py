"""One collection on this node: its lifecycle, the durable write path, and reads by id and by vector.

A point has an id, a payload, and one vector per named vector field (it may omit some). The durable
write path (every field's rows appended and fsynced, then one SQLite transaction, then published) is
`index/writes.py`. Every write gets fresh labels (never reused), shared by all fields, so an overwrite
is "new label live, old label dead" everywhere at once.

Searches name the vector they use; each field plans its own search (`index/planner.py` for dense
vectors, `index/multivector.py` for token sets), and this module turns labels into hits. The
background `Indexer` keeps every field's index current.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from index import planner, quality, writes
from index.backends.base import F32, I64
from index.batch import Field, check_batch, default_vector
from index.compaction import recover
from index.contract import (
    CollectionOptions,
    Hit,
    PointIdT,
    Query,
    QueryResult,
    SparseStats,
    SparseVec,
    VectorsIn,
    WithVector,
    WriteResult,
)
from index.dense import DenseField, field_dir
from index.errors import InvalidRequest
from index.filter_fast import select_one
from index.filters import compile_filter
from index.fsutil import atomic_write_bytes, fsync_dir, fsync_tree
from index.gate import SwapGate, WriterWait, reads
from index.hits import HitReader
from index.indexer import Indexer, save_index
from index.info import collection_info
from index.labels import LabelMap
from index.multivector import MultiVectorField, save_encoder_state
from index.optimizer import Optimizer
from index.payload import PayloadIndexes
from index.payload_admin import create_index, delete_index, open_indexes
from index.ramcap import apply_ram_cap
from index.scroll import IdOrder, scroll_page
from index.search import search_queries
from index.selection import Selection
from index.sparse import SparseField, TailFolder
from index.storage import PointStore, decode_pid
from index.tenants import TenantGraphs
from nestor_client.models import CollectionConfig, CollectionInfo, Filter, PayloadSchema, SearchParams, VectorConfig

__all__ = ["Collection", "check_batch", "default_vector"]


class Collection:
    distributed = False
    store_class = PointStore  # a follower's store reads its opening state in one transaction (index/follow.py)

    def __init__(self, name: str, directory: Path, config: CollectionConfig, options: CollectionOptions) -> None:
        self.name = name
        self.dir = directory
        self.config = config
        self.options = options
        self._write_lock = threading.Lock()
        # readers vs the swap of a compaction's new generation (index/compaction.py): reads take the read
        # side, the swap the write side, so no reader pairs the old labels with the new stores
        self.gate = SwapGate()
        self.generation = 0  # compactions so far (index/compaction.py): labels change with it
        self.snapshot_hold = threading.Lock()  # a snapshot copying the files holds off a compaction's swap
        self.last_write: float | None = None
        self._paused = 0  # pause_indexing() calls not yet resumed
        self.closed = False
        self._open_state()
        apply_ram_cap(self)  # vectors past the RAM cap are memory-mapped (index/ramcap.py)
        self.tenants = TenantGraphs(self, options.exact_filter_threshold)
        self._start_indexer()
        self.optimizer = Optimizer(self)  # compaction in the background, and on request (index/optimizer.py)
        self.optimizer.start()

    def _open_state(self) -> None:
        """Open the stores and everything keyed by label from the directory (a compaction opens a new
        generation's this way, then moves the attributes over: index/compaction.py)."""
        directory, config, options = self.dir, self.config, self.options
        self.points = self.store_class(directory / "points.sqlite")
        meta = self.points.meta()
        self._seq = meta.get("seq", 0)
        rows = self.points.all_labels()
        self.labels = LabelMap(meta.get("next_label", 0), ((decode_pid(p), lab) for p, lab, _ in rows))
        self.payload = PayloadIndexes(self.labels.live_labels(self.labels.n))
        self.fields: dict[str, Field] = {}
        try:
            for fname, vcfg in sorted(config.vector_fields().items()):
                fdir = field_dir(directory, fname)
                self.fields[fname] = (
                    MultiVectorField(fname, fdir, vcfg, options, self.labels)
                    if vcfg.multivector is not None
                    else DenseField(fname, fdir, vcfg, options, self.labels)
                )
            for fname, scfg in sorted(config.sparse_fields().items()):  # after the dense ones: their vmask bits
                self.fields[fname] = SparseField(fname, field_dir(directory, fname), scfg, options, self.labels)
        except BaseException:
            self._close_stores()
            raise
        self._bits = {fname: 1 << i for i, fname in enumerate(self.fields)}
        for _, label, vmask in rows:  # vectors a point omits are dead in their field
            if vmask is not None:
                for fname, f in self.fields.items():
                    if not vmask & self._bits[fname]:
                        f.alive[label] = False
        self._default = default_vector(config)
        try:
            open_indexes(self)
        except BaseException:
            self._close_stores()
            raise
        self.hits = HitReader(self.labels, self.points, self.fields, WriterWait(self._write_lock, self.gate))
        self.id_order = IdOrder(self.labels)  # for scroll (index/scroll.py)
        for f in self.fields.values():
            f.open_index()

    def _start_indexer(self) -> None:
        # the fields through a lambda: a compaction's swap replaces the dict (index/compaction.py)
        self._tails = TailFolder(
            lambda: self.fields.values(), self._write_lock, lambda: self.last_write, lambda: self._indexer.wake()
        )
        self._indexer = Indexer(
            self.name,
            self.dense_fields,
            extra=self._derived_step,
            paused=lambda: self._paused > 0,
            last_write=lambda: self.last_write,
            seq=lambda: self._seq,
            idle_seconds=self.options.save_idle_seconds,
            max_seconds=self.options.save_max_seconds,
        )
        self._indexer.start()

    def _derived_step(self) -> bool:
        """The indexer's work after the dense indexes: tenant graphs, and sparse tails once writes pause."""
        busy = self.tenants.step()
        return self._tails.step() or busy

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def create(cls, name: str, directory: Path, config: CollectionConfig, options: CollectionOptions) -> Collection:
        directory.mkdir(parents=True)
        for fname, vcfg in config.vector_fields().items():  # before collection.json: a crash leaves a stray folder
            fdir = field_dir(directory, fname)
            fdir.mkdir(parents=True, exist_ok=True)
            save_encoder_state(fdir, vcfg)
        fsync_tree(directory)  # every name below is durable before collection.json, the mark of a whole create
        atomic_write_bytes(directory / "collection.json", config.model_dump_json().encode())
        fsync_dir(directory.parent)
        coll = cls(name, directory, config, options)
        fsync_tree(directory)  # and the store files the constructor created (vectors.f32, points.sqlite, tokens)
        return coll

    @classmethod
    def open(cls, name: str, directory: Path, options: CollectionOptions) -> Collection:
        recover(directory)  # finish or undo a compaction's swap that a crash interrupted
        config = CollectionConfig.model_validate_json((directory / "collection.json").read_bytes())
        return cls(name, directory, config, options)

    def close(self) -> None:
        self.optimizer.stop()  # cancels a running compaction (its staging directory is removed)
        self._indexer.stop()
        self._tails.close()
        with self._write_lock:
            self.closed = True
            self._indexer.save([f for f in self.dense_fields() if f.dirty])
            self.points.checkpoint()
            self._close_stores()

    def _close_stores(self) -> None:
        for f in getattr(self, "fields", {}).values():
            f.close()
        self.points.close()

    def dense_fields(self) -> list[DenseField]:
        """Every dense vector the indexer keeps an index for (a multivector's FDEs included)."""
        out: list[DenseField] = []
        for f in self.fields.values():
            if isinstance(f, MultiVectorField):
                out += f.dense_fields()
            elif isinstance(f, DenseField):
                out.append(f)
        return out

    def vector_config(self, using: str | None) -> tuple[str, VectorConfig]:
        f = self.field(using)
        if isinstance(f, SparseField):
            raise InvalidRequest(f"vector {f.name!r} is sparse: it has no dense vector config")
        return f.name, f.config

    def field(self, using: str | None) -> Field:
        name = self._default if using is None else using
        f = self.fields.get(name) if name is not None else None
        if f is None:
            have = ", ".join(repr(n) for n in self.fields)
            if name is None:
                raise InvalidRequest(f"collection {self.name!r} has named vectors {have}: say which with 'using'")
            raise InvalidRequest(f"collection {self.name!r} has no vector named {name!r}; it has {have}")
        return f

    # -- writes ----------------------------------------------------------------------------

    def upsert(
        self,
        ids: list[PointIdT],
        vectors: VectorsIn,
        payloads: list[dict[str, Any] | None] | None = None,
        *,
        stored: bool = False,
    ) -> WriteResult:
        """Insert or overwrite a batch atomically; returns once it is durable (index/writes.py).

        `stored`: the vectors were read from another copy of this collection (`read_points`), so they are
        written bit for bit, not normalised again (a replica catching up)."""
        return writes.upsert(self, ids, vectors, payloads, stored=stored)

    def delete(self, ids: list[PointIdT]) -> WriteResult:
        return writes.delete_ids(self, ids)

    def delete_where(self, flt: Filter) -> WriteResult:
        return writes.delete_where(self, flt)

    # -- reads -----------------------------------------------------------------------------

    @property
    def count(self) -> int:
        return self.labels.count

    @property
    def seq(self) -> int:
        return self._seq

    @reads
    def count_where(self, flt: Filter | None) -> int:
        if flt is None:
            return self.count
        found = select_one(self.payload, flt, self.config.payload_schema)  # one indexed condition: the quick way
        if found is None:
            found = self.payload.select(flt, self.labels.label_of) if self._indexed(flt) else None
        if found is not None:
            return len(found)
        where, params = compile_filter(flt)
        return self.points.count_where(where, params)

    @reads
    def labels_where(self, flt: Filter) -> I64:
        """The live labels whose payload matches `flt`, sorted."""
        return self._match(flt)[0]

    def _indexed(self, flt: Filter) -> bool:
        """Check `flt` against the payload indexes (InvalidFilter); True when they answer all of it."""
        return self.payload.check(flt, self.config.payload_schema)

    def _match(self, flt: Filter) -> tuple[I64, bool]:
        """The live labels matching `flt`, sorted, and whether the payload indexes answered (no SQL scan)."""
        sel, indexed = self.selection(flt)
        return sel.labels, indexed

    @reads
    def selection(self, flt: Filter) -> tuple[Selection, bool]:
        """The live labels matching `flt` (from the payload indexes when they answer all of it, else SQL),
        and whether the indexes answered."""
        found = select_one(self.payload, flt, self.config.payload_schema)  # one indexed condition: the quick way
        if found is None:
            found = self.payload.select(flt, self.labels.label_of) if self._indexed(flt) else None
        if found is not None:
            return Selection(bitmap=found), True
        where, params = compile_filter(flt)
        return Selection(labels=self.points.select_labels(where, params)), False

    # -- payload indexes (index/payload_admin.py) ------------------------------------------

    def create_payload_index(self, key: str, schema: PayloadSchema, *, wait: bool = True) -> bool:
        """Index payload `key` (built in the background from the store); False when it already exists."""
        return create_index(self, key, schema, wait=wait)

    def delete_payload_index(self, key: str) -> bool:
        return delete_index(self, key)

    @reads
    def label_of(self, pid: PointIdT) -> int | None:
        return self.labels.label_of.get(pid)

    @reads
    def get(self, ids: list[PointIdT], *, with_payload: bool = True, with_vector: WithVector = False) -> list[Hit]:
        label_of = self.labels.label_of
        found = [(pid, lab) for pid in ids if (lab := label_of.get(pid)) is not None]
        hits = [Hit(pid, 0.0) for pid, _ in found]
        self.hits.attach(hits, [lab for _, lab in found], with_payload, self.hits.vector_names(with_vector))
        return [h for h in hits if h.id is not None]  # a point deleted while we read is not found

    scroll = reads(scroll_page)  # a page of the points matching a filter, in id order (index/scroll.py)

    @reads
    def is_cheap(self, q: Query) -> bool:
        name = self._default if q.using is None else q.using
        f = self.fields.get(name) if name is not None else None
        return isinstance(f, DenseField) and planner.is_cheap(f, q)

    @reads
    def search(self, queries: list[Query], *, partial: bool = False) -> list[QueryResult]:
        """Answer several queries; unfiltered ones on a dense vector with equal knobs share one ANN call."""
        return search_queries(self, queries)

    def wake_indexer(self) -> None:
        self._indexer.wake()

    @reads
    def observe_recall(
        self,
        using: str | None,
        hits: int,
        total: int,
        queries: int,
        lower: tuple[SearchParams, int, int] | None = None,
    ) -> None:
        """The recall probe's measure of one vector: a recall target adjusts its knobs (index/quality.py).
        `lower`: the same queries' hits at `recall_probe_below`'s knobs (those knobs, found, of how many)."""
        f = self.field(using)
        if isinstance(f, DenseField):
            quality.observe(f, hits, total, queries, lower)

    def recall_probe_below(self, using: str | None) -> SearchParams | None:
        """The knobs one rung below a recall target's (index/quality.py `below`): the probe measures them too."""
        f = self.field(using)
        return quality.below(f) if isinstance(f, DenseField) else None

    @reads
    def sparse_stats(self, using: str, q: SparseVec) -> SparseStats:
        """Sparse vector `using`'s IDF inputs for query `q` here (a sharded collection sums its shards')."""
        f = self.field(using)
        if not isinstance(f, SparseField):
            raise InvalidRequest(f"vector {using!r} is not sparse: it has no document frequencies")
        return f.term_stats(q)

    @reads
    def match(self, flt: Filter) -> tuple[I64, bool]:
        """The live labels matching `flt`, sorted, and whether the payload indexes answered (no SQL scan)."""
        return self._match(flt)

    @reads
    def read_points(self, labels: I64) -> tuple[list[PointIdT], dict[str, list[Any]], list[dict[str, Any] | None]]:
        """Ids, vectors by name (None where a point omits one) and payloads of live labels (replica catch-up)."""
        return self.hits.read_points(labels)

    # -- the query sample, bulk loads ----------------------------------------------------------

    @reads
    def add_query_sample(self, vectors: F32, *, replace: bool = False, using: str | None = None) -> int:
        """Keep example queries for fitting the query map (the next optimization refits with them), and for
        calibrating a recall target (index/quality.py)."""
        f = self.field(using)
        red = f.config.reduce if isinstance(f, DenseField) else None
        ood = red is not None and red.type == "leanvec" and red.mode == "ood"
        if not isinstance(f, DenseField) or not (ood or f.tuning is not None):
            raise InvalidRequest("a query sample is only used by vectors with reduce leanvec, mode 'ood', or a quality")
        n = f.add_query_sample(vectors, replace=replace)
        self._indexer.wake()
        return n

    def pause_indexing(self) -> None:
        """Stop moving rows into the index until `resume_indexing`, so a bulk load indexes once, at the end.

        Searches stay correct meanwhile: unindexed rows are searched exactly. Pauses nest (one per caller)."""
        with self._write_lock:
            self._paused += 1

    def resume_indexing(self) -> None:
        with self._write_lock:
            self._paused = max(0, self._paused - 1)
        self._indexer.wake()

    @property
    def indexing_paused(self) -> bool:
        return self._paused > 0

    def save_indexes(self) -> None:
        """Persist every changed index now (tests and benchmarks; the indexer does it when idle)."""
        for f in self.dense_fields():
            save_index(f, self._seq)

    # -- snapshots (index/snapshots.py packs the files) ------------------------------------

    def backup_store(self, target: Path) -> tuple[int, int]:
        """Copy the SQLite store of record to `target`; returns the committed (label count, seq) it holds.

        Taken under the write lock, so no batch is half in and the copy matches the label count. Rows
        below that count never change again (labels are never reused), so the caller copies the vector
        files after the lock is released and writers wait only for the database copy.
        """
        with self._write_lock:
            src = sqlite3.connect(self.points.path)
            try:
                dst = sqlite3.connect(target)
                try:
                    src.backup(dst)  # the whole database in one step: no writer can interleave
                finally:
                    dst.close()
            finally:
                src.close()
            return self.labels.n, self._seq

    def index_dirs(self) -> list[tuple[str, Path]]:
        """(field directory relative to the collection's, its saved index) of every dense vector."""
        rel = [f.dir.relative_to(self.dir).as_posix() for f in self.dense_fields()]
        return [("" if r == "." else r, f.dir / "index") for r, f in zip(rel, self.dense_fields(), strict=True)]

    def snapshot_files(self, labels: int) -> list[tuple[str, Path, int]]:
        out = [("collection.json", self.dir / "collection.json", -1)]
        for f in self.fields.values():
            out += [(p.relative_to(self.dir).as_posix(), p, size) for p, size in f.store_files(labels)]
        return out

    # -- compaction (index/compaction.py, index/optimizer.py) ---------------------------------

    def optimize(self) -> bool:
        """Start a compaction now, in the background; False when one is already running."""
        if self.closed:
            raise InvalidRequest(f"collection {self.name!r} is closed")
        return self.optimizer.request()

    # -- introspection ---------------------------------------------------------------------

    @reads
    def info(self) -> CollectionInfo:
        return collection_info(self)
