"""Turning validated wire models into engine inputs (numpy arrays, `Query`) and back."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

import numpy as np

from index.backends.base import F32
from index.contract import CollectionReader, Hit, Query, SparseVec
from index.errors import DimensionMismatch, InvalidVector, LimitExceeded
from nestor_client.models import (
    Batch,
    CollectionConfig,
    MultiVectorInput,
    Point,
    SearchRequest,
    SparseVector,
    VectorConfig,
    VectorInput,
)

__all__ = [
    "batch_matrix",
    "batch_vectors",
    "hit_dict",
    "multivector_array",
    "point_vectors",
    "points_matrix",
    "sparse_vec",
    "to_query",
    "vector_array",
]


_MAX_UINT32 = 2**32 - 1


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
        if p.vector is None or isinstance(p.vector, dict):
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
    if not isinstance(v, list):
        raise InvalidVector("batch.vectors: give a matrix (a list of vectors, or float32 bytes)")
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


def sparse_vec(v: SparseVector, what: str = "sparse vector") -> SparseVec:
    """A wire sparse vector as the engine's arrays (which checks the rest: lengths, duplicates, NaN)."""
    if v.indices and (min(v.indices) < 0 or max(v.indices) > _MAX_UINT32):
        raise InvalidVector(f"{what}: sparse indices are integers from 0 to {_MAX_UINT32} (uint32)")
    return SparseVec(np.asarray(v.indices, np.uint32), np.asarray(v.values, np.float32))


def point_vectors(points: Sequence[Point], config: CollectionConfig) -> dict[str, list[Any]]:
    """Each vector of an upsert by name: one array per point, None where the point omits it.

    `vector` is the default vector itself, or `{name: vector}`; `multivector` is a multivector default
    vector. Texts are left as None here: `server.embedding.embed_point_texts` fills them in."""
    fields = config.vector_fields()
    sparse = config.sparse_fields()
    default = "" if "" in fields else next(iter(fields)) if len(fields) == 1 else None
    out: dict[str, list[Any]] = {name: [None] * len(points) for name in [*fields, *sparse]}
    for i, p in enumerate(points):
        given: dict[str, Any]
        if isinstance(p.vector, dict):
            given = p.vector
        elif p.vector is not None or p.multivector is not None:
            if default is None:
                raise InvalidVector(
                    f"point {p.id!r}: this collection has named vectors {sorted(fields)}; give them as {{name: vector}}"
                )
            given = {default: p.vector if p.vector is not None else p.multivector}
        else:
            continue
        for name, raw in given.items():
            what = f"point {p.id!r}" + (f", vector {name!r}" if name else "")
            if name in sparse:
                if not isinstance(raw, SparseVector):
                    raise InvalidVector(f'{what}: a sparse vector is {{"indices": [...], "values": [...]}}')
                out[name][i] = sparse_vec(raw, what)
                continue
            vcfg = fields.get(name)
            if vcfg is None:
                raise InvalidVector(
                    f"point {p.id!r}: no vector named {name!r} in this collection; it has {sorted(out)}"
                )
            out[name][i] = _one(raw, vcfg, what)
    return out


def _one(raw: Any, vcfg: VectorConfig, what: str) -> F32:
    if isinstance(raw, SparseVector):
        raise InvalidVector(f"{what}: this vector is dense, not sparse")
    if vcfg.multivector is not None:
        if isinstance(raw, list) and raw and not isinstance(raw[0], list):
            raise InvalidVector(f"{what}: a multivector is a list of token vectors")
        return multivector_array(raw, vcfg.dim, what)
    if isinstance(raw, list) and raw and isinstance(raw[0], list):
        raise InvalidVector(f"{what}: this vector is dense; give one list of {vcfg.dim} floats")
    v = vector_array(raw, what)
    if v.shape != (vcfg.dim,):
        raise DimensionMismatch(f"{what}: expected dimension {vcfg.dim}, got {v.shape[-1] if v.ndim else 0}")
    return v


def batch_vectors(batch: Batch, config: CollectionConfig) -> F32 | dict[str, Any]:
    """A columnar upsert's columns: the default vector's matrix, or by name a dense vector's matrix or a
    sparse vector's list (None where a point has none). Texts are embedded by `server.columnar`."""
    fields, sparse = config.vector_fields(), config.sparse_fields()
    if batch.vectors is None:
        return {}
    if not isinstance(batch.vectors, dict):
        default = "" if "" in fields else next(iter(fields)) if len(fields) == 1 else None
        if default is None or fields[default].multivector is not None:
            raise InvalidVector("this collection's batch form takes {name: matrix} of its dense named vectors")
        return batch_matrix(batch, fields[default].dim)
    out: dict[str, Any] = {}
    for name, mat in batch.vectors.items():
        if name in sparse:
            out[name] = sparse_column(mat, name)
            continue
        vcfg = fields.get(name)
        if vcfg is None or vcfg.multivector is not None:
            raise InvalidVector(f"batch.vectors: {name!r} is not a dense or sparse vector of this collection")
        if isinstance(mat, list) and any(isinstance(row, SparseVector) for row in mat):
            raise InvalidVector(f"batch.vectors: {name!r} is a dense vector: give its matrix, not sparse vectors")
        out[name] = batch_matrix(batch.model_copy(update={"vectors": mat}), vcfg.dim)
    return out


def sparse_column(col: Any, name: str) -> list[SparseVec | None]:
    """A sparse vector's column of a batch as the engine takes it (one `SparseVec` or None per point)."""
    if not isinstance(col, list) or any(row is not None and not isinstance(row, SparseVector) for row in col):
        raise InvalidVector(f'batch.vectors: {name!r} is sparse: give a list of {{"indices", "values"}} (or null)')
    what = f"batch.vectors.{name}"
    return [None if row is None else sparse_vec(row, f"{what}[{i}]") for i, row in enumerate(col)]


def to_query(req: SearchRequest, coll: CollectionReader, max_limit: int) -> Query:
    if req.limit + req.offset > max_limit:
        raise LimitExceeded(f"limit + offset = {req.limit + req.offset} exceeds max_search_limit {max_limit}")
    if req.using is not None and req.using in coll.config.sparse_fields():
        return _sparse_query(req)
    name, vcfg = coll.vector_config(req.using)
    if isinstance(req.vector, SparseVector):
        what = f"vector {name!r}" if name else "the default vector"
        raise InvalidVector(f"{what} is dense: a sparse query needs 'using', the name of a sparse vector")
    dim = vcfg.dim
    if vcfg.multivector is not None:
        if req.multivector is None:
            raise InvalidVector("this vector holds multi-vector documents: search with a multivector")
        v = multivector_array(req.multivector, dim, "query multivector")
    elif req.vector is None:
        raise InvalidVector("this vector holds one vector per point: search with a vector")
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
        using=name,
    )


def _sparse_query(req: SearchRequest) -> Query:
    if not isinstance(req.vector, SparseVector):
        raise InvalidVector(f'vector {req.using!r} is sparse: search it with "vector": {{"indices", "values"}}')
    return Query(
        vector=np.zeros(0, np.float32),
        sparse=sparse_vec(req.vector),
        limit=req.limit,
        offset=req.offset,
        filter=req.filter,
        params=req.params,
        with_payload=req.with_payload,
        with_vector=req.with_vector,
        score_threshold=req.score_threshold,
        using=req.using,
    )


def hit_dict(h: Hit, with_payload: bool, with_vector: bool | list[str], config: CollectionConfig) -> dict[str, Any]:
    """A hit as the wire shows it: one unnamed vector as `vector` (or `multivector`), named ones as a map."""
    d: dict[str, Any] = {"id": h.id, "score": h.score}
    if with_payload:
        d["payload"] = h.payload
    if with_vector:
        vecs = h.vectors or {}
        if config.named or config.sparse_vectors:
            d["vector"] = vecs
        elif config.multivector is not None:
            d["multivector"] = vecs.get("")
        else:
            d["vector"] = vecs.get("")
    return d
