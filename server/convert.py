"""Turning validated wire models into engine inputs (numpy arrays, `Query`) and back."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from index.backends.base import F32
from index.collection import Hit, Query
from index.errors import DimensionMismatch, InvalidVector, LimitExceeded
from nestor_client.models import Batch, Point, SearchRequest, VectorInput

__all__ = ["batch_matrix", "hit_dict", "points_matrix", "to_query", "vector_array"]


def _from_bytes(raw: bytes, what: str) -> F32:
    if len(raw) % 4:
        raise InvalidVector(f"{what}: {len(raw)} bytes is not a whole number of float32 values")
    return np.frombuffer(raw, dtype="<f4")


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidVector(f"{what}: not valid base64 float32 ({exc})") from None


def vector_array(v: VectorInput, what: str = "vector") -> F32:
    if isinstance(v, bytes):
        return _from_bytes(v, what)
    if isinstance(v, str):
        return _from_bytes(_b64(v, what), what)
    return np.asarray(v, dtype=np.float32)


def points_matrix(points: list[Point], dim: int) -> F32:
    mat = np.empty((len(points), dim), dtype=np.float32)
    for i, p in enumerate(points):
        v = vector_array(p.vector, f"point {p.id!r}")
        if v.shape != (dim,):
            raise DimensionMismatch(f"point {p.id!r}: expected dimension {dim}, got {v.shape[-1] if v.ndim else 0}")
        mat[i] = v
    return mat


def batch_matrix(batch: Batch, dim: int) -> F32:
    n = len(batch.ids)
    v = batch.vectors
    if isinstance(v, (str, bytes)):
        flat = _from_bytes(_b64(v, "batch.vectors") if isinstance(v, str) else v, "batch.vectors")
        if flat.size != n * dim:
            raise DimensionMismatch(
                f"batch.vectors holds {flat.size} floats; {n} ids x dimension {dim} needs {n * dim}"
            )
        return flat.reshape(n, dim)
    if len(v) != n:
        raise InvalidVector(f"{n} ids but {len(v)} vectors")
    try:
        return np.asarray(v, dtype=np.float32).reshape(n, -1) if n else np.empty((0, dim), np.float32)
    except ValueError:
        raise DimensionMismatch(f"batch.vectors rows must all have dimension {dim}") from None


def to_query(req: SearchRequest, dim: int, max_limit: int) -> Query:
    if req.limit + req.offset > max_limit:
        raise LimitExceeded(f"limit + offset = {req.limit + req.offset} exceeds max_search_limit {max_limit}")
    v = vector_array(req.vector)
    if v.shape != (dim,):
        raise DimensionMismatch(f"expected a query vector of dimension {dim}, got {v.shape[-1] if v.ndim else 0}")
    return Query(
        vector=v,
        limit=req.limit,
        offset=req.offset,
        filter=req.filter,
        params=req.params,
        with_payload=req.with_payload,
        with_vector=req.with_vector,
        score_threshold=req.score_threshold,
    )


def hit_dict(h: Hit, with_payload: bool, with_vector: bool) -> dict[str, Any]:
    d: dict[str, Any] = {"id": h.id, "score": h.score}
    if with_payload:
        d["payload"] = h.payload
    if with_vector:
        d["vector"] = h.vector
    return d
