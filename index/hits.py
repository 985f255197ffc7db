"""Turning a search's labels into hits: ids, score thresholds, payloads, and the vectors asked for.

Labels are read without a lock. An overwrite commits its rows, then (under the collection's write
lock) moves the label map to the new labels, so a reader may hold a label whose SQLite row has just
moved: `attach` then waits for that write and reads the point's row through its new label.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import orjson

from index.backends.base import F32, I64
from index.batch import Field
from index.contract import Hit, PointIdT, Query, QueryResult, SparseVec, WithVector
from index.errors import InvalidRequest
from index.hit_class import make_hits
from index.labels import LabelMap
from index.multivector import MultiVectorField
from index.planner import Ranked
from index.runtime import no_gc
from index.sparse import SparseField
from index.storage import PointStore
from nestor_client.models import Metric

__all__ = ["HitReader"]


class HitReader:
    def __init__(
        self,
        labels: LabelMap,
        points: PointStore,
        fields: dict[str, Field],
        write_lock: threading.Lock | AbstractContextManager[None],
    ) -> None:
        self.labels = labels
        self.points = points
        self.fields = fields
        self._write_lock = write_lock

    def finish(self, q: Query, f: Field, ranked: Ranked) -> QueryResult:
        labels, scores, strategy = ranked
        if q.offset:
            labels, scores = labels[q.offset :], scores[q.offset :]
        if q.score_threshold is not None:
            t, lower = q.score_threshold, f.metric is Metric.l2
            keep = [i for i, s in enumerate(scores) if (s <= t if lower else s >= t)]
            labels, scores = [labels[i] for i in keep], [scores[i] for i in keep]
        ids = self.labels.ids
        if not q.with_payload and not q.with_vector:  # ids and scores only (the search's hot path): no payload
            got = list(map(ids.__getitem__, labels))
            if not all(got) and None in got:  # a point deleted since the search (`all` first: no == on None)
                scores = [sc for pid, sc in zip(got, scores, strict=True) if pid is not None]
                got = [pid for pid in got if pid is not None]
            if type(scores) is list:
                return QueryResult(make_hits(got, scores), strategy)
            return QueryResult(list(map(Hit, got, scores)), strategy)  # type: ignore[arg-type]
        hits = [Hit(ids[lab], sc) for lab, sc in zip(labels, scores, strict=True)]  # type: ignore[arg-type]
        names = self.vector_names(q.with_vector) if q.with_vector else []
        if q.with_payload or names:
            # a filtered hit whose point was overwritten since the search is dropped: the new payload
            # need not match the filter (an unfiltered one gets the point's current payload)
            self.attach(hits, labels, q.with_payload, names, follow=q.filter is None)
        return QueryResult([h for h in hits if h.id is not None], strategy)

    def vector_names(self, with_vector: WithVector) -> list[str]:
        if with_vector is True:
            return list(self.fields)
        if not with_vector:
            return []
        names = list(with_vector)  # type: ignore[arg-type]
        unknown = [n for n in names if n not in self.fields]
        if unknown:
            raise InvalidRequest(
                f"with_vector names {unknown} are not vectors of this collection ({list(self.fields)})"
            )
        return names

    def attach(
        self,
        hits: list[Hit],
        labels: list[int],
        with_payload: bool,
        names: list[str],
        *,
        pays: dict[int, str | None] | None = None,
        follow: bool = True,
    ) -> None:
        """Fill in payloads and the vectors `names`; `pays`: the payload JSON by label, when already read.
        `follow`: a point overwritten meanwhile gets its current payload; else its hit is dropped."""
        if not labels:
            return
        if with_payload:
            pays = self.points.payloads(labels) if pays is None else pays
            if len(pays) < len(hits) and follow:
                pays = self._payloads_after_overwrite(hits, labels, pays)
            with no_gc():
                for h, lab in zip(hits, labels, strict=True):
                    if lab not in pays:  # overwritten again, or deleted, while we read: a stale hit, dropped
                        h.id = None  # type: ignore[assignment]
                        continue
                    text = pays[lab]
                    h.payload = orjson.loads(text) if text else {}
        if not names:
            return
        out: list[dict[str, Any]] = [{} for _ in hits]  # a point without one of the vectors leaves it out
        for fname in names:
            f = self.fields[fname]
            alive = f.alive
            if isinstance(f, MultiVectorField | SparseField):
                read = f.token_rows if isinstance(f, MultiVectorField) else f.vector_of
                for d, lab in zip(out, labels, strict=True):
                    if alive[lab]:
                        d[fname] = read(lab)
                continue
            rows = f.vector_of(np.asarray(labels, dtype=np.int64))
            for d, lab, v in zip(out, labels, rows, strict=True):
                if alive[lab]:
                    d[fname] = v.tolist()
        for h, d in zip(hits, out, strict=True):
            h.vectors = d

    def _payloads_after_overwrite(
        self, hits: list[Hit], labels: list[int], pays: dict[int, str | None]
    ) -> dict[int, str | None]:
        """Payloads for labels whose row SQLite has already moved to a newer label.

        An overwrite commits its rows, then (still under the write lock) moves the in-memory map to the
        new labels. A reader in between holds the old label, whose row is gone. Waiting for the write
        lock lets that upsert finish; the point's current row is then read through its new label, still
        under the lock, so no later write can move it again in between. A point deleted meanwhile stays
        missing, and the caller drops its hit."""
        out = dict(pays)
        with self._write_lock:
            for h, lab in zip(hits, labels, strict=True):
                if lab not in out and (now := self.labels.label_of.get(h.id)) is not None:
                    row = self.points.payloads([now])
                    if now in row:
                        out[lab] = row[now]
        return out

    def read_points(self, labels: I64) -> tuple[list[PointIdT], dict[str, list[Any]], list[dict[str, Any] | None]]:
        """Ids, vectors by name (None where a point omits one) and payloads of live labels (replica catch-up)."""
        hits = [Hit(self.labels.ids[lab], 0.0) for lab in labels.tolist()]  # type: ignore[arg-type]
        self.attach(hits, labels.tolist(), True, list(self.fields))
        vectors: dict[str, list[Any]] = {
            fname: [None if h.vectors is None else _as_array(h.vectors.get(fname)) for h in hits]
            for fname in self.fields
        }
        return [h.id for h in hits], vectors, [h.payload for h in hits]


def _as_array(v: Any) -> F32 | SparseVec | None:
    if isinstance(v, dict):  # a sparse vector
        return SparseVec(np.asarray(v["indices"], np.uint32), np.asarray(v["values"], np.float32))
    return None if v is None else np.asarray(v, dtype=np.float32)
