"""Points between the dialects: Qdrant's vector structs in, Qdrant's `Record` / `ScoredPoint` out.

A Qdrant point's `vector` is a list (the default vector), a list of lists (a multivector default), or
`{name: vector}`. Out, a collection with one unnamed vector shows it as a list, named ones as a map.
Payload selectors (`with_payload` as a list of keys, `include` or `exclude`) are applied here, on the
payloads the engine read; dotted keys select inside objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from index.contract import AnyCollection, Hit
from index.errors import DimensionMismatch
from nestor_client.models import CollectionConfig, VectorConfig
from server.convert import multivector_array, vector_array
from server.qdrant.models import PayloadExclude, PayloadInclude, WithPayload, WithVector
from server.qdrant.pipeline import sparse_vector
from server.qdrant.wire import QdrantError

__all__ = ["batch_vectors", "engine_with_payload", "one_vector", "point_vectors", "record", "scored"]


def _default_name(config: CollectionConfig) -> str:
    fields = config.vector_fields()
    if "" in fields:
        return ""
    raise QdrantError(
        f"Wrong input: this collection has only named vectors {sorted(fields)}: give vectors as {{name: vector}}"
    )


def one_vector(raw: Any, vcfg: VectorConfig, what: str) -> np.ndarray[Any, np.dtype[np.float32]]:
    """One vector of a point or query, checked against its field (dense or multivector)."""
    if isinstance(raw, dict):
        if "indices" in raw:
            raise QdrantError(f"Wrong input: {what}: this vector is dense, not sparse")
        raise QdrantError(f"Bad request: {what}: inference objects (text, image) are not supported; send vectors")
    if not isinstance(raw, list):
        raise QdrantError(f"Format error in JSON body: {what}: a vector is a list of numbers")
    try:
        if vcfg.multivector is not None:
            if raw and not isinstance(raw[0], list):
                raise QdrantError(f"Wrong input: {what}: this vector is a multivector: give a list of vectors")
            return multivector_array(raw, vcfg.dim, what)
        if raw and isinstance(raw[0], list):
            raise QdrantError(f"Wrong input: {what}: this vector is dense: give one list of {vcfg.dim} numbers")
        v = vector_array(raw, what)
    except (TypeError, ValueError):
        raise QdrantError(f"Format error in JSON body: {what}: a vector is a list of numbers") from None
    if v.shape != (vcfg.dim,):
        raise DimensionMismatch(f"Vector dimension error: expected dim: {vcfg.dim}, got {v.shape[-1] if v.ndim else 0}")
    return v


def point_vectors(ids: Sequence[Any], raws: Sequence[Any], config: CollectionConfig) -> dict[str, list[Any]]:
    """Each field's vectors of an upsert in the list form: one array (a `SparseVec` for a sparse vector)
    per point, None where it has none."""
    fields, sparse = config.vector_fields(), config.sparse_fields()
    out: dict[str, list[Any]] = {name: [None] * len(raws) for name in [*fields, *sparse]}
    for i, (pid, raw) in enumerate(zip(ids, raws, strict=True)):
        given = raw if isinstance(raw, dict) and "indices" not in raw and "text" not in raw else None
        if given is None:
            if raw is None:
                raise QdrantError(f"Format error in JSON body: point {pid!r}: vector is required")
            given = {_default_name(config): raw}
        for name, v in given.items():
            if name in sparse:
                out[name][i] = sparse_vector(v, f"point {pid!r}, sparse vector {name!r}")
                continue
            vcfg = fields.get(name)
            if vcfg is None:
                raise QdrantError(f"Wrong input: Not existing vector name error: {name} (point {pid!r})")
            out[name][i] = one_vector(v, vcfg, f"point {pid!r}" + (f", vector {name!r}" if name else ""))
    return out


def batch_vectors(ids: Sequence[Any], raw: Any, config: CollectionConfig) -> dict[str, list[Any]]:
    """The columnar form: a list of vectors (the default vector), or `{name: [vectors]}`."""
    by_name = raw if isinstance(raw, dict) else {_default_name(config): raw}
    per_point: list[dict[str, Any]] = [{} for _ in ids]
    for name, vectors in by_name.items():
        if not isinstance(vectors, list) or len(vectors) != len(ids):
            raise QdrantError(f"Wrong input: batch.vectors{f'.{name}' if name else ''}: need one vector per id")
        for i, v in enumerate(vectors):
            per_point[i][name] = v
    return point_vectors(ids, per_point, config)


def engine_with_payload(selector: WithPayload) -> bool:
    return selector is not False


def _select(payload: dict[str, Any] | None, selector: WithPayload) -> dict[str, Any] | None:
    if selector is False:
        return None
    if selector is True or payload is None:
        return payload
    if isinstance(selector, PayloadExclude):
        return {k: v for k, v in payload.items() if k not in set(selector.exclude)}
    keys = selector.include if isinstance(selector, PayloadInclude) else selector
    out: dict[str, Any] = {}
    for key in keys:
        node: Any = payload
        parts = key.split(".")
        for part in parts:
            node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
        if node is _MISSING:
            continue
        dst = out
        for part in parts[:-1]:
            dst = dst.setdefault(part, {})
        dst[parts[-1]] = node
    return out


_MISSING = object()


def _vectors(h: Hit, with_vector: WithVector, config: CollectionConfig) -> Any:
    if with_vector is False:
        return None
    vecs = h.vectors or {}
    if not config.named and not config.sparse_vectors and with_vector is True:
        return vecs.get("")
    return dict(vecs)


def record(h: Hit, with_payload: WithPayload, with_vector: WithVector, coll: AnyCollection) -> dict[str, Any]:
    return {
        "id": h.id,
        "payload": _select(h.payload, with_payload),
        "vector": _vectors(h, with_vector, coll.config),
    }


def scored(
    h: Hit, score: float, with_payload: WithPayload, with_vector: WithVector, coll: AnyCollection
) -> dict[str, Any]:
    out = record(h, with_payload, with_vector, coll)
    out["version"] = 0
    out["score"] = score
    return out
