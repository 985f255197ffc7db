"""Scroll against get (issue 14's bar): every point, in pages of 1,000, with payloads, interleaved.

    .venv/bin/python benchmarks/bench_scroll.py                       # 100k points -> results/scroll.json
    .venv/bin/python benchmarks/bench_scroll.py --n 20000 --rounds 3  # a quick look

Data: the first `--n` points of `../shared/data/pypi-minilm` with bench_filtered.py's payloads (tenant,
cat, year, tags, zone), loaded in id order into a collection with a flat index (scroll and get read
SQLite and the label map; no graph is needed). Then `--rounds` rounds, each timing `get` of every id
in pages of `--page` and `Collection.scroll` through every point in pages of `--page` (the two in
alternating order, round by round), both with payloads, the garbage collector on. Reported: the median
and every round of each, the ratio, and the load average before and after every timed call.
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
from bench_filtered import get_all, payload_columns, payload_rows, scroll_all  # noqa: E402
from common import DEFAULT_DATASET, data_dir, environment, load_dataset, write_results  # noqa: E402

from index.collection import Collection  # noqa: E402
from index.contract import CollectionOptions  # noqa: E402
from nestor_client.models import CollectionConfig, FlatIndexConfig  # noqa: E402


def timed(fn: Any) -> tuple[float, int]:
    t = time.perf_counter()
    got = fn()
    return time.perf_counter() - t, got


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--data", default=None, help="the data root holding pypi-minilm/ (default ../shared/data)")
    ap.add_argument("--n", type=int, default=None, help="use the first N base points (default: all 100k)")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds, get and scroll in each")
    ap.add_argument("--page", type=int, default=1000, help="page size of both")
    ap.add_argument("--out", default="scroll", help="results name under benchmarks/results/, or a .json path")
    ap.add_argument("--tiny", action="store_true", help="1 round, pages of 300: a smoke run (on small data)")
    args = ap.parse_args(argv)
    if args.tiny:
        args.rounds, args.page = 1, 300
    env = environment()
    ds = load_dataset(n=args.n, n_queries=None, data=args.data, gt_depth=10)
    all_queries = np.load(data_dir(args.data) / DEFAULT_DATASET / "queries.npy").astype(np.float32)
    base = ds.base
    n, dim = base.shape
    cols = payload_columns(base, all_queries)
    tmp = Path(tempfile.mkdtemp(prefix="nestor-bench-scroll-"))
    try:
        config = CollectionConfig(dim=dim, metric="cosine", index=FlatIndexConfig())
        coll = Collection.create("scroll", tmp / "c", config, CollectionOptions())
        for i in range(0, n, 5000):
            stop = min(n, i + 5000)
            coll.upsert(list(range(i, stop)), base[i:stop], payload_rows(cols, i, stop))
        rounds: list[dict[str, Any]] = []
        for r in range(args.rounds):
            row: dict[str, Any] = {"load_before": os.getloadavg()[0]}
            order = ("get", "scroll") if r % 2 == 0 else ("scroll", "get")
            for what in order:
                fn = (lambda: get_all(coll, n, args.page)) if what == "get" else (lambda: scroll_all(coll, args.page))
                row[f"{what}_s"], row[f"{what}_points"] = timed(fn)
                row[f"load_after_{what}"] = os.getloadavg()[0]
            rounds.append(row)
            print(f"round {r}: get {row['get_s']:.3f} s, scroll {row['scroll_s']:.3f} s", flush=True)
        coll.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    get_s = statistics.median(x["get_s"] for x in rounds)
    scroll_s = statistics.median(x["scroll_s"] for x in rounds)
    wins = sum(x["scroll_s"] < x["get_s"] for x in rounds)
    results = {
        "commit": (harness.commit()["commit"] or "unknown")[:7],
        "n": n,
        "page": args.page,
        "environment": env,
        "rounds": rounds,
        "get_s": get_s,
        "scroll_s": scroll_s,
        "scroll_over_get": scroll_s / get_s,
        "scroll_faster_rounds": wins,
    }
    text = (
        f"## Scroll against get ({n:,} points, pages of {args.page:,}, {args.rounds} interleaved rounds)\n\n"
        f"get {get_s:.3f} s, scroll {scroll_s:.3f} s (medians): scroll / get {scroll_s / get_s:.2f}; "
        f"scroll faster in {wins} of {args.rounds} rounds; load average "
        f"{min(x['load_before'] for x in rounds):.1f}-{max(x['load_after_get'] for x in rounds):.1f}"
    )
    print(text)
    path = write_results(args.out, results)
    path.with_suffix(".md").write_text(text + "\n")
    print(f"\nresults: {path} and {path.with_suffix('.md').name}")
    return results


if __name__ == "__main__":
    main()
