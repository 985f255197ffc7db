"""The label map: external point ids to internal labels, and which labels are alive.

Every write gets fresh labels (never reused), so an overwrite is "new label alive, old label dead".
The map is the in-RAM mirror of SQLite's `points` table, rebuilt from it on open. Writers are
serialised by the collection; readers take no lock, which is why a label is marked dead before its
id is dropped (a reader that saw "alive" still finds an id).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from index.contract import PointIdT

__all__ = ["LabelMap", "grow_bools"]

Bools = npt.NDArray[np.bool_]
I64 = npt.NDArray[np.int64]


def grow_bools(arr: Bools, end: int) -> Bools:
    """`arr`, or a copy at least `end` long (doubling), so that index `end - 1` is valid."""
    if end <= len(arr):
        return arr
    grown = np.zeros(max(end, 2 * len(arr)), bool)
    grown[: len(arr)] = arr
    return grown


class LabelMap:
    def __init__(self, n_labels: int, rows: Iterable[tuple[PointIdT, int]]) -> None:
        """`n_labels`: the committed label count; `rows`: (id, label) of every live point."""
        self.n = n_labels  # committed labels: every store holds at least this many rows
        self.ids: list[PointIdT | None] = [None] * n_labels  # label -> id (None: dead label)
        self.label_of: dict[PointIdT, int] = {}
        self.alive: Bools = np.zeros(max(1024, n_labels * 2), bool)
        for pid, label in rows:
            self.ids[label] = pid
            self.label_of[pid] = label
            self.alive[label] = True

    @property
    def count(self) -> int:
        return len(self.label_of)

    def live_labels(self, n: int) -> I64:
        return np.flatnonzero(self.alive[:n]).astype(np.int64)

    def assign(self, ids: list[PointIdT], start: int) -> I64:
        """Give `ids` the labels `start ...`; returns the labels they had before (now dead)."""
        end = start + len(ids)
        self.alive = grow_bools(self.alive, end)
        old = [prev for pid in ids if (prev := self.label_of.get(pid)) is not None]
        old_arr = np.asarray(old, dtype=np.int64)
        self.ids.extend(ids)
        self.alive[start:end] = True
        self.alive[old_arr] = False  # before the ids go
        for off, pid in enumerate(ids):
            self.label_of[pid] = start + off
        for prev in old:
            self.ids[prev] = None
        return old_arr

    def forget(self, labels: list[int]) -> None:
        self.alive[np.asarray(labels, dtype=np.int64)] = False  # first, as in assign
        for label in labels:
            pid = self.ids[label]
            self.ids[label] = None
            if pid is not None:
                self.label_of.pop(pid, None)

    def ram_bytes(self) -> int:
        return int(self.alive.nbytes + 8 * len(self.ids) + 100 * len(self.label_of))
