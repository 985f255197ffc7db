"""Scroll: the points matching a filter, in id order, a page at a time (`POST .../points/scroll`).

Order: integer ids ascending, then string ids (UUIDs) in code-point order, as Qdrant orders them. A page
starts at the id `offset` (inclusive: the id need not exist), and `next_page_offset` is the id after the
page's last point, or None at the end. Pages read between writes see each write whole, so a scroll that
runs across deletes returns every point that matched throughout exactly once, in order.

How a page is found. `IdOrder` keeps every live point's id sorted, with its label (16 bytes a point),
rebuilt only when a write has happened since (about 15 ms per 100k points). From the start position the
page walks that order in chunks that double, keeping labels that are alive and match the filter:
through the payload indexes when they answer the whole filter (a bitmap made a byte mask: what `count`
uses), else in SQL over just the chunk's labels, so a broad unindexed filter reads a page's worth of
rows, not the collection. Payloads of a page whose labels are nearly contiguous (a bulk load in id
order) are read as one label range, cheaper than the per-label lookups `get` does; when they are one
ascending run, the rows come back in page order and go straight to the hits, without a dict between.
"""

from __future__ import annotations

import bisect
import json
import operator
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import orjson

from index.backends.base import I64
from index.contract import Hit, PointIdT, WithVector
from index.filters import compile_filter
from index.labels import LabelMap
from index.payload_index import labels_of
from index.runtime import no_gc
from nestor_client.models import Filter

if TYPE_CHECKING:
    from index.collection import Collection

__all__ = ["IdOrder", "scroll_page"]

Bools = np.ndarray[tuple[int], np.dtype[np.bool_]]
Keep = Callable[[I64], Bools]  # which of a chunk's labels are alive and match
_FIRST_CHUNK = 4  # pages of the first chunk: a filter keeping a quarter of the points fills a page at once


class IdOrder:
    """Every live point's id in scroll order, with its label; rebuilt when the collection has changed."""

    def __init__(self, labels: LabelMap) -> None:
        self._labels = labels
        self._lock = threading.Lock()
        self._key: tuple[int, int] | None = None
        self.ints: I64 = np.empty(0, np.int64)  # integer ids, ascending
        self.strs: list[str] = []  # then string ids, ascending
        self.order: I64 = np.empty(0, np.int64)  # the label of each, ints then strs

    def current(self, seq: int) -> IdOrder:
        """Up to date with the write `seq` (the caller reads it before calling: a later write rebuilds)."""
        key = (seq, self._labels.n)
        with self._lock:
            if key != self._key:
                self._build(key[1])
                self._key = key
        return self

    def _build(self, n: int) -> None:
        lm = self._labels
        live = np.flatnonzero(lm.alive[:n]).astype(np.int64)
        ids = lm.ids
        if len(live) > 1:
            got = operator.itemgetter(*live.tolist())(ids)
            if set(map(type, got)) == {int}:  # every id an integer (the common case): numpy does the rest
                int_ids = np.array(got, dtype=np.int64)
                by_id = np.argsort(int_ids, kind="stable")
                self.ints, self.strs, self.order = int_ids[by_id], [], live[by_id]
                return
        pairs = [(pid, lab) for lab in live.tolist() if (pid := ids[lab]) is not None]
        ints = [(p, lab) for p, lab in pairs if type(p) is int]
        strs = sorted((p, lab) for p, lab in pairs if type(p) is str)
        int_ids = np.fromiter((p for p, _ in ints), np.int64, len(ints))
        int_labels = np.fromiter((lab for _, lab in ints), np.int64, len(ints))
        by_id = np.argsort(int_ids, kind="stable")
        self.ints = int_ids[by_id]
        self.strs = [p for p, _ in strs]
        self.order = np.concatenate([int_labels[by_id], np.fromiter((lab for _, lab in strs), np.int64, len(strs))])

    def start(self, offset: PointIdT | None) -> int:
        """The position of the first id at or after `offset`."""
        if offset is None:
            return 0
        if isinstance(offset, int):
            return int(np.searchsorted(self.ints, offset, side="left"))
        return len(self.ints) + bisect.bisect_left(self.strs, offset)

    def id_at(self, pos: int) -> PointIdT:
        return int(self.ints[pos]) if pos < len(self.ints) else self.strs[pos - len(self.ints)]

    def ids_at(self, positions: I64) -> list[PointIdT]:
        """The ids at ascending `positions`."""
        cut = int(np.searchsorted(positions, len(self.ints)))
        out: list[PointIdT] = self.ints[positions[:cut]].tolist()
        return out + [self.strs[p - len(self.ints)] for p in positions[cut:].tolist()]


def _keeper(coll: Collection, flt: Filter | None) -> Keep:
    """The test a chunk of labels goes through: alive, and matching `flt` (indexes, else SQL on the chunk)."""
    alive = coll.labels.alive
    if flt is None:
        return lambda labs: alive[labs]
    found = coll.payload.select(flt, coll.labels.label_of) if coll._indexed(flt) else None
    if found is not None:
        top = max(len(coll.labels.ids), found.max() + 1 if found else 0)
        mask = np.zeros(top + 1, bool)
        mask[labels_of(found)] = True
        return lambda labs: mask[labs]
    where, params = compile_filter(flt)
    sql = f"label IN (SELECT value FROM json_each(?)) AND ({where})"

    def in_sql(labs: I64) -> Bools:
        got = coll.points.select_labels(sql, [json.dumps(labs.tolist()), *params])
        return np.isin(labs, got) & alive[labs]

    return in_sql


def _page(order: IdOrder, start: int, want: int, keep: Keep) -> I64:
    """Positions in `order` of the first `want` kept labels from `start` on, ascending."""
    out: list[I64] = []
    found, pos, chunk, end = 0, start, _FIRST_CHUNK * want, len(order.order)
    while pos < end and found < want:
        labs = order.order[pos : pos + chunk]
        hit = np.flatnonzero(keep(labs))[: want - found] + pos
        out.append(hit)
        found += len(hit)
        pos += len(labs)
        chunk *= 2
    return np.concatenate(out) if out else np.empty(0, np.int64)


def _payloads(coll: Collection, labels: list[int]) -> dict[int, str | None]:
    """The payload JSON of `labels`: one label range when they are nearly contiguous, else per label."""
    lo, hi = min(labels), max(labels)
    if hi - lo < 2 * len(labels) + 64:
        rows = coll.points.payloads_between(lo, hi)
        if hi - lo + 1 == len(labels) == len(rows):  # the page is the whole range, and every row is there
            return dict(rows)
        wanted = set(labels)
        return {lab: p for lab, p in rows if lab in wanted}
    return coll.points.payloads(labels)


def _range_texts(coll: Collection, page: I64) -> list[str | None] | None:
    """The payload JSON of a page whose labels are one ascending run (lo, lo + 1, ... hi), in page order, read
    as one label range; None for any other page, or when a row has gone meanwhile."""
    if not len(page) or int(page[-1]) - int(page[0]) + 1 != len(page) or not (np.diff(page) == 1).all():
        return None
    rows = coll.points.payloads_between(int(page[0]), int(page[-1]))
    return [p for _, p in rows] if len(rows) == len(page) else None


def scroll_page(
    coll: Collection,
    flt: Filter | None = None,
    *,
    limit: int = 10,
    offset: PointIdT | None = None,
    with_payload: bool = True,
    with_vector: WithVector = False,
) -> tuple[list[Hit], PointIdT | None]:
    """One page: up to `limit` points matching `flt` from the id `offset` on (inclusive), and the next page's
    offset (None after the last page). `Collection.scroll` is this function."""
    names = coll.hits.vector_names(with_vector)  # InvalidRequest for an unknown name
    order = coll.id_order.current(coll.seq)
    keep = _keeper(coll, flt)  # InvalidFilter; after the order, so its masks cover every label in it
    positions = _page(order, order.start(offset), limit + 1, keep)
    nxt = order.id_at(int(positions[limit])) if len(positions) > limit else None
    page = order.order[positions[:limit]]
    labels: list[int] = page.tolist()
    ids = order.ids_at(positions[:limit])
    texts = _range_texts(coll, page) if with_payload and not names else None
    if texts is not None:  # the commonest page (a bulk load in id order): one range read, no lookups
        loads = orjson.loads
        with no_gc():
            return [Hit(pid, 0.0, loads(t) if t else {}) for pid, t in zip(ids, texts, strict=True)], nxt
    pays = _payloads(coll, labels) if with_payload and labels else {}
    if with_payload and not names and len(pays) >= len(labels) and all(lab in pays for lab in labels):
        loads = orjson.loads  # the common page: payloads only, every row found; one pass
        found = map(pays.__getitem__, labels)
        with no_gc():
            return [Hit(pid, 0.0, loads(t) if t else {}) for pid, t in zip(ids, found, strict=True)], nxt
    hits = [Hit(pid, 0.0) for pid in ids]
    if labels and (with_payload or names):
        coll.hits.attach(hits, labels, with_payload, names, pays=pays if with_payload else None)
    return [h for h in hits if h.id is not None], nxt
