"""Mixed load: 16 concurrent asyncio clients, 90% search and 10% upsert, for 2 minutes on 100k vectors.

    .venv/bin/python benchmarks/load.py [--seconds 120] [--clients 16] [--url URL] [--api-key KEY]

Without `--url` it starts `nestor serve` on a temporary data directory, loads the 100,000 MiniLM
vectors of `../shared/data/pypi-minilm` into an HNSW collection (defaults: m 16, ef_construction 200)
and waits for the index. Each client then loops: with probability 0.9 a top-10 search for a random
query of the dataset's 1,000, else an upsert of 10 base points (overwrites of random ids with their
own vectors, so the collection keeps its size and the index its tombstones). The first 5 s are a
warm-up and not counted. Every request is timed from send to parsed answer; any exception or
non-2xx answer counts as an error. Results go to `benchmarks/results/load.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "clients" / "python")]

from benchmarks.common import (  # noqa: E402
    RESULTS_DIR,
    data_dir,
    environment,
    harness,  # noqa: E402
    write_results,
)
from nestor_client import AsyncNestorClient, NestorClient  # noqa: E402
from tests.e2e.serverproc import ServerProcess  # noqa: E402

NAME = "load"
WARMUP = 5.0  # seconds of requests before latencies count (0.5 in tiny mode)


def _load(url: str, api_key: str | None, base: np.ndarray) -> float:
    started = time.perf_counter()
    with NestorClient(url, api_key=api_key, wire="msgpack", timeout=600) as c:
        c.create_collection(NAME, dim=base.shape[1], metric="cosine", index={"type": "hnsw"})
        c.upload(NAME, ids=list(range(len(base))), vectors=base, batch_size=2000)
        while True:  # the background indexer catches up
            idx = c.get_collection(NAME).index
            if idx.get("state") == "ready" and not idx.get("pending"):
                break
            time.sleep(1.0)
    return time.perf_counter() - started


async def _client(
    url: str, api_key: str | None, seed: int, base: np.ndarray, queries: np.ndarray, until: float, out: dict[str, Any]
) -> None:
    rng = random.Random(seed)
    async with AsyncNestorClient(url, api_key=api_key, wire="msgpack", timeout=60) as c:
        while (now := time.perf_counter()) < until:
            kind = "search" if rng.random() < 0.9 else "upsert"
            t0 = time.perf_counter()
            try:
                if kind == "search":
                    await c.search(NAME, queries[rng.randrange(len(queries))], limit=10, with_payload=False)
                else:
                    ids = rng.sample(range(len(base)), 10)
                    await c.upsert(NAME, ids=ids, vectors=base[ids])
                ok = True
            except Exception as exc:  # noqa: BLE001 - every failure counts as an error
                ok = False
                if len(out["error_samples"]) < 5:
                    out["error_samples"].append(f"{kind}: {type(exc).__name__}: {exc}")
            if now - out["start"] < out["warmup"]:
                continue
            out["lat"][kind].append(time.perf_counter() - t0)
            if not ok:
                out["errors"] += 1


def _stats(lat: list[float]) -> dict[str, float]:
    if not lat:
        return {"n": 0}
    a = np.asarray(lat) * 1000.0
    return {
        "n": len(lat),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p90_ms": round(float(np.percentile(a, 90)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "max_ms": round(float(a.max()), 3),
    }


async def _drive(url: str, api_key: str | None, clients: int, seconds: float, base: np.ndarray, q: np.ndarray) -> Any:
    start = time.perf_counter()
    warmup = 0.5 if harness.is_tiny() else WARMUP
    out: dict[str, Any] = {"start": start, "lat": {"search": [], "upsert": []}, "errors": 0, "error_samples": []}
    out["warmup"] = warmup
    until = start + warmup + seconds
    await asyncio.gather(*(_client(url, api_key, i, base, q, until, out) for i in range(clients)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--url", help="an existing server that already holds the collection (skips the load)")
    ap.add_argument("--api-key")
    ap.add_argument("--n", type=int, default=100_000, help="base vectors to load")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "load.json")
    ap.add_argument("--tiny", action="store_true", help="a few hundred points, 2 clients for 2 s: a smoke run")
    args = ap.parse_args(argv)
    harness.set_tiny(args.tiny)
    if args.tiny:
        args.n, args.clients, args.seconds = harness.TINY_N, 2, 2.0
    ds = data_dir() / "pypi-minilm"
    base = np.load(ds / "base.npy")[: args.n].astype(np.float32)
    queries = np.load(ds / "queries.npy")[: harness.TINY_QUERIES if args.tiny else None].astype(np.float32)

    server = None
    tmp = tempfile.TemporaryDirectory(prefix="nestor-load-")
    url = args.url
    load_s = None
    try:
        if url is None:
            server = ServerProcess(Path(tmp.name) / "data").start()
            url = server.url
            load_s = _load(url, args.api_key, base)
            print(f"loaded and indexed {len(base)} vectors in {load_s:.1f} s", flush=True)
        out = asyncio.run(_drive(url, args.api_key, args.clients, args.seconds, base, queries))
    finally:
        if server is not None:
            server.stop()
        tmp.cleanup()

    search, upsert = out["lat"]["search"], out["lat"]["upsert"]
    total = len(search) + len(upsert)
    both = _stats(search + upsert)
    result = {
        "clients": args.clients,
        "seconds": args.seconds,
        "vectors": len(base),
        "load_and_index_s": None if load_s is None else round(load_s, 1),
        "requests": total,
        "qps": round(total / args.seconds, 1),
        "search_qps": round(len(search) / args.seconds, 1),
        "upsert_share": round(len(upsert) / max(total, 1), 3),
        "errors": out["errors"],
        "error_samples": out["error_samples"],
        "all": both,
        "search": _stats(search),
        "upsert": _stats(upsert),
        "p99_over_p50": round(both["p99_ms"] / both["p50_ms"], 2) if total else None,
        "environment": environment(),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "environment"}, indent=1))
    result["meta"] = {
        "wire_format": "msgpack (AsyncNestorClient wire=msgpack)",
        "threads_pinned": {"server": "nestor serve defaults", "clients": f"{args.clients} async clients, one loop"},
    }
    write_results(args.out, result)
    return 0 if out["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
