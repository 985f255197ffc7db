"""Multi-vector documents: MUVERA fixed dimensional encodings find candidates, exact MaxSim ranks them.

A `MultiVectorCollection` composes a single-vector `Collection` over one FDE per document (metric
dot, the collection's `index`), which keeps ids, labels, payloads, filters, durability and the
background indexer, with `TokenFiles`: the documents' token vectors under the same labels.

Write: validate the token sets, encode their FDEs, append the tokens (fsync), then upsert the FDEs
through the inner collection (vectors fsync, SQLite commit). Writes are serialised here, so the
token files and `vectors.f32` hand out the same labels; recovery truncates both to the committed
label count.

Search: query FDE -> `oversampling * (limit + offset)` candidates from the inner planner (a filter
narrows them the same way) -> exact MaxSim over their stored tokens -> top `limit`. When that many
candidates would cover every document the filter allows, exact MaxSim over those documents is both
cheaper and exact. The `maxsim` type always searches that way; its inner collection only keeps a
1-wide placeholder row per document.

The encoder's random matrices are written to `muvera/` (JSON plus .npy) when the collection is
created, so documents and later queries get identical encodings across restarts and code changes.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from index.backends.base import F32, I64
from index.collection import Collection, CollectionOptions, Hit, PointIdT, Query, QueryResult, WriteResult, check_batch
from index.errors import DimensionMismatch, InvalidConfig, InvalidVector, LimitExceeded
from index.fsutil import atomic_write_bytes, fsync_dir
from index.tokens import TokenFiles
from nestor_client.models import (
    CollectionConfig,
    Filter,
    FlatIndexConfig,
    MaxSimConfig,
    Metric,
    MuveraConfig,
    SearchParams,
)
from quantization.base import load_state, save_state
from quantization.maxsim import topk_scores
from quantization.muvera import MuveraEncoder

__all__ = ["AnyCollection", "MultiVectorCollection", "check_config", "create_collection", "open_collection"]

_MAX_FDE_DIM = 65536  # the largest vector a collection takes
_ENCODE_TOKENS = 32768  # tokens encoded per step: bounds the encoder's [tokens, r_reps * d_proj] temporaries
_F16_MAX = 65504.0
_STATE_DIR = "muvera"


# -- configuration -------------------------------------------------------------------------


def check_config(config: CollectionConfig) -> CollectionConfig:
    """Reject nonsense combinations (InvalidConfig) and return the config as it will be stored."""
    mv = config.multivector
    if mv is None:
        return config
    if config.metric is Metric.l2:
        raise InvalidConfig(
            "multi-vector collections rank by MaxSim, a sum of inner products: use metric dot, "
            "or cosine (which normalises every token vector)"
        )
    if isinstance(mv, MaxSimConfig):
        if "index" in config.model_fields_set and not isinstance(config.index, FlatIndexConfig):
            raise InvalidConfig("a maxsim collection scores every document exactly and takes no index: omit index")
        return config.model_copy(update={"index": FlatIndexConfig()})
    if mv.d_proj is not None and mv.d_proj > config.dim:
        raise InvalidConfig(
            f"d_proj {mv.d_proj} exceeds the token dimension {config.dim}: use null to keep the tokens unprojected"
        )
    raw = mv.r_reps * (1 << mv.k_sim) * (mv.d_proj or config.dim)
    if mv.final_dim is not None and mv.final_dim >= raw:
        raise InvalidConfig(f"final_dim {mv.final_dim} must be below the FDE's {raw} dimensions")
    if (mv.final_dim or raw) > _MAX_FDE_DIM:
        raise InvalidConfig(
            f"the FDE would have {raw} dimensions (r_reps * 2**k_sim * d_proj), over the maximum "
            f"{_MAX_FDE_DIM}: lower them, or set final_dim"
        )
    return config


def _encoder(config: CollectionConfig) -> MuveraEncoder | None:
    mv = config.multivector
    if not isinstance(mv, MuveraConfig):
        return None
    return MuveraEncoder(config.dim, mv.k_sim, mv.d_proj, mv.r_reps, mv.final_dim, mv.seed, mv.fill_empty)


def _inner_config(config: CollectionConfig, encoder: MuveraEncoder | None) -> CollectionConfig:
    """The single-vector collection underneath: one FDE per document, scored by inner product."""
    dim = 1 if encoder is None else encoder.fde_dim
    return CollectionConfig(dim=dim, metric=Metric.dot, index=config.index)


def _same_encoder(encoder: MuveraEncoder, config: CollectionConfig) -> bool:
    mv = config.multivector
    assert isinstance(mv, MuveraConfig)
    ours = (config.dim, mv.k_sim, mv.d_proj, mv.r_reps, mv.final_dim, mv.seed, mv.fill_empty)
    stored = (encoder.dim, encoder.k_sim, encoder.d_proj, encoder.r_reps, encoder.final_dim, encoder.seed)
    return ours == (*stored, encoder.fill_empty)


# -- the catalog's entry points ------------------------------------------------------------


def create_collection(
    name: str, directory: Path, config: CollectionConfig, options: CollectionOptions
) -> AnyCollection:
    if config.multivector is None:
        return Collection.create(name, directory, config, options)
    return MultiVectorCollection.create(name, directory, config, options)


def open_collection(name: str, directory: Path, options: CollectionOptions) -> AnyCollection:
    config = CollectionConfig.model_validate_json((directory / "collection.json").read_bytes())
    if config.multivector is None:
        return Collection(name, directory, config, options)
    return MultiVectorCollection.open(name, directory, config, options)


# -- the collection ------------------------------------------------------------------------


class MultiVectorCollection:
    def __init__(
        self,
        name: str,
        directory: Path,
        config: CollectionConfig,
        options: CollectionOptions,
        encoder: MuveraEncoder | None,
    ) -> None:
        mv = config.multivector
        assert mv is not None
        self.name = name
        self.dir = directory
        self.config = config
        self.options = options
        self.dim = config.dim
        self.metric = config.metric
        self.max_tokens = mv.max_tokens
        self.oversampling = mv.oversampling if isinstance(mv, MuveraConfig) else None
        self.encoder = encoder
        self._write_lock = threading.Lock()
        self.inner = Collection(name, directory, _inner_config(config, encoder), options)
        try:
            self.tokens = TokenFiles(directory, self.dim, mv.token_dtype, self.inner.committed()[0])
        except BaseException:
            self.inner.close()
            raise

    @classmethod
    def create(
        cls, name: str, directory: Path, config: CollectionConfig, options: CollectionOptions
    ) -> MultiVectorCollection:
        config = check_config(config)
        encoder = _encoder(config)
        directory.mkdir(parents=True)
        if encoder is not None:  # before collection.json: a crash in between leaves a folder the catalog drops
            state = directory / _STATE_DIR
            save_state(state, *encoder.state(include_matrices=True))
            for f in state.iterdir():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            fsync_dir(state)
        atomic_write_bytes(directory / "collection.json", config.model_dump_json().encode())
        fsync_dir(directory.parent)
        return cls(name, directory, config, options, encoder)

    @classmethod
    def open(
        cls, name: str, directory: Path, config: CollectionConfig, options: CollectionOptions
    ) -> MultiVectorCollection:
        encoder = None
        if isinstance(config.multivector, MuveraConfig):
            encoder = MuveraEncoder.from_state(*load_state(directory / _STATE_DIR))
            if not _same_encoder(encoder, config):
                raise RuntimeError(f"{directory / _STATE_DIR} does not match the multivector config of {name}")
        return cls(name, directory, config, options, encoder)

    def close(self) -> None:
        with self._write_lock:
            self.inner.close()
            self.tokens.close()

    # -- writes ----------------------------------------------------------------------------

    def upsert(
        self,
        ids: list[PointIdT],
        multivectors: Sequence[F32],
        payloads: list[dict[str, Any] | None] | None = None,
    ) -> WriteResult:
        """Insert or overwrite documents, each a [tokens, dim] matrix, atomically; returns once durable."""
        check_batch(ids, multivectors, payloads, "multivectors")
        tokens, counts = self._prepare([f"point {pid!r}" for pid in ids], multivectors)
        if not ids:
            return WriteResult(0, self.inner.seq)
        fdes = self._encode_documents(tokens, counts)
        with self._write_lock:
            if self.tokens.n_docs != self.inner.committed()[0]:
                raise RuntimeError(f"collection {self.name}: token store and vector store disagree on labels")
            start = self.tokens.append(tokens, counts)
            try:
                return self.inner.upsert(ids, fdes, payloads)
            except BaseException:
                self.tokens.truncate(start)
                raise

    def _prepare(self, names: list[str], sets: Sequence[F32]) -> tuple[F32, I64]:
        """Validate token sets and stack them into one [T, dim] float32 matrix plus per-set counts."""
        for what, x in zip(names, sets, strict=True):
            if x.ndim != 2:
                raise InvalidVector(f"{what}: a multivector is a list of token vectors, got shape {x.shape}")
            if x.shape[1] != self.dim:
                raise DimensionMismatch(f"{what}: expected token vectors of dimension {self.dim}, got {x.shape[1]}")
            if len(x) == 0:
                raise InvalidVector(f"{what}: a multivector needs at least one token vector")
            if len(x) > self.max_tokens:
                raise LimitExceeded(
                    f"{what}: {len(x)} token vectors exceeds the collection's max_tokens {self.max_tokens}"
                )
        counts = np.fromiter((len(x) for x in sets), np.int64, len(sets))
        if not len(sets):
            return np.empty((0, self.dim), np.float32), counts
        tokens = np.concatenate([np.asarray(x, dtype=np.float32) for x in sets])
        ends = np.cumsum(counts)

        def where(row: int) -> str:
            s = int(np.searchsorted(ends, row, side="right"))
            return f"{names[s]}: token vector #{row - int(ends[s] - counts[s])}"

        finite = np.isfinite(tokens).all(axis=1)
        if not finite.all():
            raise InvalidVector(f"{where(int(np.flatnonzero(~finite)[0]))} contains NaN or Inf")
        if self.metric is Metric.cosine:
            norms = np.linalg.norm(tokens, axis=1, keepdims=True)
            if (norms == 0).any():
                raise InvalidVector(f"{where(int(np.flatnonzero(norms[:, 0] == 0)[0]))} is all zeros (no direction)")
            tokens /= norms
        elif self.tokens.dtype == "float16" and float(np.abs(tokens).max()) > _F16_MAX:
            bad = int(np.flatnonzero(np.abs(tokens).max(axis=1) > _F16_MAX)[0])
            raise InvalidVector(f"{where(bad)} has values beyond the float16 token storage's +-{_F16_MAX:g}")
        return tokens, counts

    def _encode_documents(self, tokens: F32, counts: I64) -> F32:
        if self.encoder is None:
            return np.zeros((len(counts), 1), np.float32)
        off = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        n = len(counts)
        out = np.empty((n, self.encoder.fde_dim), np.float32)
        d0 = 0
        while d0 < n:
            d1 = int(np.searchsorted(off, off[d0] + _ENCODE_TOKENS, side="right")) - 1
            d1 = min(max(d1, d0 + 1), n)
            a, b = int(off[d0]), int(off[d1])
            out[d0:d1] = self.encoder.encode_documents(tokens[a:b], off[d0 : d1 + 1] - a)
            d0 = d1
        return out

    def delete(self, ids: list[PointIdT]) -> WriteResult:
        return self.inner.delete(ids)

    def delete_where(self, flt: Filter) -> WriteResult:
        return self.inner.delete_where(flt)

    # -- reads -----------------------------------------------------------------------------

    @property
    def count(self) -> int:
        return self.inner.count

    @property
    def seq(self) -> int:
        return self.inner.seq

    def count_where(self, flt: Filter | None) -> int:
        return self.inner.count_where(flt)

    def get(self, ids: list[PointIdT], *, with_payload: bool = True, with_vector: bool = False) -> list[Hit]:
        hits = self.inner.get(ids, with_payload=with_payload, with_vector=False)
        if with_vector:
            for h in hits:
                label = self.inner.label_of(h.id)
                if label is not None:  # a snapshot taken after the lookup always covers the label
                    h.multivector = self.tokens.snapshot().tokens(label).tolist()
        return hits

    def is_cheap(self, q: Query) -> bool:
        return False  # encoding and rescoring cost more than a thread hop

    def search(self, queries: list[Query]) -> list[QueryResult]:
        """Answer queries whose `vector` holds the query's token vectors [t, dim]."""
        return [self._search_one(q) for q in queries]

    def candidates(self, k: int, params: SearchParams | None) -> int:
        """FDE candidates a search for the top `k` reranks: `oversampling * k`."""
        over = params.oversampling if params is not None and params.oversampling else self.oversampling
        return max(k, math.ceil(k * (over or 1.0)))

    def _search_one(self, q: Query) -> QueryResult:
        qt, _ = self._prepare(["query"], [np.asarray(q.vector, dtype=np.float32)])
        k = q.limit + q.offset
        allowed = None
        if q.filter is not None:
            allowed = self.inner.labels_where(q.filter)
            if len(allowed) == 0:
                return QueryResult([], "maxsim_filtered")
        n_cand = self.candidates(k, q.params)
        live = self.count if allowed is None else len(allowed)
        exact = q.params is not None and q.params.exact
        if self.encoder is None or exact or live <= n_cand:
            labels, scores = self._exact(qt, k, allowed)
            strategy = "maxsim" if allowed is None else "maxsim_filtered"
        else:
            labels, scores = self._muvera(qt, k, n_cand, q.params, allowed)
            strategy = "muvera" if allowed is None else "muvera_filtered"
        return self._finish(q, labels, scores, strategy)

    def _muvera(
        self, qt: F32, k: int, n_cand: int, params: SearchParams | None, allowed: I64 | None
    ) -> tuple[I64, F32]:
        assert self.encoder is not None
        fde = self.encoder.encode_query(qt)
        inner = SearchParams(  # the IVF-PQ rerank factor stays the index's own
            ef=params.ef if params else None,
            nprobe=params.nprobe if params else None,
            rescore=params.rescore if params else None,
        )
        hits, _ = self.inner.plan(fde[None, :], n_cand, inner, allowed)
        cand = hits.labels[0]
        cand = cand[cand >= 0]
        # taken after the plan: every label it returned was committed, so the snapshot holds its tokens
        scores = self.tokens.snapshot().scores(qt, cand)
        return topk_scores(scores, k, cand)

    def _exact(self, qt: F32, k: int, allowed: I64 | None) -> tuple[I64, F32]:
        n, alive = self.inner.committed()
        snap = self.tokens.snapshot()
        if allowed is None:
            scores = snap.scores(qt, n_docs=n)
            scores[~alive] = -np.inf
            labels, top = topk_scores(scores, k)
        else:
            allowed = allowed[allowed < n]
            labels, top = topk_scores(snap.scores(qt, allowed), k, allowed)
        keep = top > -np.inf
        return labels[keep], top[keep]

    def _finish(self, q: Query, labels: I64, scores: F32, strategy: str) -> QueryResult:
        labels, scores = labels[q.offset :], scores[q.offset :]
        if q.score_threshold is not None:
            keep = scores >= q.score_threshold
            labels, scores = labels[keep], scores[keep]
        hits = self.inner.make_hits(labels, scores.tolist(), with_payload=q.with_payload)
        if q.with_vector:
            snap = self.tokens.snapshot()
            for h, label in zip(hits, labels.tolist(), strict=True):
                h.multivector = snap.tokens(label).tolist()
        return QueryResult([h for h in hits if h.id is not None], strategy)

    # -- introspection ---------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        info = self.inner.info()
        info["config"] = self.config.model_dump(mode="json")
        mv = self.config.multivector
        assert mv is not None
        if self.encoder is None:  # the placeholder index is an implementation detail
            info["index"] = {"type": "maxsim", "state": "ready", "indexed": self.count, "pending": 0}
            info["segments"] = [{"type": "exact", "points": self.count}]
        info["index"]["multivector"] = {
            "type": mv.type,
            "fde_dim": None if self.encoder is None else self.encoder.fde_dim,
            "token_dtype": self.tokens.dtype,
            "tokens": self.tokens.n_tokens,
            "bytes_per_token": self.tokens.bytes_per_token,
            "token_bytes": self.tokens.token_bytes(),
        }
        info["memory"]["tokens"] = {"ram": self.tokens.ram_bytes(), "disk": self.tokens.disk_bytes()}
        return info


AnyCollection = Collection | MultiVectorCollection
