"""Searches/s on `nestor serve --processes 2` while a writer upserts: followers that catch up against followers
that reload (issue 18).

    .venv/bin/python benchmarks/bench_follow_mixed.py --n 20000 --rounds 2 --seconds 10
    .venv/bin/python benchmarks/bench_follow_mixed.py --tiny

One `nestor serve` loads the first `--n` points of pypi-minilm (HNSW m 16, ef_construction 200, metric dot)
and stops (a graceful stop saves the graph). Two copies of its data directory are then served with
`--processes 2`: one as shipped (`NESTOR_FOLLOWER_CATCH_UP=true`: a follower applies each write's rows and
deaths), one with `NESTOR_FOLLOWER_CATCH_UP=false` (a follower loads a changed collection whole, as before).
For each round, each writer rate (`--write-rates`, writes per second, 0 = none) and each server in turn
(interleaved): a Python writer thread upserts `--batch` points per write (half new ids, half overwrites),
every fifth write also deletes two ids, at that rate, while wrk POSTs searches (JSON float lists, ef 64,
limit 10) over `--conns` connections for `--seconds`. Reported per pass: searches/s, p50 and p99, errors,
the writes done and their median latency, the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "clients" / "python"), str(ROOT / "benchmarks")]

import harness  # noqa: E402
from bench_concurrency import NAME, _bodies, _load1, _nestor_body, _nestor_load  # noqa: E402
from common import load_dataset, markdown_table, write_results  # noqa: E402
from http_load import load, wrk_path  # noqa: E402

from index.runtime import configure_threads  # noqa: E402
from nestor_client import NestorClient  # noqa: E402
from tests.e2e.serverproc import ServerProcess  # noqa: E402


class Writer(threading.Thread):
    """Upserts `batch` points `rate` times a second (half new ids, half overwrites) until stopped."""

    def __init__(self, url: str, base: np.ndarray, rate: float, batch: int, first_id: int, seed: int) -> None:
        super().__init__(daemon=True)
        self.url, self.base, self.rate, self.batch = url, base, rate, batch
        self.next_id = first_id
        self.rng = np.random.default_rng(seed)
        self.halt = threading.Event()
        self.latencies: list[float] = []
        self.errors = 0

    def run(self) -> None:
        n, dim = self.base.shape
        with NestorClient(self.url, wire="msgpack", timeout=60) as c:
            w = 0
            start = time.perf_counter()
            while not self.halt.is_set():
                half = self.batch // 2
                ids = list(range(self.next_id, self.next_id + half))
                ids += self.rng.choice(n, self.batch - half, replace=False).tolist()
                self.next_id += half
                vecs = self.rng.standard_normal((len(ids), dim)).astype(np.float32)
                vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
                t = time.perf_counter()
                try:
                    c.upsert(NAME, ids=ids, vectors=vecs)
                    if w % 5 == 4:
                        c.delete(NAME, ids=self.rng.choice(n, 2, replace=False).tolist())
                    self.latencies.append(time.perf_counter() - t)
                except Exception:
                    self.errors += 1
                w += 1
                self.halt.wait(max(0.0, start + w / self.rate - time.perf_counter()))


def main(argv: list[str] | None = None) -> int:
    configure_threads()
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of one wrk pass")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--ef", type=int, default=64)
    ap.add_argument("--write-rates", default="0,10", help="writes per second of the passes (0: none)")
    ap.add_argument("--batch", type=int, default=10, help="points per write")
    ap.add_argument("--no-wrk", action="store_true", help="the Python load generator even when wrk is installed")
    ap.add_argument("--data", default=None)
    ap.add_argument("--out", default="follow_mixed")
    ap.add_argument("--tiny", action="store_true")
    args = ap.parse_args(argv)
    harness.set_tiny(args.tiny)
    if args.tiny:
        args.seconds, args.rounds, args.write_rates = 1.0, 1, "0,10"
    rates = [float(x) for x in args.write_rates.split(",")]
    data = load_dataset(n=args.n, n_queries=None, data=args.data)
    use_wrk = not args.no_wrk and wrk_path() is not None
    work = Path(tempfile.mkdtemp(prefix="nestor-mixed-"))
    passes: list[dict[str, Any]] = []
    started: list[ServerProcess] = []
    setup: dict[str, Any] = {"n": data.n, "dim": data.dim, "ef": args.ef, "conns": args.conns, "batch": args.batch}
    try:
        first = ServerProcess(work / "base")
        started.append(first)  # before start: an interrupted start still stops it
        first.start()
        setup["load_s"] = round(_nestor_load(first.url, data.base), 1)
        first.stop()
        bodies = _bodies(work / "bodies.jsonl", [_nestor_body(q, args.ef) for q in data.queries])
        servers: dict[str, ServerProcess] = {}
        for label, flag in (("catch-up", "true"), ("reload", "false")):
            folder = work / label
            shutil.copytree(work / "base", folder)
            env = {"NESTOR_FOLLOWER_CATCH_UP": flag}
            servers[label] = ServerProcess(folder, env=env, args=["--processes", "2"])
            started.append(servers[label])
            servers[label].start()
        path = f"/collections/{NAME}/points/search"
        for rnd in range(args.rounds):
            for rate in rates:
                for label, srv in servers.items():
                    if not args.tiny:
                        load(srv.url, path, bodies, args.conns, 1.0, use_wrk)  # warm-up
                    writer = None
                    if rate > 0:
                        first_id = 10_000_000 * (1 + len(passes))
                        writer = Writer(srv.url, data.base, rate, args.batch, first_id, seed=len(passes))
                        writer.start()
                    before = _load1()
                    r = load(srv.url, path, bodies, args.conns, args.seconds, use_wrk)
                    if writer is not None:
                        writer.halt.set()
                        writer.join()
                    lat = writer.latencies if writer else []
                    r.update(
                        server=label,
                        round=rnd,
                        write_rate=rate,
                        writes=len(lat),
                        write_errors=writer.errors if writer else 0,
                        write_p50_ms=1000 * statistics.median(lat) if lat else None,
                        load_before=before,
                        load_after=_load1(),
                    )
                    passes.append(r)
                    print(
                        f"round {rnd} writes/s {rate:>4.0f} {label:<9} {r['rps']:>7.0f} req/s  p50 {r['p50_ms']:.2f} "
                        f"p99 {r['p99_ms']:.2f} ms  err {r['errors']}  writes {len(lat)}  load {before}->"
                        f"{r['load_after']}",
                        flush=True,
                    )
    finally:
        for s in reversed(started):
            s.stop()
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for rate in rates:
        for label in ("catch-up", "reload"):
            ps = [p for p in passes if p["server"] == label and p["write_rate"] == rate]
            rows.append(
                {
                    "server": label,
                    "writes_per_s": rate,
                    "rps_median": round(statistics.median(p["rps"] for p in ps)),
                    "rps_passes": [round(p["rps"]) for p in ps],
                    "p50_ms": round(statistics.median(p["p50_ms"] for p in ps), 2),
                    "p99_ms": round(statistics.median(p["p99_ms"] for p in ps), 2),
                    "errors": sum(p["errors"] + p["write_errors"] for p in ps),
                    "writes": [p["writes"] for p in ps],
                    "load": [f"{p['load_before']}-{p['load_after']}" for p in ps],
                }
            )
    cols = ["server", "writes_per_s", "rps_median", "rps_passes", "p50_ms", "p99_ms", "errors", "writes", "load"]
    table = markdown_table(rows, cols)
    commit = (harness.commit()["commit"] or "unknown")[:7]
    text = (
        f"## Searches/s at --processes 2 while a writer upserts (commit {commit})\n\n"
        f"{data.n:,} points, wrk {args.conns} connections, ef {args.ef}, writes of {args.batch} points\n\n{table}"
    )
    print(text)
    cmd = "python benchmarks/bench_follow_mixed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    meta = {
        "wire_format": "JSON float lists (searches), msgpack (writes)",
        "threads_pinned": {
            "load_generator": "wrk -t 1" if use_wrk else "python",
            "nestor": "--processes 2, default search threads",
            "cores": len(os.sched_getaffinity(0)),
        },
    }
    out = write_results(
        args.out, {"command": cmd.strip(), "setup": setup, "passes": passes, "rows": rows, "meta": meta}
    )
    out.with_suffix(".md").write_text(text + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
