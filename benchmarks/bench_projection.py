"""LeanVec-OOD that never loses: on keyword queries (`queries_kw`, fitted on `sample_kw`), the projection the
held-out check chooses (`quantization.projection_select.choose_projection`) against LeanVec-ID (plain and
rescaled), LeanVec-OOD and PCA-Matryoshka at the same dimension.

For each --dims value: candidate recall, the share of each query's exact top 10 found among its top c by reduced
score, for c in --depths (c = 10 is recall@10 without rerank; c = 40 is what oversampling 4 reranks), over the
first --n base vectors (exact ground truth recomputed below 100k). Pure numpy, float32 reduced vectors (no codes).

    python benchmarks/bench_projection.py [--n 100000] [--dims 64 96 128] [--depths 10 20 40 100] [--data DIR]
        [--tiny]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "clients/python")]

from index.runtime import configure_threads  # noqa: E402

configure_threads()

from benchmarks.common import data_dir, exact_topk_ip, markdown_table, write_results  # noqa: E402
from quantization.leanvec import LeanVecTransform  # noqa: E402
from quantization.matryoshka import MatryoshkaTransform  # noqa: E402
from quantization.projection_select import choose_projection  # noqa: E402

Reducer = LeanVecTransform | MatryoshkaTransform


def _sh(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=Path(__file__).parent).stdout.strip()


def _recalls(r: Reducer, base: np.ndarray, q: np.ndarray, gt: np.ndarray, depths: list[int]) -> list[float]:
    qs = r.transform_queries(q) if isinstance(r, LeanVecTransform) else r.transform(q)
    xs = r.transform(base)
    out = [0.0] * len(depths)
    for s in range(0, len(q), 200):
        scores = qs[s : s + 200] @ xs.T
        order = np.argpartition(-scores, max(depths) - 1, axis=1)[:, : max(depths)]
        order = np.take_along_axis(order, np.argsort(-np.take_along_axis(scores, order, 1), axis=1), 1)
        for j, c in enumerate(depths):
            out[j] += sum(len(np.intersect1d(o[:c], g)) for o, g in zip(order, gt[s : s + 200], strict=True))
    return [v / (10 * len(q)) for v in out]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 96, 128])
    ap.add_argument("--depths", type=int, nargs="+", default=[10, 20, 40, 100])
    ap.add_argument("--data", default=None)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--out", default="projection")
    args = ap.parse_args(argv)
    if args.tiny:
        args.n, args.dims = min(args.n, 2000), args.dims[:1]
    before = _sh(["uptime"])
    folder = data_dir(args.data) / "pypi-minilm"
    base16 = np.load(folder / "base.npy", mmap_mode="r")
    base = np.ascontiguousarray(base16[: args.n], dtype=np.float32)
    q = np.load(folder / "queries_kw.npy").astype(np.float32)
    sample = np.load(folder / "sample_kw.npy").astype(np.float32)
    if len(base) == len(base16):
        gt = np.load(folder / "gt_ip_kw.npy")[:, :10].astype(np.int64)
    else:
        gt = exact_topk_ip(base, q, 10)
    fit = base[np.sort(np.random.default_rng(0).choice(len(base), min(len(base), 50_000), replace=False))]
    rows: list[dict[str, Any]] = []
    for dim in args.dims:
        t0 = time.perf_counter()
        chosen, choice = choose_projection(fit, sample, dim)
        choose_s = time.perf_counter() - t0
        candidates: dict[str, Reducer] = {
            "LeanVec-ID": LeanVecTransform(dim, "id").fit(fit),
            "LeanVec-ID rescaled": LeanVecTransform(dim, "id", rescale=True).fit(fit),
            "LeanVec-OOD": LeanVecTransform(dim, "ood").fit(fit, sample),
            "PCA-Matryoshka": MatryoshkaTransform(dim, "pca").fit(fit),
            f"chosen ({choice.chosen})": chosen,
        }
        for name, r in candidates.items():
            rec = _recalls(r, base, q, gt, args.depths)
            row = {"dim": dim, "projection": name, **{f"c{c}": v for c, v in zip(args.depths, rec, strict=True)}}
            row["held_out"] = choice.info()["candidate_recall"] if name.startswith("chosen") else None
            row["choose_s"] = choose_s if name.startswith("chosen") else None
            rows.append(row)
            print(row, flush=True)
    cols: list[Any] = ["dim", "projection", *((f"c{c}", f"recall@10 in top {c}", ".4f") for c in args.depths)]
    print(markdown_table(rows, cols))
    meta = {"n": len(base), "queries": len(q), "sample": len(sample), "uptime_before": before}
    meta |= {"uptime_after": _sh(["uptime"]), "commit": _sh(["git", "rev-parse", "--short", "HEAD"])}
    print(meta)
    write_results(
        args.out if args.out.endswith(".json") or not args.tiny else args.out + "_tiny", {"rows": rows, **meta}
    )


if __name__ == "__main__":
    main()
