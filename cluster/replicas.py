"""The replicas of a sharded collection: their state, the writes and reads that reach them, their healing.

`ReplicaSet` is the part of `ShardedCollection` (`cluster/sharded.py`) that talks to the replica actors
and keeps each replica's state: starting them and agreeing on each shard's op, writing a part to every
live replica of its shard, reading from one live replica per shard with a retry on another, taking a
failing replica out of service, and healing it (catch up from a live replica, then back in service).
The failure rules are in the docstring of `cluster/sharded.py`.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cluster.errors import ClusterUnavailable, ShardUnavailable
from cluster.shard import StaleReplica
from index.errors import NestorError
from index.fsutil import atomic_write_bytes
from nestor_client.models import CollectionConfig, schema_json

if TYPE_CHECKING:
    from cluster.ray_cluster import RayCluster

__all__ = ["Replica", "ReplicaSet", "Shard", "domain_error"]

log = logging.getLogger("nestor.cluster")

_HEAL_INTERVAL = 0.2  # seconds between the healer's rounds
_PROBE_INTERVAL = 1.0  # seconds between pings of the live replicas (`_probe`)
PING_TIMEOUT = 2.0


@dataclass(eq=False)
class Replica:
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
    live_since: float = 0.0  # `time.monotonic()` when it last went live (`stable` reads it)
    pid: int | None = None  # its process as last seen: another one means Ray restarted it (`_probe`)

    def went_live(self) -> None:
        self.state, self.last_error, self.live_since = "live", None, time.monotonic()

    def stable(self, seconds: float) -> bool:
        """Live, and for at least `seconds` without a failure."""
        return self.state == "live" and time.monotonic() - self.live_since >= seconds


@dataclass(eq=False)
class Shard:
    index: int
    replicas: list[Replica]
    op: int = 0  # the last op acknowledged by every live replica
    lock: threading.Lock = field(default_factory=threading.Lock)  # writes and catch-ups
    turn: itertools.count[int] = field(default_factory=itertools.count)

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.state == "live"]


def domain_error(exc: BaseException) -> NestorError | None:
    """The engine's own error behind a Ray task error (a bad request, a stale replica), if that is what it is."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, NestorError):
        return cause
    return exc if isinstance(exc, NestorError) else None


class ReplicaSet:
    """The shards' replicas and every call that reaches them; `ShardedCollection` builds on it."""

    name: str
    dir: Path
    config: CollectionConfig
    cluster: RayCluster
    shards: list[Shard]
    last_write: float | None
    _closed: threading.Event

    def _replica_failed(self, rep: Replica) -> None:
        """Called when `rep` leaves service: drop what points at its process (the compiled search graphs)."""

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
            rep.pid = st["pid"]
        for sh in self.shards:
            known = [applied[id(r)] for r in sh.replicas if id(r) in applied]
            if not known:
                raise ClusterUnavailable(f"collection {self.name!r}: no replica of shard {sh.index} started")
            sh.op = max(known)
            for rep in sh.replicas:
                if rep.state == "starting":
                    if applied[id(rep)] == sh.op:
                        rep.went_live()
                    else:
                        rep.state = "recovering"
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

    # -- failures --------------------------------------------------------------------------

    def _out_of_service(self, rep: Replica, exc: BaseException) -> None:
        if rep.state == "live":
            log.warning("collection %s: replica s%dr%d out of service: %r", self.name, rep.shard, rep.index, exc)
            rep.failures += 1
        rep.state, rep.last_error = "recovering", repr(exc)
        self._replica_failed(rep)

    def _heal_loop(self) -> None:
        probed = time.monotonic()
        while not self._closed.wait(_HEAL_INTERVAL):
            for sh in self.shards:
                for rep in sh.replicas:
                    if rep.state != "live" and not self._closed.is_set():
                        try:
                            self._heal(sh, rep)
                        except Exception as exc:
                            rep.last_error = repr(exc)
            if time.monotonic() - probed >= _PROBE_INTERVAL:
                probed = time.monotonic()
                self._probe()

    def _probe(self) -> None:
        """Ping every live replica: one Ray restarted without a call failing (none was in flight when it
        died; calls sent while it restarted waited for the new process) leaves service until healed, so it
        is counted and checked for missed writes like any other failure. A ping that does not answer in time
        proves nothing (a busy replica) and changes nothing."""
        import ray

        refs = [(rep, rep.actor.ping.remote()) for sh in self.shards for rep in sh.live()]
        for rep, ref in refs:
            try:
                pid = ray.get(ref, timeout=PING_TIMEOUT)["pid"]
            except Exception:
                continue
            if rep.state == "live" and rep.pid is not None and pid != rep.pid:
                self._out_of_service(rep, RuntimeError(f"restarted by Ray (process {rep.pid} -> {pid})"))

    def _heal(self, sh: Shard, rep: Replica) -> None:
        import ray

        st = ray.get(rep.actor.ping.remote(), timeout=PING_TIMEOUT)  # raises while Ray restarts it
        rep.node, rep.node_id, rep.pid = st["node"], st["node_id"], st["pid"]
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
            rep.went_live()

    def wait_healthy(self, timeout: float = 60.0) -> bool:
        """Block until every replica is live (tests and benchmarks); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(r.state == "live" for sh in self.shards for r in sh.replicas):
                return True
            time.sleep(0.05)
        return False

    # -- writes ----------------------------------------------------------------------------

    def _write(self, parts: dict[int, Callable[[Any, int], Any]]) -> int:
        """Send each shard's part (`make(actor, op)` -> an ObjectRef) to its live replicas; the sum of their counts."""
        import ray

        shards = [self.shards[s] for s in sorted(parts)]
        for sh in shards:  # in shard order, so concurrent writers cannot deadlock
            sh.lock.acquire()
        try:
            sent: list[tuple[Shard, int, list[tuple[Replica, Any]]]] = []
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
                        cause = domain_error(exc)
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

    def _down_message(self, sh: Shard) -> str:
        return (
            f"collection {self.name!r}: shard {sh.index} has no live replica "
            f"({len(sh.replicas)} restarting or catching up); retry shortly"
        )

    @property
    def seq(self) -> int:
        return sum(sh.op for sh in self.shards)

    def _push_payload_schema(self, replicas: list[Replica]) -> None:
        """Send the config's payload indexes to `replicas`; one that fails leaves service (the heal retries)."""
        import ray

        schema = {k: schema_json(s) for k, s in self.config.payload_schema.items()}
        refs = [(rep, rep.actor.set_payload_schema.remote(schema)) for rep in replicas]
        for rep, ref in refs:
            try:
                ray.get(ref, timeout=self.cluster.catch_up_timeout)
            except Exception as exc:
                cause = domain_error(exc)
                if cause is not None and not isinstance(cause, StaleReplica):
                    raise cause from None
                self._out_of_service(rep, exc)

    def _broadcast(self, method: str) -> None:
        import ray

        refs = [getattr(rep.actor, method).remote() for sh in self.shards for rep in sh.live()]
        try:
            ray.get(refs, timeout=self.cluster.write_timeout)
        except Exception as exc:
            log.warning("collection %s: %s did not reach every replica: %r", self.name, method, exc)

    # -- reads -----------------------------------------------------------------------------

    # -- reads -----------------------------------------------------------------------------

    def _pick(self, sh: Shard, tried: set[int]) -> Replica | None:
        live = [r for r in sh.live() if r.index not in tried]
        if not live:
            return None
        return live[next(sh.turn) % len(live)]

    def _fan_out(self, call: Callable[[Replica, int], Any], *, partial: bool) -> tuple[list[Any], list[int]]:
        """`call(replica, min_op)` on one live replica per shard, retried on another when one fails.

        Returns each shard's answer (None for a shard that could not answer) and the shards missing."""
        import ray

        answers: list[Any] = [None] * len(self.shards)
        tried: list[set[int]] = [set() for _ in self.shards]
        pending: dict[int, tuple[Replica, Any]] = {}

        def submit(sh: Shard) -> bool:
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
                cause = domain_error(exc)
                if cause is not None and not isinstance(cause, StaleReplica):
                    raise cause from None
                self._out_of_service(rep, exc)
                if not submit(self.shards[s]):
                    missing.append(s)
        if missing and not partial:
            raise ShardUnavailable("; ".join(self._down_message(self.shards[s]) for s in sorted(missing)))
        return answers, sorted(missing)
