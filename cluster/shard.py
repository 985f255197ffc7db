"""One replica of one shard: a Ray actor that holds an ordinary single-node `Collection`.

The actor opens (or creates) the collection in its own data directory on its node, so its writes
are durable exactly as on a single node (vectors fsynced, one SQLite transaction), and Ray may kill
and restart it at any point: the restarted actor reopens the directory and recovers like a server
after `kill -9`.

Op numbers. Every write to a shard carries the shard's next op number, assigned by the router. A
replica's `applied` op number is its collection's own persisted `seq` (one per write, committed in
the same transaction as the write) plus an `offset` recorded after a catch-up (a catch-up rewrites
the data and so moves `seq` by a different amount). A replica refuses a write whose op number is not
the next one (`StaleReplica`), and a search that asks for a newer state than it has: it then missed
a write, and the router takes it out of service until it has caught up from a live replica.

Nothing in this module imports ray at import time; `cluster/sharded.py` wraps `ShardReplica` with
`ray.remote`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
from pathlib import Path
from typing import Any

import numpy as np

from index.backends.base import F32
from index.collection import Collection
from index.contract import (
    CollectionOptions,
    Hit,
    PointIdT,
    Query,
    QueryResult,
    SparseStats,
    SparseVec,
    VectorsIn,
    WithVector,
)
from index.errors import NestorError
from index.fsutil import atomic_write_bytes
from nestor_client.models import CollectionConfig, Filter, SearchParams, parse_schema

__all__ = ["PackedQuery", "PackedResult", "ShardReplica", "StaleReplica", "pack_query", "unpack_result"]

# (vector, limit, filter, params as a dict, with_payload, with_vector, score_threshold, using, sparse,
#  sparse_stats)
PackedQuery = tuple[
    F32,
    int,
    Filter | None,
    dict[str, Any] | None,
    bool,
    WithVector,
    float | None,
    str | None,
    SparseVec | None,
    SparseStats | None,
]
# (ids, scores, payloads, vectors by name, strategy)
PackedResult = tuple[
    list[PointIdT], list[float], list[dict[str, Any] | None] | None, list[dict[str, Any] | None] | None, str
]


def pack_query(q: Query) -> PackedQuery:
    params = None if q.params is None else q.params.model_dump(exclude_unset=True)
    return (
        q.vector, q.limit, q.filter, params, q.with_payload, q.with_vector, q.score_threshold, q.using, q.sparse,
        q.sparse_stats,
    )  # fmt: skip


def unpack_result(r: PackedResult) -> QueryResult:
    ids, scores, payloads, vectors, strategy = r
    hits = [Hit(pid, sc) for pid, sc in zip(ids, scores, strict=True)]
    if payloads is not None:
        for h, p in zip(hits, payloads, strict=True):
            h.payload = p
    if vectors is not None:
        for h, v in zip(hits, vectors, strict=True):
            h.vectors = v
    return QueryResult(hits, strategy)


_OFFSET_FILE = "replica.json"
EXPORT_CHUNK = 4096  # points per message when a replica catches up from another


class StaleReplica(NestorError):
    """This replica missed a write (it was down): it must catch up before it serves again."""

    status = 503
    type = "stale_replica"


class ShardReplica:
    def __init__(self, name: str, directory: str, config_json: str, options: dict[str, Any], shard: int = 0) -> None:
        self.name = name
        self.shard = shard
        self.dir = Path(directory)
        config = CollectionConfig.model_validate_json(config_json)
        opts = CollectionOptions(**options)
        if (self.dir / "collection.json").exists():
            self.coll = Collection.open(name, self.dir, opts)
        else:
            if self.dir.exists():  # a create that died before its config landed
                shutil.rmtree(self.dir)
            self.dir.parent.mkdir(parents=True, exist_ok=True)
            self.coll = Collection.create(name, self.dir, config, opts)
        offset_file = self.dir / _OFFSET_FILE
        self.offset = int(json.loads(offset_file.read_text())["offset"]) if offset_file.exists() else 0
        self._lock = threading.Lock()  # writes and catch-ups, one at a time (the router also serialises them)
        self.restarts = _restart_count()

    # -- state -----------------------------------------------------------------------------

    @property
    def applied(self) -> int:
        return self.coll.seq + self.offset

    def ping(self) -> dict[str, Any]:
        """Where the replica runs, and how far it is."""
        return {
            "applied": self.applied,
            "count": self.coll.count,
            "node": _node_ip(),
            "node_id": _node_id(),
            "pid": os.getpid(),
            "restarts": self.restarts,
        }

    def _expect(self, op: int) -> None:
        if self.applied != op - 1:
            raise StaleReplica(f"replica at op {self.applied} cannot apply op {op}: it missed writes")

    # -- writes ----------------------------------------------------------------------------

    def upsert(
        self, op: int, ids: list[PointIdT], vectors: VectorsIn, payloads: list[dict[str, Any] | None] | None
    ) -> int:
        with self._lock:
            self._expect(op)
            return self.coll.upsert(ids, vectors, payloads).count

    def delete(self, op: int, ids: list[PointIdT]) -> int:
        with self._lock:
            self._expect(op)
            return self.coll.delete(ids).count

    def delete_where(self, op: int, flt: Filter) -> int:
        with self._lock:
            self._expect(op)
            return self.coll.delete_where(flt).count

    def set_payload_schema(self, schema: dict[str, str | dict[str, Any]]) -> None:
        """Make this replica's payload indexes exactly `schema` (as `schema_json` writes it; idempotent): a
        broadcast, or a heal."""
        for key in [k for k in self.coll.config.payload_schema if k not in schema]:
            self.coll.delete_payload_index(key)
        for key, s in schema.items():
            self.coll.create_payload_index(key, parse_schema(s))  # waits; a no-op when it exists

    def pause_indexing(self) -> None:
        self.coll.pause_indexing()

    def resume_indexing(self) -> None:
        self.coll.resume_indexing()

    # -- reads -----------------------------------------------------------------------------

    def search(self, queries: list[Query], min_op: int) -> list[QueryResult]:
        if self.applied < min_op:
            raise StaleReplica(f"replica at op {self.applied} is behind the acknowledged op {min_op}")
        return self.coll.search(queries)

    def sparse_stats(self, asks: list[tuple[str, SparseVec]], min_op: int) -> list[SparseStats]:
        """This shard's IDF inputs for each (sparse vector, query): the router sums every shard's."""
        if self.applied < min_op:
            raise StaleReplica(f"replica at op {self.applied} is behind the acknowledged op {min_op}")
        return [self.coll.sparse_stats(using, q) for using, q in asks]

    def search_packed(self, packed: tuple[list[PackedQuery], list[int]]) -> list[PackedResult]:
        """`search` on plain tuples (a third of the pickling of dataclasses and pydantic models), with every
        shard's minimum op in one argument: the compiled graph sends one input to all shards."""
        rows, ops = packed
        queries = [
            Query(v, limit=k, filter=f, params=None if p is None else SearchParams.model_validate(p),
                  with_payload=wp, with_vector=wv, score_threshold=t, using=u, sparse=sp, sparse_stats=ss)
            for v, k, f, p, wp, wv, t, u, sp, ss in rows
        ]  # fmt: skip
        out: list[PackedResult] = []
        for q, r in zip(queries, self.search(queries, ops[self.shard]), strict=True):
            hits = r.hits
            out.append(
                (
                    [h.id for h in hits],
                    [h.score for h in hits],
                    [h.payload for h in hits] if q.with_payload else None,
                    [h.vectors for h in hits] if q.with_vector else None,
                    r.strategy,
                )
            )
        return out

    def get(self, ids: list[PointIdT], with_payload: bool, with_vector: WithVector, min_op: int) -> list[Hit]:
        if self.applied < min_op:
            raise StaleReplica(f"replica at op {self.applied} is behind the acknowledged op {min_op}")
        return self.coll.get(ids, with_payload=with_payload, with_vector=with_vector)

    def count_where(self, flt: Filter | None) -> int:
        return self.coll.count_where(flt)

    def scroll(
        self, flt: Filter | None, limit: int, offset: PointIdT | None, with_payload: bool, with_vector: WithVector,
        min_op: int,
    ) -> tuple[list[Hit], PointIdT | None]:  # fmt: skip
        if self.applied < min_op:
            raise StaleReplica(f"replica at op {self.applied} is behind the acknowledged op {min_op}")
        return self.coll.scroll(flt, limit=limit, offset=offset, with_payload=with_payload, with_vector=with_vector)

    def info(self) -> dict[str, Any]:
        return {**self.coll.info().model_dump(mode="json"), **self.ping()}

    # -- catch-up --------------------------------------------------------------------------

    def export(
        self, start: int, size: int
    ) -> tuple[list[PointIdT], dict[str, list[Any]], list[dict[str, Any] | None], bool]:
        """Live points `start .. start + size` in label order: ids, vectors by name, payloads, and whether more
        follow. Called while the router holds the shard's write lock, so the live set does not move between calls."""
        labels = self.coll.labels.live_labels(self.coll.labels.n)
        ids, vectors, payloads = self.coll.read_points(labels[start : start + size])
        return ids, vectors, payloads, start + size < len(labels)

    def live_ids(self) -> list[PointIdT]:
        ids = self.coll.labels.ids
        return [
            pid for lab in self.coll.labels.live_labels(self.coll.labels.n).tolist() if (pid := ids[lab]) is not None
        ]

    def catch_up(self, source: Any, source_applied: int) -> int:
        """Make this replica equal to `source` (another replica's actor handle) at op `source_applied`.

        Deletes the points the source does not have, rewrites every point it has (upserts are idempotent
        by id), then records the op offset. Returns the number of points copied."""
        import ray

        with self._lock:
            theirs = set(ray.get(source.live_ids.remote()))
            extra = [pid for pid in self.live_ids() if pid not in theirs]
            if extra:
                self.coll.delete(extra)
            copied, start, more = 0, 0, True
            while more:
                ids, vectors, payloads, more = ray.get(source.export.remote(start, EXPORT_CHUNK))
                keep = self._differs(ids, vectors, payloads)
                if keep:
                    part = {name: [vs[i] for i in keep] for name, vs in vectors.items()}
                    self.coll.upsert([ids[i] for i in keep], part, [payloads[i] for i in keep], stored=True)
                copied += len(keep)
                start += EXPORT_CHUNK
            if source_applied >= 0:  # a first pass while writes go on records nothing: a final pass follows
                self.offset = source_applied - self.coll.seq
                atomic_write_bytes(self.dir / _OFFSET_FILE, json.dumps({"offset": self.offset}).encode())
            return copied

    def _differs(
        self, ids: list[PointIdT], vectors: dict[str, list[Any]], payloads: list[dict[str, Any] | None]
    ) -> list[int]:
        """Positions of the source's points that this replica lacks or holds differently (vectors bit for bit)."""
        labels = [self.coll.label_of(pid) for pid in ids]
        have = [i for i, lab in enumerate(labels) if lab is not None]
        out = [i for i, lab in enumerate(labels) if lab is None]
        if have:
            mine = np.asarray([labels[i] for i in have], dtype=np.int64)
            _, my_vectors, my_payloads = self.coll.read_points(mine)
            for row, i in enumerate(have):
                same = (my_payloads[row] or {}) == (payloads[i] or {}) and all(
                    _same(my_vectors[name][row], vectors[name][i]) for name in vectors
                )
                if not same:
                    out.append(i)
        return sorted(out)

    def close(self) -> None:
        self.coll.close()


def _same(a: F32 | None, b: F32 | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


def _restart_count() -> int:
    try:
        import ray

        ctx = ray.get_runtime_context()
        return 1 if ctx.was_current_actor_reconstructed else 0
    except Exception:  # outside an actor (unit use)
        return 0


def _node_ip() -> str:
    try:
        import ray

        return str(ray.util.get_node_ip_address())
    except Exception:
        return socket.gethostname()


def _node_id() -> str:
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id())
    except Exception:
        return ""
