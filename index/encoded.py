"""An ANN index over compressed vectors: reduce (LeanVec, Matryoshka), then quantize (binary, int8).

`EncodedIndex` is a `VectorIndex` that owns the transforms and codes: `fit` learns them from a sample
of the collection (and, for LeanVec-OOD, a query sample). `index.factory` picks the backend that
serves the codes (its docstring has the ladder: Nestor's graph for HNSW, faiss for the rest).

Its scores are approximate; the collection reranks its shortlist with the full vectors (or their
int8 codes). All state is saved as JSON plus `.npy` and faiss's own files, never pickle.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from index.backends.base import F32, I64, Hits, IndexParams, Space, empty_hits
from index.backends.binary import BinaryIndex
from index.backends.faiss_float import FaissFloatIndex
from index.backends.graph import GraphIndex
from index.backends.hnsw import HnswIndex
from index.backends.ivfpq import IvfPqIndex
from nestor_client.models import (
    BinaryQuantizeConfig,
    Int8QuantizeConfig,
    IvfPqIndexConfig,
    LeanVecReduceConfig,
    MatryoshkaReduceConfig,
    VectorConfig,
)
from quantization.base import load_state, save_state
from quantization.binary import BinaryQuantizer
from quantization.leanvec import LeanVecTransform
from quantization.matryoshka import MatryoshkaTransform
from quantization.projection_select import SPECS, choose_projection
from quantization.scalar import Int8Quantizer

__all__ = ["EncodedIndex", "default_oversampling"]

Reducer = LeanVecTransform | MatryoshkaTransform
_ASYMMETRIC_FETCH = 4  # Hamming candidates per asymmetric-rescored candidate


class _Rows:
    """A growable array with one row per label (labels are dense and only grow)."""

    def __init__(self, width: int, dtype: Any) -> None:
        self.data: npt.NDArray[Any] = np.zeros((0, width), dtype)
        self.n = 0

    def put(self, labels: I64, rows: npt.NDArray[Any]) -> None:
        top = int(labels.max()) + 1 if len(labels) else 0
        if top > len(self.data):
            grown = np.zeros((max(top, 2 * len(self.data), 1024), self.data.shape[1]), self.data.dtype)
            grown[: len(self.data)] = self.data
            self.data = grown
        self.data[labels] = rows
        self.n = max(self.n, top)

    def used(self) -> npt.NDArray[Any]:
        return self.data[: self.n]

    @classmethod
    def of(cls, arr: npt.NDArray[Any]) -> _Rows:
        r = cls(arr.shape[1], arr.dtype)
        r.data, r.n = arr, len(arr)
        return r


class EncodedIndex:
    def __init__(self, config: VectorConfig, space: Space, *, threads: int | None = None) -> None:
        self.config = config
        self.dim = config.dim
        self.space = space
        self.threads = threads or os.cpu_count() or 1
        self.reducer: Reducer | None = None
        self.binary: BinaryQuantizer | None = None
        self.inner: Any = None  # the backend, built by train()
        self.trained_on = 0
        self.query_sample_rows = 0  # reservoir rows of the query sample the last fit used (LeanVec-OOD)
        self.sample_version = 0  # fingerprint of the posted query sample the last fit used
        self.trained_at = 0.0
        self.projection: dict[str, Any] | None = None  # LeanVec-OOD: the held-out check's choice and evidence
        self._side: _Rows | None = None  # label -> all code planes (asymmetric scoring)
        self._scales: _Rows | None = None
        # int8 search codes for cosine/l2: one global scale and +128 make them faiss's "direct" 8-bit codes,
        # searched by L2, which the affine map preserves (per-dimension ranges would not)
        self._affine: float | None = None
        self.int8: Int8Quantizer | None = None  # the int8 rerank store's quantizer ...
        self._int8_rows: _Rows | None = None  # ... and its codes of the full vectors, by label

    # -- what the backend sees ---------------------------------------------------------------

    @property
    def inner_space(self) -> Space:
        red = self.config.reduce
        if isinstance(red, MatryoshkaReduceConfig) or isinstance(self.reducer, MatryoshkaTransform):
            return Space.ip  # renormalised prefixes: their inner product is a cosine
        return self.space

    @property
    def queries_as_is(self) -> bool:
        """`encode(x, queries=True)` is x itself as float32: no reduction, binary or affine codes."""
        return self.reducer is None and self.binary is None and self._affine is None

    @property
    def asymmetric(self) -> bool:
        q = self.config.quantize
        return isinstance(q, BinaryQuantizeConfig) and q.query == "asymmetric"

    @property
    def spec(self) -> str:
        parts: list[str] = []
        red = self.config.reduce
        chosen = self.projection["chosen"] if self.projection else None
        if isinstance(red, LeanVecReduceConfig) and chosen is not None:
            parts.append(SPECS[chosen].format(dim=red.dim))
        elif isinstance(red, LeanVecReduceConfig):
            parts.append(f"LeanVec{red.dim}{'-OOD' if red.mode == 'ood' else '-rescaled' if red.rescale else ''}")
        elif isinstance(red, MatryoshkaReduceConfig):
            parts.append(f"{'PCA-' if red.rotate else ''}Matryoshka{red.dim}")
        q = self.config.quantize
        if isinstance(q, BinaryQuantizeConfig):
            s = "ivf" if isinstance(self.config.index, IvfPqIndexConfig) else self.config.index.type
            parts.append(f"Binary{q.bits}b-{s}{'-asym' if q.query == 'asymmetric' else ''}")
        elif isinstance(q, Int8QuantizeConfig):
            parts.append("SQ8")
        if isinstance(self.inner, IvfPqIndex):
            parts.append(self.inner.spec)
        elif isinstance(self.inner, FaissFloatIndex):
            parts.append(self.inner.spec.replace(",SQ8", "").replace("SQ8", "Flat"))
        elif isinstance(self.inner, (HnswIndex, GraphIndex)):
            parts.append(f"HNSW{self.inner.m}")
        return ",".join(parts)

    def _reduce(self, x: F32, *, queries: bool) -> F32:
        r = self.reducer
        if r is None:
            return x
        if isinstance(r, LeanVecTransform) and queries and self.space is Space.ip:
            # queries come validated from the collection: `transform_queries`'s checks would double the cost
            return (x @ r.query_matrix).astype(np.float32, copy=False)
        return r.transform(x).astype(np.float32, copy=False)

    def encode(self, x: F32, *, queries: bool = False) -> npt.NDArray[Any]:
        """What the backend indexes (or is queried with) for these full vectors."""
        return self.encode_reduced(self._reduce(x, queries=queries), queries=queries)

    def encode_reduced(self, reduced: F32, *, queries: bool = False) -> npt.NDArray[Any]:
        """What the backend indexes (or is queried with) for these reduced vectors."""
        if self.binary is not None:
            return self.binary.sign_plane(self.binary.encode(reduced)[0])
        if self._affine is not None:
            scaled = reduced * np.float32(self._affine) + np.float32(128.0)
            # A query is clipped to the codes' box too (not rounded): faiss's 8-bit direct scan mangles a
            # coordinate outside 0..255, so a vector beyond the training sample's range lost even its own
            # top 1 (88 of 2,000 at dim 16, with any oversampling); clipped, the rerank sets the order right.
            got = np.clip(scaled if queries else np.rint(scaled), 0.0, 255.0)
            return np.ascontiguousarray(got, dtype=np.float32)
        return np.ascontiguousarray(reduced, dtype=np.float32)

    # -- VectorIndex -------------------------------------------------------------------------

    @property
    def count(self) -> int:
        return 0 if self.inner is None else int(self.inner.count)

    @property
    def is_trained(self) -> bool:
        return self.inner is not None and bool(self.inner.is_trained)

    def fit(self, sample: F32, queries: F32 | None = None) -> F32:
        """Fit the reduction (and the binary quantizer) on `sample`; returns the sample reduced.

        `index.factory.train_encoded` then picks the backend for these codes and attaches it."""
        red, q = self.config.reduce, self.config.quantize
        if isinstance(red, LeanVecReduceConfig):
            if red.mode == "ood" and queries is not None and len(queries) and self.space is Space.ip:
                # OOD only where it beats ID (or a blend, or PCA-Matryoshka) on held-out queries
                self.reducer, choice = choose_projection(sample, queries, red.dim, solver=red.solver)
                self.projection = choice.info()
            else:
                lv = LeanVecTransform(red.dim, red.mode, solver=red.solver, rescale=red.rescale)
                if red.mode == "ood" and (queries is None or len(queries) == 0):
                    queries = sample  # no query sample yet: fall back to the data's own distribution
                lv.fit(sample, queries if red.mode == "ood" else None)
                self.reducer = lv
        elif isinstance(red, MatryoshkaReduceConfig):
            self.reducer = MatryoshkaTransform(red.dim, red.rotate).fit(sample)
        reduced = self._reduce(sample, queries=False)
        if isinstance(q, BinaryQuantizeConfig):
            self.binary = BinaryQuantizer(centre=True, bits=q.bits).fit(reduced)
            if self.asymmetric:
                self._side = _Rows(self.binary.code_size, np.uint8)
                self._scales = _Rows(q.bits, np.float32)
        if self.config.rerank.store == "int8":
            self.int8 = Int8Quantizer().fit(sample)
            self._int8_rows = _Rows(self.dim, np.int8)
        return reduced

    def sign_codes(self, reduced: F32) -> npt.NDArray[np.uint8]:
        """The Hamming backend's codes of reduced vectors, in slices (the float temporaries are larger)."""
        assert self.binary is not None
        if not len(reduced):
            return np.empty((0, self.binary.plane_bytes), np.uint8)
        return np.concatenate(
            [self.binary.sign_plane(self.binary.encode(reduced[i : i + 8192])[0]) for i in range(0, len(reduced), 8192)]
        )

    def use_direct_codes(self, reduced: F32) -> None:
        """Search int8 as faiss's "direct" 8-bit codes: one global scale and +128, compared by L2."""
        self._affine = 127.0 / max(float(np.abs(reduced).max()), 1e-30)

    def attach(self, inner: Any, n_total: int) -> None:
        """Make `inner` (trained, empty) the backend that serves these codes."""
        self.inner = inner
        self.trained_on = n_total
        self.trained_at = time.time()

    def add(self, vectors: F32, labels: I64) -> None:
        if self.int8 is not None and self._int8_rows is not None:
            self._int8_rows.put(labels, self.int8.transform(vectors))
        reduced = self._reduce(vectors, queries=False)
        if self.binary is None:
            self.inner.add(self.encode_reduced(reduced), labels)
            return
        codes, scales = self.binary.encode(reduced)
        if self._side is not None and self._scales is not None:
            self._side.put(labels, codes)
            self._scales.put(labels, scales)
        self.inner.add(self.binary.sign_plane(codes), labels)

    def refine(self) -> None:
        """A finished bulk build's last step, where the backend has one (`GraphIndex.refine`)."""
        refine = getattr(self.inner, "refine", None)
        if refine is not None:
            refine()

    @property
    def has_int8_store(self) -> bool:
        return self._int8_rows is not None

    def rerank_scores(self, queries: F32, labels: I64) -> F32:
        """Scores [nq, m] of candidate labels from the int8 rerank store (-inf for -1 padding)."""
        assert self.int8 is not None and self._int8_rows is not None
        rows = self._int8_rows.data
        safe = np.where(labels >= 0, labels, 0)
        out = np.empty(labels.shape, np.float32)
        for i in range(len(labels)):
            decoded = self.int8.decode(rows[safe[i]])
            if self.space is Space.ip:
                out[i] = decoded @ queries[i]
            else:
                diff = decoded - queries[i]
                out[i] = -np.einsum("ij,ij->i", diff, diff)
        return np.where(labels >= 0, out, -np.inf).astype(np.float32)

    def remove(self, labels: I64) -> None:
        if self.inner is not None:
            self.inner.remove(labels)

    def search(self, queries: F32, k: int, params: IndexParams, allowed: I64 | None = None) -> Hits:
        if self.inner is None:
            return empty_hits(len(queries), k)
        if self.binary is None or not self.asymmetric:
            hits = cast(Hits, self.inner.search(self.encode(queries, queries=True), k, params, allowed))
            if self._affine is not None:  # back from squared code-space distance to the collection's scores
                d2 = -hits.scores / np.float32(self._affine**2)
                hits.scores = (np.float32(1.0) - d2 / 2 if self.space is Space.ip else -d2).astype(np.float32)
            return hits
        reduced = self._reduce(queries, queries=True)
        codes = self.binary.sign_plane(self.binary.encode(reduced)[0])
        hits = self.inner.search(codes, k * _ASYMMETRIC_FETCH, params, allowed)
        labels = hits.labels
        scores = np.full(labels.shape, -np.inf, np.float32)
        for row in range(len(labels)):  # asymmetric float-vs-code scores of the Hamming shortlist
            ok = labels[row] >= 0
            cand = labels[row][ok]
            assert self._side is not None and self._scales is not None
            scores[row, ok] = self.binary.asymmetric_scores(
                reduced[row : row + 1], self._side.data[cand], self._scales.data[cand]
            )[0]
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return Hits(np.take_along_axis(labels, order, axis=1), np.take_along_axis(scores, order, axis=1))

    def search_one(self, query: F32, k: int, params: IndexParams) -> tuple[I64, F32] | None:
        """One unfiltered query: (labels, approximate scores), or None when the index cannot fill k."""
        inner = self.inner
        if self.asymmetric or not isinstance(inner, (FaissFloatIndex, BinaryIndex, HnswIndex, IvfPqIndex, GraphIndex)):
            return None
        if isinstance(inner, GraphIndex):
            return inner.search_one(self.encode(query, queries=True), k, params.ef)
        if isinstance(inner, HnswIndex):
            got = inner.search_one(self.encode(query, queries=True), k, params.ef)
            if got is None:
                return None
            return np.asarray(got[0], np.int64), np.asarray(got[1], np.float32)
        hits = self.search(query, k, params)
        labels = hits.labels[0]
        if labels[-1] < 0:
            return None
        return labels, hits.scores[0]

    @property
    def reranks_natively(self) -> bool:
        """Whether `search_reranked` can rescore from float32 rows inside the graph's own call."""
        return isinstance(self.inner, GraphIndex) and self._int8_rows is None

    def search_reranked(
        self, query: F32, k: int, candidates: int, params: IndexParams, rows: npt.NDArray[np.float32]
    ) -> tuple[I64, F32] | None:
        """One unfiltered query whose `candidates` best by code are rescored exactly from `rows` (float32 by
        label) in one native call: (labels, exact scores), or None when the index cannot fill k."""
        assert isinstance(self.inner, GraphIndex)
        encoded = self.encode(query.reshape(1, -1), queries=True)
        full = None if self.reducer is None else query.reshape(1, -1)
        return self.inner.search_one(encoded, k, params.ef, rows, full, candidates)

    # -- Matryoshka funnels --------------------------------------------------------------------

    def rotate(self, x: F32) -> F32:
        """Full-length vectors in the truncation basis (the identity without a PCA rotation)."""
        r = self.reducer
        if isinstance(r, MatryoshkaTransform):
            return r.rotate(x).astype(np.float32, copy=False)
        return x

    # -- persistence -----------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        if self.reducer is not None:
            save_state(directory / "reduce", *self.reducer.state())
        if self.binary is not None:
            save_state(directory / "binary", *self.binary.state())
        if self._side is not None and self._scales is not None:
            np.save(directory / "side_codes.npy", self._side.used())
            np.save(directory / "side_scales.npy", self._scales.used())
        if self.int8 is not None and self._int8_rows is not None:
            save_state(directory / "int8", *self.int8.state())
            np.save(directory / "int8_codes.npy", self._int8_rows.used())
        if self.inner is not None:
            self.inner.save(directory / "inner")
        meta = {
            "kind": "encoded",
            "inner": type(self.inner).__name__ if self.inner is not None else None,
            "trained_on": self.trained_on,
            "query_sample_rows": self.query_sample_rows,
            "sample_version": self.sample_version,
            "trained_at": self.trained_at,
            "affine": self._affine,
            "projection": self.projection,
        }
        (directory / "meta.json").write_text(json.dumps(meta))

    @classmethod
    def load(
        cls,
        directory: Path,
        config: VectorConfig,
        space: Space,
        load_backend: Callable[..., Any],
        *,
        threads: int | None = None,
    ) -> EncodedIndex:
        meta = json.loads((directory / "meta.json").read_text())
        if meta.get("kind") != "encoded":
            raise ValueError(f"{directory}: not an encoded index")
        idx = cls(config, space, threads=threads)
        idx.trained_on = int(meta["trained_on"])
        idx.query_sample_rows = int(meta.get("query_sample_rows", 0))
        idx.sample_version = int(meta.get("sample_version", 0))
        idx.trained_at = float(meta.get("trained_at", 0.0))
        idx._affine = meta.get("affine")
        idx.projection = meta.get("projection")
        red = config.reduce
        if red is not None:
            st = load_state(directory / "reduce")
            # by what was saved: a LeanVec-OOD vector may have chosen PCA-Matryoshka (quantization/projection_select)
            idx.reducer = (LeanVecTransform if st[0].get("kind") == "leanvec" else MatryoshkaTransform).from_state(*st)
        if config.quantize is not None and isinstance(config.quantize, BinaryQuantizeConfig):
            idx.binary = BinaryQuantizer.from_state(*load_state(directory / "binary"))
        if (directory / "side_codes.npy").exists():
            idx._side = _Rows.of(np.load(directory / "side_codes.npy"))
            idx._scales = _Rows.of(np.load(directory / "side_scales.npy"))
        if (directory / "int8_codes.npy").exists():
            idx.int8 = Int8Quantizer.from_state(*load_state(directory / "int8"))
            idx._int8_rows = _Rows.of(np.load(directory / "int8_codes.npy"))
        if meta["inner"] is not None:
            idx.inner = load_backend(directory / "inner", threads=threads)
        return idx

    def memory(self) -> dict[str, int]:
        """Measured bytes in RAM by part: graph, codes, ids, and the transforms' matrices."""
        out = {"graph": 0, "codes": 0, "ids": 0} if self.inner is None else dict(self.inner.memory())
        for rows in (self._side, self._scales):
            if rows is not None:
                out["codes"] += int(rows.used().nbytes)
        out["rerank"] = 0 if self._int8_rows is None else int(self._int8_rows.data.nbytes)
        transform = 0
        for t in (self.reducer, self.binary, self.int8):
            if t is not None:
                transform += sum(int(a.nbytes) for a in t.state()[1].values())
        out["transform"] = transform
        return out

    def ram_bytes(self) -> int:
        return sum(self.memory().values())

    @property
    def default_oversampling(self) -> float:
        return default_oversampling(self.config)


def default_oversampling(cfg: VectorConfig) -> float:
    """Candidates per result when the config leaves it open, by how lossy the codes are (measured on
    pypi-minilm: see benchmarks/COMPRESSION.md). The config alone decides it (`index/pair.py` relies on it)."""
    q = cfg.quantize
    if isinstance(q, BinaryQuantizeConfig):
        return 4.0 if q.query == "asymmetric" else 10.0
    if isinstance(q, Int8QuantizeConfig):
        return 2.0
    return 4.0
