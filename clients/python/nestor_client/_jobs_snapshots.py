"""The requests of ingest jobs and snapshots, which `BaseClient` (`_base.py`) inherits (no I/O)."""

from __future__ import annotations

from typing import Any

from ._body import encode_body
from ._call import Call, _collection, _flag, _job, _snapshot
from ._codec import Wire
from ._response import Snapshot, parse_bool, parse_info, parse_job, parse_jobs, parse_snapshot, parse_snapshots
from .models import CollectionInfo, IngestFormat, IngestJobRequest, JobInfo

__all__ = ["JobAndSnapshotCalls"]


class JobAndSnapshotCalls:
    """Ingest jobs (started, uploaded, listed, cancelled) and snapshots (made, listed, fetched, restored)."""

    wire: Wire

    def ingest(self, request: IngestJobRequest) -> Call[JobInfo]:
        # Dumped with its Nones: `id_field: null` (number the rows) differs from the default "id".
        return Call("POST", "/jobs/ingest", parse_job, self._encode(request.model_dump(mode="json")))

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
        return Call("POST", "/jobs/ingest/upload", parse_job, None, params)

    def get_job(self, job_id: str) -> Call[JobInfo]:
        return Call("GET", _job(job_id), parse_job)

    def list_jobs(self) -> Call[list[JobInfo]]:
        return Call("GET", "/jobs", parse_jobs)

    def cancel_job(self, job_id: str) -> Call[JobInfo]:
        return Call("POST", f"{_job(job_id)}/cancel", parse_job)

    def create_snapshot(self, name: str) -> Call[Snapshot]:
        return Call("POST", f"{_collection(name)}/snapshots", parse_snapshot)

    def list_snapshots(self, name: str) -> Call[list[Snapshot]]:
        return Call("GET", f"{_collection(name)}/snapshots", parse_snapshots)

    def delete_snapshot(self, name: str, snapshot: str) -> Call[bool]:
        return Call("DELETE", _snapshot(name, snapshot), parse_bool)

    def download_snapshot(self, name: str, snapshot: str) -> Call[bool]:
        """The download request; the client streams the tar itself (`parse` is unused)."""
        return Call("GET", _snapshot(name, snapshot), parse_bool)

    def restore_snapshot(self, name: str, snapshot: str, source: str | None) -> Call[CollectionInfo]:
        body = {"snapshot": snapshot, "source": source}
        return Call("POST", f"{_collection(name)}/snapshots/restore", parse_info, self._encode(body))

    def upload_snapshot(self, name: str, sha256: str | None) -> Call[CollectionInfo]:
        """The query of a snapshot upload; the client streams the file itself as the body."""
        params = {"checksum": sha256} if sha256 else None
        return Call("POST", f"{_collection(name)}/snapshots/upload", parse_info, None, params)

    def _encode(self, body: Any) -> bytes:
        return encode_body(body, self.wire)
