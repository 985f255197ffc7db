"""Power cuts during compactions and snapshots, under a real `nestor serve` whose data directory is on lossyfs.

Each round starts a writer (overwrites, new ids, deletes: tests/e2e/test_crash_compaction.py), asks for
a compaction (`POST /collections/c/optimize`), waits until it is copying, indexing, catching up or
swapping, and then dies there: most rounds at a crash point (lossyfs kills the server just before its
n-th fsync or rename from then on, so the cut finds the most unsynced state the phase can leave: a
staging generation half written, a marker not yet durable, one rename of the swap done and the other
not), the others at a random moment. The power is cut, the directory rolled back to what was fsynced,
and the server restarted on it, which must finish or undo the swap the cut interrupted. Every fifth
round takes a snapshot instead (acknowledged), then dies writing a second one.

After each restart: every acknowledged point with its payload and its vector bit for bit, no acknowledged
delete back, the count, an exact search against numpy, `PRAGMA integrity_check` of the store as the cut
left it, no generation directory (`.c.compact-new`, `.c.compact-old`) or marker left over, and every
acknowledged snapshot listed, the newest restoring whole with the count it recorded.
CI runs a few rounds; `NESTOR_POWERCUT_COMPACTION_ROUNDS=50` a long series (benchmarks/RELIABILITY.md).
"""

from __future__ import annotations

import functools
import json
import os
import random
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nestor_client import NestorClient, NestorError
from tests.e2e.oracle import check_exact_search, check_vectors
from tests.e2e.serverproc import ServerProcess
from tests.e2e.test_crash_compaction import DIM, KILL_IN, N, Truth, _phase_when, _writer
from tests.powerloss.mount import LossyMount
from tests.powerloss.test_power_cut import FAST_SAVES, integrity_problems

pytestmark = pytest.mark.e2e

ROUNDS = int(os.environ.get("NESTOR_POWERCUT_COMPACTION_ROUNDS", "4"))
REPORT = os.environ.get("NESTOR_POWERCUT_COMPACTION_REPORT")  # a JSON file for the long run's numbers
ENV = {"NESTOR_OPTIMIZER_INTERVAL": "0", **FAST_SAVES}  # compactions only when asked; frequent index saves
# A crash point's n: fsyncs and renames from the moment the phase is seen. The writer makes two per batch
# (rows, then the commit), the copy two per 1,024 points, the swap about a dozen with the writer held.
MOMENTS = [*KILL_IN, "snapshot"]  # the compaction's phases, and a snapshot being written
CRASH_POINT = {"copying": (1, 12), "indexing": (1, 30), "catching up": (1, 30), "swapping": (1, 14)}


def left_on_disk(data: Path) -> str:
    """What a cut left of a compaction: which generations, and whether the new one was marked complete."""
    root = data / "collections"
    parts = []
    for d in (".c.compact-new", ".c.compact-old"):
        if (root / d).is_dir():
            parts.append(d + ("+marker" if (root / d / "COMPACTED").exists() else ""))
    if (root / "c" / "COMPACTED").exists():
        parts.append("c+marker")
    if not (root / "c").is_dir():
        parts.append("no c")
    return ", ".join(parts) or "c only"


def check(c: NestorClient, data: Path, truth: Truth, seed: int) -> list[str]:
    """Everything acknowledged is there, exactly; nothing else; and the compaction left nothing behind."""
    problems = []
    leftovers = sorted(p.name for p in (data / "collections").iterdir() if p.name.startswith("."))
    if leftovers:
        problems.append(f"generation directories left after the restart: {leftovers}")
    if (data / "collections" / "c" / "COMPACTED").exists():
        problems.append("the marker is left in the collection")
    truth.settle(c)  # the one write in flight at the cut: learn whether it happened
    live = {i: v for i, (v, _) in truth.live.items()}
    problems += check_vectors(c, "c", live)[:10]  # bit for bit
    got = {int(r.id): r.payload for r in c.get("c", list(range(N + 500)))}  # type: ignore[arg-type]
    if lost := sorted(set(truth.live) - set(got)):
        problems.append(f"lost {len(lost)}: {lost[:10]}")
    if back := sorted(set(got) - set(truth.live)):
        problems.append(f"resurrected {len(back)}: {back[:10]}")
    stale = [i for i, (_, ver) in truth.live.items() if i in got and got[i] != {"v": ver}]
    if stale:
        problems.append(f"{len(stale)} payloads are not their acknowledged version: {stale[:10]}")
    if (n := c.count("c")) != len(truth.live):
        problems.append(f"count {n}, expected {len(truth.live)}")
    query = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    problems += check_exact_search(c, "c", live, query, limit=len(live))[:10]
    return problems


def _die_in(
    c: NestorClient, server: ServerProcess, *, lossy: LossyMount, target: str, rnd: random.Random
) -> dict[str, Any]:
    """Start a compaction, wait for it to reach `target`, then die there: at a crash point (two rounds in
    three) or kill -9 at a random moment of it. Returns what happened."""
    c.optimize("c")
    seen = _phase_when(c, target, random.Random(rnd.random()))
    at_crash_point = rnd.random() < 2 / 3
    if at_crash_point:
        lo, hi = CRASH_POINT[target]
        lossy.arm(rnd.randint(lo, hi))
        _wait_death(server, 5.0)  # the armed fsync or rename kills it (else the phase ended first: kill -9)
    else:
        time.sleep(rnd.uniform(0.0, 0.3))
        server.kill9()
    return {"target": target, "seen": seen, "armed": at_crash_point}


class Snapshots:
    """The snapshots acknowledged so far: (name, the point count it recorded)."""

    def __init__(self) -> None:
        self.acked: list[tuple[str, int]] = []

    def take_and_die(
        self, c: NestorClient, server: ServerProcess, *, lossy: LossyMount, rnd: random.Random
    ) -> dict[str, Any]:
        """Take one snapshot under the writes (acknowledged: it must survive), then start a second and die in
        it: just before one of its fsyncs or renames (the tar, its rename, its metadata, the folder)."""
        snap = c.create_snapshot("c")
        self.acked.append((snap.name, snap.count))
        lossy.arm(n := rnd.randint(1, 5), "/snapshots/")
        second = threading.Thread(target=_ignore_errors, args=(c.create_snapshot, "c"))
        second.start()
        killed = _wait_death(server, 10.0)
        second.join(timeout=30)
        return {"target": "snapshot", "seen": "snapshot", "armed": True, "n": n, "died_at_crash_point": killed}

    def check(self, c: NestorClient) -> list[str]:
        """Every acknowledged snapshot is listed, and the newest restores whole with the count it recorded."""
        listed = {s.name for s in c.list_snapshots("c")}
        problems = [f"acknowledged snapshot {name} is gone" for name, _ in self.acked if name not in listed]
        if self.acked:
            name, count = self.acked[-1]
            got = c.restore_snapshot("r", name, source="c").count
            if got != count:
                problems.append(f"snapshot {name} restored {got} points, it recorded {count}")
            c.delete_collection("r")
        return problems


def _ignore_errors(fn: Callable[..., object], *args: object) -> None:
    try:
        fn(*args)
    except NestorError:
        pass  # the server dies under it


def _start(lossy: LossyMount, truth: Truth) -> ServerProcess:
    """A server on the mount, with the collection loaded (N points of version 0)."""
    server = ServerProcess(lossy.mnt, env=ENV).start()
    with NestorClient(server.url, timeout=30.0) as c:
        c.create_collection("c", dim=DIM, metric="dot", index={"type": "hnsw", "m": 8, "ef_construction": 32})
        vecs = np.random.default_rng(0).standard_normal((N, DIM)).astype(np.float32)
        for s in range(0, N, 1000):
            c.upsert("c", ids=list(range(s, s + 1000)), vectors=vecs[s : s + 1000], payloads=[{"v": 0}] * 1000)
        truth.live = {i: (vecs[i], 0) for i in range(N)}
    return server


def _round(
    lossy: LossyMount,
    server: ServerProcess,
    truth: Truth,
    seed: int,
    die: Callable[[NestorClient, ServerProcess], dict[str, Any]],
    *,
    cut: bool = True,
) -> tuple[ServerProcess, dict[str, Any]]:
    """Writes go on, `die` starts a compaction (or a snapshot) and kills the server somewhere in it; then
    the power cut (or, with `cut=False`, only the crash: everything written stays), the restart and the
    checks."""
    stop = threading.Event()
    t = threading.Thread(target=_writer, args=(server.url, stop, truth, seed + 1))
    t.start()
    time.sleep(random.Random(seed).uniform(0.05, 0.3))
    with NestorClient(server.url, timeout=30.0) as c:
        died = die(c, server)
    server.kill9()  # if it is not dead already
    stop.set()
    t.join(timeout=30)
    if cut:
        report = lossy.power_cut()
    else:
        report = lossy.stats() | {"killed_at_crash_point": -1}
        lossy.unmount()
    died |= {k: report[k] for k in ("unsynced_blocks", "unsynced_entries", "killed_at_crash_point")}
    died["left_on_disk"] = left_on_disk(lossy.backing)
    died["integrity_problems"] = integrity_problems(lossy.backing)
    lossy.mount()
    server = ServerProcess(lossy.mnt, env=ENV).start()
    with NestorClient(server.url, timeout=30.0) as c:
        died["problems"] = check(c, lossy.mnt, truth, seed)
    died["live"] = len(truth.live)
    return server, died


def test_power_cuts_during_compaction_keep_every_acknowledged_write(lossy: LossyMount) -> None:
    started = time.monotonic()
    truth = Truth()
    rnd = random.Random(19)
    rounds: list[dict[str, Any]] = []
    snapshots = Snapshots()
    server = _start(lossy, truth)
    try:
        for round_ in range(ROUNDS):
            target = MOMENTS[round_ % len(MOMENTS)]
            die: Callable[[NestorClient, ServerProcess], dict[str, Any]] = (
                functools.partial(snapshots.take_and_die, lossy=lossy, rnd=rnd)
                if target == "snapshot"
                else functools.partial(_die_in, lossy=lossy, target=target, rnd=rnd)
            )
            server, died = _round(lossy, server, truth, round_, die)
            with NestorClient(server.url, timeout=60.0) as c:
                died["problems"] += snapshots.check(c)
            rounds.append(died)
            if REPORT:
                _report(Path(REPORT), rounds, time.monotonic() - started)
            assert died["integrity_problems"] == [] and died["problems"] == [], died
        with NestorClient(server.url, timeout=120.0) as c:  # a compaction that completes leaves it exact too
            assert c.optimize("c", wait=True)["last_error"] is None
            assert check(c, lossy.mnt, truth, ROUNDS) == []
    finally:
        server.stop()
    # The cuts hit compactions at work, threw unsynced data away, and some died at their crash point.
    assert sum(r["seen"] in MOMENTS for r in rounds) >= ROUNDS // 2, rounds
    assert all(r["unsynced_blocks"] > 0 for r in rounds), rounds
    assert sum(r["killed_at_crash_point"] for r in rounds) > 0, rounds
    assert any(r["left_on_disk"] != "c only" for r in rounds), rounds  # some cut left a generation to recover


# Each step of the swap, as a crash point on its own path (lossyfs `arm N REGEX`), what the crash leaves on
# disk with the power cut and without it (kill -9 alone), and so which branch of `recover` runs at open.
SWAP_STEPS = [
    # (step, path pattern, n-th matching operation, cut, what is left on disk)
    ("marker written", r"compact-new/\.COMPACTED\.tmp$", 1, True, ".c.compact-new"),
    ("first rename", r"^/collections/c -> ", 1, True, ".c.compact-new+marker"),
    ("second rename", r"compact-new -> /collections/c$", 1, False, ".c.compact-new+marker, .c.compact-old, no c"),
    ("renames made durable", r"^/collections$", 2, True, ".c.compact-new+marker"),
    ("renames made durable", r"^/collections$", 2, False, ".c.compact-old, c+marker"),
]


def test_a_crash_at_each_step_of_the_swap_finishes_or_undoes_it(lossy: LossyMount) -> None:
    """The rounds above die at random fsyncs; this dies at each step of the swap in turn, with and without
    the power cut, so every branch of `recover` (docs/compaction.md#crash-safety) runs, the one between the
    two renames included (only a crash without a cut leaves that: the cut loses both renames)."""
    truth = Truth()
    server = _start(lossy, truth)
    try:
        for i, (step, pattern, n, cut, left) in enumerate(SWAP_STEPS):
            lossy.arm(n, pattern)
            died_at = {"step": step, "died_at_crash_point": False}

            def die(c: NestorClient, s: ServerProcess, died_at: dict[str, Any] = died_at) -> dict[str, Any]:
                c.optimize("c")
                died_at["died_at_crash_point"] = _wait_death(s, 60.0)
                return died_at

            server, died = _round(lossy, server, truth, 100 + i, die, cut=cut)
            assert died["died_at_crash_point"], died
            assert died["problems"] == [] and died["integrity_problems"] == [], died
            assert died["left_on_disk"] == left, died
            assert not cut or died["killed_at_crash_point"] == 1, died
        # Regression: the generation directories removed after a swap (and at open) came back whole at a
        # later cut, a second copy of the data on disk: their removal was never fsynced into collections/.
        with NestorClient(server.url, timeout=120.0) as c:
            assert c.optimize("c", wait=True)["last_error"] is None
        server.kill9()
        lossy.power_cut()
        assert left_on_disk(lossy.backing) == "c only"
        lossy.mount()
        server = ServerProcess(lossy.mnt, env=ENV).start()
        with NestorClient(server.url, timeout=30.0) as c:
            assert check(c, lossy.mnt, truth, 0) == []
    finally:
        server.stop()


def _wait_death(server: ServerProcess, timeout: float) -> bool:
    """Whether the server died (at its armed crash point) within `timeout` seconds."""
    assert server.proc is not None
    try:
        server.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


def _report(path: Path, rounds: list[dict[str, Any]], seconds: float) -> None:
    total: dict[str, Any] = {"rounds": len(rounds), "seconds": round(seconds)}
    for key in ("unsynced_blocks", "unsynced_entries", "killed_at_crash_point"):
        total[key] = sum(r[key] for r in rounds)
    total["rounds_with_problems"] = sum(bool(r["problems"] or r["integrity_problems"]) for r in rounds)
    for key in ("seen", "left_on_disk"):
        counts: dict[str, int] = {}
        for r in rounds:
            counts[r[key]] = counts.get(r[key], 0) + 1
        total[f"by_{key}"] = counts
    total["live_at_end"] = rounds[-1]["live"]
    path.write_text(json.dumps({"total": total, "rounds": rounds}, indent=1))
