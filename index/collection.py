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

import hashlib
import json
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Sized
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
from index.encoded import EncodedIndex
from index.errors import DimensionMismatch, DuplicateId, InvalidRequest, InvalidVector
from index.filters import compile_filter
from index.fsutil import atomic_write_bytes, fsync_dir, replace_dir
from index.query_sample import QuerySample
from index.storage import PointStore, decode_pid, encode_pid
from index.vectors import VectorStore
from nestor_client.models import (
    CollectionConfig,
    Filter,
    FlatIndexConfig,
    FunnelStage,
    HnswIndexConfig,
    IvfPqIndexConfig,
    LeanVecReduceConfig,
    MatryoshkaReduceConfig,
    Metric,
    SearchParams,
)
from quantization.matryoshka import funnel

__all__ = ["Collection", "CollectionOptions", "Hit", "Query", "QueryResult", "WriteResult", "check_batch"]

log = logging.getLogger("nestor.collection")

PointIdT = int | str
_INDEX_CHUNK = 4096
_CHEAP_PENDING = 1024  # unindexed rows a search may scan exactly and still count as cheap
_IVF_SAMPLE_PER_LIST = 64
_FIT_SAMPLE = 50_000  # rows the learned transforms are fitted on
_RESERVOIR_REFIT = 256  # refit LeanVec-OOD once the query reservoir has this many (then doubled) rows


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


def check_batch(
    ids: list[PointIdT], vectors: Sized, payloads: list[dict[str, Any] | None] | None, what: str = "vectors"
) -> None:
    """The shape checks of an upsert batch: one vector (and payload, if any) per id, no id twice."""
    if len(ids) != len(vectors):
        raise InvalidVector(f"{len(ids)} ids but {len(vectors)} {what}")
    if payloads is not None and len(payloads) != len(ids):
        raise InvalidVector(f"{len(ids)} ids but {len(payloads)} payloads")
    if len(set(ids)) != len(ids):
        seen: set[PointIdT] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise DuplicateId(f"id {dup!r} appears more than once in the batch")


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
        self.vectors = VectorStore(directory / "vectors.f32", self.dim, rows=self._next_label, on_disk=config.on_disk)
        red = config.reduce
        reservoir = red.reservoir_size if isinstance(red, LeanVecReduceConfig) and red.query_reservoir else 0
        self.query_sample = QuerySample(directory, self.dim, reservoir)
        self._fitted_sample: tuple[int, int] = (0, 0)  # (posted-sample version, reservoir fill) of the last fit
        self._st = self._load_state()
        self.last_write: float | None = None
        self.last_optimized: float | None = None
        self._phase = "ready"
        self._index: VectorIndex | None = None
        self._index_disk = 0  # bytes of the saved index, noted when it is saved or loaded
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
        if isinstance(cfg, FlatIndexConfig) and not self.config.compressed:
            return
        if manifest.exists():
            try:
                man = json.loads(manifest.read_text())
                _verify_checksums(index_dir, man.get("files"))
                loaded: VectorIndex
                if self.config.compressed:
                    enc = EncodedIndex.load(index_dir, self.config, self.space, threads=self.options.index_threads)
                    self._fitted_sample = (enc.sample_version, enc.query_sample_rows)
                    loaded = enc
                elif isinstance(cfg, HnswIndexConfig):
                    hnsw = HnswIndex.load(index_dir, threads=self.options.index_threads)
                    hnsw.ef = cfg.ef
                    loaded = hnsw
                else:
                    assert isinstance(cfg, IvfPqIndexConfig)
                    ivf = IvfPqIndex.load(index_dir)
                    ivf.nprobe = cfg.nprobe
                    loaded = ivf
                upto = min(int(man["labels_upto"]), self._next_label)
                dead = np.flatnonzero(~self._st.alive[:upto]).astype(np.int64)
                loaded.remove(dead)
                self._index, self._indexed_upto = loaded, upto
                self._index_disk = _dir_bytes(index_dir)
                self.last_optimized = float(man.get("saved_at", 0.0)) or None
                return
            except Exception:  # a damaged index is derived data: rebuild it from the store
                log.exception("collection %s: cannot load its index, rebuilding from the store", self.name)
        self._index = self._new_index()
        self._indexed_upto = 0

    def _new_index(self) -> VectorIndex | None:
        cfg = self.config.index
        if isinstance(cfg, HnswIndexConfig) and not self.config.compressed:
            return HnswIndex(
                self.dim,
                self.space,
                m=cfg.m,
                ef_construction=cfg.ef_construction,
                ef=cfg.ef,
                threads=self.options.index_threads,
            )
        return None  # IVF-PQ and compressed indexes appear once trained

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
        check_batch(ids, vectors, payloads)
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
        old = [prev for pid in ids if (prev := st.label_of.get(pid)) is not None]
        old_arr = np.asarray(old, dtype=np.int64)
        st.ids.extend(ids)
        st.alive[start:end] = True
        st.alive[old_arr] = False  # before the ids go: a lock-free reader that saw "alive" still finds an id
        for off, pid in enumerate(ids):
            st.label_of[pid] = start + off
        for prev in old:
            st.ids[prev] = None
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
        st.alive[np.asarray(labels, dtype=np.int64)] = False  # first, as in _apply_upsert
        for label in labels:
            pid = st.ids[label]
            st.ids[label] = None
            if pid is not None:
                st.label_of.pop(pid, None)

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
            self._check_params(q.params)
            if q.filter is None:
                p = q.params
                knobs = None if p is None else (p.ef, p.nprobe, p.oversampling, p.rescore, p.exact)
                groups.setdefault((q.limit + q.offset, knobs), []).append(i)
            else:
                results[i] = self._search_one(q)
        for members in groups.values():
            first = queries[members[0]]
            mat = self._prepare(np.stack([queries[i].vector for i in members]))
            if self.query_sample.reservoir_size:
                self.query_sample.offer(mat)
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
            or index is None
            or self._indexed_upto != self._next_label
            or (p is not None and p.exact)
        ):
            return None
        k = q.limit + q.offset
        strategy = "hnsw"
        if isinstance(index, HnswIndex):
            got = index.search_one(mat, k, p.ef if p is not None else None)
        elif isinstance(index, (EncodedIndex, IvfPqIndex)) and index.is_trained:
            got, strategy = self._search_fast_shortlist(index, mat, k, p), self._kind()
        else:
            return None
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
        return QueryResult(hits, strategy)

    def _search_fast_shortlist(
        self, index: EncodedIndex | IvfPqIndex, mat: F32, k: int, p: SearchParams | None
    ) -> tuple[list[int], list[float]] | None:
        """One query through a compressed index and its rerank, in as few numpy calls as possible."""
        k_ann, rescore, stages = self._rerank_plan(index, k, p)
        if stages:
            return None
        ip = IndexParams(ef=p.ef if p is not None else None, nprobe=p.nprobe if p is not None else None)
        if rescore and isinstance(index, EncodedIndex) and index.reranks_natively:
            done = index.search_reranked(mat, k, k_ann, ip, self.vectors.buffer())
            return None if done is None else (done[0].tolist(), done[1].tolist())
        got = index.search_one(mat, k_ann, ip)
        if got is None:
            return None
        labels, scores = got
        if rescore:
            scores = self._candidate_scores(index, mat, labels[None, :])[0]
            if len(labels) > k:
                top = np.argpartition(-scores, k - 1)[:k]
                labels, scores = labels[top], scores[top]
            order = np.argsort(-scores, kind="stable")
            labels, scores = labels[order], scores[order]
        return labels.tolist(), scores.tolist()

    def _check_params(self, p: SearchParams | None) -> None:
        if p is not None and p.funnel is not None and not isinstance(self.config.reduce, MatryoshkaReduceConfig):
            raise InvalidRequest("a funnel needs a collection with reduce.type='matryoshka'")

    def _search_one(self, q: Query) -> QueryResult:
        self._check_params(q.params)
        mat = self._prepare_one(q.vector)
        if self.query_sample.reservoir_size:
            self.query_sample.offer(mat)
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
        kind = self._kind()
        ip = IndexParams(ef=params.ef if params else None, nprobe=params.nprobe if params else None)
        k_ann, rescore, stages = self._rerank_plan(index, k, params)
        ann = index.search(queries, k_ann, ip, allowed)
        if stages and isinstance(index, EncodedIndex):
            ann = self._funnel(index, queries, ann, stages)
        if rescore:
            ann = self._rescore(index, queries, ann, k)
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

    def _kind(self) -> str:
        """The strategy name of an ANN search: the index type, prefixed by the compression."""
        c = self.config
        parts = [b.type for b in (c.reduce, c.quantize) if b is not None]
        return "_".join([*parts, c.index.type])

    def _rerank_plan(self, index: VectorIndex, k: int, p: SearchParams | None) -> tuple[int, bool, list[FunnelStage]]:
        """(candidates to take from the index, whether to rescore them, funnel stages to run first)."""
        cfg = self.config
        if isinstance(index, EncodedIndex):
            red = cfg.reduce
            stages = list(p.funnel) if p is not None and p.funnel is not None else []
            if isinstance(red, MatryoshkaReduceConfig):
                stages = stages if p is not None and p.funnel is not None else list(red.funnel)
                last = red.dim
                for i, st in enumerate(stages):
                    if not (last <= st.dim if i == 0 else last < st.dim) or st.dim > self.dim:
                        raise InvalidRequest(f"funnel dims must increase from reduce.dim={red.dim} up to {self.dim}")
                    last = st.dim
            elif stages:
                raise InvalidRequest("a funnel needs a collection with reduce.type='matryoshka'")
            rescore = cfg.rerank.enabled if p is None or p.rescore is None else p.rescore
            over = (p.oversampling if p is not None else None) or cfg.rerank.oversampling or index.default_oversampling
            k_ann = max(k, math.ceil(k * over)) if rescore or stages else k
            if stages and isinstance(red, MatryoshkaReduceConfig) and stages[0].dim == red.dim:
                k_ann, stages = (
                    max(k, stages[0].limit),
                    stages[1:],
                )  # a stage at the index's own dim sizes the shortlist
            return k_ann, rescore or bool(stages), stages
        if p is not None and p.funnel is not None:
            raise InvalidRequest("a funnel needs a collection with reduce.type='matryoshka'")
        ivf = cfg.index
        if not isinstance(ivf, IvfPqIndexConfig):
            return k, False, []
        rescore = p.rescore if p is not None and p.rescore is not None else ivf.rescore
        over = p.oversampling if p is not None and p.oversampling else ivf.oversampling
        return (max(k, math.ceil(k * over)) if rescore else k), rescore, []

    def _funnel(self, index: EncodedIndex, queries: F32, hits: Hits, stages: list[FunnelStage]) -> Hits:
        """Matryoshka funnel: rescore the shortlist on longer and longer prefixes, keep each stage's limit."""
        width = max(stages[-1].limit, 1)
        out = Hits(np.full((len(queries), width), -1, np.int64), np.full((len(queries), width), -np.inf, np.float32))
        plan = [(st.dim, st.limit) for st in stages]
        for row in range(len(queries)):
            cand = hits.labels[row][hits.labels[row] >= 0]
            if not len(cand):
                continue
            rotated = index.rotate(self.vectors.take(cand))
            ids, sc = funnel(rotated, index.rotate(queries[row : row + 1])[0], plan)
            out.labels[row, : len(ids)] = cand[ids]
            out.scores[row, : len(ids)] = sc
        return out

    def _candidate_scores(self, index: VectorIndex, queries: F32, labels: I64) -> F32:
        """Exact scores [nq, m] of candidate labels (-1 padded): the int8 rerank store if the index keeps one,
        else faiss's by-index kernel over the float32 rows (no gathered copy)."""
        if isinstance(index, EncodedIndex) and index.has_int8_store:
            return index.rerank_scores(queries, labels)
        return gather_scores(self.vectors.buffer(), queries, labels, self.space)

    def _rescore(self, index: VectorIndex, queries: F32, hits: Hits, k: int) -> Hits:
        """Rerank ANN candidates with the full-precision vectors (or the int8 rerank store)."""
        pos, sc = top_k(self._candidate_scores(index, queries, hits.labels), k)
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
            if len(pays) < len(hits):
                pays = self._payloads_after_overwrite(hits, labels, pays)
            for h, lab in zip(hits, labels.tolist(), strict=True):
                text = pays.get(lab)
                h.payload = orjson.loads(text) if text else {}
        if with_vector and len(labels):
            vecs = self.vectors.take(labels)
            for h, v in zip(hits, vecs, strict=True):
                h.vector = v.tolist()

    def _payloads_after_overwrite(
        self, hits: list[Hit], labels: I64, pays: dict[int, str | None]
    ) -> dict[int, str | None]:
        """Payloads for labels whose row SQLite has already moved to a newer label.

        An overwrite commits its rows, then (still under the write lock) moves the in-memory map to the
        new labels. A reader in between holds the old label, whose row is gone. Waiting for the write
        lock lets that upsert finish; the point's current row is then read through its new label."""
        with self._write_lock:
            pass
        out = dict(pays)
        for h, lab in zip(hits, labels.tolist(), strict=True):
            if lab not in out and (now := self._st.label_of.get(h.id)) is not None:
                out[lab] = self.points.payloads([now]).get(now)
        return out

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
        if self._paused or (isinstance(cfg, FlatIndexConfig) and not self.config.compressed):
            return False
        if self.config.compressed:
            enc = self._index
            live, training = self.count, self.config.training
            if enc is None:
                if live < training.threshold:
                    return False
                self._build_encoded()
                return True
            assert isinstance(enc, EncodedIndex)
            if live >= training.refit_growth * max(enc.trained_on, 1) or self._sample_stale(enc):
                self._build_encoded()
                return True
        elif isinstance(cfg, IvfPqIndexConfig):
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
        def make(labels: I64) -> IvfPqIndex:
            nlist = cfg.nlist or auto_nlist(len(labels))
            new = IvfPqIndex(self.dim, self.space, nlist=nlist, m=cfg.m, nbits=cfg.nbits, nprobe=cfg.nprobe)
            new.train(self.vectors.take(self._sample(labels, max(_IVF_SAMPLE_PER_LIST * nlist, 20000))))
            new.trained_on = len(labels)
            return new

        self._rebuild(make)

    def _build_encoded(self) -> None:
        """Fit the transforms on a sample (and the query sample), then build the compressed index."""
        red = self.config.reduce
        ood = isinstance(red, LeanVecReduceConfig) and red.mode == "ood"

        def make(labels: I64) -> EncodedIndex:
            new = EncodedIndex(self.config, self.space, threads=self.options.index_threads)
            queries = self.query_sample.rows() if ood else None
            fingerprint = self._sample_fingerprint()
            # codecs without a learned projection only need a mean or a range: a smaller sample does
            size = _FIT_SAMPLE if red is not None else _FIT_SAMPLE // 4
            new.train(self.vectors.take(self._sample(labels, size)), queries, n_total=len(labels))
            new.sample_version, new.query_sample_rows = fingerprint
            self._fitted_sample = fingerprint
            return new

        self._rebuild(make)

    def _sample(self, labels: I64, size: int) -> I64:
        rng = np.random.default_rng(len(labels))
        return np.sort(rng.choice(labels, size=min(len(labels), size), replace=False))

    def _rebuild(self, make: Any) -> None:
        """Train a new index on the live rows, fill it, and swap it in; the old one serves until then."""
        self._phase = "training"
        hi = self._next_label
        labels = np.flatnonzero(self._st.alive[:hi]).astype(np.int64)
        new = make(labels)
        for s in range(0, len(labels), _INDEX_CHUNK * 4):
            chunk = labels[s : s + _INDEX_CHUNK * 4]
            new.add(self.vectors.take(chunk), chunk)
        self._index, self._indexed_upto = new, hi
        self._recheck_dead(new, labels)
        self._dirty = True
        log.info("collection %s: trained %s on %d vectors", self.name, new.spec, len(labels))

    # -- the query sample (LeanVec-OOD) ----------------------------------------------------

    def add_query_sample(self, vectors: F32, *, replace: bool = False) -> int:
        """Keep example queries for fitting the query map; the next optimization refits with them."""
        red = self.config.reduce
        if not (isinstance(red, LeanVecReduceConfig) and red.mode == "ood"):
            raise InvalidRequest("a query sample is only used by collections with reduce leanvec, mode 'ood'")
        n = self.query_sample.add(self._prepare(vectors), replace=replace)
        self._indexer.wake()
        return n

    def _sample_fingerprint(self) -> tuple[int, int]:
        qs = self.query_sample
        return qs.version, qs.filled

    def _sample_stale(self, enc: EncodedIndex) -> bool:
        red = self.config.reduce
        if not (isinstance(red, LeanVecReduceConfig) and red.mode == "ood"):
            return False
        version, filled = self._sample_fingerprint()
        fitted_version, fitted_filled = self._fitted_sample
        grown = red.query_reservoir and filled >= max(_RESERVOIR_REFIT, 2 * fitted_filled)
        return version != fitted_version or (grown and filled > fitted_filled)

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
        self.query_sample.save_reservoir()
        saved_at = time.time()
        files: dict[str, str] = {}
        size = 0
        for f in sorted(p for p in staged.rglob("*") if p.is_file()):
            with open(f, "rb") as fh:
                files[f.relative_to(staged).as_posix()] = hashlib.file_digest(fh, "sha256").hexdigest()
                os.fsync(fh.fileno())
                size += os.fstat(fh.fileno()).st_size
        manifest = {"labels_upto": upto, "seq": self._seq, "saved_at": saved_at, "files": files}
        (staged / "manifest.json").write_text(json.dumps(manifest))
        for d in [staged, *(p for p in staged.rglob("*") if p.is_dir())]:
            fsync_dir(d)
        replace_dir(staged, self.dir / "index")
        self._index_disk = size + (self.dir / "index" / "manifest.json").stat().st_size
        self.last_optimized = saved_at

    # -- snapshots (index/snapshots.py packs the files) ------------------------------------

    def backup_store(self, target: Path) -> tuple[int, int]:
        """Copy the SQLite store of record to `target`; returns the committed (label count, seq) it holds.

        Taken under the write lock, so no batch is half in and the copy matches the label count. Rows
        below that count in `vectors.f32` never change again (labels are never reused), so the caller
        copies them after the lock is released and writers wait only for the database copy.
        """
        import sqlite3  # only snapshots need a second connection

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
            return self._next_label, self._seq

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
        if isinstance(cfg, IvfPqIndexConfig) and not self.config.compressed:
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
        plain_flat = isinstance(cfg, FlatIndexConfig) and not self.config.compressed
        if plain_flat:
            idx_info.update(indexed=self.count, pending=0, state="ready")
        if isinstance(index, EncodedIndex):
            idx_info.update(
                spec=index.spec,
                trained=True,
                trained_on=index.trained_on,
                trained_at=index.trained_at,
                train_threshold=self.config.training.threshold,
                query_sample=len(self.query_sample),
            )
        elif self.config.compressed:
            idx_info.update(
                trained=False,
                train_threshold=self.config.training.threshold,
                spec=None,
                query_sample=len(self.query_sample),
            )
            idx_info["state"] = "untrained" if self._phase != "training" else "training"
        parts = _index_memory(index)
        index_disk = self._index_disk
        ids_ram = int(self._st.alive.nbytes + 8 * len(self._st.ids) + 100 * len(self._st.label_of))
        memory = {
            "vectors": {"ram": self.vectors.ram_bytes(), "disk": self.vectors.disk_bytes()},
            "graph": {"ram": parts["graph"], "disk": index_disk},  # the index's files are all counted here
            "codes": {"ram": parts["codes"], "disk": 0},
            "rerank": {"ram": parts["rerank"], "disk": 0},
            "transform": {"ram": parts["transform"], "disk": 0},
            "payload": {"ram": 0, "disk": self.points.disk_bytes()},
            "ids": {"ram": ids_ram + parts["ids"], "disk": 0},
        }
        rerank = "off"
        if self.config.compressed or isinstance(cfg, IvfPqIndexConfig):
            rerank = "int8 codes in RAM" if parts["rerank"] else "float32 vectors"
        placement = {
            "vectors": "disk (memory-mapped)" if self.config.on_disk else "RAM, and disk",
            "index": "RAM, saved to disk",
            "rerank": rerank,
            "payload": "disk (SQLite)",
        }
        if plain_flat:  # an exact scan over everything: every point counts as indexed
            indexed = self.count
        segments = [{"type": "indexed", "points": indexed, "labels_upto": self._indexed_upto}]
        if not plain_flat:
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
            "placement": placement,
            "last_write": self.last_write,
            "last_optimized": self.last_optimized,
        }


def _verify_checksums(directory: Path, files: dict[str, str] | None) -> None:
    """Refuse an index directory whose files do not match the sha256 sums its manifest recorded."""
    if files is None:
        return  # saved before checksums existed
    for rel, digest in files.items():
        with open(directory / rel, "rb") as fh:
            if hashlib.file_digest(fh, "sha256").hexdigest() != digest:
                raise ValueError(f"{directory / rel}: checksum mismatch, the file is damaged")


def _dir_bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


def _index_memory(index: VectorIndex | None) -> dict[str, int]:
    """Measured RAM of an index by part: graph, codes, rerank store, transforms, id maps."""
    out = {"graph": 0, "codes": 0, "rerank": 0, "transform": 0, "ids": 0}
    if index is None:
        return out
    memory = getattr(index, "memory", None)
    if memory is not None:
        for k, v in memory().items():
            out[k] = out.get(k, 0) + int(v)
    else:
        out["codes"] = index.ram_bytes()
    return out


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
            if coll._dirty:
                # Idle means no write for a while, not just "caught up": small steady writes leave the
                # indexer caught up most of the time, and saving a 100k graph every 2 s halved throughput.
                idle = coll.options.save_idle_seconds
                quiet = coll.last_write is None or time.time() - coll.last_write >= idle
                due = now - self._last_save >= coll.options.save_max_seconds
                if due or (not busy and quiet and now - self._last_save >= idle):
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
