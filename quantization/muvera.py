"""MUVERA fixed dimensional encodings (FDE): one vector per multi-vector token set.

The semantics follow Google's reference `graph-mining/sketching/point_cloud/fixed_dimensional_encoding.cc`
(`research/algorithms.md` §6.4). Per repetition `r`, a SimHash with `k_sim` Gaussian hyperplanes splits the
tokens into `2**k_sim` buckets, numbered by Gray-code decoding of the hyperplane bits (hyperplane 0 = most
significant bit). A bucket holds the sum (query) or the average (document) of its tokens after an AMS
(CountSketch) projection to `d_proj`; an empty document bucket may take the token whose SimHash bits are
Hamming-nearest to the bucket's. Repetition blocks are concatenated, optionally followed by a CountSketch to
`final_dim`. `<encode_query(Q), encode_document(P)>` approximates `r_reps * Chamfer(Q, P)`.

The encoder draws its random matrices from its seed exactly as the reference does (`muvera_matrices`, over
the libstdc++ emulation in `mt19937`), or takes them injected (`MuveraMatrices`). Those names are
re-exported here.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import numpy.typing as npt

from quantization.base import FloatArray
from quantization.mt19937 import mt19937_uint32
from quantization.muvera_matrices import (
    MuveraMatrices,
    ams_projection_from_seed,
    count_sketch_from_seed,
    matrices_from_seed,
    simhash_matrix_from_seed,
)

__all__ = [
    "MuveraEncoder",
    "MuveraMatrices",
    "ams_projection_from_seed",
    "count_sketch_from_seed",
    "matrices_from_seed",
    "mt19937_uint32",
    "simhash_matrix_from_seed",
]

IntArray = npt.NDArray[np.int64]
_TWO32 = 1 << 32
_STATE_VERSION = 1


# --- CSR batches ---------------------------------------------------------------------------------------


def _check_offsets(offsets: npt.ArrayLike, n_tokens: int) -> IntArray:
    off = np.asarray(offsets)
    if off.ndim != 1 or off.size < 1 or not np.issubdtype(off.dtype, np.integer):
        raise ValueError("offsets must be a 1-D integer array of length n + 1")
    off = off.astype(np.int64)
    if off[0] != 0 or off[-1] != n_tokens or np.any(np.diff(off) < 0):
        raise ValueError(f"offsets must rise from 0 to the token count {n_tokens}")
    return off


def _single(arr: npt.NDArray[Any]) -> IntArray:
    return np.array([0, arr.shape[0] if arr.ndim else 0], dtype=np.int64)


def _segment_sum(keys: IntArray, vals: FloatArray, size: int) -> FloatArray:
    """Row sums of `vals` grouped by `keys` into a [size, p] array (sort once, then one reduceat)."""
    out = np.zeros((size, vals.shape[1]), dtype=np.float32)
    if keys.size == 0:
        return out
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    starts = np.flatnonzero(np.concatenate([[True], sk[1:] != sk[:-1]]))
    out[sk[starts]] = np.add.reduceat(vals[order], starts, axis=0)
    return out


# --- encoder -------------------------------------------------------------------------------------------


class MuveraEncoder:
    """MUVERA FDE encoder; queries and documents must be encoded by the same (or an equal) encoder.

    `d_proj=None` keeps the tokens unprojected (the reference's identity projection, `d_proj = dim`).
    `fill_empty` applies to documents only: a query never fills, which would add spurious mass.
    The encoder is data-independent: `fit` is a no-op and the config plus seed are its whole state.
    """

    def __init__(
        self,
        dim: int,
        k_sim: int = 5,
        d_proj: int | None = 16,
        r_reps: int = 20,
        final_dim: int | None = None,
        seed: int = 42,
        fill_empty: bool = True,
        *,
        matrices: MuveraMatrices | None = None,
    ) -> None:
        if dim <= 0 or r_reps <= 0:
            raise ValueError("dim and r_reps must be positive")
        if not 0 <= k_sim <= 30:
            raise ValueError("k_sim must be in [0, 30]")
        if d_proj is not None and d_proj <= 0:
            raise ValueError("d_proj must be positive (or None for the identity)")
        if final_dim is not None and final_dim <= 0:
            raise ValueError("final_dim must be positive")
        if not 0 <= seed < _TWO32:
            raise ValueError("seed must be in [0, 2**32)")
        self.dim, self.k_sim, self.d_proj, self.r_reps = dim, k_sim, d_proj, r_reps
        self.final_dim, self.seed, self.fill_empty = final_dim, seed, fill_empty
        self._injected = matrices is not None
        if matrices is None:
            matrices = matrices_from_seed(dim, k_sim, d_proj, r_reps, final_dim, seed)
        self._set_matrices(matrices)

    # -- configuration ---------------------------------------------------------------------------------

    @property
    def n_buckets(self) -> int:
        return 1 << self.k_sim

    @property
    def block_dim(self) -> int:
        """Width of one bucket: `d_proj`, or `dim` for the identity projection."""
        return self.dim if self.d_proj is None else self.d_proj

    @property
    def raw_dim(self) -> int:
        """FDE width before the final projection: `r_reps * 2**k_sim * block_dim`."""
        return self.r_reps * self.n_buckets * self.block_dim

    @property
    def fde_dim(self) -> int:
        return self.raw_dim if self.final_dim is None else self.final_dim

    @property
    def matrices(self) -> MuveraMatrices:
        return self._matrices

    def _set_matrices(self, m: MuveraMatrices) -> None:
        R, D, k, p = self.r_reps, self.dim, self.k_sim, self.block_dim
        if m.simhash.shape != (R, D, k):
            raise ValueError(f"simhash must have shape {(R, D, k)}, got {m.simhash.shape}")
        if (m.projection is None) != (self.d_proj is None):
            raise ValueError("projection must be given exactly when d_proj is set")
        if m.projection is not None and m.projection.shape != (R, D, p):
            raise ValueError(f"projection must have shape {(R, D, p)}, got {m.projection.shape}")
        if self.final_dim is None:
            if m.final_index is not None or m.final_sign is not None:
                raise ValueError("final_index/final_sign need final_dim")
        elif (
            m.final_index is None
            or m.final_sign is None
            or m.final_index.shape != (self.raw_dim,)
            or m.final_sign.shape != (self.raw_dim,)
            or m.final_index.min(initial=0) < 0
            or m.final_index.max(initial=0) >= self.final_dim
        ):
            raise ValueError(f"final_index/final_sign must be [{self.raw_dim}] with indices < final_dim")
        self._matrices = m
        # Stacked so one matmul serves every repetition: columns r*k..r*k+k-1 belong to repetition r.
        self._simhash_all = np.ascontiguousarray(m.simhash.transpose(1, 0, 2).reshape(D, R * k), np.float32)
        self._proj_all = (
            None
            if m.projection is None
            else np.ascontiguousarray(m.projection.transpose(1, 0, 2).reshape(D, R * p), np.float32)
        )
        self._weights = (1 << np.arange(k - 1, -1, -1)).astype(np.int64)
        codes = np.arange(self.n_buckets, dtype=np.int64)
        self._bucket_pattern = codes ^ (codes >> 1)  # SimHash bits of bucket b (hyperplane 0 = MSB)
        if m.final_index is not None and m.final_sign is not None:
            order = np.argsort(m.final_index, kind="stable")
            si = m.final_index[order]
            starts = np.flatnonzero(np.concatenate([[True], si[1:] != si[:-1]]))
            self._final_order, self._final_starts, self._final_targets = order, starts, si[starts]
            self._final_sign_sorted = m.final_sign[order].astype(np.float32)

    # -- encoding --------------------------------------------------------------------------------------

    def encode_documents(self, tokens: npt.ArrayLike, offsets: npt.ArrayLike) -> FloatArray:
        """Document FDEs [n, fde_dim] of a CSR batch: doc i owns `tokens[offsets[i]:offsets[i+1]]`."""
        return self._encode(tokens, offsets, document=True)

    def encode_queries(self, tokens: npt.ArrayLike, offsets: npt.ArrayLike) -> FloatArray:
        """Query FDEs [n, fde_dim] of a CSR batch (per-bucket sums, never filled)."""
        return self._encode(tokens, offsets, document=False)

    def encode_document(self, x: npt.ArrayLike) -> FloatArray:
        """FDE [fde_dim] of one document's tokens [t, dim]."""
        arr = np.asarray(x)
        out: FloatArray = self._encode(arr, _single(arr), document=True)[0]
        return out

    def encode_query(self, x: npt.ArrayLike) -> FloatArray:
        """FDE [fde_dim] of one query's tokens [t, dim]."""
        arr = np.asarray(x)
        out: FloatArray = self._encode(arr, _single(arr), document=False)[0]
        return out

    def _encode(self, tokens: npt.ArrayLike, offsets: npt.ArrayLike, *, document: bool) -> FloatArray:
        x = np.ascontiguousarray(tokens, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"tokens must have shape [T, {self.dim}], got {x.shape}")
        off = _check_offsets(offsets, x.shape[0])
        n, T = off.size - 1, x.shape[0]
        R, B, k, p = self.r_reps, self.n_buckets, self.k_sim, self.block_dim
        sizes = np.diff(off)
        doc_of = np.repeat(np.arange(n, dtype=np.int64), sizes)
        # Bucket of each token per repetition: bit j = <x, w_j> > 0; index bit k-1-j = XOR of bits 0..j.
        if k > 0:
            bits = (x @ self._simhash_all).reshape(T, R, k) > 0
            part = (np.cumsum(bits, axis=2, dtype=np.int64) & 1) @ self._weights
        else:
            part = np.zeros((T, R), dtype=np.int64)
        proj_all = None if self._proj_all is None else x @ self._proj_all
        if not document:
            # queries are plain bucket sums: every repetition in one grouped sum (a search encodes one query,
            # and the loop over repetitions was a quarter of a MUVERA search's CPU)
            vals = proj_all.reshape(T, R, p) if proj_all is not None else np.broadcast_to(x[:, None, :], (T, R, p))
            keys = doc_of[:, None] * (R * B) + np.arange(R, dtype=np.int64)[None, :] * B + part
            fde = _segment_sum(keys.reshape(-1), vals.reshape(T * R, p), n * R * B).reshape(n, R * B * p)
            return fde if self.final_dim is None else self._final_projection(fde)
        nonempty = np.flatnonzero(sizes > 0)
        out = np.empty((n, R, B, p), dtype=np.float32)
        for r in range(R):
            proj = x if proj_all is None else proj_all[:, r * p : (r + 1) * p]
            keys = doc_of * B + part[:, r]
            sums = _segment_sum(keys, proj, n * B)
            if document:
                counts = np.bincount(keys, minlength=n * B).astype(np.float32)
                filled = counts > 0
                sums[filled] /= counts[filled, None]
                if self.fill_empty and k > 0 and nonempty.size:
                    self._fill(sums.reshape(n, B, p), counts.reshape(n, B), part[:, r], off, nonempty, proj)
            out[:, r] = sums.reshape(n, B, p)
        fde = out.reshape(n, R * B * p)
        return fde if self.final_dim is None else self._final_projection(fde)

    def _fill(
        self,
        sums: FloatArray,
        counts: FloatArray,
        part: IntArray,
        off: IntArray,
        nonempty: IntArray,
        proj: FloatArray,
    ) -> None:
        """Empty bucket b of a document takes its first token whose SimHash bits differ least from b's."""
        T = part.size
        token_pattern = part ^ (part >> 1)
        dist = np.bitwise_count(token_pattern[:, None] ^ self._bucket_pattern[None, :])
        # Min of (distance, token position) in one key; segments run from one non-empty doc to the next.
        # int32 halves the memory traffic of this, the costliest step, whenever the keys fit.
        kt = np.int32 if (self.k_sim + 1) * T < 2**31 else np.int64
        key = dist.astype(kt) * kt(T) + np.arange(T, dtype=kt)[:, None]
        best = np.minimum.reduceat(key, off[nonempty], axis=0) % kt(T)
        rows, cols = np.nonzero(counts[nonempty] == 0)
        sums[nonempty[rows], cols] = proj[best[rows, cols]]

    def _final_projection(self, fde: FloatArray) -> FloatArray:
        assert self.final_dim is not None  # only called when set
        out = np.zeros((fde.shape[0], self.final_dim), dtype=np.float32)
        if fde.shape[0]:
            signed = fde[:, self._final_order] * self._final_sign_sorted
            out[:, self._final_targets] = np.add.reduceat(signed, self._final_starts, axis=1)
        return out

    # -- Transform protocol ----------------------------------------------------------------------------

    @property
    def d_in(self) -> int:
        return self.dim

    @property
    def d_out(self) -> int:
        return self.fde_dim

    @property
    def is_fitted(self) -> bool:
        return True

    def fit(self, x: FloatArray, queries: FloatArray | None = None) -> Self:
        return self  # data-independent: nothing to learn

    def transform(self, x: FloatArray) -> FloatArray:
        """Treat `x` [t, dim] as ONE document and return its FDE as a [1, fde_dim] row.

        Batches of token sets need offsets: use `encode_documents` / `encode_queries`.
        """
        return self.encode_document(x)[None, :]

    def state(self, include_matrices: bool = False) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        """Config and seed; the matrices too when injected (they cannot be regenerated) or when asked."""
        meta: dict[str, Any] = {
            "type": "muvera",
            "version": _STATE_VERSION,
            "dim": self.dim,
            "k_sim": self.k_sim,
            "d_proj": self.d_proj,
            "r_reps": self.r_reps,
            "final_dim": self.final_dim,
            "seed": self.seed,
            "fill_empty": self.fill_empty,
        }
        arrays: dict[str, npt.NDArray[Any]] = {}
        if include_matrices or self._injected:
            m = self._matrices
            arrays["simhash"] = m.simhash
            for name in ("projection", "final_index", "final_sign"):
                value = getattr(m, name)
                if value is not None:
                    arrays[name] = value
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]) -> Self:
        if meta.get("type") != "muvera" or meta.get("version") != _STATE_VERSION:
            raise ValueError(f"not a MUVERA v{_STATE_VERSION} state: {meta.get('type')} v{meta.get('version')}")
        matrices = None
        if "simhash" in arrays:
            matrices = MuveraMatrices(
                simhash=arrays["simhash"].astype(np.float32),
                projection=arrays["projection"].astype(np.float32) if "projection" in arrays else None,
                final_index=arrays["final_index"].astype(np.int64) if "final_index" in arrays else None,
                final_sign=arrays["final_sign"].astype(np.float32) if "final_sign" in arrays else None,
            )
        return cls(
            dim=int(meta["dim"]),
            k_sim=int(meta["k_sim"]),
            d_proj=None if meta["d_proj"] is None else int(meta["d_proj"]),
            r_reps=int(meta["r_reps"]),
            final_dim=None if meta["final_dim"] is None else int(meta["final_dim"]),
            seed=int(meta["seed"]),
            fill_empty=bool(meta["fill_empty"]),
            matrices=matrices,
        )

    def __repr__(self) -> str:
        cfg = ", ".join(f"{f}={getattr(self, f)!r}" for f in _CONFIG_FIELDS)
        return f"MuveraEncoder({cfg})"


_CONFIG_FIELDS = ("dim", "k_sim", "d_proj", "r_reps", "final_dim", "seed", "fill_empty")
