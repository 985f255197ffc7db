"""The checks a sharded upsert makes before anything is sent, so no shard takes half of a bad batch."""

from __future__ import annotations

from typing import Any

import numpy as np

from index.backends.base import F32
from index.dense import check_rows
from index.errors import DimensionMismatch, InvalidVector
from nestor_client.models import VectorConfig

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
    return check_rows(np.asarray(mat), vcfg.dim, vcfg.metric, what, present)
