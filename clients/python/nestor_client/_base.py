"""What the sync and async clients share: building requests and reading responses, with no I/O.

Each client method asks `BaseClient` for a `Call` (method, path, encoded body, and the parser for
its result) and only does the I/O itself, so the two clients cannot drift apart (the httpx
BaseClient pattern).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypedDict, TypeVar, overload
from urllib.parse import quote

import msgpack
import numpy as np
import orjson
from numpy.typing import NDArray
from pydantic import BaseModel, TypeAdapter

from ._codec import (
    MatrixLike,
    MultiVectorLike,
    VectorLike,
    Wire,
    decode_vector,
    encode_matrix,
    encode_multivector,
    encode_vector,
    to_matrix,
)
from .errors import ApiError, NestorTransportError, error_for
from .models import (
    CollectionConfig,
    CollectionInfo,
    CollectionSummary,
    Filter,
    IngestFormat,
    IngestJobRequest,
    IngestSource,
    JobInfo,
    JobState,
    PayloadIndexParams,
    Point,
    PointId,
    Record,
    ScoredPoint,
    SearchParams,
    SearchRequest,
    UpdateResult,
)

__all__ = [
    "JOB_ENDED",
    "BaseClient",
    "Call",
    "ConfigLike",
    "Envelope",
    "FilterLike",
    "IdsLike",
    "ParamsLike",
    "SchemaLike",
    "PayloadsLike",
    "PointLike",
    "QueryResult",
    "IngestOptions",
    "SearchLike",
    "Snapshot",
    "ingest_request",
    "transport_error",
]

T = TypeVar("T")

ConfigLike = CollectionConfig | Mapping[str, Any]
FilterLike = Filter | Mapping[str, Any]
# A payload index's schema: a type name ("keyword"), or its object form ({"type": "keyword", "is_tenant": true}).
SchemaLike = str | PayloadIndexParams | Mapping[str, Any]
ParamsLike = SearchParams | Mapping[str, Any]
PointLike = Point | Mapping[str, Any]
SearchLike = SearchRequest | Mapping[str, Any]
IdsLike = Sequence[PointId] | NDArray[Any]
PayloadsLike = Sequence[Mapping[str, Any] | None]

_JSON = "application/json"
_MSGPACK = "application/msgpack"

# Measured on 100 hits: one TypeAdapter pass (pydantic-core) beats a Python loop of
# model_construct by about 3x, and also beats per-item model_validate.
_SCORED = TypeAdapter(list[ScoredPoint])
_RECORDS = TypeAdapter(list[Record])


@dataclass(frozen=True, slots=True)
class Envelope:
    """A success body: `{"result": ..., "time": s}`, plus `strategy` on searches."""

    result: Any
    time: float
    strategy: Any = None


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request to send, and how to turn its envelope into the method's return value."""

    method: str
    path: str
    parse: Callable[[Envelope], T]
    body: bytes | None = None
    params: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class QueryResult:
    """The hits of one search, best first; behaves as a read-only sequence of `ScoredPoint`.

    `strategy` names how the server ran the search (e.g. "hnsw", "exact_filtered"); `time` is
    the server-side time in seconds (for a batch, the time of the whole batch).
    """

    points: list[ScoredPoint]
    strategy: str
    time: float

    def __len__(self) -> int:
        return len(self.points)

    def __iter__(self) -> Iterator[ScoredPoint]:
        return iter(self.points)

    @overload
    def __getitem__(self, index: int) -> ScoredPoint: ...
    @overload
    def __getitem__(self, index: slice) -> list[ScoredPoint]: ...
    def __getitem__(self, index: int | slice) -> ScoredPoint | list[ScoredPoint]:
        return self.points[index]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A stored snapshot of a collection: `sha256` is the digest of the whole file (checked on restore)."""

    name: str
    collection: str
    created_at: float
    size: int
    sha256: str
    seq: int
    count: int
    index_included: bool


class BaseClient:
    """Request building and response parsing for one wire format and credential."""

    def __init__(self, *, api_key: str | None, wire: Wire) -> None:
        if wire not in ("json", "msgpack"):
            raise ValueError(f"wire must be 'json' or 'msgpack', not {wire!r}")
        self.wire: Wire = wire
        mime = _MSGPACK if wire == "msgpack" else _JSON
        # Sent per request rather than set on the httpx client, so a caller-supplied client
        # (e.g. a TestClient) still gets them.
        self._headers = {"Accept": mime}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._body_headers = {**self._headers, "Content-Type": mime}

    def headers(self, call: Call[Any]) -> dict[str, str]:
        return self._body_headers if call.body is not None else self._headers

    # -- requests ---------------------------------------------------------------------------

    def health(self) -> Call[bool]:
        return Call("GET", "/healthz", _parse_bool)

    def ready(self) -> Call[bool]:
        return Call("GET", "/readyz", _parse_bool)

    def list_collections(self) -> Call[list[CollectionSummary]]:
        return Call("GET", "/collections", _parse_summaries)

    def create_collection(self, name: str, config: ConfigLike | None, extra: Mapping[str, Any]) -> Call[CollectionInfo]:
        # Sent unvalidated: the server owns the defaults and may know config blocks we do not.
        body = dict(_plain(config)) if config is not None else {}
        body.update({key: _plain(value) for key, value in extra.items()})
        return Call("PUT", _collection(name), _parse_info, self._encode(body))

    def get_collection(self, name: str) -> Call[CollectionInfo]:
        return Call("GET", _collection(name), _parse_info)

    def delete_collection(self, name: str) -> Call[bool]:
        return Call("DELETE", _collection(name), _parse_bool)

    def create_payload_index(
        self, name: str, field_name: str, field_schema: SchemaLike, wait: bool, is_tenant: bool = False
    ) -> Call[bool]:
        schema = _plain(field_schema)
        if is_tenant:
            schema = {"type": schema, "is_tenant": True} if isinstance(schema, str) else {**schema, "is_tenant": True}
        body = {"field_name": field_name, "field_schema": schema}
        params = {"wait": "true" if wait else "false"}
        return Call("PUT", f"{_collection(name)}/index", _parse_created, self._encode(body), params)

    def delete_payload_index(self, name: str, field_name: str) -> Call[bool]:
        return Call("DELETE", f"{_collection(name)}/index/{quote(field_name, safe='')}", _parse_deleted)

    def upsert(
        self,
        name: str,
        points: Sequence[PointLike] | None,
        ids: IdsLike | None,
        vectors: MatrixLike | None,
        payloads: PayloadsLike | None,
        wait: bool,
        multivectors: Sequence[MultiVectorLike] | None = None,
    ) -> Call[UpdateResult]:
        if points is not None:
            if ids is not None or vectors is not None or payloads is not None or multivectors is not None:
                raise ValueError("give either points or the columnar ids/vectors/payloads, not both")
            body: dict[str, Any] = {"points": [self._point(p) for p in points]}
        elif ids is not None and multivectors is not None:
            if vectors is not None:
                raise ValueError("give vectors or multivectors, not both")
            body = {"points": self._multivector_points(_id_list(ids), multivectors, payloads)}
        elif ids is not None and vectors is not None:
            body = {"batch": self._batch(_id_list(ids), to_matrix(vectors), payloads)}
        else:
            raise ValueError("upsert needs points, or ids and vectors")
        return self._upsert_call(name, body, wait)

    def upload(
        self,
        name: str,
        ids: IdsLike,
        vectors: MatrixLike,
        payloads: PayloadsLike | None,
        batch_size: int,
        wait: bool,
    ) -> Iterator[Call[UpdateResult]]:
        """One columnar upsert per chunk, encoded lazily so only one chunk's body is in memory."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        id_list, matrix = _id_list(ids), to_matrix(vectors)
        _check_lengths(len(id_list), matrix, payloads)  # fail before the first chunk is sent
        for start in range(0, len(id_list), batch_size):
            stop = start + batch_size
            chunk = payloads[start:stop] if payloads is not None else None
            body = {"batch": self._batch(id_list[start:stop], matrix[start:stop], chunk)}
            yield self._upsert_call(name, body, wait)

    def delete(self, name: str, ids: IdsLike | None, filter: FilterLike | None) -> Call[UpdateResult]:
        if (ids is None) == (filter is None):
            raise ValueError("delete needs exactly one of ids or filter")
        body = {"ids": _id_list(ids)} if ids is not None else {"filter": _plain(filter)}
        return Call("POST", f"{_collection(name)}/points/delete", _parse_update, self._encode(body))

    def get(self, name: str, ids: IdsLike, with_payload: bool, with_vector: bool | list[str]) -> Call[list[Record]]:
        body = {"ids": _id_list(ids), "with_payload": with_payload, "with_vector": with_vector}
        return Call("POST", f"{_collection(name)}/points/get", _parse_records, self._encode(body))

    def search(
        self,
        name: str,
        vector: VectorLike | None,
        *,
        multivector: MultiVectorLike | None = None,
        limit: int,
        offset: int,
        filter: FilterLike | None,
        params: ParamsLike | None,
        with_payload: bool,
        with_vector: bool | list[str],
        score_threshold: float | None,
        using: str | None = None,
    ) -> Call[QueryResult]:
        body = _search_body(limit, offset, filter, params, with_payload, with_vector, score_threshold, using)
        if vector is not None:
            body["vector"] = encode_vector(vector, self.wire)
        if multivector is not None:
            body["multivector"] = encode_multivector(multivector, self.wire)
        return Call("POST", f"{_collection(name)}/points/search", _parse_query, self._encode(body))

    def search_batch(self, name: str, searches: Sequence[SearchLike]) -> Call[list[QueryResult]]:
        body = {"searches": [self._search_item(s) for s in searches]}
        path = f"{_collection(name)}/points/search/batch"
        return Call("POST", path, _parse_queries, self._encode(body))

    def count(self, name: str, filter: FilterLike | None) -> Call[int]:
        body = {"filter": _plain(filter)} if filter is not None else {}
        return Call("POST", f"{_collection(name)}/points/count", _parse_count, self._encode(body))

    def scroll(
        self,
        name: str,
        filter: FilterLike | None,
        limit: int,
        offset: PointId | None,
        with_payload: bool,
        with_vector: bool | list[str],
    ) -> Call[tuple[list[Record], PointId | None]]:
        body: dict[str, Any] = {"limit": limit, "with_payload": with_payload, "with_vector": with_vector}
        if filter is not None:
            body["filter"] = _plain(filter)
        if offset is not None:
            body["offset"] = offset
        return Call("POST", f"{_collection(name)}/points/scroll", _parse_scroll, self._encode(body))

    def add_query_sample(
        self,
        name: str,
        vectors: Sequence[VectorLike] | None,
        texts: Sequence[str] | None,
        replace: bool,
        using: str | None = None,
    ) -> Call[int]:
        body: dict[str, Any] = {"replace": replace}
        if using is not None:
            body["using"] = using
        if vectors is not None:
            body["vectors"] = [encode_vector(v, self.wire) for v in vectors]
        if texts is not None:
            body["texts"] = list(texts)
        return Call("POST", f"{_collection(name)}/queries/sample", _parse_sample, self._encode(body))

    # -- text and ingest jobs -----------------------------------------------------------------

    def search_text(
        self,
        name: str,
        text: str,
        *,
        limit: int,
        offset: int,
        filter: FilterLike | None,
        params: ParamsLike | None,
        with_payload: bool,
        with_vector: bool | list[str],
        score_threshold: float | None,
        using: str | None = None,
    ) -> Call[QueryResult]:
        body = _search_body(limit, offset, filter, params, with_payload, with_vector, score_threshold, using)
        body["text"] = text
        return Call("POST", f"{_collection(name)}/points/search", _parse_query, self._encode(body))

    def ingest(self, request: IngestJobRequest) -> Call[JobInfo]:
        # Dumped with its Nones: `id_field: null` (number the rows) differs from the default "id".
        return Call("POST", "/jobs/ingest", _parse_job, self._encode(request.model_dump(mode="json")))

    def ingest_upload(self, request: IngestJobRequest) -> Call[JobInfo]:
        """The query of an upload job; the client streams the file itself as the body."""
        src = request.source
        params = {
            "collection": request.collection,
            "format": (src.format or IngestFormat.jsonl).value,
            "id_field": src.id_field or "",
            "batch_size": str(request.batch_size),
            "strict": _flag(request.strict),
            "defer_indexing": _flag(request.defer_indexing),
        }
        for key, value in (("text_field", src.text_field), ("vector_field", src.vector_field)):
            if value is not None:
                params[key] = value
        if src.payload_fields is not None:
            params["payload_fields"] = ",".join(src.payload_fields)
        return Call("POST", "/jobs/ingest/upload", _parse_job, None, params)

    def get_job(self, job_id: str) -> Call[JobInfo]:
        return Call("GET", _job(job_id), _parse_job)

    def list_jobs(self) -> Call[list[JobInfo]]:
        return Call("GET", "/jobs", _parse_jobs)

    def cancel_job(self, job_id: str) -> Call[JobInfo]:
        return Call("POST", f"{_job(job_id)}/cancel", _parse_job)

    def create_snapshot(self, name: str) -> Call[Snapshot]:
        return Call("POST", f"{_collection(name)}/snapshots", _parse_snapshot)

    def list_snapshots(self, name: str) -> Call[list[Snapshot]]:
        return Call("GET", f"{_collection(name)}/snapshots", _parse_snapshots)

    def delete_snapshot(self, name: str, snapshot: str) -> Call[bool]:
        return Call("DELETE", _snapshot(name, snapshot), _parse_bool)

    def download_snapshot(self, name: str, snapshot: str) -> Call[bool]:
        """The download request; the client streams the tar itself (`parse` is unused)."""
        return Call("GET", _snapshot(name, snapshot), _parse_bool)

    def restore_snapshot(self, name: str, snapshot: str, source: str | None) -> Call[CollectionInfo]:
        body = {"snapshot": snapshot, "source": source}
        return Call("POST", f"{_collection(name)}/snapshots/restore", _parse_info, self._encode(body))

    def upload_snapshot(self, name: str, sha256: str | None) -> Call[CollectionInfo]:
        """The query of a snapshot upload; the client streams the file itself as the body."""
        params = {"checksum": sha256} if sha256 else None
        return Call("POST", f"{_collection(name)}/snapshots/upload", _parse_info, None, params)

    def raise_for(self, status: int, content_type: str, content: bytes) -> None:
        """The typed exception for an error response that is not an envelope call (a download)."""
        if status >= 400:
            raise _error_from(status, content_type, content)

    # -- responses --------------------------------------------------------------------------

    def finish(self, call: Call[T], status: int, content_type: str, content: bytes) -> T:
        """The call's result from a raw response, or the typed exception for an error status."""
        if status >= 400:
            raise _error_from(status, content_type, content)
        try:
            data = _loads(content_type, content)
            return call.parse(Envelope(data["result"], data.get("time", 0.0), data.get("strategy")))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ApiError(f"unreadable response: {exc}", status=status, type="invalid_response") from exc

    # -- encoding helpers -------------------------------------------------------------------

    def _encode(self, body: Any) -> bytes:
        if self.wire == "msgpack":
            packed: bytes = msgpack.packb(body, use_bin_type=True, default=_msgpack_default)
            return packed
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)

    def _upsert_call(self, name: str, body: dict[str, Any], wait: bool) -> Call[UpdateResult]:
        params = {"wait": "true" if wait else "false"}
        return Call("PUT", f"{_collection(name)}/points", _parse_update, self._encode(body), params)

    def _point(self, point: PointLike) -> dict[str, Any]:
        if isinstance(point, Point):
            out: dict[str, Any] = {"id": point.id}
            if point.vector is not None:
                out["vector"] = self._vector(point.vector)
            if point.text is not None:
                out["text"] = point.text
            if point.multivector is not None:
                out["multivector"] = encode_multivector(point.multivector, self.wire)
            if point.payload is not None:
                out["payload"] = point.payload
            return out
        out = dict(point)  # unknown keys pass through for the server to judge
        if "vector" in out:
            out["vector"] = self._vector(out["vector"])
        if "multivector" in out:
            out["multivector"] = encode_multivector(out["multivector"], self.wire)
        return out

    def _vector(self, vector: Any) -> Any:
        """A point's vector, or its named vectors (`{name: vector or token vectors}`), in the body's form."""
        if not isinstance(vector, Mapping):
            return encode_vector(vector, self.wire)
        return {name: self._named(v) for name, v in vector.items()}

    def _named(self, v: Any) -> Any:
        if isinstance(v, str | bytes | bytearray | memoryview):
            return encode_vector(v, self.wire)
        arr = np.asarray(v, dtype=np.float32)
        return encode_multivector(arr, self.wire) if arr.ndim == 2 else encode_vector(arr, self.wire)

    def _multivector_points(
        self, ids: list[Any], multivectors: Sequence[MultiVectorLike], payloads: PayloadsLike | None
    ) -> list[dict[str, Any]]:
        if len(multivectors) != len(ids) or (payloads is not None and len(payloads) != len(ids)):
            got = f"{len(multivectors)} multivectors" + ("" if payloads is None else f", {len(payloads)} payloads")
            raise ValueError(f"{len(ids)} ids but {got}")
        out = [
            {"id": i, "multivector": encode_multivector(mv, self.wire)} for i, mv in zip(ids, multivectors, strict=True)
        ]
        for point, payload in zip(out, payloads or [], strict=False):
            if payload is not None:
                point["payload"] = payload
        return out

    def _batch(self, ids: list[Any], matrix: NDArray[np.float32], payloads: PayloadsLike | None) -> dict[str, Any]:
        _check_lengths(len(ids), matrix, payloads)
        batch: dict[str, Any] = {"ids": ids, "vectors": encode_matrix(matrix, self.wire)}
        if payloads is not None:
            batch["payloads"] = list(payloads)
        return batch

    def _search_item(self, search: SearchLike) -> dict[str, Any]:
        if isinstance(search, SearchRequest):
            # Python mode keeps a bytes vector as bytes; encode_vector then fits it to the wire.
            data = search.model_dump(by_alias=True, exclude_none=True)
        else:
            data = {key: _plain(value) for key, value in search.items()}
        if "vector" in data:
            data["vector"] = encode_vector(data["vector"], self.wire)
        if "multivector" in data:
            data["multivector"] = encode_multivector(data["multivector"], self.wire)
        return data


def transport_error(exc: Exception) -> NestorTransportError:
    return NestorTransportError(f"{type(exc).__name__}: {exc}")


def _collection(name: str) -> str:
    # Quote everything so a name can never reach another route ("a/b", "..").
    return "/collections/" + quote(name, safe="")


def _plain(value: Any) -> Any:
    """A request field as plain data: models are dumped by alias ("except"), without unset Nones."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    return value


def _id_list(ids: IdsLike) -> list[Any]:
    return ids.tolist() if isinstance(ids, np.ndarray) else list(ids)


def _check_lengths(n: int, matrix: NDArray[np.float32], payloads: PayloadsLike | None) -> None:
    if matrix.shape[0] != n:
        raise ValueError(f"{n} ids but {matrix.shape[0]} vectors")
    if payloads is not None and len(payloads) != n:
        raise ValueError(f"{n} ids but {len(payloads)} payloads")


def _msgpack_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode {type(obj).__name__} in msgpack")


def _loads(content_type: str, content: bytes) -> Any:
    if content_type.lower().startswith((_MSGPACK, "application/x-msgpack")):
        return msgpack.unpackb(content, raw=False)
    return orjson.loads(content)


def _error_from(status: int, content_type: str, content: bytes) -> ApiError:
    try:
        error = _loads(content_type, content)["error"]
        return error_for(status, str(error["type"]), str(error.get("message", "")))
    except (ValueError, KeyError, TypeError, AttributeError):
        # Not our envelope (a proxy page, a framework default): keep the start of the body.
        text = content[:500].decode("utf-8", "replace").strip()
        return error_for(status, "unknown", text or f"HTTP {status}")


def _decode_vectors(hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # msgpack answers carry vectors as float32 bytes and JSON may carry base64; the models hold lists.
    for hit in hits:
        vector = hit.get("vector")
        if isinstance(vector, str | bytes):
            hit["vector"] = decode_vector(vector)
    return hits


def _snapshot(name: str, snapshot: str) -> str:
    return f"{_collection(name)}/snapshots/{quote(snapshot, safe='')}"


def _parse_snapshot(env: Envelope) -> Snapshot:
    return Snapshot(**env.result)


def _parse_snapshots(env: Envelope) -> list[Snapshot]:
    return [Snapshot(**s) for s in env.result["snapshots"]]


def _parse_bool(env: Envelope) -> bool:
    return bool(env.result)


def _parse_created(env: Envelope) -> bool:
    return bool(env.result["created"])


def _parse_deleted(env: Envelope) -> bool:
    return bool(env.result["deleted"])


def _parse_sample(env: Envelope) -> int:
    return int(env.result["size"])


def _parse_count(env: Envelope) -> int:
    return int(env.result["count"])


def _parse_summaries(env: Envelope) -> list[CollectionSummary]:
    return [CollectionSummary.model_validate(c) for c in env.result["collections"]]


def _parse_info(env: Envelope) -> CollectionInfo:
    return CollectionInfo.model_validate(env.result)


def _parse_update(env: Envelope) -> UpdateResult:
    return UpdateResult.model_validate(env.result)


def _parse_records(env: Envelope) -> list[Record]:
    return _RECORDS.validate_python(_decode_vectors(env.result))


def _parse_scroll(env: Envelope) -> tuple[list[Record], PointId | None]:
    page = env.result
    return _RECORDS.validate_python(_decode_vectors(page["points"])), page.get("next_page_offset")


def _parse_query(env: Envelope) -> QueryResult:
    points = _SCORED.validate_python(_decode_vectors(env.result))
    return QueryResult(points, str(env.strategy or ""), float(env.time))


def _parse_job(env: Envelope) -> JobInfo:
    return JobInfo.model_validate(env.result)


def _parse_jobs(env: Envelope) -> list[JobInfo]:
    return [JobInfo.model_validate(j) for j in env.result["jobs"]]


def _job(job_id: str) -> str:
    return "/jobs/" + quote(job_id, safe="")


def _flag(value: bool) -> str:
    return "true" if value else "false"


JOB_ENDED = frozenset({JobState.succeeded, JobState.failed, JobState.cancelled})


class IngestOptions(TypedDict, total=False):
    """The keywords of `ingest` and `ingest_file`; see `IngestSource` and `IngestJobRequest`."""

    format: str
    id_field: str | None
    text_field: str | None
    vector_field: str | None
    payload_fields: Sequence[str] | None
    ids_path: str | None
    payload_path: str | None
    batch_size: int
    strict: bool
    defer_indexing: bool


def ingest_request(collection: str, path: str, options: Mapping[str, Any]) -> IngestJobRequest:
    """An `IngestJobRequest` from a client method's keywords (validated here, before anything is sent)."""
    job_keys = {"batch_size", "strict", "defer_indexing"}
    source = {k: v for k, v in options.items() if k not in job_keys}
    job = {k: v for k, v in options.items() if k in job_keys}
    return IngestJobRequest(collection=collection, source=IngestSource(path=str(path), **source), **job)


def _parse_queries(env: Envelope) -> list[QueryResult]:
    n = len(env.result)
    strategies = env.strategy if isinstance(env.strategy, list) else [env.strategy] * n
    if len(strategies) != n:
        raise ValueError(f"{n} result lists but {len(strategies)} strategies")
    return [
        QueryResult(_SCORED.validate_python(_decode_vectors(hits)), str(s or ""), float(env.time))
        for hits, s in zip(env.result, strategies, strict=True)
    ]


def _search_body(
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
        body["filter"] = _plain(filter)
    if params is not None:
        body["params"] = _plain(params)
    if score_threshold is not None:
        body["score_threshold"] = score_threshold
    return body
