"""One value graph alone (issue 14's `zone == far`): its codecs compared, interleaved, one thread.

    .venv/bin/python benchmarks/bench_value_graph.py --scale 300k --out value_graph_300k   # ~3 minutes
    .venv/bin/python benchmarks/bench_value_graph.py --tiny --data DIR --out /tmp/v.json   # smoke

`bench_filtered.py`'s data (the MiniLM base, `--scale` noisy copies) and its `zone` payload: "far" on the
10 % of points whose best inner product with any of the 1,000 queries is lowest, so the value's matches lie
far from every query. For each codec of `CollectionOptions.value_graph_codec` a graph of just those points
is built as `index/tenants.py` builds it (HNSW m 16, ef_construction `--ef-construction`, one build
thread): "float32" reads the collection's rows in place (links only), "int8" keeps codes of its own and
rescores `max(40, 4 k)` candidates from the rows. Each side's ef is swept to the smallest with recall@10
>= 0.95 against the exact top 10 of the value (a point tied with the 10th counts), then `--passes` timed
passes alternate side by side: thread CPU time a query (median of the passes) and wall p50.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import harness  # noqa: E402
from bench_filtered import COPIES, FAR_SHARE, best_query_score, git_commit  # noqa: E402
from common import DEFAULT_DATASET, data_dir, markdown_table, write_results  # noqa: E402
from scale_data import cached_scaled  # noqa: E402

from index.backends.base import F32, IndexParams, Space  # noqa: E402
from index.backends.graph import GraphIndex  # noqa: E402

K = 10
EFS = [32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]
CODECS = ("float32", "int8")


class Rows:
    """The collection's row store, as a float32 graph reads it (`index.backends.graph.RowSource`)."""

    def __init__(self, rows: F32) -> None:
        self.rows = rows

    def buffer(self) -> F32:
        return self.rows

    def follow(self, reader: Any) -> None:
        pass


def build(codec: str, base: F32, labels: Any, efc: int) -> tuple[GraphIndex, float]:
    rows = Rows(base) if codec == "float32" else None
    g = GraphIndex(base.shape[1], Space.ip, codec, m=16, ef_construction=efc, rows=rows, threads=1)  # type: ignore[arg-type]
    if codec == "int8":
        g.train(base[labels[:20_000]])  # as index/tenants.py: the first 20,000 members fit the code range
    t = time.process_time()
    for s in range(0, len(labels), 4096):  # the indexer's steps
        g.add(base[labels[s : s + 4096]], labels[s : s + 4096])
    return g, time.process_time() - t


def one_pass(g: GraphIndex, base: F32, queries: F32, ef: int) -> tuple[list[Any], float, float]:
    """Found labels, thread CPU us a query, wall p50 us."""
    rerank = base if g.rows is None else None
    found, lat = [], []
    cpu = time.thread_time()
    for q in queries:
        t = time.perf_counter_ns()
        hits = g.search(q[None, :], K, IndexParams(ef=ef), None, rerank, max(40, 4 * K))
        lat.append(time.perf_counter_ns() - t)
        found.append(hits.labels[0])
    return found, (time.thread_time() - cpu) / len(queries) * 1e6, statistics.median(lat) / 1e3


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--scale", choices=sorted(COPIES), default="300k")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--ef-construction", type=int, default=100)
    ap.add_argument("--out", default=None)
    ap.add_argument("--data", default=None, help="benchmark data root (default: ../shared/data or $NESTOR_DATA)")
    ap.add_argument("--tiny", action="store_true", help="a smoke run: 2,000 points, 8 queries, one pass")
    args = ap.parse_args(argv)
    harness.set_tiny(args.tiny)
    folder = data_dir(args.data) / DEFAULT_DATASET
    base0 = np.load(folder / "base.npy").astype(np.float32)
    all_queries = np.load(folder / "queries.npy").astype(np.float32)
    if args.tiny:
        base0, args.scale, args.queries, args.passes = base0[:2000], "100k", 8, 1
    queries = all_queries[: args.queries]
    base = np.ascontiguousarray(cached_scaled(base0, COPIES[args.scale], DEFAULT_DATASET)[0])
    best = best_query_score(base, all_queries)
    labels = np.flatnonzero(best <= np.quantile(best, FAR_SHARE)).astype(np.int64)
    scores = queries @ base[labels].T
    kth = np.sort(scores, axis=1)[:, -K]

    def recall(found: list[Any]) -> float:
        return sum(int((base[r] @ queries[i] >= kth[i] - 1e-6).sum()) for i, r in enumerate(found)) / (K * len(found))

    load_start = os.getloadavg()
    graphs: dict[str, GraphIndex] = {}
    out: dict[str, dict[str, Any]] = {}
    for codec in CODECS:
        graphs[codec], build_s = build(codec, base, labels, args.ef_construction)
        sweep = []
        for ef in EFS:
            found, cpu, _ = one_pass(graphs[codec], base, queries, ef)
            sweep.append((ef, recall(found), cpu))
            if sweep[-1][1] >= 0.95:
                break
        out[codec] = {
            "build_cpu_s": build_s,
            "sweep": sweep,
            "ef": sweep[-1][0],
            "cpu_us": [],
            "p50_us": [],
            "recall": [],
        }
        print(f"{codec}: built in {build_s:.1f} s CPU; sweep {sweep}", file=sys.stderr, flush=True)
    loads = [os.getloadavg()[0]]
    for _ in range(args.passes):
        for codec in CODECS:
            found, cpu, p50 = one_pass(graphs[codec], base, queries, out[codec]["ef"])
            out[codec]["cpu_us"].append(cpu)
            out[codec]["p50_us"].append(p50)
            out[codec]["recall"].append(recall(found))
            loads.append(os.getloadavg()[0])
    rows: list[dict[str, Any]] = [
        {
            "codec": c,
            "ef": v["ef"],
            "recall": statistics.median(v["recall"]),
            "cpu": statistics.median(v["cpu_us"]),
            "p50": statistics.median(v["p50_us"]),
            "build": v["build_cpu_s"],
        }
        for c, v in out.items()
    ]
    ratio = rows[1]["cpu"] / rows[0]["cpu"]
    text = "\n".join(
        [
            f"## `zone == far`'s value graph alone, {len(base):,} points ({args.scale}): {len(labels):,} in the value, "
            f"{len(queries)} queries, commit {git_commit()}",
            "",
            f"Load average at start {[round(x, 2) for x in load_start]}, during the timed passes "
            f"{min(loads):.2f}-{max(loads):.2f}; one thread; {args.passes} passes alternating.",
            "",
            markdown_table(
                rows,
                [
                    "codec",
                    "ef",
                    ("recall", "recall@10", ".3f"),
                    ("cpu", "CPU us a query", ".0f"),
                    ("p50", "wall p50 us", ".0f"),
                    ("build", "build s CPU", ".1f"),
                ],
            ),
            "",
            f"int8 / float32 CPU a query: {ratio:.3f}",
        ]
    )
    print(text)
    payload = {"scale": args.scale, "points": len(labels), "queries": len(queries), "loads": loads, "sides": out}
    payload["meta"] = {"threads_pinned": "one thread: the graphs built and searched on the calling thread, BLAS 1"}
    path = write_results(args.out or f"value_graph_{args.scale}", payload)
    path.with_suffix(".md").write_text(text + "\n")


if __name__ == "__main__":
    main()
