"""A multivector field: token vectors per point, MUVERA FDE candidates, exact MaxSim ranking.

The field keeps the points' token vectors in `TokenFiles` (one CSR slice per label; an empty slice
where a point omits this vector) and, for `type: muvera`, one fixed dimensional encoding (FDE) per
point in an inner `DenseField` (metric dot, the field's `index`), which the background indexer
indexes like any dense vector. `type: maxsim` keeps no FDEs and always scans exactly.

Write: validate the token sets, encode their FDEs, then (under the collection's write lock) append
the tokens and the FDE rows, each fsynced before the collection's SQLite commit.

Search: query FDE -> `oversampling * (limit + offset)` candidates from the FDE planner (a filter
narrows them the same way) -> exact MaxSim over their stored tokens. When that many candidates would
cover every point the filter allows, exact MaxSim over those points is both cheaper and exact.

The encoder's random matrices are written to `muvera/` when the collection is created, so documents
and later queries get identical encodings across restarts and code changes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from index import planner
from index.backends.base import F32, I64
from index.contract import CollectionOptions, Query
from index.dense import DenseBatch, DenseField
from index.errors import DimensionMismatch, InvalidConfig, InvalidVector, LimitExceeded
from index.fsutil import fsync_dir
from index.labels import LabelMap, grow_bools
from index.tokens import TokenFiles
from nestor_client.models import (
    FlatIndexConfig,
    IvfPqIndexConfig,
    MaxSimConfig,
    Metric,
    MuveraConfig,
    SearchParams,
    VectorConfig,
)
from quantization.base import load_state, save_state
from quantization.maxsim import topk_scores
from quantization.muvera import MuveraEncoder

__all__ = ["MultiVectorField", "check_multivector", "save_encoder_state"]

_MAX_FDE_DIM = 65536  # the largest vector a collection takes
_ENCODE_TOKENS = 32768  # tokens encoded per step: bounds the encoder's [tokens, r_reps * d_proj] temporaries
_F16_MAX = 65504.0
_STATE_DIR = "muvera"
# Small collections may search exactly (below `exact_below` documents), when exact MaxSim over all of them
# scores no more tokens than MUVERA's candidates plus the FDE search, which costs about as much as scoring
# `_FDE_SEARCH_TOKENS` tokens (measured on pypi-minilm-tokens: query FDE 0.7 ms + IVF-PQ 0.4 ms, and 0.25 us
# per 14-token query x stored token; benchmarks/MUVERA.md).
_FDE_SEARCH_TOKENS = 4096
# The FDE index when a MUVERA vector names none: 4-bit PQ codes scanned by fast-scan, candidates straight to
# the MaxSim rescore (an FDE rerank from float32 rows would cost more than it saves). It trains at 256
# documents, so a small collection gets it early; below that the FDEs are scanned exactly.
DEFAULT_FDE_INDEX = IvfPqIndexConfig(rescore=False, train_threshold=256)
Bools = npt.NDArray[np.bool_]


def check_multivector(cfg: VectorConfig, index_given: bool) -> VectorConfig:
    """Reject nonsense multivector settings (InvalidConfig); returns the config as it will be stored."""
    mv = cfg.multivector
    if mv is None:
        return cfg
    if cfg.metric is Metric.l2:
        raise InvalidConfig(
            "multi-vector fields rank by MaxSim, a sum of inner products: use metric dot, "
            "or cosine (which normalises every token vector)"
        )
    if isinstance(mv, MaxSimConfig):
        if index_given and not isinstance(cfg.index, FlatIndexConfig):
            raise InvalidConfig("a maxsim vector scores every document exactly and takes no index: omit index")
        return cfg.model_copy(update={"index": FlatIndexConfig()})
    if mv.d_proj is not None and mv.d_proj > cfg.dim and "d_proj" not in mv.model_fields_set:
        mv = mv.model_copy(update={"d_proj": None})  # the default projection is wider than these tokens
        cfg = cfg.model_copy(update={"multivector": mv})
    if mv.d_proj is not None and mv.d_proj > cfg.dim:
        raise InvalidConfig(
            f"d_proj {mv.d_proj} exceeds the token dimension {cfg.dim}: use null to keep the tokens unprojected"
        )
    if not index_given:
        cfg = cfg.model_copy(update={"index": DEFAULT_FDE_INDEX})
    raw = mv.r_reps * (1 << mv.k_sim) * (mv.d_proj or cfg.dim)
    if mv.final_dim is not None and mv.final_dim >= raw:
        raise InvalidConfig(f"final_dim {mv.final_dim} must be below the FDE's {raw} dimensions")
    if (mv.final_dim or raw) > _MAX_FDE_DIM:
        raise InvalidConfig(
            f"the FDE would have {raw} dimensions (r_reps * 2**k_sim * d_proj), over the maximum "
            f"{_MAX_FDE_DIM}: lower them, or set final_dim"
        )
    return cfg


def _encoder(cfg: VectorConfig) -> MuveraEncoder | None:
    mv = cfg.multivector
    if not isinstance(mv, MuveraConfig):
        return None
    return MuveraEncoder(cfg.dim, mv.k_sim, mv.d_proj, mv.r_reps, mv.final_dim, mv.seed, mv.fill_empty)


def save_encoder_state(directory: Path, cfg: VectorConfig) -> None:
    """Draw and persist a MUVERA field's random matrices (at creation, before `collection.json`)."""
    encoder = _encoder(cfg)
    if encoder is None:
        return
    state = directory / _STATE_DIR
    save_state(state, *encoder.state(include_matrices=True))
    for f in state.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    fsync_dir(state)


def _load_encoder(directory: Path, cfg: VectorConfig) -> MuveraEncoder | None:
    mv = cfg.multivector
    if not isinstance(mv, MuveraConfig):
        return None
    enc = MuveraEncoder.from_state(*load_state(directory / _STATE_DIR))
    ours = (cfg.dim, mv.k_sim, mv.d_proj, mv.r_reps, mv.final_dim, mv.seed, mv.fill_empty)
    if ours != (enc.dim, enc.k_sim, enc.d_proj, enc.r_reps, enc.final_dim, enc.seed, enc.fill_empty):
        raise RuntimeError(f"{directory / _STATE_DIR} does not match the multivector config")
    return enc


@dataclass(frozen=True, slots=True)
class MultiBatch:
    tokens: F32  # [sum(counts), dim], validated (and normalised under cosine)
    counts: I64  # tokens per point; 0 where a point omits this vector
    fdes: DenseBatch | None
    present: Bools | None


class MultiVectorField:
    kind = "multivector"

    def __init__(
        self, name: str, directory: Path, config: VectorConfig, options: CollectionOptions, labels: LabelMap
    ) -> None:
        mv = config.multivector
        assert mv is not None
        self.name = name
        self.dir = directory
        self.config = config
        self.labels = labels
        self.dim = config.dim
        self.metric = config.metric
        self.max_tokens = mv.max_tokens
        self.oversampling = mv.oversampling if isinstance(mv, MuveraConfig) else None
        self.exact_below = mv.exact_below if isinstance(mv, MuveraConfig) else 0
        self.encoder = _load_encoder(directory, config)
        self.fde: DenseField | None = None
        self._alive: Bools = labels.alive.copy()
        if self.encoder is not None:
            inner = VectorConfig(dim=self.encoder.fde_dim, metric=Metric.dot, index=config.index)
            self.fde = DenseField(name, directory, inner, options, labels)
        try:
            self.tokens = TokenFiles(directory, self.dim, mv.token_dtype, labels.n)
        except BaseException:
            if self.fde is not None:
                self.fde.close()
            raise

    @property
    def alive(self) -> Bools:
        return self.fde.alive if self.fde is not None else self._alive

    @alive.setter
    def alive(self, value: Bools) -> None:
        if self.fde is not None:
            self.fde.alive = value
        else:
            self._alive = value

    def dense_fields(self) -> list[DenseField]:
        return [] if self.fde is None else [self.fde]

    def open_index(self) -> None:
        if self.fde is not None:
            self.fde.open_index()

    # -- writes ----------------------------------------------------------------------------

    def prepare_batch(self, given: Sequence[F32 | None], n: int, *, stored: bool = False) -> MultiBatch:
        """`stored`: token vectors read back from another copy (already normalised): kept as they are."""
        present = np.fromiter((x is not None for x in given), bool, n)
        sets = [np.asarray(x, dtype=np.float32) for x in given if x is not None]
        names = [f"point #{i}" for i in np.flatnonzero(present).tolist()]
        tokens, counts_present = self.validate(names, sets, normalize=not stored)
        counts = np.zeros(n, np.int64)
        counts[present] = counts_present
        fdes = None
        if self.fde is not None:
            rows = np.zeros((n, self.fde.dim), np.float32)
            rows[present] = self._encode_documents(tokens, counts_present)
            fdes = DenseBatch(rows, None if present.all() else present)
        return MultiBatch(tokens, counts, fdes, None if present.all() else present)

    def missing(self, n: int) -> MultiBatch:
        present = np.zeros(n, bool)
        fdes = None if self.fde is None else self.fde.missing(n)
        return MultiBatch(np.empty((0, self.dim), np.float32), np.zeros(n, np.int64), fdes, present)

    def validate(self, names: list[str], sets: Sequence[F32], *, normalize: bool = True) -> tuple[F32, I64]:
        """Check token sets and stack them into one [T, dim] float32 matrix plus per-set counts."""
        what0 = f"vector {self.name!r}, " if self.name else ""
        for what, x in zip(names, sets, strict=True):
            if x.ndim != 2:
                raise InvalidVector(f"{what0}{what}: a multivector is a list of token vectors, got shape {x.shape}")
            if x.shape[1] != self.dim:
                raise DimensionMismatch(
                    f"{what0}{what}: expected token vectors of dimension {self.dim}, got {x.shape[1]}"
                )
            if len(x) == 0:
                raise InvalidVector(f"{what0}{what}: a multivector needs at least one token vector")
            if len(x) > self.max_tokens:
                raise LimitExceeded(f"{what0}{what}: {len(x)} token vectors exceeds max_tokens {self.max_tokens}")
        counts = np.fromiter((len(x) for x in sets), np.int64, len(sets))
        if not len(sets):
            return np.empty((0, self.dim), np.float32), counts
        tokens = np.concatenate([np.asarray(x, dtype=np.float32) for x in sets])
        ends = np.cumsum(counts)

        def where(row: int) -> str:
            s = int(np.searchsorted(ends, row, side="right"))
            return f"{what0}{names[s]}: token vector #{row - int(ends[s] - counts[s])}"

        finite = np.isfinite(tokens).all(axis=1)
        if not finite.all():
            raise InvalidVector(f"{where(int(np.flatnonzero(~finite)[0]))} contains NaN or Inf")
        if self.metric is Metric.cosine:
            norms = np.linalg.norm(tokens, axis=1, keepdims=True)
            if (norms == 0).any():
                raise InvalidVector(f"{where(int(np.flatnonzero(norms[:, 0] == 0)[0]))} is all zeros (no direction)")
            if normalize:
                tokens /= norms
        elif self.tokens.dtype == "float16" and float(np.abs(tokens).max()) > _F16_MAX:
            bad = int(np.flatnonzero(np.abs(tokens).max(axis=1) > _F16_MAX)[0])
            raise InvalidVector(f"{where(bad)} has values beyond the float16 token storage's +-{_F16_MAX:g}")
        return tokens, counts

    def _encode_documents(self, tokens: F32, counts: I64) -> F32:
        assert self.encoder is not None
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

    def append(self, batch: MultiBatch, start: int) -> None:
        if self.tokens.n_docs != start:
            raise RuntimeError(f"vector {self.name!r}: token store holds {self.tokens.n_docs} labels, expected {start}")
        self.tokens.append(batch.tokens, batch.counts)
        if self.fde is not None and batch.fdes is not None:
            try:
                self.fde.append(batch.fdes, start)
            except BaseException:
                self.tokens.truncate(start)
                raise

    def truncate(self, rows: int) -> None:
        self.tokens.truncate(rows)
        if self.fde is not None:
            self.fde.truncate(rows)

    def commit(self, start: int, batch: MultiBatch, old: I64) -> None:
        end = start + len(batch.counts)
        alive = grow_bools(self.alive, end)
        alive[start:end] = True if batch.present is None else batch.present
        alive[old] = False
        self.alive = alive

    def forget(self, labels: I64) -> None:
        self.alive[labels] = False

    def remove_from_index(self, labels: I64) -> None:
        if self.fde is not None:
            self.fde.remove_from_index(labels)

    def token_rows(self, label: int) -> list[list[float]]:
        return self.tokens.snapshot().tokens(label).tolist()  # type: ignore[no-any-return]

    @property
    def count(self) -> int:
        return int(self.alive[: self.labels.n].sum())

    def store_files(self, labels: int) -> list[tuple[Path, int]]:
        """The files of record a snapshot at `labels` copies: (path, committed bytes, or -1 for all)."""
        state = self.dir / _STATE_DIR
        out = [(f, -1) for f in sorted(state.iterdir()) if f.is_file()] if state.is_dir() else []
        out += self.tokens.committed_files(labels)
        if self.fde is not None:
            out += self.fde.store_files(labels)
        return out

    def close(self) -> None:
        if self.fde is not None:
            self.fde.close()
        self.tokens.close()

    # -- reads -----------------------------------------------------------------------------

    def candidates(self, k: int, params: SearchParams | None) -> int:
        """FDE candidates a search for the top `k` reranks: `oversampling * k`."""
        over = params.oversampling if params is not None and params.oversampling else self.oversampling
        return max(k, math.ceil(k * (over or 1.0)))

    def search(self, q: Query, allowed_of: Callable[[], I64 | None]) -> planner.Ranked:
        qt, _ = self.validate(["query"], [np.asarray(q.vector, dtype=np.float32)])
        k = q.limit + q.offset
        allowed = allowed_of()
        if allowed is not None and len(allowed) == 0:
            return [], [], "maxsim_filtered"
        n_cand = self.candidates(k, q.params)
        live = self.count if allowed is None else len(allowed)
        exact = q.params is not None and q.params.exact
        if self.fde is not None and not exact and q.params is not None and q.params.rescore is False:
            # the FDE candidates alone, by FDE score: a pipeline's prefetch, which a MaxSim rescore follows
            labels, scores = self._fde_candidates(self.fde, qt, k, q.params, allowed)
            strategy = "muvera_fde" if allowed is None else "muvera_fde_filtered"
        elif self.fde is None or exact or self._exact_cheaper(live, n_cand):
            labels, scores = self._exact(qt, k, allowed)
            strategy = "maxsim" if allowed is None else "maxsim_filtered"
        else:
            labels, scores = self._muvera(self.fde, qt, k, n_cand, q.params, allowed)
            strategy = "muvera" if allowed is None else "muvera_filtered"
        return labels.tolist(), scores.tolist(), strategy

    def _exact_cheaper(self, live: int, n_cand: int) -> bool:
        """Whether exact MaxSim over the `live` documents costs no more than MUVERA's `n_cand` candidates.

        Both score tokens with the same native kernel; MUVERA also encodes the query's FDE and searches the
        FDE index, which costs about `_FDE_SEARCH_TOKENS` token scorings. Only below the config's `exact_below`
        documents (10,000 by default): past that, MUVERA is the plan (its cost does not grow with the
        collection, the scan's does)."""
        if live <= n_cand:
            return True
        if live >= self.exact_below:
            return False
        per_doc = self.tokens.n_tokens / max(1, self.tokens.n_docs)
        return per_doc * live <= per_doc * n_cand + _FDE_SEARCH_TOKENS

    def _muvera(
        self, fde_field: DenseField, qt: F32, k: int, n_cand: int, params: SearchParams | None, allowed: I64 | None
    ) -> tuple[I64, F32]:
        assert self.encoder is not None
        fde = self.encoder.encode_query(qt)
        inner = SearchParams(  # the IVF-PQ rerank factor stays the index's own
            ef=params.ef if params else None,
            nprobe=params.nprobe if params else None,
            rescore=params.rescore if params else None,
        )
        hits, _ = planner.plan(fde_field, fde_field.prepare(fde[None, :]), n_cand, inner, allowed)
        cand = hits.labels[0]
        cand = cand[cand >= 0]
        # taken after the plan: every label it returned was committed, so the snapshot holds its tokens
        scores = self.tokens.snapshot().scores(qt, cand)
        return topk_scores(scores, k, cand)

    def _fde_candidates(
        self, fde_field: DenseField, qt: F32, k: int, params: SearchParams, allowed: I64 | None
    ) -> tuple[I64, F32]:
        assert self.encoder is not None
        fde = self.encoder.encode_query(qt)
        inner = SearchParams(ef=params.ef, nprobe=params.nprobe)  # the FDE index's own rerank, if any
        hits, _ = planner.plan(fde_field, fde_field.prepare(fde[None, :]), k, inner, allowed)
        keep = hits.labels[0] >= 0
        return hits.labels[0][keep], hits.scores[0][keep]

    def _exact(self, qt: F32, k: int, allowed: I64 | None) -> tuple[I64, F32]:
        n = self.labels.n
        alive = self.alive
        snap = self.tokens.snapshot()
        if allowed is None:
            scores = snap.scores(qt, n_docs=n)
            scores[~alive[: len(scores)]] = -np.inf
            labels, top = topk_scores(scores, k)
        else:
            allowed = allowed[allowed < n]
            allowed = allowed[alive[allowed]]
            labels, top = topk_scores(snap.scores(qt, allowed), k, allowed)
        keep = top > -np.inf
        return labels[keep], top[keep]
