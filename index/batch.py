"""An upsert batch on its way in: shape checks, one prepared batch per named vector, and the vmasks.

A point may omit named vectors. Each field prepares its part (validated, normalised, zeros where a
point omits it), and `vmasks` records, per point, the bits of the vectors it has (None when it has
them all, the common case), which SQLite stores with the point.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from index.contract import PointIdT, VectorsIn
from index.dense import DenseBatch, DenseField
from index.errors import DuplicateId, InvalidVector
from index.multivector import MultiBatch, MultiVectorField
from index.sparse import SparseBatch, SparseField
from nestor_client.models import CollectionConfig

__all__ = ["Batch", "Field", "check_batch", "default_vector", "field_batches", "vmasks"]

Field = DenseField | MultiVectorField | SparseField
Batch = DenseBatch | MultiBatch | SparseBatch


def check_batch(ids: list[PointIdT], n_vectors: int, payloads: list[dict[str, Any] | None] | None) -> None:
    """The shape checks of an upsert batch: one vector set (and payload, if any) per id, no id twice."""
    if len(ids) != n_vectors:
        raise InvalidVector(f"{len(ids)} ids but {n_vectors} vectors")
    if payloads is not None and len(payloads) != len(ids):
        raise InvalidVector(f"{len(ids)} ids but {len(payloads)} payloads")
    if len(set(ids)) != len(ids):
        seen: set[PointIdT] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise DuplicateId(f"id {dup!r} appears more than once in the batch")


def default_vector(config: CollectionConfig) -> str | None:
    """The vector a request that names none means: "", or the only one; None when that is ambiguous."""
    names = list(config.vector_fields())
    return "" if "" in names else names[0] if len(names) == 1 else None


def field_batches(
    fields: dict[str, Field], default: str, ids: list[PointIdT], vectors: VectorsIn, *, stored: bool
) -> dict[str, Batch]:
    """Each field's prepared part of an upsert; a bare matrix (or token list) is the `default` vector's."""
    n = len(ids)
    if isinstance(vectors, Mapping):
        given: Mapping[str, Any] = vectors
        unknown = sorted(set(given) - set(fields))
        if unknown:
            have = ", ".join(repr(x) for x in fields)
            raise InvalidVector(f"no vector named {', '.join(map(repr, unknown))} in this collection; it has {have}")
    else:
        given = {default: vectors}
    out: dict[str, Batch] = {}
    for fname, f in fields.items():
        part = given.get(fname)
        if part is None:
            out[fname] = f.missing(n)
            continue
        if len(part) != n:
            raise InvalidVector(f"{n} ids but {len(part)} vectors named {fname!r}")
        out[fname] = f.prepare_batch(part, n, stored=stored)  # type: ignore[arg-type]
    return out


def vmasks(batches: dict[str, Batch], bits: dict[str, int], n: int) -> list[int | None]:
    """Per point, the bits of the vectors it has; None when it has every one."""
    if all(b.present is None for b in batches.values()):
        return [None] * n
    mask = np.zeros(n, np.int64)
    for fname, b in batches.items():
        mask |= np.where(b.present if b.present is not None else True, bits[fname], 0)
    full = sum(bits.values())
    return [None if m == full else m for m in mask.tolist()]
