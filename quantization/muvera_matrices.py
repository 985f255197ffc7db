"""The random matrices of a MUVERA encoder (`MuveraMatrices`), regenerated from its seed as the reference draws them.

Google's `fixed_dimensional_encoding.cc` draws, with libstdc++ (`quantization.mt19937`): a fresh
`std::mt19937(seed + r)` per repetition for the SimHash (`normal_distribution<float>`, column-major fill),
another fresh one for the AMS matrix (`uniform_int_distribution` then `bernoulli_distribution(0.5)`), and
`std::mt19937(seed)` for the final CountSketch. The AMS and CountSketch draws match bit for bit; about 0.5% of
SimHash entries differ by one ulp, which moves a token to another bucket only if its sketch is within ~1e-7
of zero. To reproduce numbers drawn otherwise (libc++, GCC <= 10), inject the matrices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from quantization.base import FloatArray
from quantization.mt19937 import index_sign_draws, normal_f32

__all__ = [
    "MuveraMatrices",
    "ams_projection_from_seed",
    "count_sketch_from_seed",
    "matrices_from_seed",
    "simhash_matrix_from_seed",
]

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class MuveraMatrices:
    """Every random draw of an encoder; inject these to reproduce another implementation's numbers.

    `simhash` [r_reps, dim, k_sim]; `projection` [r_reps, dim, d_proj] (any dense matrix; None = identity);
    `final_index`/`final_sign` [r_reps * 2**k_sim * d_proj] (None = no final projection).
    """

    simhash: FloatArray
    projection: FloatArray | None
    final_index: IntArray | None
    final_sign: FloatArray | None


def simhash_matrix_from_seed(seed: int, dim: int, k_sim: int) -> FloatArray:
    """The reference `SimHashMatrixFromSeed`: a [dim, k_sim] Gaussian matrix filled column by column."""
    vals = normal_f32(seed, dim * k_sim)
    return np.ascontiguousarray(vals.reshape(k_sim, dim).T)


def ams_projection_from_seed(seed: int, dim: int, d_proj: int) -> FloatArray:
    """The reference `AMSProjectionMatrixFromSeed`: [dim, d_proj], one +-1 per row, no 1/sqrt scaling."""
    index, sign = index_sign_draws(seed, dim, d_proj)
    out = np.zeros((dim, d_proj), dtype=np.float32)
    out[np.arange(dim), index] = sign
    return out


def count_sketch_from_seed(seed: int, n_in: int, n_out: int) -> tuple[IntArray, FloatArray]:
    """The reference `ApplyCountSketchToVector` draws: coordinate i adds sign[i] * v[i] to out[index[i]]."""
    return index_sign_draws(seed, n_in, n_out)


def _seed_r(seed: int, r: int) -> int:
    return (seed + r) & 0xFFFFFFFF  # the reference casts seed + repetition to uint32


def matrices_from_seed(
    dim: int, k_sim: int, d_proj: int | None, r_reps: int, final_dim: int | None, seed: int
) -> MuveraMatrices:
    simhash = np.stack([simhash_matrix_from_seed(_seed_r(seed, r), dim, k_sim) for r in range(r_reps)])
    projection = None
    if d_proj is not None:
        projection = np.stack([ams_projection_from_seed(_seed_r(seed, r), dim, d_proj) for r in range(r_reps)])
    final_index = final_sign = None
    if final_dim is not None:
        p = dim if d_proj is None else d_proj
        final_index, final_sign = count_sketch_from_seed(seed & 0xFFFFFFFF, r_reps * (1 << k_sim) * p, final_dim)
    return MuveraMatrices(simhash.astype(np.float32), projection, final_index, final_sign)
