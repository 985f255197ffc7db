"""Turning validated wire models into engine inputs (numpy arrays, `Query`) and back."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from index.backends.base import F32
from index.collection import Hit, Query
from index.errors import DimensionMismatch, InvalidVector, LimitExceeded
from nestor_client.models import Batch, MultiVectorInput, Point, SearchRequest, VectorInput

__all__ = [
    "batch_matrix",
    "hit_dict",
    "multivector_array",
    "points_matrix",
    "points_multivectors",
    "to_query",
    "vector_array",
]


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
        if p.vector is None:
            raise InvalidVector(f"point {p.id!r}: this collection holds one vector per point; give it a vector")
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


def multivector_array(mv: MultiVectorInput, dim: int, what: str) -> F32:
    """Token vectors [n, dim] from a list of lists, or base64 (JSON) or bytes (msgpack) of n*dim float32."""
    if isinstance(mv, str | bytes):
        flat = _from_bytes(_b64(mv, what) if isinstance(mv, str) else mv, what)
        if flat.size % dim:
            raise DimensionMismatch(f"{what}: {flat.size} floats are not a whole number of {dim}-dimensional tokens")
        return flat.reshape(-1, dim)
    if not mv:
        return np.empty((0, dim), np.float32)
    try:
        arr = np.asarray(mv, dtype=np.float32)
    except ValueError:
        raise DimensionMismatch(f"{what}: every token vector must have dimension {dim}") from None
    if arr.shape[1] != dim:
        raise DimensionMismatch(f"{what}: expected token vectors of dimension {dim}, got {arr.shape[1]}")
    return arr


def points_multivectors(points: list[Point], dim: int) -> list[F32]:
    out = []
    for p in points:
        if p.multivector is None:
            raise InvalidVector(f"point {p.id!r}: this collection holds multi-vector documents; give it a multivector")
        out.append(multivector_array(p.multivector, dim, f"point {p.id!r}"))
    return out


def to_query(req: SearchRequest, dim: int, max_limit: int, *, multivector: bool = False) -> Query:
    if req.limit + req.offset > max_limit:
        raise LimitExceeded(f"limit + offset = {req.limit + req.offset} exceeds max_search_limit {max_limit}")
    if multivector:
        if req.multivector is None:
            raise InvalidVector("this collection holds multi-vector documents: search with a multivector")
        v = multivector_array(req.multivector, dim, "query multivector")
    elif req.vector is None:
        raise InvalidVector("this collection holds one vector per point: search with a vector")
    else:
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
        if h.multivector is not None:
            d["multivector"] = h.multivector
        else:
            d["vector"] = h.vector
    return d
