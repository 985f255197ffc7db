"""qdrant-client's `query_points` on Nestor's Qdrant surface against nestor_client's `search`, same collection.

    .venv/bin/python benchmarks/bench_qdrant_client.py [--n 20000] [--queries 1000] [--data DIR] [--out PATH]

Starts `nestor serve` on a temporary data directory, loads the first `--n` MiniLM vectors of
`<data>/pypi-minilm` into one cosine HNSW collection (m 16, ef_construction 200) with nestor_client,
and waits for the index. Then, for each query, one top-10 request through each client, interleaved
(the order alternates per query, so drift and load hit both alike), after a warm-up of 50 queries each.
A third row, plain httpx posting the same JSON to `/qdrant/.../points/query`, separates the server's
share from qdrant-client's own (pydantic models on both sides). The server listens on 127.0.0.2:
qdrant-client turns HTTP keep-alive off for `localhost` and `127.0.0.1` (a new TCP connection per
request), so the main row is the client as it runs against any other host, and a fourth row is that
localhost default. Every request returns the payloads
(both clients' defaults). Latency is wall time from call to parsed answer. Recall@10 against the exact
top-10 checks both return the same answers. Results: `benchmarks/results/qdrant_client.json`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "clients" / "python")]

import httpx  # noqa: E402
from qdrant_client import QdrantClient  # noqa: E402

from benchmarks.common import environment, load_dataset, recall_at_k, write_results  # noqa: E402
from nestor_client import NestorClient  # noqa: E402
from tests.e2e.serverproc import ServerProcess  # noqa: E402

NAME = "qdrant-bench"
HOST = "127.0.0.2"
WARMUP = 50
K = 10


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _load(c: NestorClient, base: np.ndarray) -> float:
    started = time.perf_counter()
    c.create_collection(NAME, dim=base.shape[1], metric="cosine", index={"type": "hnsw"})
    c.upload(NAME, ids=list(range(len(base))), vectors=base, batch_size=2000)
    while True:  # the background indexer catches up
        idx = c.get_collection(NAME).index
        if idx.get("state") == "ready" and not idx.get("pending"):
            return time.perf_counter() - started
        time.sleep(0.5)


def _stats(lat_s: list[float]) -> dict[str, float]:
    ms = np.asarray(lat_s) * 1e3
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
    }


def run(n: int, n_queries: int, data: str | None) -> dict[str, Any]:
    ds = load_dataset(n=n, n_queries=n_queries, data=data)
    tmp = tempfile.TemporaryDirectory(prefix="nestor-qdrant-bench-")
    # Served on 127.0.0.2 (loopback all the same): qdrant-client turns keep-alive off for "localhost" and
    # "127.0.0.1" only, so this is the client as it runs against any other host. Its localhost behaviour is
    # the extra row "no keep-alive".
    server = ServerProcess(Path(tmp.name) / "data", args=["--host", HOST])
    server.url = f"http://{HOST}:{server.port}"
    server.start()
    try:
        nestor = NestorClient(server.url, timeout=600)
        load_s = _load(nestor, ds.base)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qdrant = QdrantClient(url=server.url + "/qdrant", timeout=60)
            no_keepalive = QdrantClient(
                url=server.url + "/qdrant", timeout=60, limits=httpx.Limits(max_keepalive_connections=0)
            )
        raw = httpx.Client(base_url=server.url, timeout=60)
        queries = [q.tolist() for q in ds.queries]

        def via_nestor(i: int) -> list[Any]:
            return [h.id for h in nestor.search(NAME, ds.queries[i], limit=K)]

        def via_qdrant(i: int) -> list[Any]:
            return [p.id for p in qdrant.query_points(NAME, query=queries[i], limit=K).points]

        def via_qdrant_no_keepalive(i: int) -> list[Any]:
            return [p.id for p in no_keepalive.query_points(NAME, query=queries[i], limit=K).points]

        def via_httpx(i: int) -> list[Any]:
            body = {"query": queries[i], "limit": K, "with_payload": True}
            r = raw.post(f"/qdrant/collections/{NAME}/points/query", json=body)
            return [p["id"] for p in r.json()["result"]["points"]]

        runners: dict[str, Callable[[int], list[Any]]] = {
            "nestor_client search": via_nestor,
            "qdrant-client query_points": via_qdrant,
            "httpx POST /qdrant/.../points/query": via_httpx,
            "qdrant-client, no keep-alive (its localhost default)": via_qdrant_no_keepalive,
        }
        for i in range(min(WARMUP, len(queries))):
            for fn in runners.values():
                fn(i)
        uptime_during = _uptime()
        lat: dict[str, list[float]] = {k: [] for k in runners}
        found: dict[str, list[list[Any]]] = {k: [] for k in runners}
        names = list(runners)
        for i in range(len(queries)):
            order = names if i % 2 == 0 else names[::-1]
            for name in order:
                t0 = time.perf_counter()
                ids = runners[name](i)
                lat[name].append(time.perf_counter() - t0)
                found[name].append(ids)
        rows = []
        for name in names:
            rows.append({"client": name, **_stats(lat[name]), "recall@10": recall_at_k(found[name], ds.gt, K)})
        base_p50 = rows[0]["p50_ms"]
        for row in rows:
            row["p50_vs_nestor"] = row["p50_ms"] / base_p50
        nestor.close()
        qdrant.close()
        no_keepalive.close()
        raw.close()
    finally:
        server.stop()
        tmp.cleanup()
    return {
        "n": len(ds.base),
        "queries": len(ds.queries),
        "load_and_index_s": load_s,
        "rows": rows,
        "uptime_during": uptime_during,
        "median_ratio": statistics.median(r["p50_vs_nestor"] for r in rows),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000, help="base vectors to load")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--data", help="the benchmark data root (default: ../shared/data or $NESTOR_DATA)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "qdrant_client.json")
    ap.add_argument("--tiny", action="store_true", help="a smoke run: 500 points, 50 queries")
    args = ap.parse_args(argv)
    if args.tiny:
        args.n, args.queries = min(args.n, 500), min(args.queries, 50)
    before = _uptime()
    res = run(args.n, args.queries, args.data)
    res["uptime_before"] = before
    res["environment"] = environment()
    path = write_results(args.out, res)
    print(f"n={res['n']} queries={res['queries']} (load+index {res['load_and_index_s']:.1f} s)")
    print(f"{'client':52} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'x nestor':>9} {'recall@10':>9}")
    for r in res["rows"]:
        print(
            f"{r['client']:52} {r['p50_ms']:8.3f} {r['p90_ms']:8.3f} {r['p99_ms']:8.3f} "
            f"{r['p50_vs_nestor']:9.2f} {r['recall@10']:9.3f}"
        )
    print(f"uptime before: {before}\nuptime during: {res['uptime_during']}\nresults: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
