"""The sparse vectors of an ingest batch's rows: given in `sparse_fields`, or embedded from the row's text
by each sparse vector's encoder (bm25).

A given value is `{"indices": [...], "values": [...]}` or null (the row has no such vector). A bad one
makes its row a `(line, reason)` error with the reason `Collection.upsert` would give for the batch, so
the good rows still go in.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from encoders import Encoder
from index.contract import SparseVec
from index.errors import InvalidVector
from index.sparse import check_sparse
from server.embedding import embed

__all__ = ["given_sparse", "text_sparse"]


def _one(value: Any, name: str) -> SparseVec | None:
    """One row's value of a sparse field (InvalidVector naming what is wrong)."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"indices", "values"}:
        raise InvalidVector(f'sparse vector {name!r} must be {{"indices": [...], "values": [...]}} or null')
    idx, val = value["indices"], value["values"]
    if not isinstance(idx, list) or not isinstance(val, list):
        raise InvalidVector(f"sparse vector {name!r}: indices and values are lists")
    if any(isinstance(x, bool) or not isinstance(x, int) for x in idx):
        raise InvalidVector(f"sparse vector {name!r}: indices are integers from 0 to 4294967295 (uint32)")
    if any(isinstance(x, bool) or not isinstance(x, int | float) for x in val):
        raise InvalidVector(f"sparse vector {name!r}: values are numbers")
    with np.errstate(over="ignore"):  # past float32: inf, which check_sparse refuses
        vec = SparseVec(np.asarray(idx, np.int64), np.asarray(val, np.float32))  # type: ignore[arg-type]
    return check_sparse(vec, f"sparse vector {name!r}")


def given_sparse(
    columns: dict[str, list[Any]], ok: list[int], bad: dict[int, str]
) -> dict[str, dict[int, SparseVec | None]]:
    """The `ok` rows' sparse vectors by name and row; a row with a bad one goes to `bad`."""
    out: dict[str, dict[int, SparseVec | None]] = {name: {} for name in columns}
    for i in ok:
        for name, col in columns.items():
            try:
                out[name][i] = _one(col[i], name)
            except (InvalidVector, OverflowError, ValueError) as exc:
                bad[i] = str(exc) if isinstance(exc, InvalidVector) else f"sparse vector {name!r}: {exc}"
                break
    return out


def text_sparse(encoders: dict[str, Encoder], texts: list[str]) -> dict[str, list[SparseVec]]:
    """Each text's sparse vector by every encoder (bm25 takes any string: an error is a bug, not a bad row)."""
    out: dict[str, list[SparseVec]] = {}
    for name, enc in encoders.items():
        emb = embed(enc, texts)
        emb.raise_for_errors()
        out[name] = [SparseVec(idx, val) for idx, val in emb.sparse()]
    return out
