"""Write bursts at 3x the sustainable write rate: only 200s and 503s, reads served, RSS bounded.

    .venv/bin/python benchmarks/overload.py [--dim 384 --batch 64 --writers 4 --measure 10 --bursts 3
        --burst-seconds 5 --gap 3 --headroom-mb 120] [--out benchmarks/results/overload.json]

1. **Sustainable rate.** `nestor serve` on a fresh data directory, one collection (HNSW, cosine);
   `--writers` clients upsert batches of `--batch` new points back to back for `--measure` seconds. The
   acknowledged batches per second are the rate the server sustains (every write is fsynced).
2. **Bursts.** The server restarts on the same data with `NESTOR_MAX_RSS_MB` set to its resident size
   after phase 1 plus `--headroom-mb`. Then `--bursts` bursts of `--burst-seconds` each send upserts open
   loop (no waiting for answers) at 3x the sustainable rate, `--gap` seconds apart, while a reader sends
   searches at a steady 20 per second. The server's RSS is sampled every 0.1 s (`/proc/<pid>/status`).
3. **Checks.** Every answer is a 200 or a 503 `overloaded` with `Retry-After` (counted by cause: pending
   writes or memory); every search answers 200; the collection holds exactly the acknowledged points
   (nothing refused was written, nothing acknowledged lost). Exit status 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "clients" / "python")]

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import RESULTS_DIR, write_results  # noqa: E402
from nestor_client import NestorClient  # noqa: E402
from tests.e2e.serverproc import ServerProcess  # noqa: E402

MIB = 2**20


def rss_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Sampler(threading.Thread):
    """The server's RSS every 0.1 s, until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.halt = pid, threading.Event()
        self.samples: list[int] = []

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                self.samples.append(rss_of(self.pid))
            except OSError:
                return
            self.halt.wait(0.1)


def _points(first: int, batch: int, dim: int, rng: np.random.Generator) -> dict[str, Any]:
    vecs = rng.standard_normal((batch, dim)).astype(np.float32)
    return {"points": [{"id": first + i, "vector": v.tolist(), "payload": {"b": first}} for i, v in enumerate(vecs)]}


def sustainable_rate(url: str, writers: int, seconds: float, batch: int, dim: int, next_id: list[int]) -> float:
    """Acknowledged batches per second with `writers` clients writing back to back."""
    acked = [0] * writers
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def writer(w: int) -> None:
        rng = np.random.default_rng(w)
        with httpx.Client(base_url=url, timeout=120) as http:
            while time.monotonic() < deadline:
                with lock:
                    first = next_id[0]
                    next_id[0] += batch
                r = http.put("/collections/c/points", json=_points(first, batch, dim, rng))
                r.raise_for_status()
                acked[w] += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(acked) / (time.monotonic() - started)


async def bursts(url: str, args: argparse.Namespace, rate: float, next_id: list[int]) -> dict[str, Any]:
    """Open-loop upserts at `rate` batches/s in bursts, searches at 20/s throughout; what came back."""
    writes: Counter[str] = Counter()
    reads: Counter[str] = Counter()
    acked_ids: list[int] = []
    rng = np.random.default_rng(99)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:

        async def write(first: int, body: dict[str, Any]) -> None:
            try:
                r = await http.put("/collections/c/points", json=body)
            except httpx.HTTPError as exc:
                writes[f"transport {type(exc).__name__}"] += 1
                return
            if r.status_code == 200:
                writes["200"] += 1
                acked_ids.append(first)
            elif r.status_code == 503 and r.json()["error"]["type"] == "overloaded" and r.headers.get("retry-after"):
                writes["503 memory" if "max_rss_mb" in r.json()["error"]["message"] else "503 pending"] += 1
            else:
                writes[f"{r.status_code} {r.text[:80]}"] += 1

        stop_reading = asyncio.Event()

        async def reader() -> None:
            q = rng.standard_normal(args.dim).astype(np.float32).tolist()
            while not stop_reading.is_set():
                try:
                    r = await http.post("/collections/c/points/search", json={"vector": q, "limit": 10})
                    reads[str(r.status_code)] += 1
                except httpx.HTTPError as exc:
                    reads[f"transport {type(exc).__name__}"] += 1
                await asyncio.sleep(0.05)

        read_task = asyncio.create_task(reader())
        tasks: list[asyncio.Task[None]] = []
        for b in range(args.bursts):
            n = max(1, round(rate * args.burst_seconds))
            start = time.monotonic()
            for i in range(n):
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                first = next_id[0]
                next_id[0] += args.batch
                tasks.append(asyncio.create_task(write(first, _points(first, args.batch, args.dim, rng))))
            if b + 1 < args.bursts:
                await asyncio.sleep(args.gap)
        await asyncio.gather(*tasks)
        stop_reading.set()
        await read_task
    return {"writes": dict(writes), "reads": dict(reads), "acked_batches": len(acked_ids), "offered": len(tasks)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--measure", type=float, default=10.0, help="seconds to measure the sustainable rate")
    ap.add_argument("--bursts", type=int, default=3)
    ap.add_argument("--burst-seconds", type=float, default=5.0)
    ap.add_argument("--gap", type=float, default=3.0)
    ap.add_argument("--factor", type=float, default=3.0, help="burst rate / sustainable rate")
    ap.add_argument("--headroom-mb", type=int, default=120, help="NESTOR_MAX_RSS_MB above the RSS after phase 1")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "overload.json")
    ap.add_argument("--tiny", action="store_true", help="a smoke run: small vectors, one short burst")
    args = ap.parse_args(argv)
    if args.tiny:
        args.dim, args.batch, args.writers, args.measure, args.bursts, args.burst_seconds = 8, 8, 2, 1.0, 1, 1.0
    next_id = [0]
    with tempfile.TemporaryDirectory(prefix="nestor-overload-") as tmp:
        data = Path(tmp) / "data"
        server = ServerProcess(data).start()
        try:
            with NestorClient(server.url) as c:
                c.create_collection("c", dim=args.dim, metric="cosine", index={"type": "hnsw", "m": 16})
            rate = sustainable_rate(server.url, args.writers, args.measure, args.batch, args.dim, next_id)
            assert server.proc is not None
            rss_after_measure = rss_of(server.proc.pid)
        finally:
            server.stop()
        limit_mb = rss_after_measure // MIB + args.headroom_mb
        server = ServerProcess(data, env={"NESTOR_MAX_RSS_MB": str(limit_mb)}).start()
        try:
            assert server.proc is not None
            sampler = Sampler(server.proc.pid)
            rss_at_start = rss_of(server.proc.pid)
            sampler.start()
            started = time.monotonic()
            got = asyncio.run(bursts(server.url, args, args.factor * rate, next_id))
            seconds = time.monotonic() - started
            sampler.halt.set()
            sampler.join()
            with NestorClient(server.url, timeout=120) as c:
                count = c.count("c")
        finally:
            server.stop()
    phase1_points = next_id[0] - got["offered"] * args.batch  # ids below this were written in phase 1
    expected = phase1_points + got["acked_batches"] * args.batch
    errors = {k: v for k, v in got["writes"].items() if not (k == "200" or k.startswith("503"))}
    read_errors = {k: v for k, v in got["reads"].items() if k != "200"}
    summary = {
        "sustainable_batches_per_s": round(rate, 1),
        "sustainable_points_per_s": round(rate * args.batch),
        "burst_batches_per_s": round(args.factor * rate, 1),
        "batch": args.batch,
        "dim": args.dim,
        "offered_batches": got["offered"],
        "writes": got["writes"],
        "reads": got["reads"],
        "errors": errors,
        "read_errors": read_errors,
        "count": count,
        "count_expected": expected,
        "rss_limit_mb": limit_mb,
        "rss_after_measure_mb": round(rss_after_measure / MIB, 1),
        "rss_at_restart_mb": round(rss_at_start / MIB, 1),
        "rss_max_mb": round(max(sampler.samples, default=0) / MIB, 1),
        "rss_samples": len(sampler.samples),
        "burst_phase_seconds": round(seconds, 1),
    }
    print(
        f"sustainable {summary['sustainable_batches_per_s']} batches/s "
        f"({summary['sustainable_points_per_s']} points/s); "
        f"bursts at {summary['burst_batches_per_s']}/s: writes {got['writes']}, reads {got['reads']}; "
        f"RSS max {summary['rss_max_mb']} MiB (limit {limit_mb}); count {count} (expected {expected})",
        flush=True,
    )
    write_results(args.out, {"summary": summary, "args": vars(args) | {"out": str(args.out)}})
    ok = not errors and not read_errors and count == expected
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
