"""Domain errors of the engine. Each carries the HTTP status it maps to and a stable type name.

    NestorError                      500 internal
    ├── InvalidRequest               400 bad_request
    ├── CollectionNotFound           404 collection_not_found
    ├── CollectionExists             409 collection_exists
    ├── SnapshotNotFound             404 snapshot_not_found
    ├── Unprocessable                422 (base of input errors that parse but make no sense)
    │   ├── DimensionMismatch        422 dimension_mismatch
    │   ├── InvalidVector            422 invalid_vector      (NaN, Inf, bad encoding)
    │   ├── InvalidFilter            422 invalid_filter
    │   ├── InvalidConfig            422 invalid_config
    │   ├── DuplicateId              422 duplicate_id
    │   ├── LimitExceeded            422 limit_exceeded
    │   └── InvalidSnapshot          422 invalid_snapshot    (corrupt, truncated, or not a snapshot)
    ├── PayloadTooLarge              413 payload_too_large   (batch or body over a configured maximum)
    ├── NotReady                     503 not_ready
    └── InsufficientStorage          507 insufficient_storage (a write would pass the disk watermark)

The server maps them to `{"error": {"type", "message"}}` with `status`; the client re-raises them
under classes of the same name.
"""

from __future__ import annotations

__all__ = [
    "CollectionExists",
    "CollectionNotFound",
    "DimensionMismatch",
    "DuplicateId",
    "InsufficientStorage",
    "InvalidConfig",
    "InvalidFilter",
    "InvalidRequest",
    "InvalidSnapshot",
    "InvalidVector",
    "LimitExceeded",
    "NestorError",
    "NotReady",
    "PayloadTooLarge",
    "SnapshotNotFound",
    "Unprocessable",
]


class NestorError(Exception):
    status: int = 500
    type: str = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(NestorError):
    status = 400
    type = "bad_request"


class CollectionNotFound(NestorError):
    status = 404
    type = "collection_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"collection {name!r} does not exist")
        self.name = name


class CollectionExists(NestorError):
    status = 409
    type = "collection_exists"


class Unprocessable(NestorError):
    status = 422
    type = "unprocessable"


class DimensionMismatch(Unprocessable):
    type = "dimension_mismatch"


class InvalidVector(Unprocessable):
    type = "invalid_vector"


class InvalidFilter(Unprocessable):
    type = "invalid_filter"


class InvalidConfig(Unprocessable):
    type = "invalid_config"


class DuplicateId(Unprocessable):
    type = "duplicate_id"


class LimitExceeded(Unprocessable):
    type = "limit_exceeded"


class InvalidSnapshot(Unprocessable):
    type = "invalid_snapshot"


class SnapshotNotFound(NestorError):
    status = 404
    type = "snapshot_not_found"


class PayloadTooLarge(NestorError):
    status = 413
    type = "payload_too_large"


class NotReady(NestorError):
    status = 503
    type = "not_ready"


class InsufficientStorage(NestorError):
    status = 507
    type = "insufficient_storage"
