"""A write stamp shared by the processes of `nestor serve --processes N`: one counter in a memory-mapped file.

A follower must see every write the primary acknowledged before a search started (docs/processes.md).
It used to learn that by checking each collection's stamp before every search: two `stat` calls, the
aliases file's `stat`, and a SQLite read, about 50-80 µs of a 600 µs request. Now the primary also bumps
this counter after each change a follower could miss, before the change is acknowledged, and a follower
that verified a collection at counter value `g` skips the check while the counter still reads `g`:

- every commit of the point store (upserts, overwrites, payload changes, deletes: index/storage.py);
- every file replaced atomically (`collection.json` for a payload index, `aliases.json`: index/fsutil.py);
- every collection directory renamed (a delete, a snapshot restore, a compaction's swap) and every create.

Why that is enough: a follower reads the counter *before* it checks the files. If it reads `g` again
later, nothing was bumped since that read, so every change acknowledged by then was bumped, and so made,
before the read, and the check saw it. A bump too many only costs one check. The counter only grows: a
restarted primary goes on from the value in the file, which the supervisor holds for the processes' life.

An aligned 8-byte load or store is one instruction on x86-64 and arm64, so a reader never sees half a
value; the primary's threads bump under a lock.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from pathlib import Path

__all__ = ["WriteStamp", "bump", "install", "installed"]

_SIZE = 8
_FMT = "<Q"


class WriteStamp:
    """The counter in `path` (created with value 0 when missing). `writer`: this process bumps it."""

    def __init__(self, path: Path, *, writer: bool = False) -> None:
        self.path = path
        flags = os.O_RDWR | os.O_CREAT if writer else os.O_RDONLY
        fd = os.open(path, flags, 0o600)
        try:
            if writer and os.fstat(fd).st_size < _SIZE:
                os.ftruncate(fd, _SIZE)
            access = mmap.ACCESS_WRITE if writer else mmap.ACCESS_READ
            self._map = mmap.mmap(fd, _SIZE, access=access)
        finally:
            os.close(fd)  # the mapping keeps the file
        self._lock = threading.Lock()

    def read(self) -> int:
        value: int = struct.unpack_from(_FMT, self._map)[0]
        return value

    def bump(self) -> None:
        with self._lock:
            struct.pack_into(_FMT, self._map, 0, struct.unpack_from(_FMT, self._map)[0] + 1)

    def close(self) -> None:
        self._map.close()


_installed: WriteStamp | None = None


def install(stamp: WriteStamp | None) -> None:
    """Make `stamp` the one this process bumps (the primary of several processes); None: no stamp."""
    global _installed
    _installed = stamp


def installed() -> WriteStamp | None:
    return _installed


def bump() -> None:
    """After a change a follower must see, before it is acknowledged. A no-op in a single server."""
    stamp = _installed
    if stamp is not None:
        stamp.bump()
