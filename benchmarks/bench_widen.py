"""How often a rescore of int8 candidates cannot vouch for its top 10, and what widening buys (index/widen.py).

Brute force, no graph: each query's best `k * over` points by int8 code score (the engine's own
`Int8Quantizer`, fitted on the base) are rescored exactly; while `index.widen.vouches` says no, the
candidates double, as `Graph::walk_rescored` does, up to 64 times the first. Two sets of candidates: every
point, and a band far from the query (the points it ranks 40-100 %: a broad filter whose matches all sit
in the densest band of scores). Reports, per set, the share of queries widened, the true top 10 lost
before and after, and the mean and largest final oversampling.

    .venv/bin/python benchmarks/bench_widen.py --queries 200 --out widen
    .venv/bin/python benchmarks/bench_widen.py --tiny --data DIR --out /tmp/w.json   # smoke
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
for _p in (BENCH, BENCH.parent, BENCH.parent / "clients" / "python"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import harness  # noqa: E402
import numpy as np  # noqa: E402
from common import load_dataset, write_results  # noqa: E402

from index.runtime import configure_threads  # noqa: E402
from quantization.scalar import Int8Quantizer  # noqa: E402

K = 10


def run(base: np.ndarray, decoded: np.ndarray, queries: np.ndarray, band: bool, over: int) -> dict[str, Any]:
    from index.widen import MOST, TIMES, vouches  # after configure_threads: it imports faiss

    widened, lost_before, lost_after, final = 0, 0, 0, []
    for q in queries:
        exact_all = base @ q
        idx = np.argsort(-exact_all, kind="stable")[len(base) * 2 // 5 :] if band else np.arange(len(base))
        code, exact = decoded[idx] @ q, exact_all[idx]
        truth = set(np.argpartition(-exact, K)[:K].tolist())
        keep, cap, first = K * over, min(K * over * TIMES, MOST), True
        while True:
            c = min(keep, len(idx))
            top = np.argpartition(-code, c - 1)[:c]
            got = set(top[np.argsort(-exact[top], kind="stable")[:K]].tolist())
            if first:
                lost_before += len(truth - got)
                first = False
            if keep >= cap or c < keep or vouches(code[top], exact[top], K):
                break
            keep = min(2 * keep, cap)
        widened += keep > K * over
        lost_after += len(truth - got)
        final.append(keep / K)
    n = len(queries)
    return {
        "candidates": "band 40-100 %" if band else "all points",
        "oversampling": over,
        "widened_share": widened / n,
        "recall_before": 1 - lost_before / (K * n),
        "recall_after": 1 - lost_after / (K * n),
        "mean_final_oversampling": float(np.mean(final)),
        "max_final_oversampling": float(max(final)),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--over", default="2,4", help="first oversampling values, comma-separated")
    ap.add_argument("--data", default=None)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--out", default="widen")
    args = ap.parse_args(argv)
    harness.set_tiny(args.tiny)
    configure_threads()
    ds = load_dataset(args.n, args.queries, args.data, gt_depth=10)
    base = ds.base / np.linalg.norm(ds.base, axis=1, keepdims=True)
    queries = ds.queries / np.linalg.norm(ds.queries, axis=1, keepdims=True)
    quant = Int8Quantizer().fit(base)
    decoded = quant.decode(quant.transform(base)).astype(np.float32)
    rows = [run(base, decoded, queries, band, int(o)) for band in (False, True) for o in args.over.split(",")]
    print("| candidates | first oversampling | widened | recall@10 before | after | mean final oversampling | max |")  # noqa: T201
    print("|---|--:|--:|--:|--:|--:|--:|")  # noqa: T201
    for r in rows:
        print(  # noqa: T201
            f"| {r['candidates']} | {r['oversampling']} | {r['widened_share']:.2f} | {r['recall_before']:.3f} | "
            f"{r['recall_after']:.3f} | {r['mean_final_oversampling']:.1f} | {r['max_final_oversampling']:.0f} |"
        )
    meta = {"threads_pinned": "one thread: numpy with BLAS pinned to 1 (configure_threads), no engine threads"}
    path = write_results(args.out, {"n": len(base), "queries": len(queries), "rows": rows, "meta": meta})
    print(f"written to {path}")  # noqa: T201


if __name__ == "__main__":
    main()
