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
import itertools
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cluster.checks import checked_vectors
from cluster.errors import ClusterUnavailable, ShardUnavailable
from cluster.routing import group_by_shard, merge_hits, merge_pages
from cluster.shard import ShardReplica, StaleReplica, pack_query, unpack_result
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
    schema_json,
)

__all__ = ["RayCluster", "ShardedCollection", "is_distributed"]

log = logging.getLogger("nestor.cluster")

_HEAL_INTERVAL = 0.2  # seconds between the healer's rounds
_PING_TIMEOUT = 2.0


def is_distributed(config: CollectionConfig) -> bool:
    return config.shards > 1 or config.replicas > 1


@dataclass(eq=False)
class _Replica:
    shard: int
    index: int
    directory: str
    actor: Any
    state: str = "starting"  # live | recovering (out of service until it has caught up)
    node: str = ""
    node_id: str = ""
    failures: int = 0  # times it was taken out of service
    catch_ups: int = 0
    last_error: str | None = None


@dataclass(eq=False)
class _Shard:
    index: int
    replicas: list[_Replica]
    op: int = 0  # the last op acknowledged by every live replica
    lock: threading.Lock = field(default_factory=threading.Lock)  # writes and catch-ups
    turn: itertools.count[int] = field(default_factory=itertools.count)

    def live(self) -> list[_Replica]:
        return [r for r in self.replicas if r.state == "live"]


class ShardedCollection:
    """The `AnyCollection` contract over shards of ordinary collections held by Ray actors."""

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
        self._default = default_vector(config)
        self.cluster = cluster
        self.allow_partial = False  # searches with a shard down fail unless asked (search(..., partial=True))
        self.last_write: float | None = None
        self._count_cache = 0
        self._closed = threading.Event()
        # The search fast path: a Ray compiled graph over one live replica per shard (shared-memory channels,
        # about 0.4 ms for two shards here against 2 ms for two ordinary actor calls). Rebuilt when those
        # replicas change; any failure falls back to ordinary calls, which handle it.
        # One graph per set of replicas (replica r of every shard, when all are live), used in turn, so
        # replicas add search throughput; each has its own lock, since a graph runs one execution at a time.
        self._dags: dict[tuple[int, ...], tuple[Any, threading.Lock]] = {}
        self._dag_lock = threading.Lock()
        self._schema_lock = threading.Lock()  # one payload index change at a time
        self._dag_retry_at = 0.0
        self._dag_turn = itertools.count()
        self._compiling: set[tuple[int, ...]] = set()
        self._broken: list[Any] = []
        inner = config.model_copy(update={"shards": 1, "replicas": 1}).model_dump_json()
        opts = dataclasses.asdict(options)
        remote = ray.remote(ShardReplica)
        placed = self._placement()
        self.shards: list[_Shard] = []
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
                reps.append(_Replica(s, r, rdir, actor))
            self.shards.append(_Shard(s, reps))
        try:
            self._start()
        except BaseException:
            for sh in self.shards:
                for rep in sh.replicas:
                    ray.kill(rep.actor, no_restart=True)
            raise
        self._healer = threading.Thread(target=self._heal_loop, name=f"heal-{name}", daemon=True)
        self._healer.start()
        if cluster.compiled:  # compile the search graphs now, not at the first searches
            for r in range(config.replicas):
                if all(sh.replicas[r].state == "live" for sh in self.shards):
                    key = (r,) * len(self.shards)
                    self._compiling.add(key)
                    threading.Thread(target=self._compile, args=(key,), name="dag-compile", daemon=True).start()

    def _start(self) -> None:
        """Wait for every replica, and agree on each shard's op: the highest any replica has applied."""
        import ray

        refs = [(rep, rep.actor.ping.remote()) for sh in self.shards for rep in sh.replicas]
        deadline = time.monotonic() + self.cluster.start_timeout
        applied: dict[int, int] = {}
        for rep, ref in refs:
            try:
                st = ray.get(ref, timeout=max(deadline - time.monotonic(), 0.1))
            except Exception as exc:
                rep.state, rep.last_error = "recovering", f"did not start: {exc!r}"
                continue
            rep.node, rep.node_id, applied[id(rep)] = st["node"], st["node_id"], st["applied"]
        for sh in self.shards:
            known = [applied[id(r)] for r in sh.replicas if id(r) in applied]
            if not known:
                raise ClusterUnavailable(f"collection {self.name!r}: no replica of shard {sh.index} started")
            sh.op = max(known)
            for rep in sh.replicas:
                if rep.state == "starting":
                    rep.state = "live" if applied[id(rep)] == sh.op else "recovering"
        self._save_placement()
        self._push_payload_schema([rep for sh in self.shards for rep in sh.live()])  # one may have missed a change

    def _placement(self) -> dict[str, str]:
        """Each replica's node at its last start (`placement.json`), so a restarted server finds its data."""
        path = self.dir / "placement.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _save_placement(self) -> None:
        nodes = {f"s{r.shard}r{r.index}": r.node_id for sh in self.shards for r in sh.replicas if r.node_id}
        atomic_write_bytes(self.dir / "placement.json", json.dumps(nodes, sort_keys=True).encode())

    @classmethod
    def create(
        cls, name: str, directory: Path, config: CollectionConfig, options: CollectionOptions, cluster: RayCluster
    ) -> ShardedCollection:
        if any(v.multivector is not None for v in config.vector_fields().values()):
            raise InvalidConfig("multi-vector collections cannot be sharded yet: leave shards and replicas at 1")
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
        with self._dag_lock:
            dags, self._dags = [d for d, _ in self._dags.values()] + self._broken, {}
            self._broken = []
        # A graph over a dead actor takes seconds to tear down, so they go in parallel threads. They must end
        # before the actors are killed: Ray's graph monitor thread raised when an actor died under a teardown.
        threads = [threading.Thread(target=_teardown, args=(d,), name="dag-teardown", daemon=True) for d in dags]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30.0
        for t in threads:
            t.join(timeout=max(deadline - time.monotonic(), 0.0))
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

    def _out_of_service(self, rep: _Replica, exc: BaseException) -> None:
        if rep.state == "live":
            log.warning("collection %s: replica s%dr%d out of service: %r", self.name, rep.shard, rep.index, exc)
            rep.failures += 1
        rep.state, rep.last_error = "recovering", repr(exc)
        with self._dag_lock:  # its graphs point at the old process: never used again (torn down at close)
            for key in [k for k in self._dags if k[rep.shard] == rep.index]:
                self._broken.append(self._dags.pop(key)[0])

    def _heal_loop(self) -> None:
        while not self._closed.wait(_HEAL_INTERVAL):
            for sh in self.shards:
                for rep in sh.replicas:
                    if rep.state != "live" and not self._closed.is_set():
                        try:
                            self._heal(sh, rep)
                        except Exception as exc:
                            rep.last_error = repr(exc)

    def _heal(self, sh: _Shard, rep: _Replica) -> None:
        import ray

        st = ray.get(rep.actor.ping.remote(), timeout=_PING_TIMEOUT)  # raises while Ray restarts it
        rep.node, rep.node_id = st["node"], st["node_id"]
        early = next(iter(sh.live()), None)
        behind = st["applied"] != sh.op
        if early is not None and behind:
            # The bulk of the copy while writes go on; the pass under the lock below then moves only the rest.
            ray.get(rep.actor.catch_up.remote(early.actor, -1), timeout=self.cluster.catch_up_timeout)
            # its op number now counts the first pass's own writes: only the final pass below sets it right
        with sh.lock:  # no write to this shard while it catches up
            source = next(iter(sh.live()), None)
            if source is None:
                if st["applied"] < sh.op:
                    return  # nothing to catch up from; the shard stays unavailable until a replica with op returns
                sh.op = st["applied"]  # the shard's only replica back: it has every acknowledged write
            elif behind or st["applied"] != sh.op:
                copied = ray.get(rep.actor.catch_up.remote(source.actor, sh.op), timeout=self.cluster.catch_up_timeout)
                rep.catch_ups += 1
                log.info("collection %s: replica s%dr%d caught up (%d points)", self.name, rep.shard, rep.index, copied)
            schema = {k: schema_json(s) for k, s in self.config.payload_schema.items()}
            ray.get(rep.actor.set_payload_schema.remote(schema), timeout=self.cluster.catch_up_timeout)
            rep.state, rep.last_error = "live", None

    def wait_healthy(self, timeout: float = 60.0) -> bool:
        """Block until every replica is live (tests and benchmarks); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(r.state == "live" for sh in self.shards for r in sh.replicas):
                return True
            time.sleep(0.05)
        return False

    # -- writes ----------------------------------------------------------------------------

    def vector_config(self, using: str | None) -> tuple[str, VectorConfig]:
        name = self._default if using is None else using
        if name is None or name not in self.fields:
            have = ", ".join(repr(n) for n in self.fields)
            raise InvalidRequest(f"collection {self.name!r} has vectors {have}: name one of them with 'using'")
        return name, self.fields[name]

    def _check(
        self, ids: list[PointIdT], vectors: VectorsIn, payloads: list[dict[str, Any] | None] | None
    ) -> dict[str, F32]:
        """The checks `Collection.upsert` makes, made before anything is sent, so no shard takes half a bad batch.

        Returns each named vector as one matrix (zero rows where a point omits it: replicas get per-point lists)."""
        check_batch(ids, len(ids) if isinstance(vectors, Mapping) else len(vectors), payloads)
        given = dict(vectors) if isinstance(vectors, Mapping) else {self.vector_config(None)[0]: vectors}
        out: dict[str, F32] = {}
        for name, part in given.items():
            vcfg = self.fields.get(name)
            if vcfg is None:
                raise InvalidVector(f"no vector named {name!r} in this collection; it has {sorted(self.fields)}")
            out[name] = checked_vectors(part, len(ids), vcfg, name)
        return out

    def _write(self, parts: dict[int, Callable[[Any, int], Any]]) -> int:
        """Send each shard's part (`make(actor, op)` -> an ObjectRef) to its live replicas; the sum of their counts."""
        import ray

        shards = [self.shards[s] for s in sorted(parts)]
        for sh in shards:  # in shard order, so concurrent writers cannot deadlock
            sh.lock.acquire()
        try:
            sent: list[tuple[_Shard, int, list[tuple[_Replica, Any]]]] = []
            for sh in shards:
                live = sh.live()
                if not live:
                    raise ShardUnavailable(self._down_message(sh))
            for sh in shards:
                op = sh.op + 1
                sent.append((sh, op, [(rep, parts[sh.index](rep.actor, op)) for rep in sh.live()]))
            total, failed, domain = 0, [], None
            for sh, op, pairs in sent:
                counts = []
                for rep, ref in pairs:
                    try:
                        counts.append(ray.get(ref, timeout=self.cluster.write_timeout))
                    except Exception as exc:
                        cause = _domain_error(exc)
                        if cause is not None and not isinstance(cause, StaleReplica):
                            domain = cause  # a bad request: every replica refuses it alike
                        else:
                            self._out_of_service(rep, exc)
                if counts:
                    sh.op = op
                    total += counts[0]
                elif domain is None:
                    failed.append(sh)
            if domain is not None:  # the other shards' parts stay written: a batch is atomic per shard
                raise domain
            if failed:
                raise ShardUnavailable("; ".join(self._down_message(sh) for sh in failed))
            self.last_write = time.time()
            return total
        finally:
            for sh in shards:
                sh.lock.release()

    def _down_message(self, sh: _Shard) -> str:
        return (
            f"collection {self.name!r}: shard {sh.index} has no live replica "
            f"({len(sh.replicas)} restarting or catching up); retry shortly"
        )

    @property
    def seq(self) -> int:
        return sum(sh.op for sh in self.shards)

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
                    if given is None or isinstance(given, np.ndarray):
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

    def _push_payload_schema(self, replicas: list[_Replica]) -> None:
        """Send the config's payload indexes to `replicas`; one that fails leaves service (the heal retries)."""
        import ray

        schema = {k: schema_json(s) for k, s in self.config.payload_schema.items()}
        refs = [(rep, rep.actor.set_payload_schema.remote(schema)) for rep in replicas]
        for rep, ref in refs:
            try:
                ray.get(ref, timeout=self.cluster.catch_up_timeout)
            except Exception as exc:
                cause = _domain_error(exc)
                if cause is not None and not isinstance(cause, StaleReplica):
                    raise cause from None
                self._out_of_service(rep, exc)

    def pause_indexing(self) -> None:
        self._broadcast("pause_indexing")

    def resume_indexing(self) -> None:
        self._broadcast("resume_indexing")

    def _broadcast(self, method: str) -> None:
        import ray

        refs = [getattr(rep.actor, method).remote() for sh in self.shards for rep in sh.live()]
        try:
            ray.get(refs, timeout=self.cluster.write_timeout)
        except Exception as exc:
            log.warning("collection %s: %s did not reach every replica: %r", self.name, method, exc)

    # -- reads -----------------------------------------------------------------------------

    def _pick(self, sh: _Shard, tried: set[int]) -> _Replica | None:
        live = [r for r in sh.live() if r.index not in tried]
        if not live:
            return None
        return live[next(sh.turn) % len(live)]

    def _fan_out(self, call: Callable[[_Replica, int], Any], *, partial: bool) -> tuple[list[Any], list[int]]:
        """`call(replica, min_op)` on one live replica per shard, retried on another when one fails.

        Returns each shard's answer (None for a shard that could not answer) and the shards missing."""
        import ray

        answers: list[Any] = [None] * len(self.shards)
        tried: list[set[int]] = [set() for _ in self.shards]
        pending: dict[int, tuple[_Replica, Any]] = {}

        def submit(sh: _Shard) -> bool:
            rep = self._pick(sh, tried[sh.index])
            if rep is None:
                return False
            tried[sh.index].add(rep.index)
            pending[sh.index] = (rep, call(rep, sh.op))
            return True

        missing = [sh.index for sh in self.shards if not submit(sh)]
        if pending:  # the common case: one round trip for all shards
            try:
                got = ray.get([ref for _, ref in pending.values()], timeout=self.cluster.read_timeout)
                for s, value in zip(pending, got, strict=True):
                    answers[s] = value
                pending.clear()
            except Exception:
                pass
        while pending:
            s, (rep, ref) = next(iter(pending.items()))
            del pending[s]
            try:
                answers[s] = ray.get(ref, timeout=self.cluster.read_timeout)
            except Exception as exc:
                cause = _domain_error(exc)
                if cause is not None and not isinstance(cause, StaleReplica):
                    raise cause from None
                self._out_of_service(rep, exc)
                if not submit(self.shards[s]):
                    missing.append(s)
        if missing and not partial:
            raise ShardUnavailable("; ".join(self._down_message(self.shards[s]) for s in sorted(missing)))
        return answers, sorted(missing)

    def _search_compiled(self, sub: list[Query]) -> list[Any] | None:
        """Every shard's answer through a compiled graph, or None: the caller then takes the ordinary path."""
        if not self.cluster.compiled:
            return None
        turn = next(self._dag_turn)
        members: list[int] = []
        for sh in self.shards:
            live = sh.live()
            if not live:
                return None
            members.append(live[turn % len(live)].index)
        key = tuple(members)
        import ray

        with self._dag_lock:
            entry = self._dags.get(key)
            if entry is None:
                # Compiling takes a second or more: in the background, while this search takes ordinary calls.
                if time.monotonic() >= self._dag_retry_at and key not in self._compiling:
                    self._compiling.add(key)
                    threading.Thread(target=self._compile, args=(key,), name="dag-compile", daemon=True).start()
                return None
        dag, lock = entry
        ops = [sh.op for sh in self.shards]
        packed = [pack_query(q) for q in sub]
        with lock:
            try:
                # A graph over an actor Ray restarted unnoticed waits instead of failing: a bounded wait.
                got = ray.get(dag.execute((packed, ops)), timeout=min(self.cluster.read_timeout, 10.0))
                return [[unpack_result(r) for r in answer] for answer in got]
            except Exception as exc:
                cause = _domain_error(exc)
                if cause is not None and not isinstance(cause, StaleReplica):
                    raise cause from None
        with self._dag_lock:  # a replica of this graph failed: drop it; the ordinary path sorts the failure out
            if self._dags.get(key) is entry:
                del self._dags[key]
            self._dag_retry_at = time.monotonic() + 0.5
            # A teardown waits on the dead actor for seconds and holds up the other graphs meanwhile:
            # the broken graph is torn down when the collection closes.
            self._broken.append(dag)
        return None

    def _compile(self, key: tuple[int, ...]) -> None:
        try:
            from ray.dag import InputNode, MultiOutputNode

            with InputNode() as inp:
                outs = [sh.replicas[m].actor.search_packed.bind(inp) for sh, m in zip(self.shards, key, strict=True)]
                node = MultiOutputNode(outs)
            dag = node.experimental_compile()
        except Exception as exc:
            log.info("collection %s: no compiled graph (%r); ordinary actor calls", self.name, exc)
            with self._dag_lock:
                self._dag_retry_at = time.monotonic() + 2.0
                self._compiling.discard(key)
            return
        with self._dag_lock:
            self._compiling.discard(key)
            closed = self._closed.is_set()
            if not closed:
                self._dags[key] = (dag, threading.Lock())
        if closed:  # the collection closed while this compiled
            _teardown(dag)

    def is_cheap(self, q: Query) -> bool:
        return False  # a search waits on other processes: never on the event loop

    def search(self, queries: list[Query], *, partial: bool = False) -> list[QueryResult]:
        """Exact merge of each shard's top `limit + offset`; see the module docstring for failures."""
        sub = [dataclasses.replace(q, limit=q.limit + q.offset, offset=0) for q in queries]
        allow = self.allow_partial or partial
        fast = self._search_compiled(sub)
        if fast is not None:
            answers, missing = fast, list[int]()
        else:
            answers, missing = self._fan_out(lambda rep, op: rep.actor.search.remote(sub, op), partial=allow)
        out = []
        for i, q in enumerate(queries):
            lower = self.vector_config(q.using)[1].metric is Metric.l2
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


def _teardown(dag: Any) -> None:
    try:
        dag.teardown()
    except Exception as exc:
        log.debug("compiled graph teardown: %r", exc)


def _domain_error(exc: BaseException) -> NestorError | None:
    """The engine's own error behind a Ray task error (a bad request, a stale replica), if that is what it is."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, NestorError):
        return cause
    return exc if isinstance(exc, NestorError) else None


class RayCluster:
    """The connection to Ray, and the factory the catalog uses for collections with shards or replicas."""

    def __init__(
        self,
        address: str,
        *,
        shard_cpus: float = 0.0,
        max_restarts: int = -1,
        actor_concurrency: int = 8,
        start_timeout: float = 120.0,
        write_timeout: float = 60.0,
        read_timeout: float = 30.0,
        catch_up_timeout: float = 600.0,
        compiled: bool = True,
    ) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ClusterUnavailable(
                "a Ray address is set but ray is not installed: pip install 'nestor[ray]' (ray[data])"
            ) from exc

        self.address = address
        self.shard_cpus = shard_cpus
        self.max_restarts = max_restarts
        self.actor_concurrency = actor_concurrency
        self.start_timeout = start_timeout
        self.write_timeout = write_timeout
        self.read_timeout = read_timeout
        self.catch_up_timeout = catch_up_timeout
        self.compiled = compiled  # searches through a Ray compiled graph (falls back to actor calls)
        self._owns = False
        if not ray.is_initialized():
            try:
                ray.init(
                    address=None if address == "local" else address,
                    namespace="nestor",
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
            except Exception as exc:
                raise ClusterUnavailable(f"cannot connect to the Ray cluster at {address!r}: {exc}") from exc
            self._owns = True

    def create(
        self, name: str, directory: Path, config: CollectionConfig, options: CollectionOptions
    ) -> ShardedCollection:
        return ShardedCollection.create(name, directory, config, options, self)

    def open(
        self, name: str, directory: Path, config: CollectionConfig, options: CollectionOptions
    ) -> ShardedCollection:
        return ShardedCollection(name, directory, config, options, self)

    def nodes(self) -> list[dict[str, Any]]:
        import ray

        return [
            {
                "node_id": n["NodeID"],
                "address": n["NodeManagerAddress"],
                "alive": n["Alive"],
                "resources": n["Resources"],
            }
            for n in ray.nodes()
        ]

    def shutdown(self) -> None:
        if self._owns:
            import ray

            ray.shutdown()
