"""The checks a sharded upsert makes before anything is sent, so no shard takes half of a bad batch."""

from __future__ import annotations

from typing import Any

import numpy as np

from index.backends.base import F32
from index.errors import DimensionMismatch, InvalidVector
from nestor_client.models import Metric, VectorConfig

__all__ = ["checked_vectors"]


def checked_vectors(part: Any, n: int, vcfg: VectorConfig, name: str) -> F32:
    """One named vector of a batch as a checked [n, dim] matrix (zero rows where points omit it)."""
    what = f"vector {name!r}: " if name else ""
    present = np.ones(n, bool)
    if isinstance(part, np.ndarray):
        mat = part
    else:
        if len(part) != n:
            raise InvalidVector(f"{n} ids but {len(part)} vectors named {name!r}")
        mat = np.zeros((n, vcfg.dim), np.float32)
        for i, v in enumerate(part):
            present[i] = v is not None
            if v is not None:
                arr = np.asarray(v, dtype=np.float32)
                if arr.shape != (vcfg.dim,):
                    raise DimensionMismatch(f"{what}point #{i}: expected dimension {vcfg.dim}")
                mat[i] = arr
    if mat.ndim != 2 or mat.shape[1] != vcfg.dim:
        got = mat.shape[-1] if mat.ndim else 0
        raise DimensionMismatch(f"{what}expected vectors of dimension {vcfg.dim}, got {got}")
    mat = np.ascontiguousarray(mat, dtype=np.float32)
    finite = np.isfinite(mat).all(axis=1)
    if not finite.all():
        raise InvalidVector(f"{what}vector #{int(np.flatnonzero(~finite)[0])} contains NaN or Inf")
    if vcfg.metric is Metric.cosine:
        zero = present & ~mat.any(axis=1)
        if zero.any():
            raise InvalidVector(
                f"{what}vector #{int(np.flatnonzero(zero)[0])} is all zeros, which has no cosine direction"
            )
    return mat
