"""The full-precision vector store: one float32 row per internal label, append-only.

Rows live in a raw little-endian float32 file (`vectors.f32`) and, by default, in a growable RAM
array that serves exact search and reranking. With `on_disk`, the file is memory-mapped instead:
the OS pages rows in as reranking touches them, and a compressed index plus an int8 rerank store
can keep the process small. Labels are never reused, so a row never changes once written; readers
may hold an old array reference while the store grows.

A plain HNSW graph reads its vectors from these rows in place (`index/backends/graph.py`): it holds
the buffer it was last given, takes the current one with each add, and `follow`s the store, which
tells it when the rows move to a memory map so it lets the RAM array go.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from index.readonly import read_only

__all__ = ["VectorStore"]

F32 = npt.NDArray[np.float32]
_PREAD_ROWS = 256  # larger gathers from an on-disk store are read with pread, not through the map
_PREAD_SPAN = 4096  # rows per pread window


class VectorStore:
    def __init__(self, path: Path, dim: int, *, rows: int | None = None, on_disk: bool = False) -> None:
        """Open (or create) the file. `rows` is the committed row count: extra rows are torn writes."""
        self.path = path
        self.dim = dim
        self.on_disk = on_disk
        self._fh = open(path, "a+b")  # noqa: SIM115 - held open for the store's lifetime
        size = os.fstat(self._fh.fileno()).st_size
        stored = size // (4 * dim)
        n = stored if rows is None else rows
        if n > stored:
            self._fh.close()
            raise RuntimeError(f"{path}: {stored} rows on disk but {n} committed")
        if size != n * 4 * dim and not read_only():  # a follower: the rows past n are the primary's write
            self._fh.truncate(n * 4 * dim)
            os.fsync(self._fh.fileno())
        self._n = n
        self._readers: weakref.WeakSet[Any] = weakref.WeakSet()  # graphs reading the rows in place
        if on_disk:
            self._data: F32 = self._map(n)
            return
        data = np.fromfile(path, dtype="<f4", count=n * dim).reshape(n, dim) if n else np.empty((0, dim), "<f4")
        cap = max(1024, int(n * 1.25))
        self._data = np.empty((cap, dim), dtype=np.float32)
        self._data[:n] = data

    def _map(self, n: int) -> F32:
        if n == 0:
            return np.empty((0, self.dim), np.float32)
        return np.memmap(self.path, dtype=np.float32, mode="r", shape=(n, self.dim))

    @property
    def rows(self) -> int:
        return self._n

    def view(self) -> F32:
        """The committed rows, as a read-only view."""
        v = self._data[: self._n]
        v.flags.writeable = False
        return v

    def buffer(self) -> F32:
        """The whole C-contiguous row buffer (rows past `rows` are unused capacity), for native kernels."""
        return self._data

    def follow(self, reader: Any) -> None:
        """Call `reader.rows_moved()` when the rows move to another buffer for good (`to_disk`); held
        weakly. A reader that adds takes the current `buffer()` each time, so growth needs no call."""
        self._readers.add(reader)

    def take(self, labels: npt.NDArray[np.int64]) -> F32:
        if self.on_disk and len(labels) > _PREAD_ROWS:
            return self._pread(labels)
        return self._data[labels]

    def _pread(self, labels: npt.NDArray[np.int64]) -> F32:
        """Bulk reads (index builds) go through pread: pages touched through the map would stay in RSS."""
        out = np.empty((len(labels), self.dim), dtype=np.float32)
        order = np.argsort(labels, kind="stable")
        ordered = labels[order]
        row = 4 * self.dim
        i = 0
        while i < len(ordered):  # one read per window of at most _PREAD_SPAN rows: bounded temporaries
            lo = int(ordered[i])
            j = int(np.searchsorted(ordered, lo + _PREAD_SPAN))
            hi = int(ordered[j - 1]) + 1
            raw = os.pread(self._fh.fileno(), (hi - lo) * row, lo * row)
            span = np.frombuffer(raw, dtype="<f4").reshape(hi - lo, self.dim)
            out[order[i:j]] = span[ordered[i:j] - lo]
            i = j
        return out

    def append(self, vectors: F32) -> int:
        """Write rows durably (fsync) and return the first new label. Caller serialises writers."""
        start = self._n
        self._fh.seek(0, os.SEEK_END)
        self._fh.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
        self._fh.flush()
        os.fdatasync(self._fh.fileno())
        n_new = start + len(vectors)
        if self.on_disk:
            self._data = self._map(n_new)
            self._n = n_new
            return start
        if n_new > len(self._data):
            grown = np.empty((max(n_new, 2 * len(self._data)), self.dim), dtype=np.float32)
            grown[:start] = self._data[:start]
            self._data = grown
        self._data[start:n_new] = vectors
        self._n = n_new
        return start

    def extend(self, rows: int) -> None:
        """Take the rows up to `rows` that another process appended and committed (a follower catching up:
        index/catchup.py). The caller serialises it with the store's other writers."""
        start = self._n
        if rows <= start:
            return
        # through the open file, not the path: a compaction's swap may have put another file at the path
        if self.on_disk:
            self._data = np.memmap(self._fh, dtype=np.float32, mode="r", shape=(rows, self.dim))
            self._n = rows
            return
        raw = os.pread(self._fh.fileno(), (rows - start) * 4 * self.dim, start * 4 * self.dim)
        if len(raw) != (rows - start) * 4 * self.dim:
            raise RuntimeError(f"{self.path}: fewer than the {rows} committed rows on disk")
        new = np.frombuffer(raw, dtype="<f4")
        if rows > len(self._data):
            grown = np.empty((max(rows, 2 * len(self._data)), self.dim), dtype=np.float32)
            grown[:start] = self._data[:start]
            self._data = grown
        self._data[start:rows] = new.reshape(-1, self.dim)
        self._n = rows

    def truncate(self, rows: int) -> None:
        """Drop rows past `rows` (undo of an append whose transaction did not commit)."""
        self._fh.truncate(rows * 4 * self.dim)
        os.fsync(self._fh.fileno())
        self._n = min(self._n, rows)
        if self.on_disk:
            self._data = self._map(self._n)

    def to_disk(self) -> int:
        """Serve the rows from the memory-mapped file from now on (a RAM cap, index/ramcap.py); returns
        the bytes of RAM let go. Every committed row is in the file already: appends are fsynced first.
        The caller holds the collection's write lock; readers holding the RAM array finish with it."""
        if self.on_disk:
            return 0
        freed = int(self._data.nbytes)
        self._data = self._map(self._n)
        self.on_disk = True
        for reader in list(self._readers):  # a graph still holding the RAM array would keep it alive
            reader.rows_moved()
        return freed

    def ram_bytes(self) -> int:
        return 0 if self.on_disk else int(self._data.nbytes)

    def disk_bytes(self) -> int:
        return os.fstat(self._fh.fileno()).st_size

    def close(self) -> None:
        self._fh.close()
