"""What the sync and async clients share: building requests and reading responses, with no I/O.

Each client method asks `BaseClient` for a `Call` (method, path, encoded body, and the parser for
its result) and only does the I/O itself, so the two clients cannot drift apart (the httpx
BaseClient pattern). `BaseClient` owns the endpoints; the bodies are built in `_body`, the
responses read in `_response`, and the names users import from here are re-exported.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast
from urllib.parse import quote

from ._body import (
    ConfigLike,
    FilterLike,
    IdsLike,
    IngestOptions,
    ParamsLike,
    PayloadsLike,
    PointLike,
    SchemaLike,
    SearchLike,
    batch_body,
    check_lengths,
    encode_point,
    id_list,
    ingest_request,
    multivector_points,
    plain,
    search_body,
    search_item,
)
from ._call import Call, _collection
from ._codec import (
    JSON_MIME,
    MSGPACK_MIME,
    MatrixLike,
    MultiVectorLike,
    SparseLike,
    VectorLike,
    Wire,
    encode_multivector,
    encode_sparse,
    encode_vector,
    is_sparse,
    to_matrix,
)
from ._columns import ColumnLike, columns_body, named_columns
from ._jobs_snapshots import JobAndSnapshotCalls
from ._matrix import MatrixResult, matrix_body, parse_matrix
from ._pipeline import QueryLike, parse_pipeline, query_body
from ._response import (
    Envelope,
    QueryResult,
    Snapshot,
    error_from,
    loads,
    parse_bool,
    parse_count,
    parse_created,
    parse_deleted,
    parse_info,
    parse_optimize,
    parse_queries,
    parse_query,
    parse_records,
    parse_sample,
    parse_scroll,
    parse_summaries,
    parse_update,
)
from .errors import ApiError, NestorTransportError
from .models import (
    CollectionInfo,
    CollectionSummary,
    JobState,
    PointId,
    Record,
    UpdateResult,
)
from .query import QueryResponse

__all__ = [
    "JOB_ENDED",
    "BaseClient",
    "Call",
    "ConfigLike",
    "Envelope",
    "FilterLike",
    "IdsLike",
    "MatrixResult",
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


class BaseClient(JobAndSnapshotCalls):
    """Request building and response parsing for one wire format and credential."""

    def __init__(self, *, api_key: str | None, wire: Wire) -> None:
        if wire not in ("json", "msgpack"):
            raise ValueError(f"wire must be 'json' or 'msgpack', not {wire!r}")
        self.wire: Wire = wire
        mime = MSGPACK_MIME if wire == "msgpack" else JSON_MIME
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
        return Call("GET", "/healthz", parse_bool)

    def ready(self) -> Call[bool]:
        return Call("GET", "/readyz", parse_bool)

    def list_collections(self) -> Call[list[CollectionSummary]]:
        return Call("GET", "/collections", parse_summaries)

    def create_collection(self, name: str, config: ConfigLike | None, extra: Mapping[str, Any]) -> Call[CollectionInfo]:
        # Sent unvalidated: the server owns the defaults and may know config blocks we do not.
        body = dict(plain(config)) if config is not None else {}
        body.update({key: plain(value) for key, value in extra.items()})
        return Call("PUT", _collection(name), parse_info, self._encode(body))

    def get_collection(self, name: str) -> Call[CollectionInfo]:
        return Call("GET", _collection(name), parse_info)

    def delete_collection(self, name: str) -> Call[bool]:
        return Call("DELETE", _collection(name), parse_bool)

    def create_payload_index(
        self, name: str, field_name: str, field_schema: SchemaLike, wait: bool, is_tenant: bool = False
    ) -> Call[bool]:
        schema = plain(field_schema)
        if is_tenant:
            schema = {"type": schema, "is_tenant": True} if isinstance(schema, str) else {**schema, "is_tenant": True}
        body = {"field_name": field_name, "field_schema": schema}
        params = {"wait": "true" if wait else "false"}
        return Call("PUT", f"{_collection(name)}/index", parse_created, self._encode(body), params)

    def optimize(self, name: str, wait: bool) -> Call[dict[str, Any]]:
        params = {"wait": "true" if wait else "false"}
        return Call("POST", f"{_collection(name)}/optimize", parse_optimize, None, params)

    def delete_payload_index(self, name: str, field_name: str) -> Call[bool]:
        return Call("DELETE", f"{_collection(name)}/index/{quote(field_name, safe='')}", parse_deleted)

    def upsert(
        self,
        name: str,
        points: Sequence[PointLike] | None,
        ids: IdsLike | None,
        vectors: MatrixLike | Mapping[str, ColumnLike] | None,
        payloads: PayloadsLike | None,
        wait: bool,
        multivectors: Sequence[MultiVectorLike] | None = None,
        texts: Sequence[str | None] | None = None,
    ) -> Call[UpdateResult]:
        if points is not None:
            if ids is not None or vectors is not None or payloads is not None or multivectors is not None or texts:
                raise ValueError("give either points or the columnar ids/vectors/texts/payloads, not both")
            body: dict[str, Any] = {"points": [encode_point(p, self.wire) for p in points]}
        elif ids is not None and (isinstance(vectors, Mapping) or texts is not None):
            if multivectors is not None:
                raise ValueError("a multivector upsert takes no named vector columns or texts")
            body = {"batch": columns_body(id_list(ids), vectors, texts, payloads, self.wire)}
        elif ids is not None and multivectors is not None:
            if vectors is not None:
                raise ValueError("give vectors or multivectors, not both")
            body = {"points": multivector_points(id_list(ids), multivectors, payloads, self.wire)}
        elif ids is not None and vectors is not None and not isinstance(vectors, Mapping):
            body = {"batch": batch_body(id_list(ids), to_matrix(vectors), payloads, self.wire)}
        else:
            raise ValueError("upsert needs points, or ids and vectors")
        return self._upsert_call(name, body, wait)

    def upload(
        self,
        name: str,
        ids: IdsLike,
        vectors: MatrixLike | Mapping[str, ColumnLike],
        payloads: PayloadsLike | None,
        batch_size: int,
        wait: bool,
    ) -> Iterator[Call[UpdateResult]]:
        """One columnar upsert per chunk, encoded lazily so only one chunk's body is in memory."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        all_ids = id_list(ids)
        if isinstance(vectors, Mapping):  # named columns, dense or sparse: checked whole, then sliced
            cols = named_columns(vectors)
            columns_body(all_ids, cols, None, payloads, self.wire)  # fail before the first chunk is sent
            for start in range(0, len(all_ids), batch_size):
                stop = start + batch_size
                part = {k: c[start:stop] for k, c in cols.items()}
                chunk = payloads[start:stop] if payloads is not None else None
                body = {"batch": columns_body(all_ids[start:stop], part, None, chunk, self.wire)}
                yield self._upsert_call(name, body, wait)
            return
        matrix = to_matrix(vectors)
        check_lengths(len(all_ids), matrix, payloads)  # fail before the first chunk is sent
        for start in range(0, len(all_ids), batch_size):
            stop = start + batch_size
            chunk = payloads[start:stop] if payloads is not None else None
            body = {"batch": batch_body(all_ids[start:stop], matrix[start:stop], chunk, self.wire)}
            yield self._upsert_call(name, body, wait)

    def delete(self, name: str, ids: IdsLike | None, filter: FilterLike | None) -> Call[UpdateResult]:
        if (ids is None) == (filter is None):
            raise ValueError("delete needs exactly one of ids or filter")
        body = {"ids": id_list(ids)} if ids is not None else {"filter": plain(filter)}
        return Call("POST", f"{_collection(name)}/points/delete", parse_update, self._encode(body))

    def get(self, name: str, ids: IdsLike, with_payload: bool, with_vector: bool | list[str]) -> Call[list[Record]]:
        body = {"ids": id_list(ids), "with_payload": with_payload, "with_vector": with_vector}
        return Call("POST", f"{_collection(name)}/points/get", parse_records, self._encode(body))

    def search(
        self,
        name: str,
        vector: VectorLike | SparseLike | None,
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
        body = search_body(limit, offset, filter, params, with_payload, with_vector, score_threshold, using)
        if vector is not None:
            if is_sparse(vector):
                body["vector"] = encode_sparse(vector)
            else:
                body["vector"] = encode_vector(cast(VectorLike, vector), self.wire)
        if multivector is not None:
            body["multivector"] = encode_multivector(multivector, self.wire)
        return Call("POST", f"{_collection(name)}/points/search", parse_query, self._encode(body))

    def query(self, name: str, query: QueryLike | None, **fields: Any) -> Call[QueryResponse]:
        """`POST .../points/query`: the pipeline tree (`nestor_client._pipeline.query_body`'s fields)."""
        body = query_body(query, wire=self.wire, **fields)
        return Call("POST", f"{_collection(name)}/points/query", parse_pipeline, self._encode(body))

    def search_batch(self, name: str, searches: Sequence[SearchLike]) -> Call[list[QueryResult]]:
        body = {"searches": [search_item(s, self.wire) for s in searches]}
        path = f"{_collection(name)}/points/search/batch"
        return Call("POST", path, parse_queries, self._encode(body))

    def search_matrix(
        self, name: str, vectors: MatrixLike, limit: int, params: ParamsLike | None, using: str | None
    ) -> Call[MatrixResult]:
        body = matrix_body(vectors, limit, params, using, self.wire)
        return Call("POST", f"{_collection(name)}/points/search/matrix", parse_matrix, self._encode(body))

    def count(self, name: str, filter: FilterLike | None) -> Call[int]:
        body = {"filter": plain(filter)} if filter is not None else {}
        return Call("POST", f"{_collection(name)}/points/count", parse_count, self._encode(body))

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
            body["filter"] = plain(filter)
        if offset is not None:
            body["offset"] = offset
        return Call("POST", f"{_collection(name)}/points/scroll", parse_scroll, self._encode(body))

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
        return Call("POST", f"{_collection(name)}/queries/sample", parse_sample, self._encode(body))

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
        body = search_body(limit, offset, filter, params, with_payload, with_vector, score_threshold, using)
        body["text"] = text
        return Call("POST", f"{_collection(name)}/points/search", parse_query, self._encode(body))

    def raise_for(self, status: int, content_type: str, content: bytes) -> None:
        """The typed exception for an error response that is not an envelope call (a download)."""
        if status >= 400:
            raise error_from(status, content_type, content)

    # -- responses --------------------------------------------------------------------------

    def finish(self, call: Call[T], status: int, content_type: str, content: bytes) -> T:
        """The call's result from a raw response, or the typed exception for an error status."""
        if status >= 400:
            raise error_from(status, content_type, content)
        try:
            data = loads(content_type, content)
            return call.parse(Envelope(data["result"], data.get("time", 0.0), data.get("strategy")))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ApiError(f"unreadable response: {exc}", status=status, type="invalid_response") from exc

    # -- encoding helpers -------------------------------------------------------------------

    def _upsert_call(self, name: str, body: dict[str, Any], wait: bool) -> Call[UpdateResult]:
        params = {"wait": "true" if wait else "false"}
        return Call("PUT", f"{_collection(name)}/points", parse_update, self._encode(body), params)


def transport_error(exc: Exception) -> NestorTransportError:
    return NestorTransportError(f"{type(exc).__name__}: {exc}")


JOB_ENDED = frozenset({JobState.succeeded, JobState.failed, JobState.cancelled})
