"""The cost of the Ray path on one machine: a 2-shard collection on Ray actors against the single-node engine.

Both hold the same vectors of pypi-minilm (MiniLM, 384 dims, cosine) with the same HNSW config. Measured
in-process at the engine level (`Collection.search` against `ShardedCollection.search`), so the numbers are
the Ray path's own overhead: serialising the query, one actor call per shard in parallel, the merge. An
HTTP request adds the same cost to both.

    .venv/bin/python benchmarks/bench_ray.py                 # 100k vectors, 2 shards, 1 replica
    .venv/bin/python benchmarks/bench_ray.py --n 20000 --queries 300

Writes benchmarks/results/bench_ray.json and prints a markdown table (docs/scale-out.md quotes it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "clients" / "python")]

from benchmarks.common import (  # noqa: E402
    RESULTS_DIR,
    harness,  # noqa: E402
    load_dataset,
    write_results,
)
from index.collection import Collection, CollectionOptions, Query  # noqa: E402
from index.runtime import configure_threads  # noqa: E402
from nestor_client.models import CollectionConfig, SearchParams  # noqa: E402


def _wait_indexed(coll: Any, timeout: float = 3600) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        idx = coll.info()["index"]
        if idx.get("pending") == 0 and idx.get("state") == "ready":
            return time.perf_counter() - t0
        time.sleep(0.25)
    raise TimeoutError("index never caught up")


def _latencies(search: Callable[[list[Query]], Any], queries: list[Query], warm: int = 50) -> list[float]:
    for q in queries[:warm]:
        search([q])
    out = []
    for q in queries:
        t = time.perf_counter()
        search([q])
        out.append(time.perf_counter() - t)
    return out


def _concurrent_qps(search: Callable[[list[Query]], Any], queries: list[Query], threads: int) -> float:
    chunks = [queries[i::threads] for i in range(threads)]

    def run(chunk: list[Query]) -> None:
        for q in chunk:
            search([q])

    ts = [threading.Thread(target=run, args=(c,)) for c in chunks]
    t = time.perf_counter()
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    return len(queries) / (time.perf_counter() - t)


def _batch_qps(search: Callable[[list[Query]], Any], queries: list[Query], size: int = 100) -> float:
    t = time.perf_counter()
    for i in range(0, len(queries), size):
        search(queries[i : i + size])
    return len(queries) / (time.perf_counter() - t)


def _recall(results: list[Any], gt: np.ndarray, k: int = 10) -> float:
    return float(
        np.mean([len({h.id for h in r.hits[:k]} & set(gt[i, :k].tolist())) / k for i, r in enumerate(results)])
    )


def measure(name: str, coll: Any, queries: list[Query], gt: np.ndarray, threads: int) -> dict[str, Any]:
    lat = _latencies(coll.search, queries)
    res = coll.search(queries)
    return {
        "name": name,
        "p50_ms": 1e3 * statistics.median(lat),
        "p95_ms": 1e3 * float(np.percentile(lat, 95)),
        "mean_ms": 1e3 * statistics.fmean(lat),
        "qps_1_client": len(lat) / sum(lat),
        f"qps_{threads}_clients": _concurrent_qps(coll.search, queries, threads),
        "qps_batch100": _batch_qps(coll.search, queries),
        "recall@10": _recall(res, gt),
        "strategy": res[0].strategy,
    }


def _rest(args: argparse.Namespace, base: np.ndarray, qv: np.ndarray, gt: np.ndarray) -> list[dict[str, Any]]:
    """The same comparison through HTTP: `nestor serve`, and `nestor serve --ray-address local`, as subprocesses."""
    from nestor_client import NestorClient
    from tests.e2e.serverproc import ServerProcess

    rows = []
    for label, extra, cfg in [
        ("single node (REST)", [], {}),
        (f"{args.shards} shards on Ray (REST)", ["--ray-address", "local"], {"shards": args.shards}),
    ]:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "data"
            data.mkdir()
            srv = ServerProcess(data, env={"NESTOR_PROBE_SAMPLE_SIZE": "0"}, args=extra).start(timeout=180)
            try:
                with NestorClient(srv.url, wire="msgpack", timeout=600) as client:
                    client.create_collection("b", dim=base.shape[1], index={"type": "hnsw", "ef": args.ef}, **cfg)
                    client.upload("b", ids=list(range(len(base))), vectors=base, batch_size=1000)
                    t0 = time.perf_counter()
                    while True:
                        idx = client.get_collection("b").index
                        if idx.get("pending") == 0 and idx.get("state") == "ready":
                            break
                        time.sleep(0.5)
                    index_s = time.perf_counter() - t0
                    search = lambda v: client.search("b", v, limit=10, with_payload=False, params={"ef": args.ef})  # noqa: E731
                    for v in qv[:50]:
                        search(v)
                    lat, found = [], []
                    for v in qv:
                        t = time.perf_counter()
                        hits = search(v)
                        lat.append(time.perf_counter() - t)
                        found.append([h.id for h in hits])
                    rec = float(np.mean([len(set(f) & set(gt[i, :10].tolist())) / 10 for i, f in enumerate(found)]))

                    def worker(chunk: np.ndarray, url: str) -> None:
                        with NestorClient(url, wire="msgpack") as c:
                            for v in chunk:
                                c.search("b", v, limit=10, with_payload=False, params={"ef": args.ef})

                    ts = [
                        threading.Thread(target=worker, args=(qv[i :: args.threads], srv.url))
                        for i in range(args.threads)
                    ]
                    t = time.perf_counter()
                    for th in ts:
                        th.start()
                    for th in ts:
                        th.join()
                    conc = len(qv) / (time.perf_counter() - t)
            finally:
                srv.stop()
        rows.append(
            {
                "name": label,
                "p50_ms": 1e3 * statistics.median(lat),
                "p95_ms": 1e3 * float(np.percentile(lat, 95)),
                "mean_ms": 1e3 * statistics.fmean(lat),
                "qps_1_client": len(lat) / sum(lat),
                f"qps_{args.threads}_clients": conc,
                "recall@10": rec,
                "index_s": index_s,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    configure_threads()  # the engine's thread-pool defaults, as `nestor serve` sets them
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--ef", type=int, default=64)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--rest", action="store_true", help="also measure through HTTP (real `nestor serve` processes)")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "bench_ray.json")
    ap.add_argument("--tiny", action="store_true", help="a few hundred points, a few queries: a smoke run")
    args = ap.parse_args(argv)
    harness.set_tiny(args.tiny)
    if harness.missing("ray"):  # nothing to compare without Ray: say so in the result, not only on stderr
        write_results(args.out, {"rows": [], "meta": {"skipped": {"all": "needs ray (the ray extra)"}}})
        print("ray is not installed: skipped", file=sys.stderr)
        return 0

    import ray

    from cluster.sharded import RayCluster, ShardedCollection

    ds = load_dataset(n=args.n, n_queries=args.queries, gt_depth=10)  # tiny mode caps n and the queries
    base, qv, gt = ds.base, ds.queries, ds.gt
    args.n, args.queries = ds.n, ds.n_queries
    if args.tiny:
        args.threads = 2
    dim = ds.dim
    config = CollectionConfig.model_validate({"dim": dim, "metric": "cosine", "index": {"type": "hnsw", "ef": args.ef}})
    queries = [Query(v, limit=10, params=SearchParams(ef=args.ef), with_payload=False) for v in qv]
    ids = list(range(args.n))
    opts = CollectionOptions()
    out: dict[str, Any] = {"n": args.n, "dim": dim, "queries": args.queries, "ef": args.ef, "shards": args.shards}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    with tempfile.TemporaryDirectory() as tmp:
        single = Collection.create("single", Path(tmp) / "single", config, opts)
        t = time.perf_counter()
        for i in range(0, args.n, 1000):
            single.upsert(ids[i : i + 1000], base[i : i + 1000])
        out["single_load_s"] = time.perf_counter() - t
        out["single_index_s"] = _wait_indexed(single)
        rows = [measure("single node", single, queries, gt, args.threads)]
        single.close()  # one at a time: both would fight for the 2 cores while indexing

        cluster = RayCluster("local")
        sharded = ShardedCollection.create(
            "sharded", Path(tmp) / "sharded", config.model_copy(update={"shards": args.shards}), opts, cluster
        )
        t = time.perf_counter()
        for i in range(0, args.n, 1000):
            sharded.upsert(ids[i : i + 1000], base[i : i + 1000])
        out["sharded_load_s"] = time.perf_counter() - t
        out["sharded_index_s"] = _wait_indexed(sharded)
        if not sharded.wait_healthy(120):  # a replica restarting after a slow call (a loaded machine) is not measured
            raise RuntimeError(f"sharded collection not healthy: {sharded.info()['cluster']}")
        deadline = time.monotonic() + 60  # the compiled graphs wait for replicas live `compile_after` seconds
        while not sharded._dags and time.monotonic() < deadline:
            sharded.search(queries[:1])
            time.sleep(0.2)
        rows.append(measure(f"{args.shards} shards on Ray", sharded, queries, gt, args.threads))
        sharded.close()
    ray.shutdown()
    if args.rest:
        out["rest_rows"] = _rest(args, base, qv, gt)
        r0, r1 = out["rest_rows"]
        out["rest_latency_ratio_p50"] = r1["p50_ms"] / r0["p50_ms"]
    out["rows"] = rows
    out["latency_ratio_p50"] = rows[1]["p50_ms"] / rows[0]["p50_ms"]
    out["latency_ratio_mean"] = rows[1]["mean_ms"] / rows[0]["mean_ms"]
    out["meta"] = {
        "threads_pinned": {"search_clients": args.threads, "ray_num_cpus": 2, "engine": "configure_threads()"},
        "wire_format": "msgpack (REST rows)" if args.rest else None,
    }
    write_results(args.out, out)
    keys = ["p50_ms", "p95_ms", "qps_1_client", f"qps_{args.threads}_clients", "qps_batch100", "recall@10"]
    print(f"\n{args.n} x {dim} pypi-minilm, HNSW m16 ef_construction 200, ef {args.ef}, k 10, {args.queries} queries\n")
    print("| | " + " | ".join(keys) + " | load s | index s |")
    print("|---" * (len(keys) + 3) + "|")
    for row, who in zip(rows, ("single", "sharded"), strict=True):
        cells = " | ".join(f"{row[k]:.3f}" if "recall" in k else f"{row[k]:.2f}" for k in keys)
        print(f"| {row['name']} | {cells} | {out[who + '_load_s']:.1f} | {out[who + '_index_s']:.1f} |")
    print(f"\nengine-level p50 latency ratio (sharded / single): {out['latency_ratio_p50']:.2f}x")
    if args.rest:
        keys = ["p50_ms", "p95_ms", "qps_1_client", f"qps_{args.threads}_clients", "recall@10", "index_s"]
        print("\n| through HTTP | " + " | ".join(keys) + " |")
        print("|---" * (len(keys) + 1) + "|")
        for row in out["rest_rows"]:
            cells = " | ".join(f"{row[k]:.3f}" if "recall" in k else f"{row[k]:.2f}" for k in keys)
            print(f"| {row['name']} | {cells} |")
        print(f"\nREST p50 latency ratio (sharded / single): {out['rest_latency_ratio_p50']:.2f}x (bar: <= 2x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
