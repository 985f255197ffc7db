"""Whether this process may write the data directory.

A follower process of `nestor serve --processes N` (index/follow.py) opens the same files as the
primary, which goes on appending to them. Rows past the committed count are then the primary's write
in progress, not a torn write, so a follower must never truncate them (or write anything else).
"""

from __future__ import annotations

__all__ = ["read_only", "set_read_only"]

_read_only = False


def set_read_only(value: bool = True) -> None:
    global _read_only
    _read_only = value


def read_only() -> bool:
    return _read_only
