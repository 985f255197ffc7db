"""A sharded, replicated collection on Ray actors, with the methods the HTTP routers call on a `Collection`.

Placement. A point lives on shard `shard_of(id, shards)` (`cluster/routing.py`). Each shard has
`replicas` actors (`cluster/shard.py`), placed with Ray's SPREAD strategy so a shard's replicas land
on different nodes when the cluster has them. Each replica keeps its own data directory under the
collection's directory (`<data_dir>/collections/<name>/shards/s<shard>r<replica>`, the same path on
whichever node holds it).

Writes. A batch is validated here (dimension, NaN, zero cosine vectors, duplicate ids), split by
shard, and each part goes to every live replica of its shard with the shard's next op number. The
write is acknowledged when all live replicas have committed it (each commits durably, as a
single-node collection does). A replica that fails or times out is taken out of service; the write
still succeeds if another replica of the shard made it. A shard with no live replica fails the write
with `ShardUnavailable` (503). A batch is atomic per shard, not across shards.

Searches. Each query goes to one live replica per shard (round robin), asking for `limit + offset`
hits; the lists are merged exactly (`merge_hits`). A replica that fails is taken out of service and
the shard's query is retried on another replica. A shard with no live replica fails the search with
`ShardUnavailable`, unless the caller asked for partial results, which are then flagged in the
strategy (`partial:...`). A replica that missed a write refuses reads (`StaleReplica`), so a search
never silently sees an old state.

Recovery. Replicas run with `max_restarts`, so Ray restarts a dead actor, which reopens its
directory. A healer thread pings replicas that are out of service; once one answers, it catches up
from a live replica of its shard under the shard's write lock, and serves again.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cluster.checks import checked_sparse, checked_vectors
from cluster.compiled import CompiledSearch
from cluster.idf import with_global_idf
from cluster.ray_cluster import RayCluster
from cluster.replicas import Replica, Shard
from cluster.routing import group_by_shard, merge_hits, merge_pages
from cluster.shard import ShardReplica
from cluster.status import sharded_info
from index.backends.base import F32
from index.collection import check_batch, default_vector
from index.contract import (
    CollectionOptions,
    Hit,
    PointIdT,
    Query,
    QueryResult,
    VectorsIn,
    WithVector,
    WriteResult,
)
from index.errors import InvalidConfig, InvalidRequest, InvalidVector, NestorError
from index.filters import split_key
from index.fsutil import atomic_write_bytes, fsync_dir
from nestor_client.models import (
    CollectionConfig,
    CollectionInfo,
    Filter,
    Metric,
    PayloadSchema,
    VectorConfig,
    plain_schema,
)

__all__ = ["RayCluster", "ShardedCollection", "is_distributed"]

log = logging.getLogger("nestor.cluster")


def is_distributed(config: CollectionConfig) -> bool:
    return config.shards > 1 or config.replicas > 1


class ShardedCollection(CompiledSearch):
    """The `AnyCollection` contract over shards of ordinary collections held by Ray actors (the calls that reach
    the replicas, their failures and healing: `cluster/replicas.py`; compiled searches: `cluster/compiled.py`)."""

    distributed = True  # ingest jobs take the Ray Data path

    def __init__(
        self,
        name: str,
        directory: Path,
        config: CollectionConfig,
        options: CollectionOptions,
        cluster: RayCluster,
    ) -> None:
        import ray

        self.name = name
        self.dir = directory
        self.config = config
        self.options = options
        self.fields = config.vector_fields()
        self.sparse = config.sparse_fields()
        self._default = default_vector(config)
        self.cluster = cluster
        self.allow_partial = False  # searches with a shard down fail unless asked (search(..., partial=True))
        self.last_write: float | None = None
        self._count_cache = 0
        self._closed = threading.Event()
        self._init_graphs()  # the search fast path (cluster/compiled.py)
        self._schema_lock = threading.Lock()  # one payload index change at a time
        inner = config.model_copy(update={"shards": 1, "replicas": 1}).model_dump_json()
        opts = dataclasses.asdict(options)
        remote = ray.remote(ShardReplica)
        placed = self._placement()
        self.shards: list[Shard] = []
        for s in range(config.shards):
            reps = []
            for r in range(config.replicas):
                rdir = str((directory / "shards" / f"s{s}r{r}").resolve())
                node = placed.get(f"s{s}r{r}")
                strategy: Any = "SPREAD"
                if node:  # back to the node that holds its directory; elsewhere (and a catch-up) if it is gone
                    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

                    strategy = NodeAffinitySchedulingStrategy(node_id=node, soft=True)
                actor = remote.options(
                    num_cpus=cluster.shard_cpus,
                    max_restarts=cluster.max_restarts,
                    max_task_retries=0,
                    max_concurrency=cluster.actor_concurrency,
                    scheduling_strategy=strategy,
                ).remote(f"{name}/s{s}r{r}", rdir, inner, opts, s)
                reps.append(Replica(s, r, rdir, actor))
            self.shards.append(Shard(s, reps))
        try:
            self._start()
        except BaseException:
            for sh in self.shards:
                for rep in sh.replicas:
                    ray.kill(rep.actor, no_restart=True)
            raise
        self._healer = threading.Thread(target=self._heal_loop, name=f"heal-{name}", daemon=True)
        self._healer.start()
        if cluster.compiled:
            self._compile_all()

    @classmethod
    def create(
        cls, name: str, directory: Path, config: CollectionConfig, options: CollectionOptions, cluster: RayCluster
    ) -> ShardedCollection:
        if any(v.multivector is not None for v in config.vector_fields().values()):
            raise InvalidConfig("multi-vector collections cannot be sharded yet: leave shards and replicas at 1")
        if config.sparse_vectors and not config.vector_fields():
            raise InvalidConfig("sparse-only collections cannot be sharded yet: add a dense vector, or one shard")
        directory.mkdir(parents=True)
        try:
            atomic_write_bytes(directory / "collection.json", config.model_dump_json().encode())
            fsync_dir(directory.parent)
            return cls(name, directory, config, options, cluster)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)  # so the name can be created again
            raise

    def close(self) -> None:
        import ray

        self._closed.set()
        self._healer.join(timeout=5)
        self._teardown_graphs()
        refs = [(rep, rep.actor.close.remote()) for sh in self.shards for rep in sh.replicas]
        for rep, ref in refs:
            try:
                ray.get(ref, timeout=30)
            except Exception as exc:
                log.warning(
                    "collection %s: replica s%dr%d did not close cleanly: %r", self.name, rep.shard, rep.index, exc
                )
            ray.kill(rep.actor, no_restart=True)

    # -- failures --------------------------------------------------------------------------

    def vector_config(self, using: str | None) -> tuple[str, VectorConfig]:
        name = self._default if using is None else using
        if name is None or name not in self.fields:
            have = ", ".join(repr(n) for n in self.fields)
            raise InvalidRequest(f"collection {self.name!r} has vectors {have}: name one of them with 'using'")
        return name, self.fields[name]

    def _check(
        self, ids: list[PointIdT], vectors: VectorsIn, payloads: list[dict[str, Any] | None] | None
    ) -> dict[str, Any]:
        """The checks `Collection.upsert` makes, made before anything is sent, so no shard takes half a bad batch.

        Returns each dense vector as one matrix (zero rows where a point omits it: replicas get per-point lists),
        each sparse one as a list (None where a point omits it)."""
        check_batch(ids, len(ids) if isinstance(vectors, Mapping) else len(vectors), payloads)
        given = dict(vectors) if isinstance(vectors, Mapping) else {self.vector_config(None)[0]: vectors}
        out: dict[str, Any] = {}
        for name, part in given.items():
            if name in self.sparse:
                out[name] = checked_sparse(part, len(ids), name)
                continue
            vcfg = self.fields.get(name)
            if vcfg is None:
                raise InvalidVector(f"no vector named {name!r} in this collection; it has {sorted(self.fields)}")
            out[name] = checked_vectors(part, len(ids), vcfg, name)
        return out

    def upsert(
        self, ids: list[PointIdT], vectors: VectorsIn, payloads: list[dict[str, Any] | None] | None = None
    ) -> WriteResult:
        """Insert or overwrite a batch; returns once every live replica of every touched shard has it durably."""
        checked = self._check(ids, vectors, payloads)
        present = {
            name: (None if isinstance(vectors, np.ndarray) or not isinstance(vectors, Mapping) else vectors[name])
            for name in checked
        }
        if not ids:
            return WriteResult(0, self.seq)
        groups = group_by_shard(ids, len(self.shards))
        parts: dict[int, Callable[[Any, int], Any]] = {}
        for s, rows in enumerate(groups):
            if rows:
                sub_ids = [ids[i] for i in rows]
                sub_vec: dict[str, Any] = {}
                for name, mat in checked.items():
                    given = present[name]
                    if isinstance(mat, list):  # a sparse vector: one per point, None where omitted
                        sub_vec[name] = [mat[i] for i in rows]
                    elif given is None or isinstance(given, np.ndarray):
                        sub_vec[name] = mat[rows]
                    else:  # per-point vectors: keep the points that omit this one omitting it
                        sub_vec[name] = [None if given[i] is None else mat[i] for i in rows]
                sub_pay = None if payloads is None else [payloads[i] for i in rows]
                parts[s] = _bind_upsert(sub_ids, sub_vec, sub_pay)
        n = self._write(parts)
        return WriteResult(n, self.seq)

    def delete(self, ids: list[PointIdT]) -> WriteResult:
        groups = group_by_shard(ids, len(self.shards))
        parts = {s: _bind_delete([ids[i] for i in rows]) for s, rows in enumerate(groups) if rows}
        n = self._write(parts) if parts else 0
        return WriteResult(n, self.seq)

    def delete_where(self, flt: Filter) -> WriteResult:
        parts = {s: _bind_delete_where(flt) for s in range(len(self.shards))}
        return WriteResult(self._write(parts), self.seq)

    def create_payload_index(self, key: str, schema: PayloadSchema, *, wait: bool = True) -> bool:
        """Recorded in collection.json, then built by every live replica (this waits for them, whatever
        `wait`); a replica that was out of service builds it when it is healed or restarted."""
        split_key(key)  # InvalidFilter (422) for a malformed key
        schema = plain_schema(schema)
        with self._schema_lock:
            if self.config.payload_schema.get(key) == schema:
                return False
            self._set_payload_schema({**self.config.payload_schema, key: schema})
        return True

    def delete_payload_index(self, key: str) -> bool:
        with self._schema_lock:
            if key not in self.config.payload_schema:
                return False
            self._set_payload_schema({k: s for k, s in self.config.payload_schema.items() if k != key})
        return True

    def _set_payload_schema(self, schema: dict[str, PayloadSchema]) -> None:
        config = self.config.model_copy(update={"payload_schema": schema})
        atomic_write_bytes(self.dir / "collection.json", config.model_dump_json().encode())
        self.config = config
        self._push_payload_schema([rep for sh in self.shards for rep in sh.live()])

    def pause_indexing(self) -> None:
        self._broadcast("pause_indexing")

    def resume_indexing(self) -> None:
        self._broadcast("resume_indexing")

    def is_cheap(self, q: Query) -> bool:
        return False  # a search waits on other processes: never on the event loop

    def search(self, queries: list[Query], *, partial: bool = False) -> list[QueryResult]:
        """Exact merge of each shard's top `limit + offset`; see the module docstring for failures."""
        allow = self.allow_partial or partial
        queries = with_global_idf(queries, self.sparse, self._fan_out, partial=allow)  # df over every shard
        sub = [dataclasses.replace(q, limit=q.limit + q.offset, offset=0) for q in queries]
        fast = self._search_compiled(sub)
        if fast is not None:
            answers, missing = fast, list[int]()
        else:
            answers, missing = self._fan_out(lambda rep, op: rep.actor.search.remote(sub, op), partial=allow)
        out = []
        for i, q in enumerate(queries):
            lower = q.using not in self.sparse and self.vector_config(q.using)[1].metric is Metric.l2
            parts: list[list[Hit]] = [a[i].hits for a in answers if a is not None]
            kinds = sorted({a[i].strategy for a in answers if a is not None})
            strategy = "+".join(kinds) or "none"
            if missing:
                strategy = f"partial:{strategy}:missing_shards={','.join(map(str, missing))}"
            out.append(QueryResult(merge_hits(parts, q.limit, q.offset, lower_is_better=lower), strategy))
        return out

    def get(self, ids: list[PointIdT], *, with_payload: bool = True, with_vector: WithVector = False) -> list[Hit]:
        groups = group_by_shard(ids, len(self.shards))
        answers, _ = self._fan_out(
            lambda rep, op: rep.actor.get.remote([ids[i] for i in groups[rep.shard]], with_payload, with_vector, op),
            partial=False,
        )
        found = {h.id: h for part in answers for h in part}
        return [found[pid] for pid in ids if pid in found]

    def scroll(
        self,
        flt: Filter | None = None,
        *,
        limit: int = 10,
        offset: PointIdT | None = None,
        with_payload: bool = True,
        with_vector: WithVector = False,
    ) -> tuple[list[Hit], PointIdT | None]:
        """Every shard's page from `offset`, merged by id (`merge_pages`)."""
        answers, _ = self._fan_out(
            lambda rep, op: rep.actor.scroll.remote(flt, limit, offset, with_payload, with_vector, op), partial=False
        )
        return merge_pages(answers, limit)

    def count_where(self, flt: Filter | None) -> int:
        answers, _ = self._fan_out(lambda rep, op: rep.actor.count_where.remote(flt), partial=False)
        total = int(sum(answers))
        if flt is None:
            self._count_cache = total
        return total

    @property
    def count(self) -> int:
        try:
            return self.count_where(None)
        except NestorError:
            return self._count_cache

    def backup_store(self, target: Path) -> tuple[int, int]:
        raise InvalidRequest(
            f"collection {self.name!r} is sharded: snapshots of sharded collections are not supported yet "
            "(each replica's directory is an ordinary collection that can be copied while the server is stopped)"
        )

    def snapshot_files(self, labels: int) -> list[tuple[str, Path, int]]:
        return []  # backup_store refuses first

    def index_dirs(self) -> list[tuple[str, Path]]:
        return []

    def add_query_sample(self, vectors: F32, *, replace: bool = False, using: str | None = None) -> int:
        raise InvalidRequest(f"collection {self.name!r} is sharded: query samples are not supported there yet")

    # -- introspection ---------------------------------------------------------------------

    def info(self) -> CollectionInfo:
        return sharded_info(self)


def _bind_upsert(
    ids: list[PointIdT], vectors: dict[str, Any], payloads: list[dict[str, Any] | None] | None
) -> Callable[[Any, int], Any]:
    import ray

    big = sum(v.nbytes for v in vectors.values() if isinstance(v, np.ndarray)) > 100_000
    ref = ray.put(vectors) if big else vectors  # put once, read by every replica
    return lambda actor, op: actor.upsert.remote(op, ids, ref, payloads)


def _bind_delete(ids: list[PointIdT]) -> Callable[[Any, int], Any]:
    return lambda actor, op: actor.delete.remote(op, ids)


def _bind_delete_where(flt: Filter) -> Callable[[Any, int], Any]:
    return lambda actor, op: actor.delete_where.remote(op, flt)
