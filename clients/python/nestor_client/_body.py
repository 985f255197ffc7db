"""Request bodies: the input shapes a client method accepts, and their encoding for the wire.

Points, columnar batches, multivector points and search items become plain dicts whose vectors are
already in the wire's form (`_codec`); `encode_body` then serialises the whole dict. An ingest job's
keywords become an `IngestJobRequest`, validated before anything is sent. No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import msgpack
import numpy as np
import orjson
from numpy.typing import NDArray
from pydantic import BaseModel

from ._codec import MultiVectorLike, Wire, encode_matrix, encode_multivector, encode_sparse, encode_vector, is_sparse
from .models import (
    CollectionConfig,
    Filter,
    IngestJobRequest,
    IngestSource,
    PayloadIndexParams,
    Point,
    PointId,
    SearchParams,
    SearchRequest,
)

__all__ = [
    "ConfigLike",
    "FilterLike",
    "IdsLike",
    "IngestOptions",
    "ParamsLike",
    "PayloadsLike",
    "PointLike",
    "SchemaLike",
    "SearchLike",
    "batch_body",
    "check_lengths",
    "encode_body",
    "encode_point",
    "id_list",
    "ingest_request",
    "multivector_points",
    "plain",
    "search_body",
    "search_item",
]

ConfigLike = CollectionConfig | Mapping[str, Any]
FilterLike = Filter | Mapping[str, Any]
# A payload index's schema: a type name ("keyword"), or its object form ({"type": "keyword", "is_tenant": true}).
SchemaLike = str | PayloadIndexParams | Mapping[str, Any]
ParamsLike = SearchParams | Mapping[str, Any]
PointLike = Point | Mapping[str, Any]
SearchLike = SearchRequest | Mapping[str, Any]
IdsLike = Sequence[PointId] | NDArray[Any]
PayloadsLike = Sequence[Mapping[str, Any] | None]


class IngestOptions(TypedDict, total=False):
    """The keywords of `ingest` and `ingest_file`; see `IngestSource` and `IngestJobRequest`."""

    format: str
    id_field: str | None
    text_field: str | None
    vector_field: str | None
    payload_fields: Sequence[str] | None
    sparse_fields: Mapping[str, str] | None
    ids_path: str | None
    payload_path: str | None
    batch_size: int
    strict: bool
    defer_indexing: bool


def encode_body(body: Any, wire: Wire) -> bytes:
    """The serialised body: msgpack (numpy values as lists or scalars) or JSON."""
    if wire == "msgpack":
        packed: bytes = msgpack.packb(body, use_bin_type=True, default=_msgpack_default)
        return packed
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def _msgpack_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode {type(obj).__name__} in msgpack")


def plain(value: Any) -> Any:
    """A request field as plain data: models are dumped by alias ("except"), without unset Nones."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    return value


def id_list(ids: IdsLike) -> list[Any]:
    return ids.tolist() if isinstance(ids, np.ndarray) else list(ids)


def check_lengths(n: int, matrix: NDArray[np.float32], payloads: PayloadsLike | None) -> None:
    if matrix.shape[0] != n:
        raise ValueError(f"{n} ids but {matrix.shape[0]} vectors")
    if payloads is not None and len(payloads) != n:
        raise ValueError(f"{n} ids but {len(payloads)} payloads")


def encode_point(point: PointLike, wire: Wire) -> dict[str, Any]:
    """One point of a `points` body, its vectors in the wire's form."""
    if isinstance(point, Point):
        out: dict[str, Any] = {"id": point.id}
        if point.vector is not None:
            out["vector"] = _point_vector(point.vector, wire)
        if point.text is not None:
            out["text"] = point.text
        if point.multivector is not None:
            out["multivector"] = encode_multivector(point.multivector, wire)
        if point.payload is not None:
            out["payload"] = point.payload
        return out
    out = dict(point)  # unknown keys pass through for the server to judge
    if "vector" in out:
        out["vector"] = _point_vector(out["vector"], wire)
    if "multivector" in out:
        out["multivector"] = encode_multivector(out["multivector"], wire)
    return out


def _point_vector(vector: Any, wire: Wire) -> Any:
    """A point's vector, or its named vectors (`{name: vector or token vectors}`), in the body's form."""
    if not isinstance(vector, Mapping):
        return encode_vector(vector, wire)
    return {name: _named(v, wire) for name, v in vector.items()}


def _named(v: Any, wire: Wire) -> Any:
    if is_sparse(v):
        return encode_sparse(v)
    if isinstance(v, str | bytes | bytearray | memoryview):
        return encode_vector(v, wire)
    arr = np.asarray(v, dtype=np.float32)
    return encode_multivector(arr, wire) if arr.ndim == 2 else encode_vector(arr, wire)


def multivector_points(
    ids: list[Any], multivectors: Sequence[MultiVectorLike], payloads: PayloadsLike | None, wire: Wire
) -> list[dict[str, Any]]:
    """The `points` of a columnar multivector upsert: one point per id, with its token vectors."""
    if len(multivectors) != len(ids) or (payloads is not None and len(payloads) != len(ids)):
        got = f"{len(multivectors)} multivectors" + ("" if payloads is None else f", {len(payloads)} payloads")
        raise ValueError(f"{len(ids)} ids but {got}")
    out = [{"id": i, "multivector": encode_multivector(mv, wire)} for i, mv in zip(ids, multivectors, strict=True)]
    for point, payload in zip(out, payloads or [], strict=False):
        if payload is not None:
            point["payload"] = payload
    return out


def batch_body(
    ids: list[Any], matrix: NDArray[np.float32], payloads: PayloadsLike | None, wire: Wire
) -> dict[str, Any]:
    """The columnar `batch` of an upsert: ids, the matrix as one blob, payloads."""
    check_lengths(len(ids), matrix, payloads)
    batch: dict[str, Any] = {"ids": ids, "vectors": encode_matrix(matrix, wire)}
    if payloads is not None:
        batch["payloads"] = list(payloads)
    return batch


def search_item(search: SearchLike, wire: Wire) -> dict[str, Any]:
    """One search of a batch, its query vector in the wire's form."""
    if isinstance(search, SearchRequest):
        # Python mode keeps a bytes vector as bytes; encode_vector then fits it to the wire.
        data = search.model_dump(by_alias=True, exclude_none=True)
    else:
        data = {key: plain(value) for key, value in search.items()}
    if "vector" in data:
        v = data["vector"]
        data["vector"] = encode_sparse(v) if is_sparse(v) else encode_vector(v, wire)
    if "multivector" in data:
        data["multivector"] = encode_multivector(data["multivector"], wire)
    return data


def search_body(
    limit: int,
    offset: int,
    filter: FilterLike | None,
    params: ParamsLike | None,
    with_payload: bool,
    with_vector: bool | list[str],
    score_threshold: float | None,
    using: str | None = None,
) -> dict[str, Any]:
    """The fields every search body shares, whatever carries the query (vector, multivector, text)."""
    body: dict[str, Any] = {"limit": limit, "offset": offset, "with_payload": with_payload, "with_vector": with_vector}
    if using is not None:
        body["using"] = using
    if filter is not None:
        body["filter"] = plain(filter)
    if params is not None:
        body["params"] = plain(params)
    if score_threshold is not None:
        body["score_threshold"] = score_threshold
    return body


def ingest_request(collection: str, path: str, options: Mapping[str, Any]) -> IngestJobRequest:
    """An `IngestJobRequest` from a client method's keywords (validated here, before anything is sent)."""
    job_keys = {"batch_size", "strict", "defer_indexing"}
    source = {k: v for k, v in options.items() if k not in job_keys}
    job = {k: v for k, v in options.items() if k in job_keys}
    return IngestJobRequest(collection=collection, source=IngestSource(path=str(path), **source), **job)
