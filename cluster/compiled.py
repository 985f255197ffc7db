"""Searches through Ray compiled graphs: the fast path of a sharded collection's search.

A compiled graph runs one query batch on one live replica per shard over shared-memory channels (about
0.4 ms for two shards here, against 2 ms for two ordinary actor calls). There is one graph per set of
replicas (replica r of every shard, when all are live), used in turn, so replicas add search throughput;
each has its own lock, since a graph runs one execution at a time. A graph is compiled in the background
the first time its replicas are chosen; until then, and whenever a graph fails, the search takes the
ordinary actor calls, which handle failures. A graph over a replica that left service is never used
again, and is torn down when the collection closes.

Ray 2.60 aborts the whole process (a failed CHECK registering a channel) when an actor dies while a graph
over it compiles, so a graph compiles only over replicas that have been live for `compile_after` seconds
and answer a ping just before: a replica that was just restarted, the likeliest to fail again, waits.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any

from cluster.replicas import PING_TIMEOUT, Replica, ReplicaSet, domain_error
from cluster.shard import StaleReplica, pack_query, unpack_result
from index.contract import Query

__all__ = ["CompiledSearch", "teardown"]

log = logging.getLogger("nestor.cluster")


def teardown(dag: Any) -> None:
    try:
        dag.teardown()
    except Exception as exc:
        log.debug("compiled graph teardown: %r", exc)


class CompiledSearch(ReplicaSet):
    """A `ReplicaSet` whose searches may run through compiled graphs (`_search_compiled`)."""

    def _init_graphs(self) -> None:
        self._dags: dict[tuple[int, ...], tuple[Any, threading.Lock]] = {}
        self._dag_lock = threading.Lock()
        self._dag_retry_at = 0.0
        self._dag_turn = itertools.count()
        self._compiling: set[tuple[int, ...]] = set()
        self._broken: list[Any] = []

    def _compile_all(self) -> None:
        """Compile the graph of each full set of live replicas once they are stable, not at the first
        searches after that."""
        keys = [(r,) * len(self.shards) for r in range(self.config.replicas)]
        self._compiling.update(keys)
        threading.Thread(target=self._compile_when_stable, args=(keys,), name="dag-compile", daemon=True).start()

    def _compile_when_stable(self, keys: list[tuple[int, ...]]) -> None:
        if self._closed.wait(self.cluster.compile_after):
            with self._dag_lock:
                self._compiling.difference_update(keys)
            return
        for key in keys:
            self._compile(key)

    def _stable(self, key: tuple[int, ...]) -> bool:
        after = self.cluster.compile_after
        return all(sh.replicas[m].stable(after) for sh, m in zip(self.shards, key, strict=True))

    def _replica_failed(self, rep: Replica) -> None:
        with self._dag_lock:  # its graphs point at the old process: never used again (torn down at close)
            for key in [k for k in self._dags if k[rep.shard] == rep.index]:
                self._broken.append(self._dags.pop(key)[0])

    def _teardown_graphs(self) -> None:
        """At close, before the actors go: every graph, in parallel (one over a dead actor takes seconds)."""
        with self._dag_lock:
            dags, self._dags = [d for d, _ in self._dags.values()] + self._broken, {}
            self._broken = []
        # They must end before the actors are killed: Ray's graph monitor thread raised when an actor died
        # under a teardown.
        threads = [threading.Thread(target=teardown, args=(d,), name="dag-teardown", daemon=True) for d in dags]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30.0
        for t in threads:
            t.join(timeout=max(deadline - time.monotonic(), 0.0))

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
                if time.monotonic() >= self._dag_retry_at and key not in self._compiling and self._stable(key):
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
                cause = domain_error(exc)
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
            import ray
            from ray.dag import InputNode, MultiOutputNode

            members = [sh.replicas[m] for sh, m in zip(self.shards, key, strict=True)]
            started = time.monotonic()
            # the window Ray cannot survive, made as narrow as can be: every member stable and answering now
            ray.get([rep.actor.ping.remote() for rep in members], timeout=PING_TIMEOUT)
            if not self._stable(key):
                raise RuntimeError(f"replicas {key} not live for {self.cluster.compile_after} s")
            with InputNode() as inp:
                outs = [sh.replicas[m].actor.search_packed.bind(inp) for sh, m in zip(self.shards, key, strict=True)]
                node = MultiOutputNode(outs)
            dag = node.experimental_compile()
            # One empty execution now: Ray 2.60 aborts the whole process (a failed CHECK registering a
            # channel reader) when an actor dies under a graph that was compiled but never executed.
            ray.get(dag.execute(([], [0] * len(key))), timeout=30.0)
        except Exception as exc:
            log.info("collection %s: no compiled graph (%r); ordinary actor calls", self.name, exc)
            with self._dag_lock:
                self._dag_retry_at = time.monotonic() + 2.0
                self._compiling.discard(key)
            return
        with self._dag_lock:
            self._compiling.discard(key)
            closed = self._closed.is_set()
            # a member that left service (or left and came back) while this compiled: never used
            kept = not closed and all(rep.state == "live" and rep.live_since <= started for rep in members)
            if kept:
                self._dags[key] = (dag, threading.Lock())
            elif not closed:
                self._broken.append(dag)  # torn down when the collection closes, as a failed graph is
        if closed:  # the collection closed while this compiled
            teardown(dag)
