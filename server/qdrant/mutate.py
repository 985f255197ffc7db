"""Qdrant's partial updates (payload set/overwrite/delete/clear, vector update/delete) on Nestor's engine.

Nestor writes whole points, so each of these reads the points it touches (payload and every vector),
changes them, and upserts them back in one batch: atomic and durable like any upsert. A lock per
collection orders these read-modify-writes among themselves; a native upsert of the same point that
lands between the read and the write is overwritten (docs/reference/qdrant.md says so).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from index.contract import AnyCollection, Hit, PointIdT, SparseVec, WriteResult
from index.errors import PayloadTooLarge
from nestor_client.models import Filter, HasIdCondition
from server.qdrant.ids import point_ids
from server.qdrant.wire import QdrantError

__all__ = ["Change", "check_payloads", "rewrite", "selected_ids"]

# What a change does to one point: its payload and its vectors by name (None: absent), changed in place.
Change = Callable[[PointIdT, dict[str, Any], dict[str, Any]], None]

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(name, threading.Lock())


def selected_ids(coll: AnyCollection, points: list[Any] | None, flt: Filter | None, limit: int) -> list[PointIdT]:
    """The ids a Qdrant points selector names: the listed ones, or every point matching the filter (both
    given: the listed ones that match it)."""
    if points is not None:
        ids = list(point_ids(points))
        if flt is None or not ids:
            return ids
        flt = Filter(must=[HasIdCondition(has_id=ids), flt])
    if flt is None:
        raise QdrantError("Format error in JSON body: give points (a list of ids) or a filter")
    out: list[PointIdT] = []
    offset: PointIdT | None = None
    while True:
        page, offset = coll.scroll(flt, limit=1000, offset=offset, with_payload=False)
        out += [h.id for h in page]
        if len(out) > limit:
            raise PayloadTooLarge(f"the filter selects more than max_batch_points {limit} points; narrow it")
        if offset is None:
            return out


def _arrays(h: Hit, names: list[str]) -> dict[str, Any]:
    """The point's stored vectors as an upsert takes them (a sparse one as a `SparseVec`)."""
    out: dict[str, Any] = {}
    for n in names:
        v = (h.vectors or {}).get(n)
        if isinstance(v, dict):  # sparse: {"indices", "values"}
            out[n] = SparseVec(np.asarray(v["indices"], np.uint32), np.asarray(v["values"], np.float32))
        else:
            out[n] = None if v is None else np.asarray(v, dtype=np.float32)
    return out


def check_payloads(payloads: list[dict[str, Any] | None], limit: int) -> None:
    """Each payload within `max_payload_bytes`, measured as the JSON the store keeps (as Nestor's upsert does)."""
    for i, p in enumerate(payloads):
        if p and len(size := orjson.dumps(p)) > limit:
            raise PayloadTooLarge(f"payload of point #{i} is {len(size)} bytes of JSON, over max_payload_bytes {limit}")


def rewrite(coll: AnyCollection, ids: list[PointIdT], change: Change, max_payload_bytes: int) -> WriteResult:
    """Apply `change` to each existing point of `ids` and write them back in one batch.

    Ids that name no point are skipped, as Qdrant skips them (an empty change writes nothing)."""
    names = [*coll.config.vector_fields(), *coll.config.sparse_fields()]  # every vector is kept
    with _lock(coll.name):
        hits = coll.get(ids, with_payload=True, with_vector=True) if ids else []
        if not hits:
            return WriteResult(0, coll.seq)
        payloads: list[dict[str, Any] | None] = []
        vectors: dict[str, list[Any]] = {n: [] for n in names}
        for h in hits:
            payload = copy.deepcopy(h.payload or {})
            vecs = _arrays(h, names)
            change(h.id, payload, vecs)
            payloads.append(payload)
            for n in names:
                vectors[n].append(vecs[n])
        check_payloads(payloads, max_payload_bytes)
        return coll.upsert([h.id for h in hits], vectors, payloads)
