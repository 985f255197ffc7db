"""kill -9 under concurrent upsert and delete clients: every acknowledged write survives, and no
acknowledged delete comes back.

Clients work in pairs. An upsert client writes batches of new ids and overwrites its recent ones
with a new version. Once a batch is acknowledged it may hand some ids to its delete client, and
never touches them again. So every id has one writer at a time, and the order of its acknowledged
operations is known, while the server sees upserts and deletes from several clients at once.
An operation that got no answer (the kill) is ambiguous: after the restart its ids must show the
state before it or after it, and a batch all of one or the other. Every live point must come back
with the vector of its acknowledged version, bit for bit, and an exact search must rank the live
points as numpy does over that state (tests/e2e/oracle.py).

`benchmarks/crash_rounds.py` runs `run_round` 50 times on one data directory and reports the counts;
CI runs a few rounds here.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from nestor_client import NestorClient, NestorError
from nestor_client.errors import NestorTransportError
from tests.e2e.oracle import F32, check_exact_search, check_vectors
from tests.e2e.serverproc import ServerProcess

pytestmark = pytest.mark.e2e

DIM = 16
BATCH = 25
PAIRS = 2
ABSENT = -1  # the "version" of a deleted id


@dataclass
class Truth:
    """What the clients know: id -> acknowledged version (ABSENT once a delete is acknowledged)."""

    state: dict[int, int] = field(default_factory=dict)
    # operations that got no answer: (ids, state before, state after, whether it is one atomic batch)
    ambiguous: list[tuple[list[int], dict[int, int], dict[int, int]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # answers that were neither success nor a dead server
    vectors: dict[tuple[int, int], F32] = field(default_factory=dict)  # (id, version) -> the vector sent
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class RoundResult:
    acked_upserts: int  # acknowledged upserted points in this round
    acked_deletes: int  # acknowledged deleted ids in this round
    checked_present: int  # ids checked present after the restart (all rounds so far)
    checked_absent: int
    lost: int  # acknowledged writes missing or stale after the restart
    bad_vectors: int  # live points whose vector is not the one of their version, bit for bit
    search_errors: int  # ways the exact search differed from the numpy oracle
    resurrected: int  # acknowledged deletes present after the restart
    torn: int  # unanswered batches found half applied
    unanswered: int  # operations the kill left without an answer (checked all-or-nothing)
    errors: int  # error answers other than the server being killed
    kill_after: float


def _upserter(url: str, base: int, truth: Truth, handoff: queue.Queue[int], stop: threading.Event, seed: int) -> int:
    rng = np.random.default_rng(seed)
    r = random.Random(seed)
    acked = 0
    next_id = base
    mine: list[int] = []  # acknowledged, not handed off: this client may overwrite them
    with NestorClient(url, timeout=10.0) as c:
        while not stop.is_set():
            if mine and r.random() < 0.3:  # overwrite some recent ids with a new version
                ids = r.sample(mine, min(len(mine), BATCH // 2))
            else:
                ids = list(range(next_id, next_id + BATCH))
                next_id += BATCH
            with truth.lock:
                before = {i: truth.state.get(i, ABSENT) for i in ids}
            after = {i: before[i] + 1 if before[i] != ABSENT else 1 for i in ids}
            vectors = rng.standard_normal((len(ids), DIM)).astype(np.float32)
            with truth.lock:  # known before the answer: an unanswered upsert may have landed too
                truth.vectors.update(((i, after[i]), v) for i, v in zip(ids, vectors, strict=True))
            try:
                c.upsert(
                    "c",
                    ids=ids,
                    vectors=vectors,
                    payloads=[{"v": after[i]} for i in ids],
                )
            except NestorTransportError:
                with truth.lock:
                    truth.ambiguous.append((ids, before, after))
                return acked
            except NestorError as exc:
                with truth.lock:
                    truth.errors.append(f"upsert: {exc}")
                return acked
            with truth.lock:
                truth.state.update(after)
            acked += len(ids)
            mine = list(dict.fromkeys(mine + ids))
            if len(mine) > 4 * BATCH:  # hand the oldest to the delete client: never touched here again
                for i in mine[:BATCH]:
                    handoff.put(i)
                mine = mine[BATCH:]
    return acked


def _deleter(url: str, truth: Truth, handoff: queue.Queue[int], stop: threading.Event, seed: int) -> int:
    r = random.Random(seed)
    acked = 0
    with NestorClient(url, timeout=10.0) as c:
        while not stop.is_set():
            ids: list[int] = []
            while len(ids) < 10:
                try:
                    ids.append(handoff.get(timeout=0.05))
                except queue.Empty:
                    if stop.is_set():
                        return acked
            ids = [i for i in ids if r.random() < 0.7]  # delete most of them, keep some for ever
            if not ids:
                continue
            with truth.lock:
                before = {i: truth.state[i] for i in ids}
            after = dict.fromkeys(ids, ABSENT)
            try:
                c.delete("c", ids=ids)
            except NestorTransportError:
                with truth.lock:
                    truth.ambiguous.append((ids, before, after))
                return acked
            except NestorError as exc:
                with truth.lock:
                    truth.errors.append(f"delete: {exc}")
                return acked
            with truth.lock:
                truth.state.update(after)
            acked += len(ids)
    return acked


def _versions(c: NestorClient, ids: list[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for s in range(0, len(ids), 5000):
        for rec in c.get("c", ids[s : s + 5000]):
            out[int(rec.id)] = int(rec.payload["v"])  # type: ignore[index,call-overload]
    return out


def run_round(
    data: Path,
    round_: int,
    truth: Truth,
    *,
    min_kill: float = 0.5,
    max_kill: float = 2.5,
    env: dict[str, str] | None = None,
    after_kill: Callable[[], object] | None = None,
    after_start: Callable[[], object] | None = None,
) -> RoundResult:
    """Start the server on `data`, run the clients, kill -9 it at a random moment, restart, check.

    `env`: extra server environment; `after_kill`: runs between the kill and the restart (the power-loss
    rounds, tests/powerloss, roll the data directory back to what was fsynced there); `after_start`: runs
    once the server is up and the collection exists (they arm a crash point there)."""
    server = ServerProcess(data, env=env).start()
    try:
        with NestorClient(server.url) as c:
            c.create_collection("c", dim=DIM, metric="dot", index={"type": "hnsw", "m": 8, "ef_construction": 32})
        if after_start is not None:
            after_start()
        stop = threading.Event()
        results: list[int] = [0] * (2 * PAIRS)
        threads = []
        for p in range(PAIRS):
            handoff: queue.Queue[int] = queue.Queue()
            base = (round_ * PAIRS + p) * 10_000_000

            def up(p: int = p, base: int = base, handoff: queue.Queue[int] = handoff) -> None:
                results[2 * p] = _upserter(server.url, base, truth, handoff, stop, seed=round_ * 100 + p)

            def down(p: int = p, handoff: queue.Queue[int] = handoff) -> None:
                results[2 * p + 1] = _deleter(server.url, truth, handoff, stop, seed=round_ * 100 + 50 + p)

            threads += [threading.Thread(target=up), threading.Thread(target=down)]
        for t in threads:
            t.start()
        kill_after = random.Random(round_).uniform(min_kill, max_kill)
        time.sleep(kill_after)
        server.kill9()
        stop.set()
        for t in threads:
            t.join(timeout=60)
    finally:
        server.stop()
    if after_kill is not None:
        after_kill()

    server = ServerProcess(data, env=env).start()
    try:
        with NestorClient(server.url) as c:
            with truth.lock:
                ambiguous, truth.ambiguous = truth.ambiguous, []
                unsure = {i for ids, _, _ in ambiguous for i in ids}
                present = sorted(i for i, v in truth.state.items() if v != ABSENT and i not in unsure)
                absent = sorted(i for i, v in truth.state.items() if v == ABSENT and i not in unsure)
            got = _versions(c, present)
            lost = sum(1 for i in present if got.get(i) != truth.state[i])
            resurrected = len(_versions(c, absent))
            torn = 0
            for ids, before, after in ambiguous:
                now = _versions(c, ids)
                seen = {i: now.get(i, ABSENT) for i in ids}
                if seen != before and seen != after:  # a batch (upsert or delete) is one transaction
                    torn += 1
                    lost += sum(1 for i in ids if seen[i] not in (before[i], after[i]))
                truth.state.update(seen)  # learn which way it went, for the next rounds
            expected = sum(1 for v in truth.state.values() if v != ABSENT)
            count = c.count("c")
            if count != expected:
                truth.errors.append(f"round {round_}: count {count}, expected {expected}")
            live = {i: truth.vectors[(i, v)] for i, v in truth.state.items() if v != ABSENT}
            bad_vectors = check_vectors(c, "c", live)
            query = np.random.default_rng(round_).standard_normal(DIM).astype(np.float32)
            search_errors = check_exact_search(c, "c", live, query, limit=min(len(live), 10_000))
            truth.errors += [f"round {round_}: {p}" for p in (bad_vectors + search_errors)[:10]]
    finally:
        server.stop()
    return RoundResult(
        acked_upserts=sum(results[0::2]),
        acked_deletes=sum(results[1::2]),
        checked_present=len(present),
        checked_absent=len(absent),
        lost=lost,
        bad_vectors=len(bad_vectors),
        search_errors=len(search_errors),
        resurrected=resurrected,
        torn=torn,
        unanswered=len(ambiguous),
        errors=len(truth.errors),
        kill_after=kill_after,
    )


def test_kill9_under_concurrent_upserts_and_deletes(tmp_path: Path) -> None:
    truth = Truth()
    data = tmp_path / "data"
    totals = []
    for round_ in range(3):
        res = run_round(data, round_, truth, min_kill=0.8, max_kill=1.6)
        totals.append(res)
        assert res.lost == 0, res
        assert res.resurrected == 0, res
        assert res.torn == 0, res
        assert res.bad_vectors == 0 and res.search_errors == 0, truth.errors
        assert truth.errors == [], truth.errors
    assert sum(r.acked_upserts for r in totals) > 100, totals
    assert sum(r.acked_deletes for r in totals) > 0, totals
