"""A follower's catch-up per write against a whole reload (issue 18: followers that catch up).

    .venv/bin/python benchmarks/bench_catchup.py                       # 20k and 100k -> results/catchup.json
    .venv/bin/python benchmarks/bench_catchup.py --sizes 20000 --writes 50
    .venv/bin/python benchmarks/bench_catchup.py --tiny                # a smoke run

For each size: the first `n` points of `../shared/data/pypi-minilm` (384-d, cosine, HNSW: the native
graph), with an integer payload `k` under a payload index, loaded into a primary catalog's collection,
indexed and saved (so a reload finds a saved graph, as a follower of a running primary does). A
`FollowerCatalog` on the same directory, in the same process, loads it. Then `--writes` writes, each an
upsert of `--batch` points (half new ids, half overwrites of live ones, new vectors and payloads), every
fifth also a delete of two ids; after each, the follower's `sync` is timed (the wait of the next search on
it: the stamp check and the catch-up), and the follower checks that a search finds the write. Every
`--reload-every`-th write, the follower instead loads the collection whole (`_reload`, what it did before
catch-up existed), timed the same way. Reported: median, p90 and max of each, their ratio, and the load
average before and after.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` when run as a script
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the repo root

import harness  # noqa: E402
from common import environment, load_dataset, write_results  # noqa: E402

from index.runtime import configure_threads  # noqa: E402

configure_threads()  # before anything imports faiss: its OpenMP threads must not busy-wait

from index.catalog import Catalog  # noqa: E402
from index.collection import Collection  # noqa: E402
from index.contract import CollectionOptions, Query  # noqa: E402
from index.follow import FollowerCatalog  # noqa: E402
from index.readonly import set_read_only  # noqa: E402
from nestor_client.models import CollectionConfig, PayloadSchemaType  # noqa: E402

QUIET = CollectionOptions(save_idle_seconds=3600, save_max_seconds=3600)  # saves only when asked


def _ms(xs: list[float]) -> dict[str, float]:
    s = sorted(xs)
    return {
        "median_ms": 1000 * statistics.median(s),
        "p90_ms": 1000 * s[min(len(s) - 1, int(0.9 * len(s)))],
        "max_ms": 1000 * s[-1],
        "count": len(s),
    }


def _wait_indexed(coll: Collection, timeout: float = 900.0) -> None:
    deadline = time.monotonic() + timeout
    while any(f.state.upto < coll.labels.n or f.state.index is None for f in coll.dense_fields()):
        if time.monotonic() > deadline:
            raise TimeoutError("indexing did not finish")
        time.sleep(0.1)


def run_size(base: np.ndarray, n: int, args: argparse.Namespace, rng: np.random.Generator) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="nestor-bench-catchup-"))
    try:
        primary = Catalog(data, QUIET)
        coll, _ = primary.create("c", CollectionConfig(dim=base.shape[1], metric="cosine"))
        assert isinstance(coll, Collection)
        coll.create_payload_index("k", PayloadSchemaType.integer)
        t0 = time.perf_counter()
        for i in range(0, n, 5000):
            stop = min(n, i + 5000)
            coll.upsert(list(range(i, stop)), base[i:stop], [{"k": j % 10} for j in range(i, stop)])
        _wait_indexed(coll)
        coll.save_indexes()
        build_s = time.perf_counter() - t0
        follower = FollowerCatalog(data, QUIET)
        follower.sync("c")
        catch_up: list[float] = []
        reload: list[float] = []
        write: list[float] = []
        next_id = n
        load_before = os.getloadavg()[0]
        for w in range(args.writes):
            half = args.batch // 2
            ids = list(range(next_id, next_id + half)) + rng.choice(n, args.batch - half, replace=False).tolist()
            next_id += half
            vecs = rng.standard_normal((len(ids), base.shape[1])).astype(np.float32)
            t = time.perf_counter()
            coll.upsert(ids, vecs, [{"k": int(x) % 10} for x in ids])
            if w % 5 == 4:
                coll.delete(rng.choice(n, 2, replace=False).tolist())
            write.append(time.perf_counter() - t)
            whole = args.reload_every and w % args.reload_every == args.reload_every - 1
            t = time.perf_counter()
            if whole:
                with follower._lock:
                    follower._reload("c")
            else:
                follower.sync("c")
            (reload if whole else catch_up).append(time.perf_counter() - t)
            f = follower.get("c")
            got = f.search([Query(vector=vecs[0], limit=1)])[0].hits
            if not got or got[0].id != ids[0] or f.count != coll.count or f.seq != coll.seq:
                raise AssertionError(f"write {w}: the follower does not see it")
        load_after = os.getloadavg()[0]
        result = {
            "n": n,
            "batch": args.batch,
            "writes": args.writes,
            "build_s": build_s,
            "catch_up": _ms(catch_up),
            "reload": _ms(reload) if reload else None,
            "primary_write": _ms(write),
            "follower_reloads": follower.reloads,
            "follower_catch_ups": follower.catch_ups,
            "load_before": load_before,
            "load_after": load_after,
        }
        follower.close()
        set_read_only(False)
        primary.close()
        return result
    finally:
        shutil.rmtree(data, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--data", default=None, help="the data root holding pypi-minilm/ (default ../shared/data)")
    ap.add_argument("--sizes", default="20000,100000", help="comma-separated collection sizes")
    ap.add_argument("--writes", type=int, default=100, help="writes per size")
    ap.add_argument("--batch", type=int, default=10, help="points per write")
    ap.add_argument("--reload-every", type=int, default=10, help="every k-th write is followed by a whole reload")
    ap.add_argument("--out", default="catchup", help="results name under benchmarks/results/, or a .json path")
    ap.add_argument("--tiny", action="store_true", help="one small size, 10 writes: a smoke run")
    args = ap.parse_args(argv)
    harness.set_tiny(args.tiny)
    if args.tiny:
        args.writes, args.reload_every = 10, 5
    env = environment()
    sizes = [int(s) for s in args.sizes.split(",")]
    ds = load_dataset(n=max(sizes), n_queries=1, data=args.data, gt_depth=1)
    sizes = [min(s, len(ds.base)) for s in sizes]
    rng = np.random.default_rng(0)
    runs = []
    for n in sorted(set(sizes)):
        r = run_size(ds.base, n, args, rng)
        runs.append(r)
        rl = r["reload"]["median_ms"] if r["reload"] else float("nan")
        print(f"n={n}: catch-up {r['catch_up']['median_ms']:.2f} ms, reload {rl:.1f} ms (medians)", flush=True)
    pinned = {"engine": "one process: the primary catalog and the follower, each collection's indexer thread"}
    results = {
        "commit": (harness.commit()["commit"] or "unknown")[:7],
        "environment": env,
        "runs": runs,
        "meta": {"threads_pinned": pinned},
    }
    lines = [
        f"## Follower catch-up per write against a whole reload (commit {results['commit']})",
        "",
        "| points | writes | catch-up median ms | p90 | max | reload median ms | p90 | reload / catch-up | "
        "primary write median ms | load before-after |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in runs:
        c, rl, pw = r["catch_up"], r["reload"], r["primary_write"]
        ratio = f"{rl['median_ms'] / c['median_ms']:.0f}x" if rl else ""
        rm = f"{rl['median_ms']:.1f} | {rl['p90_ms']:.1f}" if rl else " | "
        lines.append(
            f"| {r['n']:,} | {c['count']} + {rl['count'] if rl else 0} | {c['median_ms']:.2f} | {c['p90_ms']:.2f} | "
            f"{c['max_ms']:.2f} | {rm} | {ratio} | {pw['median_ms']:.2f} | "
            f"{r['load_before']:.1f}-{r['load_after']:.1f} |"
        )
    text = "\n".join(lines)
    print(text)
    path = write_results(args.out, results)
    path.with_suffix(".md").write_text(text + "\n")
    print(f"\nresults: {path} and {path.with_suffix('.md').name}")
    return results


if __name__ == "__main__":
    main()
