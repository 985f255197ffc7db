"""Vector encoding for the two wire formats.

JSON carries a numpy vector or matrix as base64 of little-endian float32 (a quarter of the bytes of
a float list, and no float parsing on the server); msgpack carries the same bytes raw. Plain lists
stay lists in JSON so that hand-written requests remain readable.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeGuard

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "JSON_MIME",
    "MSGPACK_MIME",
    "MatrixLike",
    "MultiVectorLike",
    "VectorLike",
    "Wire",
    "b64_to_f32",
    "decode_vector",
    "encode_matrix",
    "encode_multivector",
    "encode_vector",
    "f32_to_b64",
    "to_matrix",
]

Wire = Literal["json", "msgpack"]
# The media type of each wire format, for Accept, Content-Type and reading a response.
JSON_MIME = "application/json"
MSGPACK_MIME = "application/msgpack"
VectorLike = Sequence[float] | NDArray[Any] | bytes | str
MatrixLike = Sequence[Sequence[float]] | NDArray[Any]
# One document's or query's token vectors: a (tokens, dim) matrix, or its float32 bytes or base64.
MultiVectorLike = Sequence[Sequence[float]] | NDArray[Any] | bytes | str

# A sparse vector: a `SparseVector`, or {"indices": [...], "values": [...]} (lists or numpy arrays).
SparseLike = Mapping[str, Any]


def is_sparse(v: Any) -> TypeGuard[SparseLike]:
    return isinstance(v, Mapping) and "indices" in v or hasattr(v, "indices") and hasattr(v, "values")


def encode_sparse(v: SparseLike) -> dict[str, list[Any]]:
    """A sparse vector as JSON-ready lists (the server validates it)."""
    indices, values = (v["indices"], v["values"]) if isinstance(v, Mapping) else (v.indices, v.values)  # type: ignore[attr-defined]
    return {"indices": [int(i) for i in indices], "values": [float(x) for x in values]}


# Explicit byte order: the server reads "<f4" whatever machine the client runs on.
_F32 = np.dtype("<f4")


def f32_to_b64(arr: NDArray[Any]) -> str:
    return base64.b64encode(np.ascontiguousarray(arr, dtype=_F32).tobytes()).decode("ascii")


def b64_to_f32(text: str) -> NDArray[np.float32]:
    return np.frombuffer(base64.b64decode(text, validate=True), dtype=_F32)


def encode_vector(vector: VectorLike, wire: Wire) -> list[float] | str | bytes:
    """One vector in the body's form: raw bytes (msgpack), base64 or a list (JSON)."""
    if isinstance(vector, str):
        return vector  # already base64; the server decodes it in either wire format
    if isinstance(vector, bytes | bytearray | memoryview):
        raw = bytes(vector)
        return raw if wire == "msgpack" else base64.b64encode(raw).decode("ascii")
    if wire == "json" and not isinstance(vector, np.ndarray):
        return vector if isinstance(vector, list) else list(vector)
    arr = np.asarray(vector, dtype=_F32)
    if arr.ndim != 1:
        raise ValueError(f"a vector must be 1-D, got shape {arr.shape}")
    return arr.tobytes() if wire == "msgpack" else f32_to_b64(arr)


def to_matrix(vectors: MatrixLike) -> NDArray[np.float32]:
    """A C-contiguous little-endian float32 (n, dim) matrix; rejects ragged input early."""
    try:
        arr = np.ascontiguousarray(vectors, dtype=_F32)
    except ValueError as exc:
        raise ValueError(f"vectors must form an (n, dim) matrix: {exc}") from exc
    if arr.size == 0:
        return arr.reshape(0, 0)  # an empty batch is legal; `[]` has no second axis to check
    if arr.ndim != 2:
        raise ValueError(f"vectors must form an (n, dim) matrix, got shape {arr.shape}")
    return arr


def encode_multivector(tokens: MultiVectorLike, wire: Wire) -> list[list[float]] | str | bytes:
    """One token matrix in the body's form: raw bytes (msgpack), base64 or a list of lists (JSON)."""
    if isinstance(tokens, str):
        return tokens
    if isinstance(tokens, bytes | bytearray | memoryview):
        raw = bytes(tokens)
        return raw if wire == "msgpack" else base64.b64encode(raw).decode("ascii")
    if wire == "json" and isinstance(tokens, list) and all(isinstance(t, list) for t in tokens):
        return tokens
    arr = np.ascontiguousarray(tokens, dtype=_F32)
    if arr.ndim != 2:
        raise ValueError(f"a multivector must be a (tokens, dim) matrix, got shape {arr.shape}")
    return arr.tobytes() if wire == "msgpack" else f32_to_b64(arr)


def encode_matrix(matrix: NDArray[np.float32], wire: Wire) -> str | bytes:
    """The columnar batch form: one blob for the whole matrix, row-major."""
    return matrix.tobytes() if wire == "msgpack" else f32_to_b64(matrix)


def decode_vector(value: Any) -> Any:
    """A response vector as a list of floats, whichever of the three forms the server sent."""
    if isinstance(value, bytes):
        return np.frombuffer(value, dtype=_F32).tolist()
    if isinstance(value, str):
        return b64_to_f32(value).tolist()
    return value
