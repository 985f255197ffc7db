"""Creating, dropping and opening a collection's payload indexes (`PUT`/`DELETE /collections/{name}/index`).

An index is derived from the store of record. At open, every index in `payload_schema` is built from
SQLite in one pass before the collection serves (about 0.5 s per 100k points for three keys; see
`benchmarks/FILTERS.md`). A new index is built off the write lock from a consistent read of the store
at some `seq`; then, under the write lock, the rows written since are added and the index is made
ready. Until then filters on its key run in SQL, and the info reports it as `indexing`. Dead labels
need no catch-up: every answer is intersected with the live labels.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from index.filters import split_key
from index.fsutil import atomic_write_bytes
from index.payload import build_indexes, graph_kind
from nestor_client.models import PayloadSchema, plain_schema, schema_type

if TYPE_CHECKING:
    from index.collection import Collection

__all__ = ["create_index", "delete_index", "open_indexes"]

log = logging.getLogger(__name__)


def _parsed(rows: list[tuple[int, str | None]]) -> Iterator[tuple[int, dict[str, Any] | None]]:
    for label, text in rows:
        yield label, (orjson.loads(text) if text else None)


def open_indexes(coll: Collection) -> None:
    """Build every configured index from the store (at open, before any writer)."""
    schema = coll.config.payload_schema
    if not schema:
        return
    _, rows = coll.points.payload_rows()
    for key, fi in build_indexes(schema, _parsed(rows)).items():
        coll.payload.install(key, fi, graphs=graph_kind(schema[key]))


def _save_config(coll: Collection, schema: dict[str, PayloadSchema]) -> None:
    """Under the write lock: persist `payload_schema` in collection.json, then make it the config."""
    config = coll.config.model_copy(update={"payload_schema": schema})
    atomic_write_bytes(coll.dir / "collection.json", config.model_dump_json().encode())
    coll.config = config


def create_index(coll: Collection, key: str, schema: PayloadSchema, *, wait: bool = True) -> bool:
    """Index payload `key` as `schema` (replacing an index of another type); False when it already exists.
    A change of `is_tenant` or `value_graphs` alone is recorded without a rebuild (True).

    The build runs on a thread; `wait` returns once the index is ready."""
    split_key(key)  # InvalidFilter (422) for a malformed key
    schema = plain_schema(schema)
    with coll._write_lock:
        old = coll.config.payload_schema.get(key)
        if old == schema:
            return False
        if old is not None and schema_type(old) == schema_type(schema) and key in coll.payload.fields:
            coll.payload.mark_graphs(key, graph_kind(schema))
            _save_config(coll, {**coll.config.payload_schema, key: schema})
            return True
        coll.payload.drop(key)
        _save_config(coll, {**coll.config.payload_schema, key: schema})
    worker = threading.Thread(target=_build, args=(coll, key, schema), name=f"payload-index-{key}", daemon=True)
    worker.start()
    if wait:
        worker.join()
    return True


def _build(coll: Collection, key: str, schema: PayloadSchema) -> None:
    try:
        generation = coll.generation  # a compaction relabels: its new generation built this index at open
        seq, rows = coll.points.payload_rows()
        fi = build_indexes({key: schema}, _parsed(rows))[key]
        del rows
        with coll._write_lock:
            if coll.config.payload_schema.get(key) != schema or coll.closed or coll.generation != generation:
                return  # dropped or replaced meanwhile, or compacted (index/compaction.py)
            _, since = coll.points.payload_rows(seq)
            coll.payload.install(key, fi, _parsed(since), graphs=graph_kind(schema))
    except Exception:
        log.exception("building the payload index on %r of %s failed; filters on it run in SQL", key, coll.name)


def delete_index(coll: Collection, key: str) -> bool:
    """Drop the index on `key`; False when there is none."""
    with coll._write_lock:
        if key not in coll.config.payload_schema:
            return False
        coll.payload.drop(key)
        _save_config(coll, {k: s for k, s in coll.config.payload_schema.items() if k != key})
    return True
