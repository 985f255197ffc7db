"""One collection: durable writes, the search planner, and recovery.

Write path: validate the whole batch, append the vectors to `vectors.f32` (fsync), then commit
ids, labels and payloads in one SQLite transaction. Only then is the batch visible and
acknowledged. Every write gets a fresh internal label (labels are never reused), so an
overwrite is "new label live, old label dead", and the ANN index never holds a stale vector
under a live label.

Read path: rows below `indexed_upto` are served by the ANN index; rows above it (not indexed yet)
are searched exactly and merged in. A selective filter runs exactly over the matching rows. The
background `Indexer` moves rows into the index, trains and retrains IVF-PQ, and persists the
index with the label watermark it covers, so a restart loads it and only indexes what came after.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from index.backends.base import F32, I64, Hits, IndexParams, Space, VectorIndex
from index.backends.flat import exact_search, gather_scores, top_k
from index.backends.hnsw import HnswIndex
from index.backends.ivfpq import IvfPqIndex, auto_nlist
from index.errors import DimensionMismatch, DuplicateId, InvalidVector
from index.filters import compile_filter
from index.fsutil import atomic_write_bytes, fsync_dir, replace_dir
from index.storage import PointStore, decode_pid, encode_pid
from index.vectors import VectorStore
from nestor_client.models import (
    CollectionConfig,
    Filter,
    FlatIndexConfig,
    HnswIndexConfig,
    IvfPqIndexConfig,
    Metric,
    SearchParams,
)

__all__ = ["Collection", "CollectionOptions", "Hit", "Query", "QueryResult", "WriteResult"]

log = logging.getLogger("nestor.collection")

PointIdT = int | str
_INDEX_CHUNK = 4096
_CHEAP_PENDING = 1024  # unindexed rows a search may scan exactly and still count as cheap
_IVF_SAMPLE_PER_LIST = 64


@dataclass(frozen=True, slots=True)
class CollectionOptions:
    """Engine-wide knobs (from server settings), not part of a collection's config."""

    exact_filter_threshold: int = 5000  # a filter matching at most this many points runs exactly
    save_idle_seconds: float = 2.0  # persist the index once idle this long after a change
    save_max_seconds: float = 60.0  # and at least this often while busy
    index_threads: int | None = None


@dataclass(slots=True)
class Query:
    vector: F32  # [dim]; in a multi-vector collection, the query's token vectors [t, dim]
    limit: int = 10
    offset: int = 0
    filter: Filter | None = None
    params: SearchParams | None = None
    with_payload: bool = True
    with_vector: bool = False
    score_threshold: float | None = None


@dataclass(slots=True)
class Hit:
    id: PointIdT
    score: float
    payload: dict[str, Any] | None = None
    vector: list[float] | None = None
    multivector: list[list[float]] | None = None  # the token vectors, in multi-vector collections


@dataclass(slots=True)
class QueryResult:
    hits: list[Hit]
    strategy: str


@dataclass(frozen=True, slots=True)
class WriteResult:
    count: int
    seq: int


@dataclass(slots=True)
class _State:
    """In-RAM mirror of the store of record (rebuilt from SQLite on open)."""

    ids: list[PointIdT | None] = field(default_factory=list)  # label -> id (None: dead label)
    label_of: dict[PointIdT, int] = field(default_factory=dict)
    alive: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(1024, bool))


def _space(metric: Metric) -> Space:
    return Space.l2 if metric is Metric.l2 else Space.ip


class Collection:
    def __init__(self, name: str, directory: Path, config: CollectionConfig, options: CollectionOptions) -> None:
        self.name = name
        self.dir = directory
        self.config = config
        self.options = options
        self.dim = config.dim
        self.metric = config.metric
        self.space = _space(config.metric)
        self._write_lock = threading.Lock()
        self.points = PointStore(directory / "points.sqlite")
        meta = self.points.meta()
        self._seq = meta.get("seq", 0)
        self._next_label = meta.get("next_label", 0)
        self.vectors = VectorStore(directory / "vectors.f32", self.dim, rows=self._next_label)
        self._st = self._load_state()
        self.last_write: float | None = None
        self.last_optimized: float | None = None
        self._phase = "ready"
        self._index: VectorIndex | None = None
        self._indexed_upto = 0
        self._dirty = False
        self._paused = 0  # pause_indexing() calls not yet resumed
        self._load_index()
        self._indexer = _Indexer(self)
        self._indexer.start()

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def create(cls, name: str, directory: Path, config: CollectionConfig, options: CollectionOptions) -> Collection:
        directory.mkdir(parents=True)
        atomic_write_bytes(directory / "collection.json", config.model_dump_json().encode())
        fsync_dir(directory.parent)
        return cls(name, directory, config, options)

    @classmethod
    def open(cls, name: str, directory: Path, options: CollectionOptions) -> Collection:
        config = CollectionConfig.model_validate_json((directory / "collection.json").read_bytes())
        return cls(name, directory, config, options)

    def close(self) -> None:
        self._indexer.stop()
        with self._write_lock:
            if self._dirty:
                self._save_index()
            self.points.checkpoint()
            self.points.close()
            self.vectors.close()

    def _load_state(self) -> _State:
        st = _State(ids=[None] * self._next_label, alive=np.zeros(max(1024, self._next_label * 2), bool))
        for pid_text, label in self.points.all_labels():
            pid = decode_pid(pid_text)
            st.ids[label] = pid
            st.label_of[pid] = label
            st.alive[label] = True
        return st

    def _load_index(self) -> None:
        cfg = self.config.index
        index_dir = self.dir / "index"
        manifest = index_dir / "manifest.json"
        if isinstance(cfg, FlatIndexConfig):
            return
        if manifest.exists():
            try:
                man = json.loads(manifest.read_text())
                loaded: VectorIndex
                if isinstance(cfg, HnswIndexConfig):
                    hnsw = HnswIndex.load(index_dir, threads=self.options.index_threads)
                    hnsw.ef = cfg.ef
                    loaded = hnsw
                else:
                    ivf = IvfPqIndex.load(index_dir)
                    ivf.nprobe = cfg.nprobe
                    loaded = ivf
                upto = min(int(man["labels_upto"]), self._next_label)
                dead = np.flatnonzero(~self._st.alive[:upto]).astype(np.int64)
                loaded.remove(dead)
                self._index, self._indexed_upto = loaded, upto
                self.last_optimized = float(man.get("saved_at", 0.0)) or None
                return
            except Exception:  # a damaged index is derived data: rebuild it from the store
                log.exception("collection %s: cannot load its index, rebuilding from the store", self.name)
        self._index = self._new_index()
        self._indexed_upto = 0

    def _new_index(self) -> VectorIndex | None:
        cfg = self.config.index
        if isinstance(cfg, HnswIndexConfig):
            return HnswIndex(
                self.dim,
                self.space,
                m=cfg.m,
                ef_construction=cfg.ef_construction,
                ef=cfg.ef,
                threads=self.options.index_threads,
            )
        return None  # IVF-PQ appears once trained

    # -- writes ----------------------------------------------------------------------------

    def _prepare_one(self, v: F32) -> F32:
        """`_prepare` for one query vector, without the batch machinery (the search hot path)."""
        if v.shape != (self.dim,):
            return self._prepare(v[None, :] if v.ndim == 1 else v)
        v = v.astype(np.float32, copy=False)
        sq = float(v @ v)
        if not math.isfinite(sq):
            raise InvalidVector("vector #0 contains NaN or Inf")
        if self.metric is Metric.cosine:
            if sq == 0.0:
                raise InvalidVector("vector #0 is all zeros, which has no cosine direction")
            v = v * np.float32(1.0 / math.sqrt(sq))
        return v[None, :]

    def _prepare(self, vectors: F32) -> F32:
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            got = vectors.shape[-1] if vectors.ndim else 0
            raise DimensionMismatch(f"expected vectors of dimension {self.dim}, got {got}")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not np.isfinite(vectors).all():
            bad = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])
            raise InvalidVector(f"vector #{bad} contains NaN or Inf")
        if self.metric is Metric.cosine:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            if (norms == 0).any():
                bad = int(np.flatnonzero(norms[:, 0] == 0)[0])
                raise InvalidVector(f"vector #{bad} is all zeros, which has no cosine direction")
            vectors = vectors / norms
        return vectors

    def upsert(
        self, ids: list[PointIdT], vectors: F32, payloads: list[dict[str, Any] | None] | None = None
    ) -> WriteResult:
        """Insert or overwrite a batch atomically; returns once it is durable."""
        if len(ids) != len(vectors):
            raise InvalidVector(f"{len(ids)} ids but {len(vectors)} vectors")
        if payloads is not None and len(payloads) != len(ids):
            raise InvalidVector(f"{len(ids)} ids but {len(payloads)} payloads")
        if len(set(ids)) != len(ids):
            seen: set[PointIdT] = set()
            dup = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
            raise DuplicateId(f"id {dup!r} appears more than once in the batch")
        vectors = self._prepare(vectors)
        pay = [None if p is None else orjson.dumps(p).decode() for p in (payloads or [None] * len(ids))]
        if not ids:
            return WriteResult(0, self._seq)
        with self._write_lock:
            start = self.vectors.append(vectors)
            labels = range(start, start + len(ids))
            seq = self._seq + 1
            try:
                self.points.upsert(
                    [(encode_pid(i), lab, p) for i, lab, p in zip(ids, labels, pay, strict=True)],
                    seq=seq,
                    next_label=start + len(ids),
                )
            except BaseException:
                self.vectors.truncate(start)
                raise
            old = self._apply_upsert(ids, start)
            self._seq, self._next_label = seq, start + len(ids)
            self.last_write = time.time()
        if len(old) and self._index is not None:
            self._index.remove(old)
        self._indexer.wake()
        return WriteResult(len(ids), seq)

    def _apply_upsert(self, ids: list[PointIdT], start: int) -> I64:
        st = self._st
        end = start + len(ids)
        if end > len(st.alive):
            grown = np.zeros(max(end, 2 * len(st.alive)), bool)
            grown[: len(st.alive)] = st.alive
            st.alive = grown
        old: list[int] = []
        for off, pid in enumerate(ids):
            prev = st.label_of.get(pid)
            if prev is not None:
                old.append(prev)
                st.ids[prev] = None
            st.label_of[pid] = start + off
        st.ids.extend(ids)
        st.alive[start:end] = True
        old_arr = np.asarray(old, dtype=np.int64)
        st.alive[old_arr] = False
        return old_arr

    def delete(self, ids: list[PointIdT]) -> WriteResult:
        with self._write_lock:
            seq = self._seq + 1
            labels = self.points.delete([encode_pid(i) for i in ids], seq=seq)
            self._forget(labels)
            self._seq = seq
            self.last_write = time.time()
        self._remove_from_index(labels)
        return WriteResult(len(labels), seq)

    def delete_where(self, flt: Filter) -> WriteResult:
        where, params = compile_filter(flt)
        with self._write_lock:
            seq = self._seq + 1
            rows = self.points.delete_where(where, params, seq=seq)
            labels = [label for _, label in rows]
            self._forget(labels)
            self._seq = seq
            self.last_write = time.time()
        self._remove_from_index(labels)
        return WriteResult(len(labels), seq)

    def _forget(self, labels: list[int]) -> None:
        st = self._st
        for label in labels:
            pid = st.ids[label]
            st.ids[label] = None
            if pid is not None:
                st.label_of.pop(pid, None)
        st.alive[np.asarray(labels, dtype=np.int64)] = False

    def _remove_from_index(self, labels: list[int]) -> None:
        # alive was cleared first, so an indexer racing with us re-checks and removes them too
        if labels and self._index is not None:
            self._index.remove(np.asarray(labels, dtype=np.int64))

    # -- reads -----------------------------------------------------------------------------

    @property
    def count(self) -> int:
        return len(self._st.label_of)

    @property
    def seq(self) -> int:
        return self._seq

    def count_where(self, flt: Filter | None) -> int:
        if flt is None:
            return self.count
        where, params = compile_filter(flt)
        return self.points.count_where(where, params)

    def get(self, ids: list[PointIdT], *, with_payload: bool = True, with_vector: bool = False) -> list[Hit]:
        found = [(pid, lab) for pid in ids if (lab := self._st.label_of.get(pid)) is not None]
        hits = [Hit(pid, 0.0) for pid, _ in found]
        self._attach(list(hits), np.asarray([lab for _, lab in found], np.int64), with_payload, with_vector)
        return hits

    # -- label-level reads, for wrappers that keep more per label (index/multivector.py) ----

    def committed(self) -> tuple[int, npt.NDArray[np.bool_]]:
        """The committed label count `n` and the liveness of the labels below it."""
        n = self._next_label
        return n, self._st.alive[:n]

    def label_of(self, pid: PointIdT) -> int | None:
        return self._st.label_of.get(pid)

    def labels_where(self, flt: Filter) -> I64:
        """The live labels whose payload matches `flt`, sorted."""
        where, params = compile_filter(flt)
        return self.points.select_labels(where, params)

    def plan(self, vectors: F32, k: int, params: SearchParams | None, allowed: I64 | None) -> tuple[Hits, str]:
        """The planner's top-k (labels, scores) and strategy for query vectors, before ids are attached."""
        return self._plan(self._prepare(vectors), k, params, allowed)

    def make_hits(self, labels: I64, scores: list[float], *, with_payload: bool) -> list[Hit]:
        """Hits for live `labels`, in order, with their payloads when asked."""
        ids = self._st.ids
        hits = [Hit(ids[lab], sc) for lab, sc in zip(labels.tolist(), scores, strict=True)]  # type: ignore[arg-type]
        if with_payload:
            self._attach(hits, labels, True, False)
        return hits

    def is_cheap(self, q: Query) -> bool:
        """True when `q` is a sub-millisecond ANN lookup: no filter, a few payload rows, little unindexed data."""
        index = self._index
        return (
            q.filter is None
            and q.limit + q.offset <= 100
            and index is not None
            and index.is_trained
            and not (q.params is not None and q.params.exact)
            and self._next_label - self._indexed_upto <= _CHEAP_PENDING
        )

    def search(self, queries: list[Query]) -> list[QueryResult]:
        """Answer several queries; unfiltered ones with equal knobs share one batched ANN call."""
        if len(queries) == 1:
            return [self._search_one(queries[0])]
        results: list[QueryResult | None] = [None] * len(queries)
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, q in enumerate(queries):
            if q.filter is None:
                p = q.params
                knobs = None if p is None else (p.ef, p.nprobe, p.oversampling, p.rescore, p.exact)
                groups.setdefault((q.limit + q.offset, knobs), []).append(i)
            else:
                results[i] = self._search_one(q)
        for members in groups.values():
            first = queries[members[0]]
            mat = self._prepare(np.stack([queries[i].vector for i in members]))
            hits, strategy = self._plan(mat, first.limit + first.offset, first.params, None)
            for row, i in enumerate(members):
                results[i] = self._finish(queries[i], hits.labels[row], hits.scores[row], strategy)
        return [r for r in results if r is not None]

    def _search_fast(self, q: Query, mat: F32) -> QueryResult | None:
        """The common case without the general planner's numpy bookkeeping.

        That case is one unfiltered query on a fully indexed HNSW collection. It goes straight from
        hnswlib's lists to hits. None (fall back to `_plan`) if anything is unusual, including a
        tombstone in the answer.
        """
        index = self._index
        p = q.params
        if (
            q.filter is not None
            or q.score_threshold is not None
            or not isinstance(index, HnswIndex)
            or self._indexed_upto != self._next_label
            or (p is not None and p.exact)
        ):
            return None
        got = index.search_one(mat, q.limit + q.offset, p.ef if p is not None else None)
        if got is None:
            return None
        labels, scores = got
        alive, ids = self._st.alive, self._st.ids
        if not all(alive[lab] for lab in labels):
            return None
        if self.space is Space.l2:
            scores = [math.sqrt(max(-s, 0.0)) for s in scores]
        if q.offset:
            labels, scores = labels[q.offset :], scores[q.offset :]
        hits = [Hit(ids[lab], sc) for lab, sc in zip(labels, scores, strict=True)]  # type: ignore[arg-type]
        if q.with_payload or q.with_vector:
            self._attach(hits, np.asarray(labels, dtype=np.int64), q.with_payload, q.with_vector)
        return QueryResult(hits, "hnsw")

    def _search_one(self, q: Query) -> QueryResult:
        mat = self._prepare_one(q.vector)
        fast = self._search_fast(q, mat)
        if fast is not None:
            return fast
        k = q.limit + q.offset
        allowed = None
        if q.filter is not None:
            where, params = compile_filter(q.filter)
            allowed = self.points.select_labels(where, params)
            if len(allowed) == 0:
                return QueryResult([], "exact_filtered")
        hits, strategy = self._plan(mat, k, q.params, allowed)
        return self._finish(q, hits.labels[0], hits.scores[0], strategy)

    def _plan(self, queries: F32, k: int, params: SearchParams | None, allowed: I64 | None) -> tuple[Hits, str]:
        """Pick the strategy and run it. Returns labels/scores, higher score is better."""
        index, upto, n = self._index, self._indexed_upto, self._next_label
        alive = self._st.alive
        exact = params is not None and params.exact
        if exact or index is None or not index.is_trained:
            return self._exact(queries, k, allowed, n, alive), "exact" if allowed is None else "exact_filtered"
        if allowed is not None and len(allowed) <= self.options.exact_filter_threshold:
            return self._exact(queries, k, allowed, n, alive), "exact_filtered"
        cfg = self.config.index
        kind = "hnsw" if isinstance(cfg, HnswIndexConfig) else "ivf_pq"
        ip = IndexParams(ef=params.ef if params else None, nprobe=params.nprobe if params else None)
        rescore = isinstance(cfg, IvfPqIndexConfig) and (
            params.rescore if params and params.rescore is not None else cfg.rescore
        )
        k_ann = k
        if rescore and isinstance(cfg, IvfPqIndexConfig):
            over = params.oversampling if params and params.oversampling else cfg.oversampling
            k_ann = max(k, int(np.ceil(k * over)))
        ann = index.search(queries, k_ann, ip, allowed)
        if rescore:
            ann = self._rescore(queries, ann, k)
        if n > upto:  # rows not yet in the index are searched exactly
            mask = alive[upto:n].copy()
            if allowed is not None:
                mask &= np.isin(np.arange(upto, n), allowed)
            if mask.any():
                fresh = exact_search(
                    self.vectors.view()[upto:n],
                    np.arange(upto, n, dtype=np.int64),
                    queries,
                    k,
                    self.space,
                    mask,
                )
                ann = _merge(ann, fresh, k)
        ann = _drop_dead(ann, alive)
        strategy = kind if allowed is None else f"{kind}_filtered"
        if allowed is not None:
            short = (ann.labels[:, :k] >= 0).sum(axis=1) < min(k, len(allowed))
            if short.any():  # the graph walk ran out under the filter: fall back to exact
                ann = self._exact(queries, k, allowed, n, alive)
                strategy = "exact_fallback"
        return Hits(ann.labels[:, :k], ann.scores[:, :k]), strategy

    def _exact(self, queries: F32, k: int, allowed: I64 | None, n: int, alive: npt.NDArray[np.bool_]) -> Hits:
        if allowed is None:
            return exact_search(self.vectors.view()[:n], None, queries, k, self.space, alive[:n])
        allowed = allowed[allowed < n]
        return exact_search(self.vectors.take(allowed), allowed, queries, k, self.space, alive[allowed])

    def _rescore(self, queries: F32, hits: Hits, k: int) -> Hits:
        """Rerank ANN candidates with the full-precision vectors."""
        scores = gather_scores(self.vectors.buffer(), queries, hits.labels, self.space)
        pos, sc = top_k(scores, k)
        return Hits(np.take_along_axis(hits.labels, pos, axis=1), sc)

    def _finish(self, q: Query, labels: I64, scores: F32, strategy: str) -> QueryResult:
        # plain lists: for ~10 hits this beats a chain of tiny numpy operations
        pairs = [(lab, sc) for lab, sc in zip(labels.tolist(), scores.tolist(), strict=True) if lab >= 0][q.offset :]
        if self.space is Space.l2:
            pairs = [(lab, math.sqrt(max(-sc, 0.0))) for lab, sc in pairs]
        if q.score_threshold is not None:
            t = q.score_threshold
            pairs = [p for p in pairs if (p[1] <= t if self.space is Space.l2 else p[1] >= t)]
        ids = self._st.ids
        hits = [Hit(ids[lab], sc) for lab, sc in pairs]  # type: ignore[arg-type]
        if q.with_payload or q.with_vector:
            self._attach(
                hits, np.fromiter((lab for lab, _ in pairs), np.int64, len(pairs)), q.with_payload, q.with_vector
            )
        return QueryResult(hits, strategy)

    def _attach(self, hits: list[Hit], labels: I64, with_payload: bool, with_vector: bool) -> None:
        if with_payload and len(labels):
            pays = self.points.payloads(labels.tolist())
            for h, lab in zip(hits, labels.tolist(), strict=True):
                text = pays.get(lab)
                h.payload = orjson.loads(text) if text else {}
        if with_vector and len(labels):
            vecs = self.vectors.take(labels)
            for h, v in zip(hits, vecs, strict=True):
                h.vector = v.tolist()

    # -- bulk loads ------------------------------------------------------------------------

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

    # -- indexing (runs on the indexer thread) ---------------------------------------------

    def _index_step(self) -> bool:
        """Do one unit of background work; False when there is nothing to do."""
        cfg = self.config.index
        if isinstance(cfg, FlatIndexConfig) or self._paused:
            return False
        if isinstance(cfg, IvfPqIndexConfig):
            live = self.count
            ivf = self._index
            if ivf is None and live >= cfg.train_threshold:
                self._build_ivf(cfg)
                return True
            if isinstance(ivf, IvfPqIndex) and live >= cfg.retrain_growth * max(ivf.trained_on, 1):
                self._build_ivf(cfg)
                return True
            if ivf is None:
                return False
        index = self._index
        if index is None or self._indexed_upto >= self._next_label:
            return False
        self._phase = "indexing"
        lo = self._indexed_upto
        hi = min(self._next_label, lo + _INDEX_CHUNK)
        labels = np.arange(lo, hi, dtype=np.int64)
        labels = labels[self._st.alive[lo:hi]]
        if len(labels):
            index.add(self.vectors.take(labels), labels)
        self._indexed_upto = hi
        self._recheck_dead(index, labels)
        self._dirty = True
        return True

    def _recheck_dead(self, index: VectorIndex, labels: I64) -> None:
        dead = labels[~self._st.alive[labels]]
        if len(dead):
            index.remove(dead)

    def _build_ivf(self, cfg: IvfPqIndexConfig) -> None:
        self._phase = "training"
        hi = self._next_label
        labels = np.flatnonzero(self._st.alive[:hi]).astype(np.int64)
        nlist = cfg.nlist or auto_nlist(len(labels))
        rng = np.random.default_rng(len(labels))
        n_sample = min(len(labels), max(_IVF_SAMPLE_PER_LIST * nlist, 20000))
        sample = np.sort(rng.choice(labels, size=n_sample, replace=False))
        new = IvfPqIndex(self.dim, self.space, nlist=nlist, m=cfg.m, nbits=cfg.nbits, nprobe=cfg.nprobe)
        new.train(self.vectors.take(sample))
        for s in range(0, len(labels), 50000):
            chunk = labels[s : s + 50000]
            new.add(self.vectors.take(chunk), chunk)
        new.trained_on = len(labels)
        self._index, self._indexed_upto = new, hi
        self._recheck_dead(new, labels)
        self._dirty = True
        log.info("collection %s: trained %s on %d vectors", self.name, new.spec, len(labels))

    def _save_index(self) -> None:
        index = self._index
        if index is None or not self._dirty:
            return
        upto = self._indexed_upto
        self._dirty = False
        staged = self.dir / "index.staging"
        if staged.exists():
            shutil.rmtree(staged)
        index.save(staged)
        saved_at = time.time()
        (staged / "manifest.json").write_text(json.dumps({"labels_upto": upto, "seq": self._seq, "saved_at": saved_at}))
        for f in staged.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(staged)
        replace_dir(staged, self.dir / "index")
        self.last_optimized = saved_at

    # -- introspection ---------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        cfg = self.config.index
        index = self._index
        pending = int(self._st.alive[self._indexed_upto : self._next_label].sum()) if index is not None else 0
        indexed = index.count if index is not None else 0
        state = self._phase if pending or self._phase == "training" else "ready"
        idx_info: dict[str, Any] = {"type": cfg.type, "state": state, "indexed": indexed, "pending": pending}
        if self._paused:
            idx_info["state"] = "paused"
        if isinstance(cfg, IvfPqIndexConfig):
            ivf = index if isinstance(index, IvfPqIndex) else None
            idx_info.update(
                trained=ivf is not None,
                trained_on=ivf.trained_on if ivf else 0,
                spec=ivf.spec if ivf else None,
                train_threshold=cfg.train_threshold,
                code_bytes_per_vector=ivf.code_bytes_per_vector() if ivf else None,
            )
            if ivf is None:
                idx_info["state"] = "untrained" if self._phase != "training" else "training"
        if isinstance(cfg, FlatIndexConfig):
            idx_info.update(indexed=self.count, pending=0, state="ready")
        index_dir = self.dir / "index"
        try:
            index_disk = sum(f.stat().st_size for f in index_dir.iterdir()) if index_dir.exists() else 0
        except FileNotFoundError:  # the indexer swapped in a newly saved index while we listed it
            index_disk = 0
        memory = {
            "vectors": {"ram": self.vectors.ram_bytes(), "disk": self.vectors.disk_bytes()},
            "index": {"ram": index.ram_bytes() if index is not None else 0, "disk": index_disk},
            "payload": {"ram": 0, "disk": self.points.disk_bytes()},
            "ids": {
                "ram": int(self._st.alive.nbytes + 8 * len(self._st.ids) + 100 * len(self._st.label_of)),
                "disk": 0,
            },
        }
        segments = [{"type": "indexed", "points": indexed, "labels_upto": self._indexed_upto}]
        if not isinstance(cfg, FlatIndexConfig):
            segments.append({"type": "pending", "points": pending})
        return {
            "name": self.name,
            "config": self.config.model_dump(mode="json"),
            "count": self.count,
            "status": "green" if state == "ready" else "yellow",
            "seq": self._seq,
            "index": idx_info,
            "segments": segments,
            "memory": memory,
            "last_write": self.last_write,
            "last_optimized": self.last_optimized,
        }


def _merge(a: Hits, b: Hits, k: int) -> Hits:
    labels = np.concatenate([a.labels, b.labels], axis=1)
    scores = np.concatenate([a.scores, b.scores], axis=1)
    # a label can be in both when the indexer moved it while we searched: keep its best copy
    order = np.argsort(-scores, axis=1, kind="stable")
    labels = np.take_along_axis(labels, order, axis=1)
    scores = np.take_along_axis(scores, order, axis=1)
    for row in range(len(labels)):
        _, first = np.unique(labels[row], return_index=True)
        dup = np.ones(labels.shape[1], bool)
        dup[first] = False
        dup &= labels[row] >= 0
        if dup.any():
            scores[row, dup] = -np.inf
            labels[row, dup] = -1
    order = np.argsort(-scores, axis=1, kind="stable")[:, : max(k, a.labels.shape[1])]
    return Hits(np.take_along_axis(labels, order, axis=1), np.take_along_axis(scores, order, axis=1))


def _drop_dead(h: Hits, alive: npt.NDArray[np.bool_]) -> Hits:
    if alive[h.labels].all():  # the norm (index removals are synchronous with deletes); -1 reads the last slot
        if (h.labels >= 0).all() or not alive[-1]:
            return h
    valid = h.labels >= 0
    dead = valid & ~alive[np.where(valid, h.labels, 0)]
    if not dead.any():
        return h
    scores = np.where(dead, -np.inf, h.scores).astype(np.float32)
    labels = np.where(dead, -1, h.labels)
    order = np.argsort(-scores, axis=1, kind="stable")
    return Hits(np.take_along_axis(labels, order, axis=1), np.take_along_axis(scores, order, axis=1))


class _Indexer(threading.Thread):
    """Background worker: index new rows, (re)train, persist. One per collection."""

    def __init__(self, coll: Collection) -> None:
        super().__init__(name=f"indexer-{coll.name}", daemon=True)
        self.coll = coll
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
        coll = self.coll
        while not self._halt.is_set():
            try:
                busy = coll._index_step()
            except Exception:
                log.exception("collection %s: indexing step failed", coll.name)
                busy = False
                self._halt.wait(1.0)
            now = time.monotonic()
            if coll._dirty and (now - self._last_save >= coll.options.save_max_seconds or not busy):
                if busy or now - self._last_save >= coll.options.save_idle_seconds:
                    self._save()
            if not busy:
                coll._phase = "ready"
                self._wake.wait(timeout=coll.options.save_idle_seconds)
                self._wake.clear()

    def _save(self) -> None:
        try:
            self.coll._save_index()
        except Exception:
            log.exception("collection %s: saving the index failed", self.coll.name)
        self._last_save = time.monotonic()
