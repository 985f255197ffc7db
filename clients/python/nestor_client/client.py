"""The synchronous client. Every method builds its request in `BaseClient`; this file only sends it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar, Unpack

import httpx

from ._base import (
    JOB_ENDED,
    BaseClient,
    Call,
    ConfigLike,
    FilterLike,
    IdsLike,
    IngestOptions,
    MatrixResult,
    ParamsLike,
    PayloadsLike,
    PointLike,
    QueryResult,
    SchemaLike,
    SearchLike,
    Snapshot,
    ingest_request,
    transport_error,
)
from ._codec import MatrixLike, MultiVectorLike, SparseLike, VectorLike, Wire
from ._columns import ColumnLike
from ._pipeline import PrefetchLike, QueryLike
from ._upload import UploadLike, iter_file, upload_headers
from .async_client import AsyncNestorClient
from .models import CollectionInfo, CollectionSummary, JobInfo, PointId, Record, UpdateResult
from .query import QueryResponse

__all__ = ["NestorClient", "async_twin"]

T = TypeVar("T")


class NestorClient:
    """A blocking client for a Nestor server.

    `wire="msgpack"` sends and asks for msgpack bodies, with vectors as raw float32 bytes; the
    default JSON sends numpy vectors as base64 float32. Pass `http_client` to reuse an existing
    `httpx.Client` (its base URL, timeout and lifetime are then the caller's; `close()` leaves it
    open). Errors raise the classes in `nestor_client.errors`.
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:6333",
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        wire: Wire = "json",
        http_client: httpx.Client | None = None,
    ) -> None:
        self._base = BaseClient(api_key=api_key, wire=wire)
        self._api_key, self._timeout = api_key, timeout  # for async_twin()
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client(base_url=url, timeout=timeout)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> NestorClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _send(self, call: Call[T]) -> T:
        try:
            response = self._http.request(
                call.method,
                call.path,
                content=call.body,
                params=call.params,
                headers=self._base.headers(call),
            )
        except httpx.TransportError as exc:
            raise transport_error(exc) from exc
        return self._base.finish(call, response.status_code, response.headers.get("content-type", ""), response.content)

    def health(self) -> bool:
        """True when the server process is up."""
        return self._send(self._base.health())

    def ready(self) -> bool:
        """True once the server has finished recovery and serves requests."""
        return self._send(self._base.ready())

    def list_collections(self) -> list[CollectionSummary]:
        return self._send(self._base.list_collections())

    def create_collection(self, name: str, config: ConfigLike | None = None, **kwargs: Any) -> CollectionInfo:
        """Create `name` from `config` and/or keywords (`dim=384, metric="cosine", index=...`).

        Keywords override fields of `config`. Raises `CollectionExists` if it exists with another config.
        """
        return self._send(self._base.create_collection(name, config, kwargs))

    def get_collection(self, name: str) -> CollectionInfo:
        return self._send(self._base.get_collection(name))

    def delete_collection(self, name: str) -> bool:
        return self._send(self._base.delete_collection(name))

    def optimize(self, name: str, *, wait: bool = False) -> dict[str, Any]:
        """Compact the collection now (drop the rows of overwritten and deleted points); `wait`: until done."""
        return self._send(self._base.optimize(name, wait))

    def create_payload_index(
        self, name: str, field_name: str, field_schema: SchemaLike, *, wait: bool = True, is_tenant: bool = False
    ) -> bool:
        """Index payload key `field_name` as `field_schema` (keyword, integer, float, bool, datetime, uuid,
        text, or the object form `{"type": ..., "is_tenant": ...}`); False when that index exists. `wait`:
        return once it is built. `is_tenant` marks a keyword index as the tenant key."""
        return self._send(self._base.create_payload_index(name, field_name, field_schema, wait, is_tenant))

    def delete_payload_index(self, name: str, field_name: str) -> bool:
        """Drop the payload index on `field_name`; False when there is none."""
        return self._send(self._base.delete_payload_index(name, field_name))

    def upsert(
        self,
        name: str,
        points: Sequence[PointLike] | None = None,
        *,
        ids: IdsLike | None = None,
        vectors: MatrixLike | Mapping[str, ColumnLike] | None = None,
        payloads: PayloadsLike | None = None,
        multivectors: Sequence[MultiVectorLike] | None = None,
        wait: bool = True,
        texts: Sequence[str | None] | None = None,
    ) -> UpdateResult:
        """Insert or overwrite points, as `points` or columnar `ids` + `vectors` (+ `texts`, `payloads`).

        The whole call is one atomic write. A numpy `vectors` matrix travels as one float32 blob.
        Named vectors go as `vectors={name: column}`: a matrix for a dense vector, or for a sparse one a
        SciPy sparse matrix, CSR arrays or a list of `{"indices", "values"}` (None: no such vector), one
        row per id (`sparse_column`). `texts` (one per id, None for none) fill the vectors with an encoder.
        A multi-vector collection takes `ids` + `multivectors` instead: one (tokens, dim) matrix per point.
        """
        return self._send(self._base.upsert(name, points, ids, vectors, payloads, wait, multivectors, texts))

    def upload(
        self,
        name: str,
        ids: IdsLike,
        vectors: MatrixLike | Mapping[str, ColumnLike],
        payloads: PayloadsLike | None = None,
        batch_size: int = 1000,
        *,
        wait: bool = True,
    ) -> int:
        """Upsert many points in chunks of `batch_size` (each chunk atomic); returns the total upserted."""
        calls = self._base.upload(name, ids, vectors, payloads, batch_size, wait)
        return sum(self._send(call).upserted for call in calls)

    def delete(self, name: str, ids: IdsLike | None = None, filter: FilterLike | None = None) -> UpdateResult:
        """Delete by `ids` or by `filter` (exactly one)."""
        return self._send(self._base.delete(name, ids, filter))

    def get(
        self, name: str, ids: IdsLike, with_payload: bool = True, with_vector: bool | list[str] = False
    ) -> list[Record]:
        """The stored points among `ids`; missing ids are left out."""
        return self._send(self._base.get(name, ids, with_payload, with_vector))

    def search(
        self,
        name: str,
        vector: VectorLike | SparseLike | None = None,
        *,
        multivector: MultiVectorLike | None = None,
        limit: int = 10,
        offset: int = 0,
        filter: FilterLike | None = None,
        params: ParamsLike | None = None,
        with_payload: bool = True,
        with_vector: bool | list[str] = False,
        score_threshold: float | None = None,
        using: str | None = None,
    ) -> QueryResult:
        """The `limit` nearest points to `vector` (a list or numpy array), best first.

        In a multi-vector collection, pass the query's token vectors as `multivector` instead. With named
        vectors, `using` names the one to search; `with_vector` may list the names to return. To search a
        sparse vector, pass `{"indices": [...], "values": [...]}` (or a `SparseVector`) with its `using`.
        """
        call = self._base.search(
            name,
            vector,
            multivector=multivector,
            limit=limit,
            offset=offset,
            filter=filter,
            params=params,
            with_payload=with_payload,
            with_vector=with_vector,
            score_threshold=score_threshold,
            using=using,
        )
        return self._send(call)

    def query(
        self,
        name: str,
        query: QueryLike | None = None,
        *,
        prefetch: Sequence[PrefetchLike] | PrefetchLike | None = None,
        using: str | None = None,
        filter: FilterLike | None = None,
        params: ParamsLike | None = None,
        limit: int = 10,
        offset: int = 0,
        score_threshold: float | None = None,
        with_payload: bool = True,
        with_vector: bool | list[str] = False,
    ) -> QueryResponse:
        """Run a query pipeline: `prefetch` sub-queries, then `query` over their results.

        `query` is a vector (a list or numpy array; 2-D for a multivector), a point id, `{"text": ...}`,
        or `{"fusion": "rrf" | "dbsf"}` / `{"rrf": {"k": ...}}` to fuse the prefetches. A vector query
        over prefetches rescores the prefetched points exactly on `using`. The result holds the points
        and `stages`, what ran at each node.
        """
        call = self._base.query(
            name,
            query,
            prefetch=prefetch,
            using=using,
            filter=filter,
            params=params,
            limit=limit,
            offset=offset,
            score_threshold=score_threshold,
            with_payload=with_payload,
            with_vector=with_vector,
        )
        return self._send(call)

    def search_batch(self, name: str, searches: Sequence[SearchLike]) -> list[QueryResult]:
        """Run several searches in one request; one `QueryResult` per search, in order."""
        return self._send(self._base.search_batch(name, searches))

    def search_matrix(
        self,
        name: str,
        vectors: MatrixLike,
        *,
        limit: int = 10,
        params: ParamsLike | None = None,
        using: str | None = None,
    ) -> MatrixResult:
        """Many unfiltered searches, one per row of `vectors` [queries, dim], in one request: the ids and
        scores of each row's hits, best first, as columns (no payloads, no per-hit objects)."""
        return self._send(self._base.search_matrix(name, vectors, limit, params, using))

    def count(self, name: str, filter: FilterLike | None = None) -> int:
        """The number of points, or of points matching `filter`."""
        return self._send(self._base.count(name, filter))

    def scroll(
        self,
        name: str,
        filter: FilterLike | None = None,
        *,
        limit: int = 10,
        offset: PointId | None = None,
        with_payload: bool = True,
        with_vector: bool | list[str] = False,
    ) -> tuple[list[Record], PointId | None]:
        """One page of the points matching `filter`, in id order (integer ids ascending, then string ids),
        from the id `offset` on; and the offset of the next page (None after the last one)."""
        return self._send(self._base.scroll(name, filter, limit, offset, with_payload, with_vector))

    def add_query_sample(
        self,
        name: str,
        vectors: Sequence[VectorLike] | None = None,
        *,
        texts: Sequence[str] | None = None,
        replace: bool = False,
        using: str | None = None,
    ) -> int:
        """Add example queries (vectors, or texts for the collection's encoder) for LeanVec-OOD fitting.

        Returns the size of the posted sample; the collection refits at its next optimization."""
        return self._send(self._base.add_query_sample(name, vectors, texts, replace, using))

    # -- text and ingest jobs ------------------------------------------------------------------

    def search_text(
        self,
        name: str,
        text: str,
        *,
        limit: int = 10,
        offset: int = 0,
        filter: FilterLike | None = None,
        params: ParamsLike | None = None,
        with_payload: bool = True,
        with_vector: bool | list[str] = False,
        score_threshold: float | None = None,
        using: str | None = None,
    ) -> QueryResult:
        """The `limit` nearest points to `text`, which the collection's encoder embeds as a query."""
        call = self._base.search_text(
            name,
            text,
            limit=limit,
            offset=offset,
            filter=filter,
            params=params,
            with_payload=with_payload,
            with_vector=with_vector,
            score_threshold=score_threshold,
            using=using,
        )
        return self._send(call)

    def ingest(self, collection: str, path: str | os.PathLike[str], **options: Unpack[IngestOptions]) -> JobInfo:
        """Start a job that ingests a file on the server (JSON Lines, Parquet or .npy); returns it queued.

        Keywords: `format`, `id_field`, `text_field`, `vector_field`, `payload_fields`, `sparse_fields`,
        `ids_path`, `payload_path`, `batch_size`, `strict`, `defer_indexing`. Follow the job with `wait_job`."""
        return self._send(self._base.ingest(ingest_request(collection, str(path), options)))

    def ingest_file(self, collection: str, file: UploadLike, **options: Unpack[IngestOptions]) -> JobInfo:
        """Upload a local file (a path, streamed in chunks, or bytes) and start a job that ingests it."""
        call = self._base.ingest_upload(ingest_request(collection, "upload", options))
        content = file if isinstance(file, bytes) else iter_file(file)
        headers = upload_headers(self._base.headers(call), file)
        try:
            response = self._http.request(call.method, call.path, content=content, params=call.params, headers=headers)
        except httpx.TransportError as exc:
            raise transport_error(exc) from exc
        return self._base.finish(call, response.status_code, response.headers.get("content-type", ""), response.content)

    def get_job(self, job_id: str) -> JobInfo:
        return self._send(self._base.get_job(job_id))

    def list_jobs(self) -> list[JobInfo]:
        """Every job the server knows, newest first."""
        return self._send(self._base.list_jobs())

    def cancel_job(self, job_id: str) -> JobInfo:
        """Cancel a queued or running job; `JobConflict` if it has already ended."""
        return self._send(self._base.cancel_job(job_id))

    def wait_job(
        self,
        job_id: str,
        *,
        poll: float = 0.5,
        timeout: float | None = None,
        on_progress: Callable[[JobInfo], None] | None = None,
    ) -> JobInfo:
        """Poll until the job has ended (succeeded, failed or cancelled) and return it; `TimeoutError` after
        `timeout` seconds. `on_progress` gets each poll's `JobInfo` (for a progress bar)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get_job(job_id)
            if on_progress is not None:
                on_progress(job)
            if job.state in JOB_ENDED:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.state.value} after {timeout} s")
            time.sleep(poll)

    # -- snapshots (admin role) ---------------------------------------------------------------

    def create_snapshot(self, name: str) -> Snapshot:
        """Snapshot a collection (consistent under concurrent writes) and return it as stored."""
        return self._send(self._base.create_snapshot(name))

    def list_snapshots(self, name: str) -> list[Snapshot]:
        return self._send(self._base.list_snapshots(name))

    def delete_snapshot(self, name: str, snapshot: str) -> bool:
        return self._send(self._base.delete_snapshot(name, snapshot))

    def download_snapshot(self, name: str, snapshot: str, path: str | os.PathLike[str]) -> str:
        """Stream a snapshot to `path`; returns the SHA-256 the server reported for it."""
        call = self._base.download_snapshot(name, snapshot)
        try:
            with self._http.stream(call.method, call.path, headers=self._base.headers(call)) as response:
                if response.status_code >= 400:
                    response.read()
                    ctype = response.headers.get("content-type", "")
                    self._base.raise_for(response.status_code, ctype, response.content)
                with open(path, "wb") as fh:
                    for chunk in response.iter_bytes():
                        fh.write(chunk)
                return str(response.headers.get("x-checksum-sha256", ""))
        except httpx.TransportError as exc:
            raise transport_error(exc) from exc

    def restore_snapshot(self, name: str, snapshot: str, *, source: str | None = None) -> CollectionInfo:
        """Restore a stored snapshot (of collection `source`, default `name`) into `name`, replacing it if it exists."""
        return self._send(self._base.restore_snapshot(name, snapshot, source))

    def upload_snapshot(self, name: str, file: UploadLike, *, sha256: str | None = None) -> CollectionInfo:
        """Upload a snapshot file and restore it into `name`; `sha256`, when given, is checked by the server."""
        call = self._base.upload_snapshot(name, sha256)
        content = file if isinstance(file, bytes) else iter_file(file)
        headers = upload_headers(self._base.headers(call), file)
        try:
            response = self._http.request(call.method, call.path, content=content, params=call.params, headers=headers)
        except httpx.TransportError as exc:
            raise transport_error(exc) from exc
        return self._base.finish(call, response.status_code, response.headers.get("content-type", ""), response.content)


def async_twin(client: NestorClient) -> AsyncNestorClient:
    """A new `AsyncNestorClient` for the same server, API key, timeout and wire format as `client`; the
    caller closes it. (For a client on your own `http_client`, only its base URL carries over.) A function,
    not a method, so that the two clients keep the same methods."""
    url = str(client._http.base_url)
    return AsyncNestorClient(url, api_key=client._api_key, timeout=client._timeout, wire=client._base.wire)
