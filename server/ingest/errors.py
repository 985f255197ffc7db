"""Errors of ingest jobs. Like the engine's, each carries its HTTP status and a stable type name:

    NestorError (index.errors)
    ├── JobNotFound      404 job_not_found
    ├── JobConflict      409 job_conflict     (cancelling a job that has already ended)
    ├── SourceForbidden  403 forbidden        (a source path outside NESTOR_INGEST_ROOTS)
    └── Unprocessable
        └── InvalidSource   422 invalid_source   (missing file, unknown format, fields that do not fit)

The server's one error handler maps them to `{"error": {"type", "message"}}`.
"""

from __future__ import annotations

from index.errors import NestorError, Unprocessable

__all__ = ["InvalidSource", "JobConflict", "JobNotFound", "SourceForbidden"]


class JobNotFound(NestorError):
    status = 404
    type = "job_not_found"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} does not exist")


class JobConflict(NestorError):
    status = 409
    type = "job_conflict"


class SourceForbidden(NestorError):
    """A source path that resolves outside every allowed ingest root (server/ingest/roots.py)."""

    status = 403
    type = "forbidden"


class InvalidSource(Unprocessable):
    type = "invalid_source"
