"""Columnar upserts with named vectors: dense matrices, sparse columns and texts in one `batch`.

The server's columnar form (`{"batch": {"ids", "vectors": {name: column}, "texts", "payloads"}}`) takes,
per named vector, a matrix (one float32 blob) for a dense vector or a list with one `{"indices",
"values"}` (or null) per id for a sparse one. `sparse_column` builds the latter from what sparse data
usually is in Python: a SciPy sparse matrix, CSR arrays, or a list of sparse vectors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._codec import Wire, encode_matrix, encode_sparse, is_sparse, to_matrix

__all__ = ["ColumnLike", "columns_body", "named_columns", "sparse_column"]

# A named vector's column: a dense (n, dim) matrix, or one sparse vector (or None) per point, or a
# SciPy sparse matrix (any format with `tocsr`), one row per point. (CSR arrays go through
# `sparse_column((indptr, indices, values))`: a bare triple would read as a three-row matrix.)
ColumnLike = Any


def sparse_column(rows: Any) -> list[dict[str, list[Any]] | None]:
    """One `{"indices", "values"}` per row (None where a point has no such vector), ready for a batch.

    `rows` is a SciPy sparse matrix (a row per point; an empty row is an empty vector), a CSR triple
    `(indptr, indices, values)`, or a sequence of sparse vectors (`SparseVector`, dicts) and Nones."""
    if hasattr(rows, "tocsr"):
        csr = rows.tocsr()
        return _from_csr(csr.indptr, csr.indices, csr.data)
    if isinstance(rows, tuple) and len(rows) == 3 and not any(is_sparse(r) or r is None for r in rows):
        return _from_csr(*rows)
    out: list[dict[str, list[Any]] | None] = []
    for i, r in enumerate(rows):
        if r is None:
            out.append(None)
        elif is_sparse(r):
            out.append(encode_sparse(r))
        else:
            got = type(r).__name__
            raise ValueError(f"sparse column, row {i}: expected {{'indices', 'values'}} or None, got {got}")
    return out


def _from_csr(indptr: Any, indices: Any, values: Any) -> list[dict[str, list[Any]] | None]:
    ptr = np.asarray(indptr, dtype=np.int64)
    idx, val = np.asarray(indices), np.asarray(values, dtype=np.float64)
    if ptr.ndim != 1 or len(ptr) == 0 or ptr[0] != 0 or ptr[-1] != len(idx) or len(idx) != len(val):
        raise ValueError("CSR arrays: indptr must start at 0 and end at len(indices), with one value per index")
    if (np.diff(ptr) < 0).any():
        raise ValueError("CSR arrays: indptr must not decrease")
    il, vl = idx.tolist(), val.tolist()
    bounds = ptr.tolist()
    return [{"indices": il[a:b], "values": vl[a:b]} for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _is_sparse_column(col: Any) -> bool:
    if hasattr(col, "tocsr"):
        return True
    if isinstance(col, np.ndarray) or not isinstance(col, Sequence) or isinstance(col, str | bytes):
        return False
    return any(is_sparse(r) for r in col) or (len(col) > 0 and all(r is None for r in col))


def columns_body(
    ids: list[Any],
    vectors: Mapping[str, ColumnLike] | Any,
    texts: Sequence[str | None] | None,
    payloads: Sequence[Mapping[str, Any] | None] | None,
    wire: Wire,
) -> dict[str, Any]:
    """The columnar `batch` of an upsert with named vectors and/or texts; every column has one row per id."""
    n = len(ids)
    batch: dict[str, Any] = {"ids": ids}
    if vectors is not None:
        cols: dict[str, Any] = {}
        for name, col in vectors.items():
            if _is_sparse_column(col):
                sparse = sparse_column(col)
                _same_length(n, len(sparse), f"sparse vectors {name!r}")
                cols[name] = sparse
            else:
                matrix = to_matrix(col)
                _same_length(n, matrix.shape[0], f"vectors {name!r}")
                cols[name] = encode_matrix(matrix, wire)
        batch["vectors"] = cols
    if texts is not None:
        _same_length(n, len(texts), "texts")
        batch["texts"] = list(texts)
    if payloads is not None:
        _same_length(n, len(payloads), "payloads")
        batch["payloads"] = list(payloads)
    if vectors is None and texts is None:
        raise ValueError("a columnar upsert needs vectors, texts, or both")
    return batch


def named_columns(vectors: Mapping[str, ColumnLike]) -> dict[str, Any]:
    """Each column in a form that slices by rows: a float32 matrix, or the sparse column's list."""
    return {k: sparse_column(c) if _is_sparse_column(c) else to_matrix(c) for k, c in vectors.items()}


def _same_length(n: int, got: int, what: str) -> None:
    if got != n:
        raise ValueError(f"{n} ids but {got} {what}")
