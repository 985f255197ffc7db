"""Payload indexes: one in-memory index per indexed payload key, mapping values to internal labels.

Structures, by schema (`PayloadSchemaType`):

- ``keyword``, ``uuid``, ``bool``: a posting list per distinct value, as a roaring bitmap (`pyroaring`).
  Labels are dense int64 counters below 2^32 in practice, so a posting of 100 labels spread over 100k
  costs about 2 bytes a label (array containers), a broad one 1 bit a label (bitset containers). Equality
  and ``any`` are one lookup or a union; ``except`` is a union of the other postings.
- ``integer``, ``float``, ``datetime``: sorted arrays of (value, label), one for integers (int64, exact)
  and one for floats (float64). A range is two binary searches and one slice turned into a bitmap;
  equality is a range of width zero. A bitmap per value would be smaller for a field with 10 values, but
  ranges over a float or a timestamp (all values distinct) would then union 100k bitmaps; sorted arrays
  answer both cardinalities in O(log n + matches) at 12 bytes a value. ``integer`` and ``float`` index
  every JSON number at the key (filters compare numbers by value, so 3 matches 3.0); they differ in the
  filter values they accept. ``datetime`` parses RFC 3339 strings to epoch seconds (float).
- ``text``: a posting list per lowercased word token (``\\w+``); ``match.text`` intersects the postings of
  the query's words. The tokens of every string in an array count together.

Every field index also keeps three bitmaps for the conditions on the key itself, shared by every schema:
``null`` (the value is ``null``: ``is_null``), ``nonempty`` (present, not null, not ``[]``: ``is_empty``
is its complement) and ``other`` (an element that is not null and not of the index's type: needed for
``except``, under which a string, boolean or object not in the list matches), plus a bitmap per array
length of 2 or more (``values_count``). They live in `index/payload_field.py` (`FieldIndex`). So an indexed
evaluation gives exactly the answer of the SQL path (`index/filters.py`) for every filter the index accepts.

Deletes are lazy: labels are never reused, so a dead label may stay in a posting or an array, and every
answer is intersected with the live labels (`PayloadIndexes`, `index/payload_eval.py`). `compact` drops
dead entries once they outnumber the live ones.
"""

from __future__ import annotations

import bisect
import math
import uuid
from typing import Any

import numpy as np
import numpy.typing as npt
from pyroaring import BitMap

from index.errors import InvalidFilter
from index.filters import number, number_bound, stored_text
from index.payload_field import FieldIndex, bitmap, bitmap_bytes, labels_of, parse_datetime, tokenize
from nestor_client.models import (
    FieldCondition,
    MatchAny,
    MatchExcept,
    MatchText,
    MatchValue,
    PayloadSchemaType,
    Range,
)

__all__ = ["FieldIndex", "bitmap", "labels_of", "make_field_index", "parse_datetime", "tokenize"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


# ---------------------------------------------------------------------------------------------
# Postings: keyword, uuid, bool, text


class PostingIndex(FieldIndex):
    def __init__(self, key: str, schema: PayloadSchemaType) -> None:
        super().__init__(key)
        self.schema = schema
        self.postings: dict[Any, BitMap] = {}
        self._pending: dict[Any, list[int]] = {}
        self._staged_postings: dict[Any, BitMap] = {}

    def _keys(self, e: Any) -> list[Any] | None:
        s = self.schema
        if s is PayloadSchemaType.bool:
            return [e] if isinstance(e, bool) else None
        if not isinstance(e, str):
            return None
        if s is PayloadSchemaType.text:
            return tokenize(e)
        return [stored_text(e)]

    def _add_value(self, label: int, e: Any) -> bool:
        keys = self._keys(e)
        if keys is None:
            return False
        pending = self._pending
        for k in keys:
            got = pending.get(k)
            if got is None:
                pending[k] = [label]
            else:
                got.append(label)
        return True

    def stage(self) -> None:
        super().stage()
        self._staged_postings = {k: BitMap(new) for k, new in self._pending.items()}
        self._pending = {}

    def publish(self) -> None:
        super().publish()
        for k, new in self._staged_postings.items():
            bm = self.postings.get(k)
            if bm is None:
                self.postings[k] = new
            else:
                bm |= new
        self._staged_postings = {}

    def compact(self, live: BitMap) -> None:
        super().compact(live)
        for k in list(self.postings):
            self.postings[k] &= live
            if not self.postings[k]:
                del self.postings[k]

    def entries(self) -> int:
        return sum(len(b) for b in self.postings.values())

    def value_maps(self) -> dict[Any, BitMap] | None:
        return self.postings

    def ram_bytes(self) -> int:
        keys = sum(len(k) + 60 if isinstance(k, str) else 40 for k in self.postings)  # key objects, dict slots
        return super().ram_bytes() + keys + sum(bitmap_bytes(b) for b in self.postings.values())

    def _values(self, values: list[Any]) -> list[Any]:
        s = self.schema
        if s is PayloadSchemaType.bool:
            if not all(isinstance(v, bool) for v in values):
                raise self._wrong("match a boolean with match.value true or false")
            return values
        if s is PayloadSchemaType.text:
            raise self._wrong("use match.text")
        if not all(isinstance(v, str) for v in values):
            raise self._wrong("match strings")
        if s is PayloadSchemaType.uuid:
            for v in values:
                try:
                    uuid.UUID(v)
                except ValueError:
                    raise self._wrong(f"{v!r} is not a UUID") from None
        return values

    def evaluate(self, c: FieldCondition) -> BitMap:
        m = c.match
        if c.range is not None or m is None:
            raise self._wrong("range needs an integer, float or datetime index")
        if isinstance(m, MatchText):
            if self.schema is not PayloadSchemaType.text:
                raise self._wrong("match.text needs a text index")
            words = tokenize(m.text)
            if not words:
                raise InvalidFilter(f"match.text {m.text!r} has no words")
            got = [b for w in dict.fromkeys(words) if (b := self.postings.get(w)) is not None]
            if len(got) < len(dict.fromkeys(words)):
                return BitMap()  # a word no point has
            return BitMap.intersection(*got)
        if isinstance(m, MatchValue):
            (v,) = self._values([m.value])
            return self.postings.get(v, BitMap()).copy()
        if isinstance(m, MatchAny):
            found = [b for v in self._values(m.any) if (b := self.postings.get(v)) is not None]
            return BitMap.union(*found) if found else BitMap()
        if self.schema is PayloadSchemaType.bool:
            raise self._wrong("match.except takes strings or integers")
        excluded = set(self._values(m.except_))
        kept = [b for k, b in self.postings.items() if k not in excluded]
        return BitMap.union(self.other, *kept)


# ---------------------------------------------------------------------------------------------
# Sorted arrays: integer, float, datetime


class _Sorted:
    """(value, label) pairs sorted by value, plus an unsorted tail merged in by `flush`."""

    def __init__(self, dtype: type[np.int64] | type[np.float64]) -> None:
        self.dtype = dtype
        self.values: npt.NDArray[Any] = np.empty(0, dtype)
        self.labels: I64 = np.empty(0, np.int64)
        self._new_values: list[int | float] = []
        self._new_labels: list[int] = []
        self._staged: tuple[npt.NDArray[Any], I64] | None = None

    def add(self, value: int | float, label: int) -> None:
        self._new_values.append(value)
        self._new_labels.append(label)

    def stage(self) -> None:
        """Merge the added pairs into new arrays; readers keep the old ones until `publish`."""
        self._staged = None
        if not self._new_values:
            return
        v = np.asarray(self._new_values, self.dtype)
        lab = np.asarray(self._new_labels, np.int64)
        self._new_values, self._new_labels = [], []
        order = np.argsort(v, kind="stable")
        v, lab = v[order], lab[order]
        at = np.searchsorted(self.values, v, side="right")
        self._staged = np.insert(self.values, at, v), np.insert(self.labels, at, lab)

    def publish(self) -> None:
        if self._staged is not None:
            self.values, self.labels = self._staged
            self._staged = None

    def keep(self, mask: npt.NDArray[np.bool_]) -> None:
        self.values, self.labels = self.values[mask], self.labels[mask]

    def between(self, lo: int | float | None, lo_incl: bool, hi: int | float | None, hi_incl: bool) -> I64:
        a = 0 if lo is None else int(np.searchsorted(self.values, lo, side="left" if lo_incl else "right"))
        b = (
            len(self.values)
            if hi is None
            else int(np.searchsorted(self.values, hi, side="right" if hi_incl else "left"))
        )
        return self.labels[a:b] if a < b else self.labels[:0]

    def nbytes(self) -> int:
        return int(self.values.nbytes + self.labels.nbytes)


class _ValueBitmaps:
    """A bitmap per distinct integer value, while there are at most `CAP` of them.

    Then a range is the union of the few bitmaps between its bounds, and equality one lookup, instead of a
    bitmap built per query from the labels of a sorted-array slice (0.45 ms for half of 100k points, 11 ms
    at 1M). Past `CAP` distinct values (ids, prices) the sorted arrays alone answer. Staged and
    published with the rest of the index, so readers see a write whole."""

    CAP = 1024

    def __init__(self) -> None:
        self.maps: dict[int, BitMap] | None = {}  # None: too many distinct values
        self.keys: list[int] = []  # the values, sorted
        self._pending: dict[int, list[int]] = {}
        self._staged: dict[int, BitMap] | None = None

    def add(self, value: int, label: int) -> None:
        if self.maps is not None:
            self._pending.setdefault(value, []).append(label)

    def stage(self) -> None:
        self._staged = {v: BitMap(labels) for v, labels in self._pending.items()} if self.maps is not None else None
        self._pending = {}

    def publish(self) -> None:
        if self.maps is None or self._staged is None:
            return
        for v, new in self._staged.items():
            bm = self.maps.get(v)
            if bm is None:
                self.maps[v] = new
            else:
                bm |= new
        self._staged = None
        if len(self.maps) > self.CAP:
            self.maps, self.keys = None, []
        else:
            self.keys = sorted(self.maps)

    def compact(self, live: BitMap) -> None:
        if self.maps is None:
            return
        for v in list(self.maps):
            self.maps[v] &= live
            if not self.maps[v]:
                del self.maps[v]
        self.keys = sorted(self.maps)

    def between(self, lo: int, hi: int) -> BitMap | None:
        """Labels with a value in [lo, hi]; None when the values are too many to keep bitmaps."""
        if self.maps is None:
            return None
        a, b = bisect.bisect_left(self.keys, lo), bisect.bisect_right(self.keys, hi)
        return BitMap.union(*(self.maps[v] for v in self.keys[a:b])) if a < b else BitMap()

    def nbytes(self) -> int:
        return 0 if self.maps is None else sum(bitmap_bytes(b) + 40 for b in self.maps.values())


def _int_bounds(bounds: dict[str, float]) -> tuple[int, int] | None:
    """Float bounds as an inclusive int64 interval [lo, hi], or None when no integer fits."""
    lo, hi = _INT64_MIN, _INT64_MAX
    for op, b in bounds.items():
        if math.isinf(b):
            if (b > 0) == (op in (">", ">=")):
                return None  # > +inf, < -inf
            continue
        if op == ">":
            lo = max(lo, math.floor(b) + 1)
        elif op == ">=":
            lo = max(lo, math.ceil(b))
        elif op == "<":
            hi = min(hi, math.ceil(b) - 1)
        else:
            hi = min(hi, math.floor(b))
    return (lo, hi) if lo <= hi else None


class NumericIndex(FieldIndex):
    def __init__(self, key: str, schema: PayloadSchemaType) -> None:
        super().__init__(key)
        self.schema = schema
        self.ints = _Sorted(np.int64)
        self.floats = _Sorted(np.float64)
        self.by_value = _ValueBitmaps()  # the integers again, a bitmap per value while they are few

    def _add_value(self, label: int, e: Any) -> bool:
        if self.schema is PayloadSchemaType.datetime:
            t = parse_datetime(e) if isinstance(e, str) else None
            if t is None:
                return False
            self.floats.add(t, label)
            return True
        n = number(e)
        if n is None:
            return False
        if isinstance(n, int):
            self.ints.add(n, label)
            self.by_value.add(n, label)
        else:
            self.floats.add(n, label)
        return True

    def stage(self) -> None:
        super().stage()
        self.ints.stage()
        self.floats.stage()
        self.by_value.stage()

    def publish(self) -> None:
        super().publish()
        self.ints.publish()
        self.floats.publish()
        self.by_value.publish()

    def compact(self, live: BitMap) -> None:
        super().compact(live)
        keep = labels_of(live)
        for s in (self.ints, self.floats):
            s.keep(np.isin(s.labels, keep))
        self.by_value.compact(live)

    def value_maps(self) -> dict[Any, BitMap] | None:
        return self.by_value.maps

    def entries(self) -> int:
        return len(self.ints.labels) + len(self.floats.labels)

    def ram_bytes(self) -> int:
        return super().ram_bytes() + self.ints.nbytes() + self.floats.nbytes() + self.by_value.nbytes()

    def _bound(self, b: float | str) -> float:
        if self.schema is PayloadSchemaType.datetime and isinstance(b, str):
            t = parse_datetime(b)
            if t is None:
                raise InvalidFilter(f"range bound {b!r} on {self.key!r} is not an RFC 3339 datetime")
            return t
        return number_bound(b)

    def _range(self, r: Range) -> BitMap:
        raw = {">": r.gt, ">=": r.gte, "<": r.lt, "<=": r.lte}
        bounds = {op: self._bound(b) for op, b in raw.items() if b is not None}
        if any(math.isnan(b) for b in bounds.values()):
            raise InvalidFilter("range bounds must not be NaN")
        lo_op = ">" if ">" in bounds and (">=" not in bounds or bounds[">"] >= bounds[">="]) else ">="
        hi_op = "<" if "<" in bounds and ("<=" not in bounds or bounds["<"] <= bounds["<="]) else "<="
        lo, hi = bounds.get(lo_op), bounds.get(hi_op)
        floats = self.floats.between(lo, lo_op == ">=", hi, hi_op == "<=")
        iv = _int_bounds(bounds)
        if iv is None:
            return bitmap(floats)
        ints = self.by_value.between(*iv)
        if ints is None:
            return bitmap(np.concatenate([floats, self.ints.between(iv[0], True, iv[1], True)]))
        return ints | bitmap(floats) if len(floats) else ints

    def _equal(self, v: int) -> BitMap:
        ints = self.by_value.between(v, v)
        if ints is None:
            ints = bitmap(self.ints.between(v, True, v, True))
        if float(v) == v and len(self.floats.values):  # a float equals v only when v is exactly representable
            ints = ints | bitmap(self.floats.between(float(v), True, float(v), True))
        return ints

    def _ints(self, values: list[Any]) -> list[int]:
        if self.schema is not PayloadSchemaType.integer:
            raise self._wrong("use a range (match needs an integer index)")
        if not all(type(v) is int for v in values):
            raise self._wrong("match integers")
        return values

    def evaluate(self, c: FieldCondition) -> BitMap:
        m = c.match
        if c.range is not None:
            return self._range(c.range)
        if isinstance(m, MatchValue):
            return self._equal(self._ints([m.value])[0])
        if isinstance(m, MatchAny):
            return BitMap.union(BitMap(), *(self._equal(v) for v in self._ints(m.any)))
        if isinstance(m, MatchExcept):
            excluded = self._ints(m.except_)
            keep_i = ~np.isin(self.ints.values, np.asarray(excluded, np.int64))
            exact = [float(v) for v in excluded if float(v) == v]
            keep_f = ~np.isin(self.floats.values, np.asarray(exact, np.float64))
            return bitmap(np.concatenate([self.ints.labels[keep_i], self.floats.labels[keep_f]])) | self.other
        raise self._wrong("match.text needs a text index")


def make_field_index(key: str, schema: PayloadSchemaType) -> FieldIndex:
    if schema in (PayloadSchemaType.integer, PayloadSchemaType.float, PayloadSchemaType.datetime):
        return NumericIndex(key, schema)
    return PostingIndex(key, schema)
