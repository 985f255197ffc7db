"""Label bookkeeping for faiss indexes that number their vectors 0..n-1 and cannot delete.

faiss's HNSW and flat binary indexes have no `remove_ids`, so a removed vector stays in the
structure and is masked out with an `IDSelectorBitmap` over positions during the search, which
also carries payload filters. Labels arrive in increasing order (the collection never reuses or
reorders them), so position lookups are binary searches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from index.backends.base import I64

__all__ = ["PositionMap"]

_faiss: Any = faiss


class PositionMap:
    def __init__(self) -> None:
        self._labels: I64 = np.empty(1024, np.int64)
        self._dead = np.zeros(1024, bool)
        self.n = 0
        self.n_dead = 0
        self._live_sel: tuple[Any, npt.NDArray[np.uint8]] | None = None  # cached selector (and its buffer)

    @property
    def labels(self) -> I64:
        return self._labels[: self.n]

    def append(self, labels: I64) -> None:
        if len(labels) and self.n and labels[0] <= self._labels[self.n - 1]:
            raise ValueError("labels must be added in increasing order")
        end = self.n + len(labels)
        if end > len(self._labels):
            cap = max(end, 2 * len(self._labels))
            self._labels = np.resize(self._labels, cap)
            dead = np.zeros(cap, bool)
            dead[: self.n] = self._dead[: self.n]
            self._dead = dead
        self._labels[self.n : end] = labels
        self.n = end
        self._live_sel = None

    def positions(self, labels: I64) -> I64:
        """Positions of the given labels that are present (unknown labels are dropped)."""
        known = self.labels
        pos = np.searchsorted(known, labels)
        ok = pos < len(known)
        ok[ok] = known[pos[ok]] == labels[ok]
        return pos[ok].astype(np.int64)

    def kill(self, labels: I64) -> int:
        pos = self.positions(labels)
        pos = pos[~self._dead[pos]]
        self._dead[pos] = True
        self.n_dead += len(pos)
        if len(pos):
            self._live_sel = None
        return len(pos)

    def to_labels(self, pos: I64) -> I64:
        """faiss result positions -> labels, keeping -1 padding."""
        out = self._labels[np.where(pos >= 0, pos, 0)]
        return np.where(pos >= 0, out, -1).astype(np.int64)

    def selector(self, allowed: I64 | None) -> tuple[Any, Any] | None:
        """An IDSelector over positions (live, and in `allowed` if given), with the buffer it points into.

        The caller keeps the buffer alive while faiss searches. None when every position is allowed."""
        if allowed is None:
            if self.n_dead == 0:
                return None
            if self._live_sel is None:
                bits = np.packbits(~self._dead[: self.n], bitorder="little")
                self._live_sel = (_faiss.IDSelectorBitmap(self.n, _faiss.swig_ptr(bits)), bits)
            return self._live_sel
        mask = np.zeros(self.n, bool)
        mask[self.positions(allowed)] = True
        mask &= ~self._dead[: self.n]
        bits = np.packbits(mask, bitorder="little")
        return _faiss.IDSelectorBitmap(self.n, _faiss.swig_ptr(bits)), bits

    def save(self, directory: Path) -> None:
        np.save(directory / "positions.npy", self.labels)
        np.save(directory / "dead.npy", self._dead[: self.n])

    @classmethod
    def load(cls, directory: Path) -> PositionMap:
        pm = cls()
        pm.append(np.load(directory / "positions.npy").astype(np.int64))
        dead = np.load(directory / "dead.npy")
        pm._dead[: pm.n] = dead
        pm.n_dead = int(dead.sum())
        return pm

    def ram_bytes(self) -> int:
        return int(self._labels.nbytes + self._dead.nbytes)
