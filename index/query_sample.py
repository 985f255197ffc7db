"""The query sample a LeanVec-OOD collection learns its query map from.

Two sources: rows the user posts (`POST .../queries/sample`, kept durably in `query_sample.npy`,
rewritten atomically), and, when the collection opts in, a uniform reservoir of its own recent
queries (Vitter's algorithm R, so every query seen so far is equally likely to be kept). The
reservoir is saved with the index; losing its newest part in a crash only costs sample size.
"""

from __future__ import annotations

import io
import threading
import zlib
from pathlib import Path

import numpy as np

from index.backends.base import F32
from index.fsutil import atomic_write_bytes

__all__ = ["QuerySample"]

_MAX_API_ROWS = 100_000


class QuerySample:
    def __init__(self, directory: Path, dim: int, reservoir_size: int = 0, seed: int = 0) -> None:
        self.dir = directory
        self.dim = dim
        self._lock = threading.Lock()
        self._rng = np.random.default_rng(seed)
        self.api: F32 = self._read(directory / "query_sample.npy")
        self.reservoir_size = reservoir_size
        kept = self._read(directory / "query_reservoir.npy")[:reservoir_size]
        self._res: F32 = np.zeros((reservoir_size, dim), np.float32)
        self._res[: len(kept)] = kept
        self.filled = len(kept)
        self.seen = len(kept)
        self.version = _fingerprint(self.api)  # changes with the posted sample's content

    def _read(self, path: Path) -> F32:
        if path.exists():
            arr: F32 = np.load(path).astype(np.float32, copy=False)
            if arr.ndim == 2 and arr.shape[1] == self.dim:
                return arr
        return np.empty((0, self.dim), np.float32)

    def add(self, rows: F32, *, replace: bool = False) -> int:
        """Add (or replace with) posted rows durably; the newest `_MAX_API_ROWS` are kept."""
        with self._lock:
            merged = rows if replace else np.concatenate([self.api, rows])
            merged = np.ascontiguousarray(merged[-_MAX_API_ROWS:], dtype=np.float32)
            buf = io.BytesIO()
            np.save(buf, merged)
            atomic_write_bytes(self.dir / "query_sample.npy", buf.getvalue())
            self.api = merged
            self.version = _fingerprint(merged)
            return len(merged)

    def offer(self, queries: F32) -> None:
        """Consider live queries for the reservoir."""
        if self.reservoir_size <= 0:
            return
        with self._lock:
            for q in queries:
                self.seen += 1
                if self.filled < self.reservoir_size:
                    self._res[self.filled] = q
                    self.filled += 1
                else:
                    j = int(self._rng.integers(self.seen))
                    if j < self.reservoir_size:
                        self._res[j] = q

    def rows(self) -> F32:
        with self._lock:
            return np.concatenate([self.api, self._res[: self.filled]]) if self.filled else self.api

    def save_reservoir(self) -> None:
        with self._lock:
            if not self.filled:
                return
            buf = io.BytesIO()
            np.save(buf, self._res[: self.filled])
        atomic_write_bytes(self.dir / "query_reservoir.npy", buf.getvalue())

    def __len__(self) -> int:
        return len(self.api) + self.filled


def _fingerprint(rows: F32) -> int:
    return zlib.crc32(rows.tobytes()) ^ (len(rows) << 32)
