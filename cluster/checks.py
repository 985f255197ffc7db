"""The checks a sharded upsert makes before anything is sent, so no shard takes half of a bad batch."""

from __future__ import annotations

from typing import Any

import numpy as np

from index.backends.base import F32
from index.contract import SparseVec
from index.dense import check_rows
from index.errors import DimensionMismatch, InvalidVector
from index.sparse import check_sparse
from nestor_client.models import VectorConfig

__all__ = ["checked_sparse", "checked_vectors"]


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


def checked_sparse(part: Any, n: int, name: str) -> list[SparseVec | None]:
    """One sparse vector of a batch, checked and sorted as stored (None where a point omits it)."""
    if isinstance(part, np.ndarray) or len(part) != n:
        raise InvalidVector(f"{n} ids but {len(part)} sparse vectors named {name!r}")
    out: list[SparseVec | None] = []
    for i, v in enumerate(part):
        if v is not None and not isinstance(v, SparseVec):
            raise InvalidVector(f'vector {name!r}: point #{i}: a sparse vector is {{"indices", "values"}}')
        out.append(None if v is None else check_sparse(v, f"vector {name!r}: point #{i}"))
    return out
