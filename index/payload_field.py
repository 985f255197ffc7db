"""The part every payload index shares: `FieldIndex` (the key, its three key-level bitmaps, the value counts)
and the helpers (bitmaps from label arrays and back, word tokens, RFC 3339 parsing).

`null` holds the labels whose value is ``null`` (``is_null``), `nonempty` those present, not null and not
``[]`` (``is_empty`` is its complement), `other` those with an element that is not null and not of the
index's type (``except`` needs them). `counts` holds, per array length of 2 or more, the labels whose
value is an array that long: with `nonempty`, that answers ``values_count`` (`count_labels`), so a count
on an indexed key needs no payload scan. The schemas are in `index/payload_index.py`.
"""

from __future__ import annotations

import array
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
from pyroaring import BitMap

from index.errors import InvalidFilter
from index.filter_check import parse_datetime
from index.filters import MISSING, lookup, split_key
from nestor_client.models import FieldCondition, PayloadSchemaType

__all__ = ["FieldIndex", "bitmap", "bitmap_bytes", "labels_of", "parse_datetime", "tokenize"]

I64 = npt.NDArray[np.int64]
_WORD = re.compile(r"\w+")


def bitmap(labels: npt.NDArray[Any] | Iterable[int]) -> BitMap:
    """A bitmap of labels; from a numpy array through a buffer (ten times faster than iterating)."""
    if isinstance(labels, np.ndarray):
        return BitMap(array.array("I", labels.astype(np.uint32, copy=False).tobytes()))
    return BitMap(labels)


def labels_of(bm: BitMap) -> I64:
    """The labels of a bitmap as a sorted int64 array."""
    return np.frombuffer(bm.to_array(), dtype=np.uint32).astype(np.int64)


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def bitmap_bytes(bm: BitMap) -> int:
    return sys.getsizeof(bm) + 48  # roaring reports its containers; + the Python object and its header


class FieldIndex:
    """The common part: the key, the three key-level bitmaps, and the per-schema hooks."""

    schema: PayloadSchemaType

    def __init__(self, key: str) -> None:
        self.key = key
        self.segments = split_key(key)
        self.null = BitMap()
        self.nonempty = BitMap()
        self.other = BitMap()
        self.counts: dict[int, BitMap] = {}  # array length (2 or more) -> labels
        self._null: list[int] = []
        self._nonempty: list[int] = []
        self._other: list[int] = []
        self._counts: dict[int, list[int]] = {}
        self._staged: list[BitMap] = []
        self._staged_counts: dict[int, BitMap] = {}

    # -- writes (the caller holds the write side of the lock) -------------------------------

    def add(self, label: int, payload: dict[str, Any] | None) -> None:
        """Index one point's value; searchable after `flush`."""
        v = lookup(payload, self.segments)
        if v is MISSING:
            return
        if v is None:
            self._null.append(label)
            return
        elems = v if isinstance(v, list) else [v]
        if not elems:
            return
        self._nonempty.append(label)
        if len(elems) > 1:
            self._counts.setdefault(len(elems), []).append(label)
        for e in elems:
            if e is not None and not self._add_value(label, e):
                self._other.append(label)

    def _add_value(self, label: int, e: Any) -> bool:
        """Index one element; False when it is not of this index's type."""
        raise NotImplementedError

    def flush(self) -> None:
        """After a batch of `add`s: make them searchable."""
        self.stage()
        self.publish()

    def stage(self) -> None:
        """Prepare the added values (new bitmaps, merged arrays) without touching what readers see."""
        self._staged = [BitMap(new) for new in (self._null, self._nonempty, self._other)]
        self._staged_counts = {n: BitMap(new) for n, new in self._counts.items()}
        self._null, self._nonempty, self._other, self._counts = [], [], [], {}

    def publish(self) -> None:
        """Make the staged values searchable: cheap in-place unions and reference swaps (under the write side)."""
        for bm, new in zip((self.null, self.nonempty, self.other), self._staged, strict=True):
            bm |= new
        for n, new in self._staged_counts.items():
            if n in self.counts:
                self.counts[n] |= new
            else:
                self.counts[n] = new
        self._staged, self._staged_counts = [], {}

    def compact(self, live: BitMap) -> None:
        self.null &= live
        self.nonempty &= live
        self.other &= live
        for n in list(self.counts):
            self.counts[n] &= live
            if not self.counts[n]:
                del self.counts[n]

    # -- reads (the caller holds the read side) ---------------------------------------------

    def entries(self) -> int:
        """Stored (value, label) pairs, dead ones included: what `compact` is measured against."""
        raise NotImplementedError

    def value_maps(self) -> dict[Any, BitMap] | None:
        """A bitmap per distinct value (the per-value graphs' members), or None when the index keeps none."""
        return None

    def ram_bytes(self) -> int:
        counts = sum(bitmap_bytes(b) + 40 for b in self.counts.values())
        return counts + sum(bitmap_bytes(b) for b in (self.null, self.nonempty, self.other))

    def count_labels(self, ok: Callable[[int], bool], live: BitMap) -> BitMap:
        """The live labels whose number of values passes `ok` (``values_count``): 0 for a missing key, null
        or ``[]`` (live, not `nonempty`), 1 for `nonempty` outside `counts`, else the array's length."""
        out = live - self.nonempty if ok(0) else BitMap()
        if ok(1):
            out |= self.nonempty - BitMap.union(*self.counts.values()) if self.counts else self.nonempty
        for n, labels in self.counts.items():
            if ok(n):
                out |= labels
        return out

    def evaluate(self, c: FieldCondition) -> BitMap:
        """The labels (dead ones included) whose value satisfies the field condition; InvalidFilter when
        the condition does not fit this index's type."""
        raise NotImplementedError

    def _wrong(self, what: str) -> InvalidFilter:
        return InvalidFilter(f"{self.key!r} has a {self.schema.value} payload index: {what}")
