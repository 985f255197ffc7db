"""A collection's durable write path: upsert and delete (the methods of `Collection` call these).

Upsert: validate the whole batch, append every field's rows (fsynced), then commit ids, labels, payloads
and which vectors each point has in one SQLite transaction; only then is the batch visible and
acknowledged. A field that raised mid-append is truncated back. Every write takes fresh labels, so an
overwrite makes the new label live and the old one dead in every field at once. Delete commits first,
then forgets the labels everywhere and drops them from the indexes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from index.batch import Field, check_batch, field_batches, vmasks
from index.contract import PointIdT, VectorsIn, WriteResult
from index.disk import batch_bytes, check_free
from index.filters import compile_filter
from index.payload_index import labels_of
from index.storage import encode_pid
from nestor_client.models import Filter

if TYPE_CHECKING:
    from index.collection import Collection

__all__ = ["delete_ids", "delete_where", "upsert"]


def upsert(
    coll: Collection,
    ids: list[PointIdT],
    vectors: VectorsIn,
    payloads: list[dict[str, Any] | None] | None,
    *,
    stored: bool,
) -> WriteResult:
    check_batch(ids, len(ids) if isinstance(vectors, Mapping) else len(vectors), payloads)
    default = "" if isinstance(vectors, Mapping) else coll.field(None).name  # a bare matrix is the default's
    batches = field_batches(coll.fields, default, ids, vectors, stored=stored)
    masks = vmasks(batches, coll._bits, len(ids))
    pay = [None if p is None else orjson.dumps(p).decode() for p in (payloads or [None] * len(ids))]
    if not ids:
        return WriteResult(0, coll._seq)
    check_free(coll.dir, batch_bytes(batches, len(ids), pay), coll.options.disk_min_free)  # 507, nothing written
    with coll._write_lock:
        start = coll.labels.n
        done: list[Field] = []
        try:
            for fname, f in coll.fields.items():
                done.append(f)  # before the append: one that raises may have written part of its rows
                f.append(batches[fname], start)  # type: ignore[arg-type]
            coll.points.upsert(
                [(encode_pid(i), start + o, p, m) for o, (i, p, m) in enumerate(zip(ids, pay, masks, strict=True))],
                seq=coll._seq + 1,
                next_label=start + len(ids),
            )
        except BaseException:
            for f in done:
                f.truncate(start)
            raise
        old = coll.labels.assign(ids, start)
        for fname, f in coll.fields.items():
            f.commit(start, batches[fname], old)  # type: ignore[arg-type]
        coll.payload.upsert(start, list(payloads) if payloads else [None] * len(ids), old)
        coll._seq += 1
        coll.labels.n = start + len(ids)  # last: readers take the label count as "committed"
        coll.last_write = time.time()
        seq = coll._seq
    if len(old):
        for f in coll.fields.values():
            f.remove_from_index(old)
    coll._indexer.wake()
    return WriteResult(len(ids), seq)


def delete_ids(coll: Collection, ids: list[PointIdT]) -> WriteResult:
    with coll._write_lock:
        labels = coll.points.delete([encode_pid(i) for i in ids], seq=coll._seq + 1)
        return _deleted(coll, labels)


def delete_where(coll: Collection, flt: Filter) -> WriteResult:
    with coll._write_lock:  # under it, the indexes hold exactly the store's points
        found = coll.payload.select(flt, coll.labels.label_of) if coll._indexed(flt) else None
        if found is not None:
            rows = coll.points.delete_labels(labels_of(found).tolist(), seq=coll._seq + 1)
        else:
            where, params = compile_filter(flt)
            rows = coll.points.delete_where(where, params, seq=coll._seq + 1)
        return _deleted(coll, [label for _, label in rows])


def _deleted(coll: Collection, labels: list[int]) -> WriteResult:
    """Under the write lock, after the commit: forget the labels everywhere, then drop them from indexes."""
    arr = np.asarray(labels, dtype=np.int64)
    for f in coll.fields.values():
        f.forget(arr)  # before the label map: a reader that saw "alive" still finds an id
    coll.payload.delete(arr)
    coll.labels.forget(labels)
    coll._seq += 1
    coll.last_write = time.time()
    for f in coll.fields.values():
        f.remove_from_index(arr)
    return WriteResult(len(labels), coll._seq)
