"""How alike cross-validation folds are, from a `bench_quality.py --sample cv` result (no index build: seconds).

Each row of such a result keeps `hand_found`: per benchmark query, the exact top-10 neighbours the hand-tuned
setting found. From it, over --splits random 500 / 500 splits of the queries: how far apart two folds' recall at
that one setting lies (|fold 1 - fold 2|, median and 90th percentile), where the contiguous halves (runs 5 and 6)
fall among them, and how often a calibration on m random queries would accept the hand-tuned setting: its mean
alone reaching the target, and calibration's lower bound (index/quality.py `_low`) reaching it. The hand-tuned
setting is chosen on all the queries at the target's edge, so the bound rarely reaches the target there: each row
shows how much of the gap to the oracle the margin alone explains. (A larger m overlaps more with the queries the
oracle was tuned on, so its "mean accepts" share is flattered: 500, a fold of `--folds 2`, is the fair one.)

    python benchmarks/quality_folds.py RESULT.json [RESULT.json ...] [--splits 2000] [--cal 500]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "clients/python")]

from index.quality import _low  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("results", nargs="+")
    ap.add_argument("--splits", type=int, default=2000)
    ap.add_argument("--cal", type=int, nargs="+", default=[500], help="calibration queries per split")
    args = ap.parse_args(argv)
    print(
        "| index | target | hand-tuned | its recall | sd / query | fold gap median | p90 | halves' gap | "
        + " | ".join(f"mean / bound accept ({m})" for m in args.cal)
        + " |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---|" + "---:|" * len(args.cal))
    for path in args.results:
        for row in json.loads(Path(path).read_text())["rows"]:
            found = np.asarray(row.get("hand_found") or [], np.int64)
            if not len(found):
                continue
            n, target = len(found), row["target"]
            per = found / 10
            rng = np.random.default_rng(1)
            gaps = np.empty(args.splits)
            accept = {m: [0, 0] for m in args.cal}
            for s in range(args.splits):
                order = rng.permutation(n)
                gaps[s] = abs(per[order[: n // 2]].mean() - per[order[n // 2 :]].mean())
                for m in args.cal:
                    cal = found[order[:m]]
                    accept[m][0] += cal.mean() / 10 >= target
                    accept[m][1] += _low(cal, np.full(m, 10)) >= target
            halves = abs(per[: n // 2].mean() - per[n // 2 :].mean())
            cells = [f"{a / args.splits:.2f} / {b / args.splits:.2f}" for a, b in accept.values()]
            print(
                f"| {row['index']} | {target} | {row['hand']} | {per.mean():.4f} | {per.std(ddof=1):.3f} | "
                f"{np.median(gaps):.4f} | {np.quantile(gaps, 0.9):.4f} | {halves:.4f} (larger in "
                f"{np.mean(gaps >= halves):.0%} of splits) | " + " | ".join(cells) + " |"
            )


if __name__ == "__main__":
    main()
