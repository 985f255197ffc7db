"""Exact late-interaction (ColBERT MaxSim / Chamfer) scoring over CSR token storage.

`score(Q, P) = sum_i max_j <q_i, p_j>`. Storage is CSR: doc d owns `tokens[offsets[d]:offsets[d+1]]`.
One matmul gives every query-token x doc-token product and `np.maximum.reduceat` takes the per-document max,
so scoring all documents or a candidate subset costs no Python loop per document.

`TokenStore` keeps the tokens as float32, float16, or int8 with a per-row or a global scale. Scores over
quantised tokens are exact for the stored values: float16 rows are widened, int8 products are scaled back
(`<q, s * c> = s * <q, c>`, with `s > 0` so the max commutes with a global scale).

A document without tokens scores `-inf` (the max over an empty set), so it ranks last.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from quantization.base import FloatArray

__all__ = ["TokenStore", "gather_segments", "maxsim_scores", "maxsim_topk", "topk_scores"]

IntArray = npt.NDArray[np.int64]
TokenDtype = Literal["float32", "float16", "int8"]
ScaleMode = Literal["row", "global"]
DEFAULT_CHUNK_TOKENS = 32768  # bounds the [q, chunk] product and the widened copy of a chunk


def _check_csr(tokens: npt.NDArray[Any], offsets: npt.ArrayLike) -> IntArray:
    off = np.asarray(offsets)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be 2-D [T, d], got shape {tokens.shape}")
    if off.ndim != 1 or off.size < 1 or not np.issubdtype(off.dtype, np.integer):
        raise ValueError("offsets must be a 1-D integer array of length n + 1")
    off = off.astype(np.int64)
    if off[0] != 0 or off[-1] != tokens.shape[0] or np.any(np.diff(off) < 0):
        raise ValueError(f"offsets must rise from 0 to the token count {tokens.shape[0]}")
    return off


def gather_segments(offsets: IntArray, doc_ids: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    """Token rows of the documents `doc_ids` (in that order) and the CSR offsets of that subset."""
    ids = np.asarray(doc_ids, dtype=np.int64)
    n = offsets.size - 1
    if ids.ndim != 1 or (ids.size and (ids.min() < 0 or ids.max() >= n)):
        raise ValueError(f"doc_ids must be a 1-D array of ids in [0, {n})")
    starts, lengths = offsets[ids], offsets[ids + 1] - offsets[ids]
    sub = np.zeros(ids.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=sub[1:])
    # Row t of the subset = start of its doc + its position inside the doc.
    rows = np.arange(sub[-1], dtype=np.int64) + np.repeat(starts - sub[:-1], lengths)
    return rows, sub


def _segment_max_sum(sim: FloatArray, offsets: IntArray) -> FloatArray:
    """Sum over rows of the per-segment column max of `sim` [q, T]; empty segments give -inf."""
    n = offsets.size - 1
    out = np.full(n, -np.inf, dtype=np.float32)
    sizes = np.diff(offsets)
    nonempty = np.flatnonzero(sizes > 0)
    if nonempty.size and sim.shape[0]:
        # Segments run from one non-empty doc's start to the next (empty docs in between add no columns).
        seg_max = np.maximum.reduceat(sim, offsets[nonempty], axis=1)
        out[nonempty] = seg_max.sum(axis=0, dtype=np.float32)
    elif nonempty.size:
        out[nonempty] = 0.0  # an empty query sums nothing
    return out


def _maxsim_chunked(
    q: FloatArray,
    tokens: npt.NDArray[Any],
    offsets: IntArray,
    row_scale: FloatArray | None,
    chunk_tokens: int,
) -> FloatArray:
    """MaxSim of `q` against every CSR document, widening at most ~`chunk_tokens` stored rows at a time."""
    n = offsets.size - 1
    out = np.empty(n, dtype=np.float32)
    d0 = 0
    while d0 < n:
        # Whole documents per chunk, at least one so a huge document still gets scored.
        d1 = int(np.searchsorted(offsets, offsets[d0] + chunk_tokens, side="right")) - 1
        d1 = min(max(d1, d0 + 1), n)
        a, b = int(offsets[d0]), int(offsets[d1])
        block = np.asarray(tokens[a:b], dtype=np.float32)
        sim = q @ block.T
        if row_scale is not None:
            sim *= row_scale[a:b]
        out[d0:d1] = _segment_max_sum(sim, offsets[d0 : d1 + 1] - a)
        d0 = d1
    return out


def _as_query(query_tokens: npt.ArrayLike, dim: int) -> FloatArray:
    q = np.ascontiguousarray(query_tokens, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(f"query_tokens must have shape [q, {dim}], got {q.shape}")
    return q


def maxsim_scores(
    query_tokens: npt.ArrayLike,
    doc_tokens: npt.NDArray[Any],
    doc_offsets: npt.ArrayLike,
    doc_ids: npt.ArrayLike | None = None,
    *,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
) -> FloatArray:
    """MaxSim scores float32 [n] of one query [q, d] against all documents, or against `doc_ids` in order.

    `doc_tokens` may be float32 or float16 (widened chunk by chunk); for int8 codes use `TokenStore`.
    """
    off = _check_csr(doc_tokens, doc_offsets)
    q = _as_query(query_tokens, doc_tokens.shape[1])
    if doc_ids is None:
        return _maxsim_chunked(q, doc_tokens, off, None, chunk_tokens)
    rows, sub = gather_segments(off, doc_ids)
    return _maxsim_chunked(q, doc_tokens[rows], sub, None, chunk_tokens)


def topk_scores(scores: FloatArray, k: int, ids: IntArray | None = None) -> tuple[IntArray, FloatArray]:
    """The best `k` of `scores`, best first, ties by smaller id; returns (ids, scores)."""
    ids = np.arange(scores.size, dtype=np.int64) if ids is None else ids
    k = min(k, scores.size)
    if k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    if k < scores.size:
        # argpartition may split a tie at the k-th score arbitrarily: keep every element of that score.
        kth = np.partition(scores, scores.size - k)[scores.size - k]
        keep = np.flatnonzero(scores >= kth)
    else:
        keep = np.arange(scores.size)
    order = np.lexsort((ids[keep], -scores[keep]))[:k]
    return ids[keep][order], scores[keep][order]


def maxsim_topk(
    query_tokens: npt.ArrayLike,
    doc_tokens: npt.NDArray[Any],
    doc_offsets: npt.ArrayLike,
    k: int,
    doc_ids: npt.ArrayLike | None = None,
) -> tuple[IntArray, FloatArray]:
    """Top-`k` documents by exact MaxSim (ids into the CSR store), best first, ties by smaller id."""
    scores = maxsim_scores(query_tokens, doc_tokens, doc_offsets, doc_ids)
    ids = None if doc_ids is None else np.asarray(doc_ids, dtype=np.int64)
    return topk_scores(scores, k, ids)


class TokenStore:
    """CSR token vectors stored as float32, float16, or int8 codes with a per-row or a global scale.

    int8 codes are `round(x / s)` with `s = max|x| / 127` per row (`scale="row"`) or over all rows
    (`scale="global"`), so each coordinate is off by at most `s / 2`.
    """

    def __init__(
        self,
        codes: npt.NDArray[Any],
        offsets: npt.ArrayLike,
        scale: FloatArray | float | None = None,
    ) -> None:
        self.offsets = _check_csr(codes, offsets)
        self.codes = codes
        self.dtype: TokenDtype
        if codes.dtype == np.int8:
            if scale is None:
                raise ValueError("int8 codes need a scale")
            self.dtype = "int8"
        elif codes.dtype in (np.float32, np.float16):
            if scale is not None:
                raise ValueError("float codes take no scale")
            self.dtype = "float32" if codes.dtype == np.float32 else "float16"
        else:
            raise ValueError(f"unsupported token dtype {codes.dtype}")
        self.row_scale: FloatArray | None = None
        self.global_scale: float | None = None
        if isinstance(scale, np.ndarray):
            if scale.shape != (codes.shape[0],):
                raise ValueError(f"a per-row scale must have shape [{codes.shape[0]}]")
            self.row_scale = scale.astype(np.float32)
        elif scale is not None:
            self.global_scale = float(scale)

    @classmethod
    def from_float(
        cls,
        tokens: npt.ArrayLike,
        offsets: npt.ArrayLike,
        dtype: TokenDtype = "float32",
        scale: ScaleMode = "row",
    ) -> TokenStore:
        """Quantise float tokens [T, d] to `dtype` (`scale` applies to int8 only)."""
        x = np.asarray(tokens, dtype=np.float32)
        if dtype == "float32":
            return cls(np.ascontiguousarray(x), offsets)
        if dtype == "float16":
            return cls(x.astype(np.float16), offsets)
        if dtype != "int8":
            raise ValueError(f"dtype must be float32, float16 or int8, got {dtype!r}")
        if scale == "row":
            s = (np.abs(x).max(axis=1, initial=0.0) / 127.0).astype(np.float32)
            s[s == 0] = 1.0  # an all-zero row encodes as zeros under any scale
            codes = np.rint(x / s[:, None])
            return cls(np.clip(codes, -127, 127).astype(np.int8), offsets, s)
        if scale == "global":
            g = float(np.abs(x).max(initial=0.0)) / 127.0 or 1.0
            codes = np.rint(x / np.float32(g))
            return cls(np.clip(codes, -127, 127).astype(np.int8), offsets, g)
        raise ValueError(f"scale must be 'row' or 'global', got {scale!r}")

    @property
    def n_docs(self) -> int:
        return int(self.offsets.size - 1)

    @property
    def dim(self) -> int:
        return int(self.codes.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes of token storage (codes plus scales, offsets excluded)."""
        extra = 0 if self.row_scale is None else self.row_scale.nbytes
        return int(self.codes.nbytes + extra)

    def dequantize(self, doc_ids: npt.ArrayLike | None = None) -> tuple[FloatArray, IntArray]:
        """Float32 tokens and offsets of all documents, or of `doc_ids` in order."""
        rows: IntArray | slice = slice(None)
        off = self.offsets
        if doc_ids is not None:
            rows, off = gather_segments(self.offsets, doc_ids)
        x = self.codes[rows].astype(np.float32)
        if self.row_scale is not None:
            x *= self.row_scale[rows][:, None]
        elif self.global_scale is not None:
            x *= np.float32(self.global_scale)
        return x, off

    def scores(
        self,
        query_tokens: npt.ArrayLike,
        doc_ids: npt.ArrayLike | None = None,
        *,
        chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    ) -> FloatArray:
        """MaxSim scores of one query against the stored documents (all, or `doc_ids` in order)."""
        q = _as_query(query_tokens, self.dim)
        if doc_ids is None:
            codes, off, row_scale = self.codes, self.offsets, self.row_scale
        else:
            rows, off = gather_segments(self.offsets, doc_ids)
            codes = self.codes[rows]
            row_scale = None if self.row_scale is None else self.row_scale[rows]
        out = _maxsim_chunked(q, codes, off, row_scale, chunk_tokens)
        if self.global_scale is not None:
            out *= np.float32(self.global_scale)
        return out

    def topk(
        self, query_tokens: npt.ArrayLike, k: int, doc_ids: npt.ArrayLike | None = None
    ) -> tuple[IntArray, FloatArray]:
        """Top-`k` stored documents by MaxSim, best first, ties by smaller id."""
        scores = self.scores(query_tokens, doc_ids)
        ids = None if doc_ids is None else np.asarray(doc_ids, dtype=np.int64)
        return topk_scores(scores, k, ids)

    def state(self) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        meta: dict[str, Any] = {"type": "token_store", "version": 1, "dtype": self.dtype}
        arrays: dict[str, npt.NDArray[Any]] = {"codes": self.codes, "offsets": self.offsets}
        if self.row_scale is not None:
            arrays["row_scale"] = self.row_scale
        if self.global_scale is not None:
            meta["global_scale"] = self.global_scale
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]) -> TokenStore:
        if meta.get("type") != "token_store" or meta.get("version") != 1:
            raise ValueError(f"not a token_store v1 state: {meta.get('type')} v{meta.get('version')}")
        scale: FloatArray | float | None = arrays.get("row_scale")
        if scale is None and meta.get("global_scale") is not None:
            scale = float(meta["global_scale"])
        return cls(arrays["codes"], arrays["offsets"], scale)
