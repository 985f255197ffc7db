"""Payload indexes (issue 14, first part): filtered search and count with and without them, in process.

    .venv/bin/python benchmarks/bench_payload_index.py                 # 100k points -> results/payload_index.json
    .venv/bin/python benchmarks/bench_payload_index.py --n 20000 --queries 50      # a quick look

Data: `../shared/data/pypi-minilm` (384-d MiniLM, cosine), the first `--n` points, HNSW m 16 (the default
config). Payloads, seeded: `tenant` (keyword, 1,000 values), `cat` (integer, 10 values), `year` (integer,
25 values). For each filter: p50 of a single `Collection.search` (limit 10, one query at a time, this
thread) and of `count_where`, first scanning the payload JSON in SQLite (no index), then with the three
payload indexes; recall@10 of the indexed search against exact search under the same filter. Then the
indexes' RAM per point, the time to build one from the store (PUT), and the time to open the collection
with the indexes (rebuilt from SQLite) and without them.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as index/runtime.py, before faiss loads

import argparse  # noqa: E402
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` when run as a script
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the repo root

import harness  # noqa: E402
from common import load_dataset, markdown_table, write_results  # noqa: E402

from index.collection import Collection  # noqa: E402
from index.contract import CollectionOptions, Query  # noqa: E402
from index.runtime import configure_threads  # noqa: E402
from nestor_client.models import CollectionConfig, Filter, PayloadSchemaType, SearchParams  # noqa: E402

FILTERS: dict[str, dict[str, Any]] = {
    "tenant == t7": {"must": [{"key": "tenant", "match": {"value": "t7"}}]},
    "cat == 3": {"must": [{"key": "cat", "match": {"value": 3}}]},
    "year >= 2012": {"must": [{"key": "year", "range": {"gte": 2012}}]},
    "tenant in 5 values": {"must": [{"key": "tenant", "match": {"any": ["t1", "t2", "t3", "t4", "t5"]}}]},
}
SCHEMA = {"tenant": PayloadSchemaType.keyword, "cat": PayloadSchemaType.integer, "year": PayloadSchemaType.integer}


def payloads(n: int, seed: int = 7) -> list[dict[str, Any] | None]:
    rng = np.random.default_rng(seed)
    tenant, cat, year = rng.integers(1000, size=n), rng.integers(10, size=n), rng.integers(25, size=n)
    rows = zip(tenant, cat, year, strict=True)
    return [{"tenant": f"t{t}", "cat": int(c), "year": 2000 + int(y)} for t, c, y in rows]


def wait_indexed(coll: Collection, timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    while (idx := coll.info().index).state != "ready" or idx.pending:
        if time.monotonic() > deadline:
            raise RuntimeError(f"index not ready: {idx}")
        time.sleep(0.2)


def p50_ms(fn: Any, items: list[Any]) -> float:
    lat = []
    for it in items:
        t = time.perf_counter_ns()
        fn(it)
        lat.append(time.perf_counter_ns() - t)
    return float(np.median(lat)) / 1e6


def measure(coll: Collection, queries: np.ndarray, indexed: bool) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, spec in FILTERS.items():
        flt = Filter.model_validate(spec)
        qs = [Query(vector=q, limit=10, filter=flt, with_payload=False) for q in queries]
        coll.search(qs[:3])  # warm
        strategy = coll.search([qs[0]])[0].strategy
        row = {
            "matching": coll.count_where(flt) / coll.count,
            "search_p50_ms": p50_ms(lambda q: coll.search([q]), qs),
            "count_p50_ms": p50_ms(lambda f: coll.count_where(f), [flt] * len(qs)),
            "strategy": strategy,
        }
        if indexed:
            exact = [Query(vector=q.vector, limit=10, filter=flt, params=SearchParams(exact=True)) for q in qs]
            hits = total = 0
            for q, e in zip(qs, exact, strict=True):
                want = {h.id for h in coll.search([e])[0].hits}
                hits += len({h.id for h in coll.search([q])[0].hits} & want)
                total += len(want)
            row["recall_at_10"] = hits / max(total, 1)
        out[name] = row
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--data", default=None)
    ap.add_argument("--out", default="payload_index")
    ap.add_argument("--tiny", action="store_true", help="a few hundred points, one pass: a smoke run, no numbers")
    args = ap.parse_args(argv)
    harness.set_tiny(args.tiny)
    configure_threads()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    ds = load_dataset(n=args.n, n_queries=args.queries, data=args.data, gt_depth=10)
    n = ds.n
    tmp = Path(tempfile.mkdtemp(prefix="nestor-bench-payload-"))
    try:
        opts = CollectionOptions()
        config = CollectionConfig(dim=ds.dim, metric="cosine")
        coll = Collection.create("bench", tmp / "bench", config, opts)
        pays = payloads(n)
        t0 = time.perf_counter()
        coll.pause_indexing()
        for i in range(0, n, 5000):
            coll.upsert(list(range(i, min(n, i + 5000))), ds.base[i : i + 5000], pays[i : i + 5000])
        coll.resume_indexing()
        wait_indexed(coll)
        load_s = time.perf_counter() - t0
        print(f"loaded and indexed {n} points in {load_s:.0f} s", flush=True)
        plain = [Query(vector=q, limit=10, with_payload=False) for q in ds.queries]
        unfiltered_ms = p50_ms(lambda q: coll.search([q]), plain)
        print(f"unfiltered search p50: {unfiltered_ms:.2f} ms", flush=True)
        scan = measure(coll, ds.queries, indexed=False)
        build = {}
        for key, schema in SCHEMA.items():
            t = time.perf_counter()
            coll.create_payload_index(key, schema)
            build[key] = time.perf_counter() - t
        idx = measure(coll, ds.queries, indexed=True)
        info = coll.info().payload_schema
        coll.close()
        t = time.perf_counter()
        coll = Collection.open("bench", tmp / "bench", opts)
        open_s = time.perf_counter() - t
        for key in SCHEMA:
            coll.delete_payload_index(key)
        coll.close()
        t = time.perf_counter()
        coll = Collection.open("bench", tmp / "bench", opts)
        open_bare_s = time.perf_counter() - t
        coll.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = [
        {
            "filter": name,
            "matching": f"{scan[name]['matching']:.1%}",
            "search p50 scan (ms)": scan[name]["search_p50_ms"],
            "search p50 indexed (ms)": idx[name]["search_p50_ms"],
            "count p50 scan (ms)": scan[name]["count_p50_ms"],
            "count p50 indexed (ms)": idx[name]["count_p50_ms"],
            "recall@10 indexed": idx[name]["recall_at_10"],
            "strategy (indexed)": idx[name]["strategy"],
        }
        for name in FILTERS
    ]
    cols = [(c, c, ".2f" if "ms" in c else ".3f") if isinstance(rows[0][c], float) else c for c in rows[0]]
    print(markdown_table(rows, cols))
    mem = [
        {
            "field": k,
            "schema": v.data_type.value,
            "points": v.points,
            "RAM (bytes)": v.ram,
            "bytes per point": v.ram / n,
            "build from the store (s)": build[k],
        }
        for k, v in info.items()
    ]
    print(markdown_table(mem, [(c, c, ".2f") if isinstance(mem[0][c], float) else c for c in mem[0]]))
    print(f"unfiltered search p50: {unfiltered_ms:.2f} ms")
    print(f"open: {open_s:.2f} s rebuilding the three payload indexes, {open_bare_s:.2f} s without them")
    write_results(
        args.out,
        {"n": n, "queries": len(ds.queries), "commit": commit, "load_s": load_s, "open_s": open_s}
        | {"unfiltered_search_p50_ms": unfiltered_ms, "open_without_payload_indexes_s": open_bare_s}
        | {"scan": scan, "indexed": idx, "memory": mem}
        | {"meta": {"threads_pinned": "engine defaults (configure_threads); one query at a time"}},
    )


if __name__ == "__main__":
    main()
