"""REST search throughput under concurrency: Nestor against the Chroma server, wrk at 1, 8 and 32 connections.

    python benchmarks/bench_concurrency.py [--seconds 10] [--rounds 2] [--conns 1,8,32] [--processes 2]
                                           [--no-inline] [--no-chroma] [--tiny]

One `nestor serve` holds the pypi-minilm base (HNSW m 16, ef_construction 200) with the default
`search_threads` (the cores); a second serves a copy of the same data directory with `search_threads=0`
(every cheap search on the event loop, the behaviour before server/dispatch.py); for each count of
`--processes`, one more serves a copy with `nestor serve --processes N` (a primary and N-1 read-only
followers on one socket, server/processes.py). `chroma run` holds the same vectors (HNSW M 16,
ef_construction 200, inner product). Nestor's ef is the smallest of a grid whose recall@10 reaches
`--target`; Chroma's ef_search is the smallest whose recall reaches Nestor's. Both are measured through
each server's own REST search endpoint over the 1,000 queries. Chroma's ef_search is set by updating the
collection and restarting the server (chroma 1.5.9 searches a loaded index at the ef it loaded with), and
its recall at the largest ef of the grid is recorded too, to show that the setting takes effect.

The load: wrk (benchmarks/http_load.py) POSTs JSON bodies with float lists, rotating over the queries; for
each round, each connection count and each server in turn (interleaved, so a change of machine load hits
all sides alike). The 1-minute load average is sampled before and after every pass. Results go to
`benchmarks/results/concurrency.json`; the tables are in `benchmarks/CONCURRENCY.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "clients" / "python"), str(ROOT / "benchmarks")]

from chroma_server import Chroma, chroma_binary  # noqa: E402
from common import RESULTS_DIR, load_dataset, markdown_table, recall_at_k, write_results  # noqa: E402
from http_load import WRK_THREADS, load, wrk_path  # noqa: E402

from index.runtime import configure_threads  # noqa: E402
from nestor_client import NestorClient  # noqa: E402
from server.dispatch import default_threads  # noqa: E402
from tests.e2e.serverproc import ServerProcess, free_port  # noqa: E402

NAME = "bench"
M, EF_CONSTRUCTION = 16, 200


def _threads(pid: int) -> int:
    """Threads of `pid` and of its child processes (the servers of `nestor serve --processes N`)."""
    n = len(os.listdir(f"/proc/{pid}/task"))
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return n + sum(_threads(int(c)) for c in f.read().split())


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of `pid` and its child processes so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return own + sum(_cpu_seconds(int(c)) for c in f.read().split())


def _steal_seconds() -> float:
    """CPU time the hypervisor took from this VM's cores so far (`steal` in /proc/stat; 0 on bare metal)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


def _load1() -> float:
    return round(os.getloadavg()[0], 2)


def _nestor_load(url: str, base: np.ndarray) -> float:
    t0 = time.perf_counter()
    with NestorClient(url, wire="msgpack", timeout=600) as c:
        index = {"type": "hnsw", "m": M, "ef_construction": EF_CONSTRUCTION}
        c.create_collection(NAME, dim=base.shape[1], metric="dot", index=index)
        c.upload(NAME, ids=list(range(len(base))), vectors=base, batch_size=2000)
        while True:
            idx = c.get_collection(NAME).index
            if idx.get("state") == "ready" and not idx.get("pending"):
                return time.perf_counter() - t0
            time.sleep(0.5)


def _nestor_body(q: np.ndarray, ef: int) -> dict[str, Any]:
    return {"vector": q.tolist(), "limit": 10, "with_payload": False, "params": {"ef": ef}}


def _nestor_recall(url: str, queries: np.ndarray, gt: np.ndarray, ef: int) -> float:
    with NestorClient(url, timeout=600) as c:
        found: list[list[int]] = []
        for s in range(0, len(queries), 100):
            res = c.search_batch(NAME, [_nestor_body(q, ef) for q in queries[s : s + 100]])
            found.extend([int(h.id) for h in r] for r in res)
    return recall_at_k(found, gt, 10)


def _pick(grid: list[int], recall_of: Any, target: float) -> tuple[int, float, dict[int, float]]:
    """The smallest setting of `grid` whose recall reaches `target` (else the largest), and every recall tried."""
    tried: dict[int, float] = {}
    for v in grid:
        tried[v] = recall_of(v)
        if tried[v] >= target:
            return v, tried[v], tried
    return grid[-1], tried[grid[-1]], tried


def _bodies(path: Path, bodies: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(b, separators=(",", ":")) + "\n" for b in bodies))
    return path


def main(argv: list[str] | None = None) -> int:
    configure_threads()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--queries", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of one wrk pass")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds over every (connections, server)")
    ap.add_argument("--conns", default="1,8,32")
    ap.add_argument("--target", type=float, default=0.96, help="Nestor's recall@10 target for its ef")
    ap.add_argument("--ef-grid", default="32,48,64,80,96,128,160")
    ap.add_argument("--chroma-ef-grid", default="16,24,32,48,64,80,96,128,160,200,256")
    ap.add_argument("--processes", default="2", help="comma-separated `--processes` counts to run ('': none)")
    ap.add_argument("--no-inline", action="store_true", help="leave out the search_threads=0 server")
    ap.add_argument(
        "--proc-threads",
        default="",
        help="comma-separated search_threads of more `--processes` servers, each process (e.g. 0,1; '': none)",
    )
    ap.add_argument("--no-chroma", action="store_true")
    ap.add_argument("--no-wrk", action="store_true", help="the Python load generator even when wrk is installed")
    ap.add_argument("--data", default=None)
    ap.add_argument("--out", default=str(RESULTS_DIR / "concurrency.json"))
    ap.add_argument("--tiny", action="store_true")
    args = ap.parse_args(argv)
    if args.tiny:
        args.seconds, args.rounds, args.conns = 1.0, 1, "1,4"
    conns = [int(c) for c in args.conns.split(",")]
    data = load_dataset(n=args.n, n_queries=args.queries, data=args.data)
    use_chroma = not args.no_chroma and chroma_binary() is not None
    use_wrk = not args.no_wrk and wrk_path() is not None
    work = Path(tempfile.mkdtemp(prefix="nestor-conc-"))
    setup: dict[str, Any] = {"n": data.n, "queries": data.n_queries, "dim": data.dim}
    servers: dict[str, dict[str, Any]] = {}
    started: list[Any] = []
    try:
        nestor = ServerProcess(work / "nestor").start()
        started.append(nestor)
        setup["nestor_load_s"] = round(_nestor_load(nestor.url, data.base), 1)
        ef, rec, tried = _pick(
            [int(x) for x in args.ef_grid.split(",")],
            lambda e: _nestor_recall(nestor.url, data.queries, data.gt, e),
            args.target,
        )
        setup["nestor"] = {"m": M, "ef_construction": EF_CONSTRUCTION, "ef": ef, "recall": rec, "tried": tried}
        nestor.stop()  # a graceful stop saves the graph: both Nestor servers start from the same files
        nbodies = _bodies(work / "nestor.jsonl", [_nestor_body(q, ef) for q in data.queries])
        path = f"/collections/{NAME}/points/search"
        variants: list[tuple[str, str | None, int]] = [("nestor", None, 1)]  # (label, search threads, processes)
        if not args.no_inline:
            variants.append(("nestor inline", "0", 1))
        procs_counts = [int(x) for x in args.processes.split(",") if x]
        variants += [(f"nestor {p} procs", None, p) for p in procs_counts]
        variants += [(f"nestor {p} procs t{t}", t, p) for p in procs_counts for t in args.proc_threads.split(",") if t]
        for label, threads, procs in variants:
            folder = work / label.replace(" ", "-")
            if folder != work / "nestor":
                shutil.copytree(work / "nestor", folder)
            env = {} if threads is None else {"NESTOR_SEARCH_THREADS": threads}
            srv = ServerProcess(folder, env=env, args=["--processes", str(procs)] if procs > 1 else None).start()
            started.append(srv)
            n_threads = threads or str(default_threads(procs))  # per process: the server's own default
            servers[label] = {"url": srv.url, "path": path, "bodies": nbodies, "pid": srv.proc.pid}  # type: ignore[union-attr]
            servers[label]["search_threads"] = int(n_threads)
            servers[label]["processes"] = procs
        if use_chroma:
            cm = Chroma.run(work / "chroma", free_port())
            chroma = cm.__enter__()
            started.append(cm)
            t0 = time.perf_counter()
            chroma.create("bench-" + str(os.getpid()), M, EF_CONSTRUCTION, 100)
            chroma.add(data.base)
            setup["chroma_load_s"] = round(time.perf_counter() - t0, 1)
            setup["chroma_count"] = chroma.count()

            def chroma_recall(e: int) -> float:
                chroma.set_ef(e)
                return recall_at_k(chroma.search(data.queries), data.gt, 10)

            cgrid = [int(x) for x in args.chroma_ef_grid.split(",")]
            cef, crec, ctried = _pick(cgrid, chroma_recall, rec)
            check = {cgrid[-1]: ctried.get(cgrid[-1]) or chroma_recall(cgrid[-1])}  # the setting takes effect
            chroma.set_ef(cef)
            setup["chroma"] = {"m": M, "ef_construction": EF_CONSTRUCTION, "ef_search": cef, "recall": crec}
            setup["chroma"]["tried"] = ctried
            setup["chroma"]["recall_at_largest_ef"] = check
            cbodies = _bodies(work / "chroma.jsonl", [Chroma.query_body(q) for q in data.queries])
            servers["chroma"] = {"url": chroma.url, "path": chroma.query_path, "bodies": cbodies}
            servers["chroma"]["pid"] = chroma.proc.pid
        print(json.dumps(setup, indent=1), flush=True)
        passes: list[dict[str, Any]] = []
        for rnd in range(args.rounds):
            for c in conns:
                for label, s in servers.items():
                    load(s["url"], s["path"], s["bodies"], c, min(1.0, args.seconds), use_wrk)  # warm-up
                    before, cpu0, t0, steal0 = _load1(), _cpu_seconds(s["pid"]), time.perf_counter(), _steal_seconds()
                    r = load(s["url"], s["path"], s["bodies"], c, args.seconds, use_wrk)
                    cpu = _cpu_seconds(s["pid"]) - cpu0
                    r.update(
                        server=label, round=rnd, load_before=before, load_after=_load1(), threads=_threads(s["pid"])
                    )
                    # load-independent: the cores the server kept busy, and its CPU per request
                    r["server_cores"] = round(cpu / (time.perf_counter() - t0), 2)
                    r["cpu_us_per_req"] = round(cpu / max(1, r["requests"]) * 1e6)
                    # a shared VM: the share of the cores the hypervisor gave to others during the pass
                    stolen = (_steal_seconds() - steal0) / (time.perf_counter() - t0) / (os.cpu_count() or 1)
                    r["steal_pct"] = round(100 * stolen, 1)
                    passes.append(r)
                    print(
                        f"round {rnd} c={c:>3} {label:<14} {r['rps']:>8.0f} req/s  p50 {r['p50_ms']:.2f} ms "
                        f"p99 {r['p99_ms']:.2f} ms  err {r['errors']}  cores {r['server_cores']}  "
                        f"cpu/req {r['cpu_us_per_req']} us  load {before}->{r['load_after']}  steal {r['steal_pct']} %",
                        flush=True,
                    )
    finally:
        for s in reversed(started):
            if isinstance(s, ServerProcess):
                s.stop()
            else:
                s.__exit__(None, None, None)
        shutil.rmtree(work, ignore_errors=True)
    summary = _summary(passes, list(servers), conns)
    cols = ["server", "connections", "rps_median", "rps_passes", "p50_ms", "p99_ms", "errors", "server_threads"]
    cols += ["server_cores", "cpu_us_per_req"]
    print(markdown_table(summary["rows"], [*cols, "load_before", "load_after"]))
    for k, v in summary["ratios"].items():
        print(f"{k}: {v}")
    meta = {
        "wire_format": "JSON float lists on every side (Nestor /points/search, Chroma /query)",
        "threads_pinned": {
            "load_generator": f"wrk -t {WRK_THREADS} (one thread; no CPU affinity set)" if use_wrk else "python",
            "nestor": {k: v["search_threads"] for k, v in servers.items() if "search_threads" in v},
            "nestor_processes": {k: v["processes"] for k, v in servers.items() if "processes" in v},
            "cores": len(os.sched_getaffinity(0)),
        },
        "skipped": [] if use_chroma else ["chroma"],
    }
    cmd = "python benchmarks/bench_concurrency.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out = write_results(args.out, {"command": cmd.strip(), "setup": setup, "passes": passes, **summary, "meta": meta})
    print(f"wrote {out}")
    return 0


def _summary(passes: list[dict[str, Any]], servers: list[str], conns: list[int]) -> dict[str, Any]:
    """Median req/s per (server, connections) over the rounds, and the ratios of the bar."""
    med: dict[tuple[str, int], float] = {}
    rows = []
    for s in servers:
        for c in conns:
            ps = [p for p in passes if p["server"] == s and p["connections"] == c]
            med[s, c] = statistics.median(p["rps"] for p in ps)
            rows.append(
                {
                    "server": s,
                    "connections": c,
                    "rps_median": round(med[s, c]),
                    "rps_passes": [round(p["rps"]) for p in ps],
                    "p50_ms": round(statistics.median(p["p50_ms"] for p in ps), 2),
                    "p99_ms": round(statistics.median(p["p99_ms"] for p in ps), 2),
                    "errors": sum(p["errors"] for p in ps),
                    "server_threads": max(p["threads"] for p in ps),
                    "server_cores": round(statistics.median(p["server_cores"] for p in ps), 2),
                    "cpu_us_per_req": round(statistics.median(p["cpu_us_per_req"] for p in ps)),
                    "load_before": [p["load_before"] for p in ps],
                    "load_after": [p["load_after"] for p in ps],
                }
            )
    ratios: dict[str, float] = {}
    lo = min(conns)
    for s in servers:
        for c in conns:
            if c != lo:
                ratios[f"{s} {c} conn / {lo} conn"] = round(med[s, c] / med[s, lo], 2)
    if "chroma" in servers:
        for s in servers:
            if s != "chroma":
                for c in conns:
                    ratios[f"{s} / chroma at {c} conn"] = round(med[s, c] / med["chroma", c], 2)
    return {"rows": rows, "ratios": ratios}


if __name__ == "__main__":
    raise SystemExit(main())
