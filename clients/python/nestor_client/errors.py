"""Exceptions raised by the Nestor clients.

Every server error arrives as ``{"error": {"type": ..., "message": ...}}`` and is re-raised as the
class registered for its ``type``. All of them carry ``.status`` (HTTP status, 0 when no response
came back), ``.type`` (the server's stable name) and ``.message``::

    NestorError                      base of everything below
    ├── NestorTransportError         no response: connect failure, timeout, broken stream (status 0)
    └── ApiError                     the server answered with an error; also any unknown 4xx type
        ├── BadRequest               400 bad_request
        ├── Unauthorized             401 unauthorized
        ├── Forbidden                403 forbidden
        ├── NotFound                 404 not_found
        │   ├── CollectionNotFound   404 collection_not_found
        │   ├── EncoderNotFound      404 encoder_not_found
        │   └── JobNotFound          404 job_not_found
        ├── CollectionExists         409 collection_exists
        ├── EncoderMismatch          409 encoder_mismatch
        ├── JobConflict              409 job_conflict
        ├── PayloadTooLarge          413 payload_too_large
        ├── UnsupportedMediaType     415 unsupported_media_type
        ├── Unprocessable            422 unprocessable
        │   ├── DimensionMismatch    422 dimension_mismatch
        │   ├── InvalidVector        422 invalid_vector
        │   ├── InvalidFilter        422 invalid_filter
        │   ├── InvalidConfig        422 invalid_config
        │   ├── DuplicateId          422 duplicate_id
        │   ├── LimitExceeded        422 limit_exceeded
        │   ├── ValidationError      422 validation_error
        │   ├── NoEncoder            422 no_encoder
        │   ├── InvalidEncoderConfig 422 invalid_encoder_config
        │   ├── InvalidEncoderInput  422 invalid_encoder_input
        │   └── InvalidSource        422 invalid_source
        └── ServerError              5xx internal, and any unknown 5xx type
            ├── NotReady             503 not_ready
            └── EncoderUnavailable   503 encoder_unavailable

Catch ``NotFound`` or ``Unprocessable`` for a whole family, ``ApiError`` for anything the server
said, and ``NestorError`` for everything. A 2xx body the client cannot read raises ``ApiError``
with type ``invalid_response``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ApiError",
    "BadRequest",
    "CollectionExists",
    "CollectionNotFound",
    "DimensionMismatch",
    "DuplicateId",
    "EncoderMismatch",
    "EncoderNotFound",
    "EncoderUnavailable",
    "Forbidden",
    "InvalidConfig",
    "InvalidEncoderConfig",
    "InvalidEncoderInput",
    "InvalidFilter",
    "InvalidSnapshot",
    "InvalidSource",
    "InvalidVector",
    "JobConflict",
    "JobNotFound",
    "LimitExceeded",
    "NestorError",
    "NestorTransportError",
    "NoEncoder",
    "NotFound",
    "NotReady",
    "PayloadTooLarge",
    "ServerError",
    "SnapshotNotFound",
    "Unauthorized",
    "Unprocessable",
    "UnsupportedMediaType",
    "ValidationError",
    "error_for",
]


class NestorError(Exception):
    """Base class: `status` is the HTTP status (0 without a response), `type` the stable name."""

    def __init__(self, message: str, *, status: int, type: str) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type

    def __str__(self) -> str:
        return f"[{self.status} {self.type}] {self.message}"

    # Keyword-only constructor arguments would otherwise be lost when pickling (multiprocessing).
    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.status, self.type))


def _rebuild(cls: type[NestorError], message: str, status: int, type_: str) -> NestorError:
    return cls(message, status=status, type=type_)


class NestorTransportError(NestorError):
    """The request never got a response (connection refused, timeout, reset)."""

    def __init__(self, message: str, *, status: int = 0, type: str = "transport") -> None:
        super().__init__(message, status=status, type=type)


class ApiError(NestorError):
    """The server answered with an error status."""


class BadRequest(ApiError):
    pass


class Unauthorized(ApiError):
    pass


class Forbidden(ApiError):
    pass


class NotFound(ApiError):
    pass


class CollectionNotFound(NotFound):
    pass


class CollectionExists(ApiError):
    pass


class PayloadTooLarge(ApiError):
    pass


class UnsupportedMediaType(ApiError):
    pass


class Unprocessable(ApiError):
    pass


class DimensionMismatch(Unprocessable):
    pass


class InvalidVector(Unprocessable):
    pass


class InvalidFilter(Unprocessable):
    pass


class InvalidConfig(Unprocessable):
    pass


class DuplicateId(Unprocessable):
    pass


class LimitExceeded(Unprocessable):
    pass


class ValidationError(Unprocessable):
    pass


class ServerError(ApiError):
    pass


class NotReady(ServerError):
    pass


class EncoderNotFound(NotFound):
    pass


class JobNotFound(NotFound):
    pass


class EncoderMismatch(ApiError):
    pass


class JobConflict(ApiError):
    pass


class NoEncoder(Unprocessable):
    pass


class InvalidEncoderConfig(Unprocessable):
    pass


class InvalidEncoderInput(Unprocessable):
    pass


class InvalidSource(Unprocessable):
    pass


class EncoderUnavailable(ServerError):
    pass


class SnapshotNotFound(NotFound):
    pass


class InvalidSnapshot(Unprocessable):
    pass


_BY_TYPE: dict[str, type[ApiError]] = {
    "bad_request": BadRequest,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "not_found": NotFound,
    "collection_not_found": CollectionNotFound,
    "collection_exists": CollectionExists,
    "payload_too_large": PayloadTooLarge,
    "unsupported_media_type": UnsupportedMediaType,
    "unprocessable": Unprocessable,
    "dimension_mismatch": DimensionMismatch,
    "invalid_vector": InvalidVector,
    "invalid_filter": InvalidFilter,
    "invalid_config": InvalidConfig,
    "duplicate_id": DuplicateId,
    "limit_exceeded": LimitExceeded,
    "validation_error": ValidationError,
    "internal": ServerError,
    "not_ready": NotReady,
    "encoder_not_found": EncoderNotFound,
    "job_not_found": JobNotFound,
    "encoder_mismatch": EncoderMismatch,
    "job_conflict": JobConflict,
    "no_encoder": NoEncoder,
    "invalid_encoder_config": InvalidEncoderConfig,
    "invalid_encoder_input": InvalidEncoderInput,
    "invalid_source": InvalidSource,
    "encoder_unavailable": EncoderUnavailable,
    "snapshot_not_found": SnapshotNotFound,
    "invalid_snapshot": InvalidSnapshot,
}


def error_for(status: int, type: str, message: str) -> ApiError:
    """The exception for an error response; unknown types fall back on the status class."""
    cls = _BY_TYPE.get(type) or (ServerError if status >= 500 else ApiError)
    return cls(message, status=status, type=type)
