"""The selective filters (issue 14): CPU time a query, Nestor against qdrant-edge, interleaved pass for pass.

    .venv/bin/python benchmarks/bench_selective.py                      # 100k points, 1,000 queries, 5 passes
    .venv/bin/python benchmarks/bench_selective.py --n 20000 --queries 200 --out selective_20k

Both engines score these filters exactly, without their HNSW (Nestor: `native.exact_few`, which runs
whatever the index state; qdrant-edge: a filter under its `full_scan_threshold` is a plain scan), so
neither index is built: the points and the payload indexes of `bench_filtered.py` (same seeded payloads)
are loaded, Nestor's indexing paused and qdrant-edge not optimized. Wall latencies on a shared machine are
mostly preemption, so each pass is timed by CPU time too: `time.thread_time` (this thread: both engines
search on it, qdrant-edge with `max_search_threads=1`) and `time.process_time` (every thread of the
process, which would show work moved to a pool). Per filter: `--passes` passes of every query per engine,
alternating; medians of the per-pass CPU microseconds a query, the pooled wall p50, and the load average
before and after each filter's passes. Each engine's hits are checked against the exact filtered top 10.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"  # before numpy loads: one thread in every native pool
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import harness  # noqa: E402
from bench_filtered import (  # noqa: E402
    FILTERS,
    SCHEMA,
    Engine,
    NestorEngine,
    QdrantEngine,
    filtered_truth,
    git_commit,
    mask_of,
    payload_columns,
    payload_rows,
    recall,
)
from common import DEFAULT_DATASET, data_dir, load_dataset, markdown_table, write_results  # noqa: E402

from index.runtime import configure_threads  # noqa: E402

SELECTIVE = ("0.1 %: tenant == t7", "1 %: tags has g7", "any of 5 tenants")


def load_nestor(engine: NestorEngine, base: Any, cols: dict[str, Any], batch: int = 5000) -> float:
    """The payload indexes and the points, indexing left paused (the exact plan needs no graph)."""
    t = time.perf_counter()
    for key, schema in SCHEMA.items():
        engine.coll.create_payload_index(key, schema)
    engine.coll.pause_indexing()
    for i in range(0, base.shape[0], batch):
        stop = min(base.shape[0], i + batch)
        engine.coll.upsert(list(range(i, stop)), base[i:stop], payload_rows(cols, i, stop))
    return time.perf_counter() - t


def load_qdrant(engine: QdrantEngine, base: Any, cols: dict[str, Any], batch: int = 5000) -> float:
    """The payload indexes and the points, not optimized (no HNSW: every filter here is a scan anyway)."""
    t = time.perf_counter()
    engine.upsert_all(base, cols, batch)
    return time.perf_counter() - t


def timed_pass(engine: Engine, prepared: list[Any]) -> tuple[list[list[int]], float, float, list[int]]:
    """Every query once: the ids, thread CPU us a query, process CPU us a query, the wall latencies (ns)."""
    found: list[list[int]] = []
    lat: list[int] = []
    clock = time.perf_counter_ns
    t0, p0 = time.thread_time_ns(), time.process_time_ns()
    for q in prepared:
        t = clock()
        found.append(engine.run(q))
        lat.append(clock() - t)
    t1, p1 = time.thread_time_ns(), time.process_time_ns()
    n = len(prepared)
    return found, (t1 - t0) / n / 1e3, (p1 - p0) / n / 1e3, lat


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, default=None, help="the first N base points (default: all 100k)")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--out", default="selective")
    ap.add_argument("--tiny", action="store_true", help="a few thousand points, one pass: a smoke run, no numbers")
    args = ap.parse_args(argv)
    harness.set_tiny(args.tiny)
    if args.tiny:
        args.n, args.queries, args.passes = args.n or 3000, min(args.queries, 20), 1
    configure_threads()
    ds = load_dataset(n=args.n, n_queries=args.queries, gt_depth=10)
    all_queries = np.load(data_dir() / DEFAULT_DATASET / "queries.npy").astype(np.float32)
    base, queries = ds.base, ds.queries
    n, dim = base.shape
    cols = payload_columns(base, all_queries)
    masks = {name: mask_of(FILTERS[name], cols) for name in SELECTIVE}
    truth = filtered_truth(base, queries, masks)
    tmp = Path(tempfile.mkdtemp(prefix="nestor-bench-selective-"))
    nestor = NestorEngine(tmp / "nestor", dim, 100, 1)
    qdrant = QdrantEngine(tmp / "qdrant", n, dim, 100, 1)
    out: dict[str, Any] = {"commit": git_commit(), "n": n, "queries": len(queries), "passes": args.passes}
    pinned = "one search thread each: Nestor's calling thread, qdrant-edge max_search_threads=1"
    out["meta"] = {"threads_pinned": pinned}
    try:
        out["load_s"] = {"nestor": load_nestor(nestor, base, cols), "qdrant-edge": load_qdrant(qdrant, base, cols)}
        rows: list[dict[str, Any]] = []
        for name in SELECTIVE:
            spec = FILTERS[name]
            load_before = os.getloadavg()[0]
            per: dict[str, dict[str, list[Any]]] = {}
            for _ in range(args.passes):
                for e in (nestor, qdrant):
                    found, cpu, proc, lat = timed_pass(e, e.prepare(queries, spec, 10))
                    got = per.setdefault(e.name, {"cpu": [], "proc": [], "lat": [], "recall": []})
                    got["cpu"].append(cpu)
                    got["proc"].append(proc)
                    got["lat"] += lat
                    got["recall"].append(recall(found, truth[name], base, queries, masks[name]))
            row: dict[str, Any] = {"filter": name, "matching": int(masks[name].sum())}
            for e, tag in (("nestor", "N"), ("qdrant-edge", "Q")):
                g = per[e]
                row |= {
                    f"{tag} recall": min(g["recall"]),
                    f"{tag} thread us": statistics.median(g["cpu"]),
                    f"{tag} process us": statistics.median(g["proc"]),
                    f"{tag} wall p50 us": float(np.median(g["lat"])) / 1e3,
                }
            row["Q/N thread CPU"] = row["Q thread us"] / row["N thread us"]
            row["Q/N wall p50"] = row["Q wall p50 us"] / row["N wall p50 us"]
            row["load before/after"] = f"{load_before:.2f}/{os.getloadavg()[0]:.2f}"
            row["runs"] = {e: {k: v for k, v in g.items() if k != "lat"} for e, g in per.items()}
            rows.append(row)
            print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)), flush=True)
    finally:
        nestor.close()
        qdrant.close()
        shutil.rmtree(tmp, ignore_errors=True)
    out["rows"] = rows
    cols_md: list[tuple[str, str, str] | str] = ["filter", "matching"]
    cols_md += [(c, c, ".3f") for c in rows[0] if c not in ("filter", "matching", "load before/after", "runs")]
    cols_md.append("load before/after")
    text = (
        f"## Selective filters, CPU a query, {n:,} points, {len(queries)} queries, {args.passes} interleaved "
        f"passes, commit {out['commit']}\n\nQ/N > 1: Nestor uses less CPU a query than qdrant-edge.\n\n"
        + markdown_table(rows, cols_md)
    )
    print(text)
    path = write_results(args.out, out)
    path.with_suffix(".md").write_text(text + "\n")
    return out


if __name__ == "__main__":
    main()
