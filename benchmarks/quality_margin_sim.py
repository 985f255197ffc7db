"""What calibration's lower bound costs and what it promises, on real per-query recall (no index build: seconds).

The held-out check of `bench_quality.py --sample cv` needs 100k builds (10 to 30 minutes each on this machine).
The statistics behind it need only per-query recall@10 along a ladder of one knob, so this measures them on a
stand-in search whose recall is exact and cheap: PCA-128 candidates (centred, top `c`) reranked by the full
float32 vectors, on pypi-minilm's 100k base and 1,000 queries. Per-query recall there is skewed as in the ANN
indexes (most queries 1.0, a tail below), so the intervals behave alike.

For each target and each lower bound (index/quality.py `_low` and the alternatives), over --splits random
splits of the queries (--cal of them calibrate, 500 by default as the halves of `--sample cv`; the rest are held
out): calibrate (the smallest `c` whose lower bound reaches the target, as `calibrate` does on its ladder),
measure on the held-out queries. Reported: how often they fall below the target, their mean recall, and the `c`
chosen against the oracle's (the smallest `c` meeting the target on the held-out queries themselves, as
`bench_quality.py`'s hand-tuned oracle does), as the work ratio oracle / chosen (the QPS ratio's stand-in).

    python benchmarks/quality_margin_sim.py [--splits 300] [--targets 0.9 0.95 0.98] [--cal 500] [--data DIR]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "clients/python")]

from benchmarks.common import data_dir  # noqa: E402
from index.tuning import wilson  # noqa: E402

Z = 1.644854  # one-sided 95 %, as index/quality.py
LADDER = tuple(range(10, 64, 2)) + tuple(range(64, 400, 8))


def _per_query(d: Path) -> np.ndarray:
    """Per-query recall@10 at each rung of LADDER: [rungs, queries]."""
    base = np.load(d / "base.npy").astype(np.float32)
    q = np.load(d / "queries.npy").astype(np.float32)
    gt = np.load(d / "gt_ip.npy")[:, :10]
    mu = base.mean(0)
    _, _, vt = np.linalg.svd(base[:20000] - mu, full_matrices=False)
    proj = vt[:128].T
    order = np.argsort(-((q - mu) @ proj) @ ((base - mu) @ proj).T, axis=1)[:, : LADDER[-1]]
    out = np.empty((len(LADDER), len(q)))
    for i in range(len(q)):
        exact = base[order[i]] @ q[i]
        for j, c in enumerate(LADDER):
            top = order[i, np.argsort(-exact[:c])[:10]]
            out[j, i] = len(np.intersect1d(top, gt[i])) / 10
    return out


def _bounds(rng: np.random.Generator) -> dict[str, Any]:
    def normal(x: np.ndarray) -> float:
        return float(x.mean() - Z * x.std(ddof=1) / math.sqrt(len(x)))

    def per_neighbour(x: np.ndarray) -> float:
        return wilson(round(x.sum() * 10), 10 * len(x), Z)[0]

    def boot(x: np.ndarray) -> float:  # percentile bootstrap of the mean per-query recall
        return float(np.quantile(rng.choice(x, (1000, len(x))).mean(1), 0.05))

    return {
        "wilson (before 8109fa0)": per_neighbour,
        "min(wilson, normal) (8109fa0)": lambda x: min(per_neighbour(x), normal(x)),
        "bootstrap": boot,
        "none (mean)": lambda x: float(x.mean()),
    }


def _smallest(ok: Any) -> int | None:
    lo, hi = 0, len(LADDER) - 1
    if not ok(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid + 1, hi)
    return hi


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--splits", type=int, default=300)
    ap.add_argument("--targets", type=float, nargs="+", default=[0.9, 0.95, 0.98])
    ap.add_argument("--cal", type=int, default=500, help="calibration queries of the 1,000; the rest held out")
    ap.add_argument("--data", default=None)
    args = ap.parse_args(argv)
    r = _per_query(data_dir(args.data) / "pypi-minilm")
    rng = np.random.default_rng(0)
    print("| target | lower bound | held-out halves below target | mean held-out recall | work ratio oracle/chosen |")
    print("|---:|---|---:|---:|---:|")
    for target in args.targets:
        for name, low in _bounds(rng).items():
            below, held_mean, ratio = 0, [], []
            for _ in range(args.splits):
                perm = rng.permutation(r.shape[1])
                cal, held = perm[: args.cal], perm[args.cal :]
                j = _smallest(lambda k: low(r[k, cal]) >= target)  # noqa: B023
                o = _smallest(lambda k: r[k, held].mean() >= target)  # noqa: B023
                if j is None or o is None:
                    continue
                got = r[j, held].mean()
                below += got < target
                held_mean.append(got)
                ratio.append(LADDER[o] / LADDER[j])
            n = len(held_mean)
            print(
                f"| {target} | {name} | {below}/{n} | {np.mean(held_mean):.4f} | {np.median(ratio):.2f} |", flush=True
            )


if __name__ == "__main__":
    main()
