"""The disk watermark: a write that would leave less free space than it is refused before it starts.

`NESTOR_DISK_MIN_FREE_BYTES` (`CollectionOptions.disk_min_free`) is the space the data directory's file
system must keep free. An upsert estimates what it appends (every field's rows and tokens, the payloads)
and is refused with 507 `insufficient_storage` before anything is written, so no batch is half applied
for want of space. A compaction needs room for a second copy of the live data and checks the same way
before it starts. Deletes are always allowed: they are how space is made.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from index.errors import InsufficientStorage

__all__ = ["batch_bytes", "check_free", "free_bytes"]

_ROW_OVERHEAD = 64  # SQLite's bytes per point beyond its payload (id, label, seq, index entries), roughly


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return int(st.f_bavail * st.f_frsize)


def batch_bytes(parts: Mapping[str, object], n: int, payloads: Iterable[str | None]) -> int:
    """What an upsert of `n` points appends: each prepared field part's arrays, payloads, row overhead."""
    total = n * _ROW_OVERHEAD + sum(len(p) for p in payloads if p)
    for part in parts.values():
        for name in ("rows", "tokens"):
            arr = getattr(part, name, None)
            total += int(getattr(arr, "nbytes", 0))
        inner = getattr(part, "fdes", None)
        total += int(getattr(getattr(inner, "rows", None), "nbytes", 0))
    return total


def check_free(path: Path, needed: int, min_free: int, what: str = "this write") -> None:
    """Raise InsufficientStorage (507) when `needed` more bytes would leave less than `min_free` free."""
    if min_free <= 0:
        return
    free = free_bytes(path)
    if free - needed < min_free:
        raise InsufficientStorage(
            f"{what} needs about {needed} bytes and {free} are free on the data directory's disk, but "
            f"{min_free} must stay free (NESTOR_DISK_MIN_FREE_BYTES): delete points or free disk space"
        )
