"""Qdrant point ids: unsigned integers or UUIDs. A UUID in any spelling Python parses (upper case,
no hyphens, braces, urn:uuid:) is kept in its canonical form, so it names one point as it does in Qdrant."""

from __future__ import annotations

import uuid
from typing import Any

from server.qdrant.wire import QdrantError

__all__ = ["point_id", "point_ids"]

_MAX = 2**63 - 1  # what Nestor's store keeps (Qdrant's are u64)


def point_id(raw: Any) -> int | str:
    if isinstance(raw, bool):
        raise QdrantError(f"Format error in JSON body: point id {raw!r} is not an unsigned integer or a UUID")
    if isinstance(raw, int):
        if not 0 <= raw <= _MAX:
            raise QdrantError(f"Format error in JSON body: point id {raw} is out of range 0..{_MAX}")
        return raw
    if isinstance(raw, str):
        try:
            return str(uuid.UUID(raw))
        except ValueError:
            raise QdrantError(
                f"Format error in JSON body: unable to parse UUID: {raw!r} (Qdrant ids are unsigned integers or UUIDs)"
            ) from None
    raise QdrantError(f"Format error in JSON body: point id {raw!r} is not an unsigned integer or a UUID")


def point_ids(raw: list[Any]) -> list[int | str]:
    return [point_id(i) for i in raw]
