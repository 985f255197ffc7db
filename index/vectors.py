"""The full-precision vector store: one float32 row per internal label, append-only.

Rows live in a raw little-endian float32 file (`vectors.f32`) and in a growable RAM array that
serves exact search and reranking. Labels are never reused, so a row never changes once written;
readers may hold an old array reference while the store grows.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["VectorStore"]

F32 = npt.NDArray[np.float32]


class VectorStore:
    def __init__(self, path: Path, dim: int, *, rows: int | None = None) -> None:
        """Open (or create) the file. `rows` is the committed row count: extra rows are torn writes."""
        self.path = path
        self.dim = dim
        self._fh = open(path, "a+b")  # noqa: SIM115 - held open for the store's lifetime
        size = os.fstat(self._fh.fileno()).st_size
        on_disk = size // (4 * dim)
        n = on_disk if rows is None else rows
        if n > on_disk:
            raise RuntimeError(f"{path}: {on_disk} rows on disk but {n} committed")
        if size != n * 4 * dim:
            self._fh.truncate(n * 4 * dim)
            os.fsync(self._fh.fileno())
        data = np.fromfile(path, dtype="<f4", count=n * dim).reshape(n, dim) if n else np.empty((0, dim), "<f4")
        cap = max(1024, int(n * 1.25))
        self._data: F32 = np.empty((cap, dim), dtype=np.float32)
        self._data[:n] = data
        self._n = n

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

    def take(self, labels: npt.NDArray[np.int64]) -> F32:
        return self._data[labels]

    def append(self, vectors: F32) -> int:
        """Write rows durably (fsync) and return the first new label. Caller serialises writers."""
        start = self._n
        self._fh.seek(0, os.SEEK_END)
        self._fh.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
        self._fh.flush()
        os.fdatasync(self._fh.fileno())
        n_new = start + len(vectors)
        if n_new > len(self._data):
            grown = np.empty((max(n_new, 2 * len(self._data)), self.dim), dtype=np.float32)
            grown[:start] = self._data[:start]
            self._data = grown
        self._data[start:n_new] = vectors
        self._n = n_new
        return start

    def truncate(self, rows: int) -> None:
        """Drop rows past `rows` (undo of an append whose transaction did not commit)."""
        self._fh.truncate(rows * 4 * self.dim)
        os.fsync(self._fh.fileno())
        self._n = min(self._n, rows)

    def ram_bytes(self) -> int:
        return int(self._data.nbytes)

    def disk_bytes(self) -> int:
        return os.fstat(self._fh.fileno()).st_size

    def close(self) -> None:
        self._fh.close()
