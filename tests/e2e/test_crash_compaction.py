"""kill -9 during compactions, at random moments: nothing acknowledged is lost, nothing deleted comes back,
and no staging directory survives the restart (index/compaction.py).

One data directory lives through all the rounds. Each round starts the server (which must first
finish or undo whatever swap the last kill interrupted), checks every point against what was
acknowledged, then overwrites, inserts and deletes from a writer thread while it asks for a
compaction, and kills the server at a random moment of it."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from nestor_client import NestorClient, NestorError
from tests.e2e.oracle import F32, check_vectors
from tests.e2e.serverproc import ServerProcess

pytestmark = pytest.mark.e2e

DIM = 16
N = 3000
ROUNDS = 10
ENV = {"NESTOR_OPTIMIZER_INTERVAL": "0"}  # compactions only when the test asks


KILL_IN = ["copying", "indexing", "catching up", "swapping"]  # the compaction phases a round may kill in


def _phase(c: NestorClient) -> str:
    try:
        return str(c.get_collection("c").optimizer.phase)  # type: ignore[union-attr]
    except NestorError:
        return "?"


def _phase_when(c: NestorClient, target: str | None, rnd: random.Random) -> str:
    """Poll until the compaction is in `target` (then a random few ms more), or it is over: the phase seen."""
    seen = _phase(c)
    deadline = time.monotonic() + 20
    started = seen not in ("None", "?")
    while target is not None and seen != target and time.monotonic() < deadline:
        if started and seen == "None":
            break  # it ended before reaching the phase (a swap can be too short to see)
        time.sleep(0.002)
        seen = _phase(c)
        started = started or seen not in ("None", "?")
    if target is not None and seen == target:
        time.sleep(rnd.uniform(0.0, 0.02))
    return seen


class Truth:
    """What was acknowledged, and what a write in flight at the kill may or may not have done."""

    def __init__(self) -> None:
        self.live: dict[int, tuple[F32, int]] = {}  # id -> (vector, version in its payload)
        self.pending: dict[int, tuple[F32, int] | None] = {}  # in flight: the new state (None: deleted)
        self.lock = threading.Lock()

    def settle(self, c: NestorClient) -> None:
        """After a restart: an in-flight write either happened or not; learn which, per id."""
        for pid, new in list(self.pending.items()):
            got = c.get("c", [pid])
            if new is None and not got:
                self.live.pop(pid, None)
            elif new is not None and got and got[0].payload == {"v": new[1]}:
                self.live[pid] = new
        self.pending.clear()


def _writer(url: str, stop: threading.Event, truth: Truth, seed: int) -> None:
    rng = np.random.default_rng(seed)
    version = seed * 1_000_000
    with NestorClient(url, timeout=10.0) as c:
        while not stop.is_set():
            version += 1
            with truth.lock:
                ids = rng.choice(N + 500, 30, replace=False).tolist()  # overwrites, and some new ids
            vecs = rng.standard_normal((len(ids), DIM)).astype(np.float32)
            with truth.lock:
                truth.pending = {i: (v, version) for i, v in zip(ids, vecs, strict=True)}
            try:
                c.upsert("c", ids=ids, vectors=vecs, payloads=[{"v": version}] * len(ids))
            except NestorError:
                return
            with truth.lock:
                truth.live.update(truth.pending)
                victims = [i for i in rng.choice(N + 500, 10, replace=False).tolist() if i not in ids]
                truth.pending = dict.fromkeys(victims)
            try:
                c.delete("c", ids=victims)
            except NestorError:
                return
            with truth.lock:
                for i in victims:
                    truth.live.pop(i, None)
                truth.pending = {}


def _check(c: NestorClient, data: Path, truth: Truth) -> None:
    leftovers = [p.name for p in (data / "collections").iterdir() if p.name.startswith(".")]
    assert leftovers == [], f"staging directories left after the restart: {leftovers}"
    assert not (data / "collections" / "c" / "COMPACTED").exists()
    truth.settle(c)
    want = {i: v for i, (v, _) in truth.live.items()}
    problems = check_vectors(c, "c", want)  # every acknowledged point, bit for bit
    assert problems == [], problems[:10]
    got = {int(r.id): r.payload for r in c.get("c", list(range(N + 500)))}  # type: ignore[arg-type]
    assert set(got) == set(truth.live), (
        f"lost {sorted(set(truth.live) - set(got))[:10]}, resurrected {sorted(set(got) - set(truth.live))[:10]}"
    )
    assert all(got[i] == {"v": ver} for i, (_, ver) in truth.live.items())
    assert c.count("c") == len(truth.live)


def test_kill9_during_compaction(tmp_path: Path) -> None:
    data = tmp_path / "data"
    truth = Truth()
    rnd = random.Random(15)
    server = ServerProcess(data, env=ENV).start()
    try:
        with NestorClient(server.url, timeout=30.0) as c:
            c.create_collection("c", dim=DIM, metric="l2", index={"type": "hnsw", "m": 8, "ef_construction": 32})
            vecs = np.random.default_rng(0).standard_normal((N, DIM)).astype(np.float32)
            for s in range(0, N, 1000):
                c.upsert("c", ids=list(range(s, s + 1000)), vectors=vecs[s : s + 1000], payloads=[{"v": 0}] * 1000)
            truth.live = {i: (vecs[i], 0) for i in range(N)}
        phases: list[str] = []
        for round_ in range(ROUNDS):
            stop = threading.Event()
            t = threading.Thread(target=_writer, args=(server.url, stop, truth, round_ + 1))
            t.start()
            time.sleep(0.1)
            with NestorClient(server.url, timeout=30.0) as c:
                c.optimize("c")
                # most rounds kill in a chosen phase (a fast machine finishes a compaction of this size
                # within a second, so a random sleep alone mostly kills an idle server); a third at random
                target = KILL_IN[round_ % len(KILL_IN)] if round_ % 3 else None
                if target is None:
                    time.sleep(rnd.uniform(0.0, 1.5))
                phases.append(_phase_when(c, target, rnd))
            server.kill9()
            stop.set()
            t.join(timeout=30)
            server = ServerProcess(data, env=ENV).start()
            with NestorClient(server.url, timeout=30.0) as c:
                _check(c, data, truth)
        # the kills should have hit compactions at work, not only idle servers
        assert sum(p not in ("None", "?") for p in phases) >= ROUNDS // 3, phases
        with NestorClient(server.url, timeout=60.0) as c:  # and a compaction that completes leaves it exact too
            out = c.optimize("c", wait=True)
            assert out["last_error"] is None
            _check(c, data, truth)
    finally:
        server.stop()
