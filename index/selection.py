"""The labels a filter matches, as the planner consumes them: counted at once, listed only when needed.

The payload indexes answer a filter as a roaring bitmap; SQL answers with a sorted array. The planner
needs the count first (it picks the plan), the list only for an exact scan or a masked walk, and for a
broad filter just a membership test of a few dozen candidates (`contains`). Listing half of a 1M-point
collection costs 0.3 ms, as much as the search itself, so it is deferred.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from pyroaring import BitMap

from index.backends.base import I64
from index.payload_index import labels_of

__all__ = ["Selection"]


class Selection:
    __slots__ = ("_bitmap", "_labels")

    def __init__(self, *, bitmap: BitMap | None = None, labels: I64 | None = None) -> None:
        if (bitmap is None) == (labels is None):
            raise ValueError("a selection is a bitmap or a sorted label array")
        self._bitmap = bitmap
        self._labels = labels

    def __len__(self) -> int:
        return len(self._bitmap) if self._bitmap is not None else len(self.labels)

    @property
    def labels(self) -> I64:
        """Sorted int64 labels."""
        if self._labels is None:
            assert self._bitmap is not None
            self._labels = labels_of(self._bitmap)
        return self._labels

    @property
    def bitmap(self) -> BitMap:
        """The labels as a bitmap (made from the array once when SQL gave them)."""
        if self._bitmap is None:
            assert self._labels is not None
            self._bitmap = BitMap(self._labels.astype(np.uint32))
        return self._bitmap

    def native(self) -> bytes | I64:
        """The form the native graph reads (index/native.py): the bitmap in roaring's portable
        serialisation (about 1 us, where listing it costs hundreds), else the label array."""
        return self._bitmap.serialize() if self._bitmap is not None else self.labels

    def contains(self, labels: I64) -> npt.NDArray[np.bool_]:
        """Which of `labels` (any shape, -1 for none) are selected."""
        flat = labels.ravel()
        if self._bitmap is not None:
            bm = self._bitmap
            hit = np.fromiter((x >= 0 and x in bm for x in flat.tolist()), bool, count=len(flat))
        else:
            sorted_ = self.labels
            pos = np.searchsorted(sorted_, flat)
            hit = (
                (pos < len(sorted_)) & (sorted_[np.minimum(pos, len(sorted_) - 1)] == flat)
                if len(sorted_)
                else np.zeros(len(flat), bool)
            )
        return hit.reshape(labels.shape)
