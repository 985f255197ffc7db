"""Quality as a setting: does a recall target give the recall it promises, at the speed of a hand-tuned setting?

For each index (HNSW, int8 HNSW, IVF-PQ, binary HNSW, LeanVec-128 HNSW) this builds one collection of pypi-minilm
(first --n base vectors), then for each --targets value runs the calibration the indexer runs
(`index.quality.calibrate`) and measures, on the held-out queries: recall@10 against the exact ground truth and
single-query QPS with the knobs it chose. Against it: the best hand-tuned setting, an oracle that sweeps the same
knobs on the held-out queries themselves and keeps the fastest setting whose recall@10 meets the target.

What calibration sees (--sample): `seen` (the default) puts --seen base rows past the first --n (summaries like
the queries, never inserted) in the reservoir of recent queries a recall target keeps, as users' traffic would
(the search path offers each query to it); `rows` leaves it empty, so calibration falls back to perturbed data
rows; `cv` is cross-validation over the benchmark queries, for --n where no base rows are left (100k): with
--folds 2, calibrate on one fold and measure on the other, then the other way round, so every benchmark
query is measured with knobs chosen by a calibration that never saw it (half as many calibration queries, so a
wider margin; more folds give calibration more queries, at one calibration per fold). --split picks the folds:
`random` (the default: a seeded permutation, --split-seed, so each fold is a uniform sample of the queries, as a
user's reservoir is of their stream), `interleaved` (every folds-th query) or `halves` (contiguous blocks, as in
runs 5 and 6 of QUALITY.md, whose second half was harder than the first). Each row records every fold's recall
at the hand-tuned setting (`fold_recall_fixed`), and the halves' (`halves_recall_fixed`), to compare them; and
that setting's recall on each fold's calibration queries with calibration's lower bound (`hand_on_calib`: where
the mean meets the target and the bound does not, the margin kept calibration off the oracle's setting).
--no-margin (a diagnostic, never a result) makes calibration's bound the plain mean: what the margin costs.
The reservoir is refilled before each calibration: the benchmark's own searches would otherwise replace it (a
reservoir keeps a uniform sample of all the queries searched), and the next target would calibrate on the
benchmark queries.
--calib-queries sets `quality.queries` (the reservoir's size, and calibration's queries).

QPS: the chosen setting and each oracle contender (the smallest ef / nprobe meeting the target at each
oversampling) are timed side by side, one pass of the queries each per round, for --rounds rounds; the fastest
pass of each counts (a shared machine slows some passes). Under `cv` each fold's choice is timed on the queries
it was measured on, the contenders on the same halves, and the halves' times add up.

    python benchmarks/bench_quality.py [--n 100000] [--queries 1000] [--targets 0.9 0.95 0.99]
        [--index hnsw int8_hnsw ivf_pq] [--sample seen|rows|cv] [--folds 2] [--split random|interleaved|halves]
        [--split-seed 0] [--seen 1000] [--calib-queries N] [--no-margin]
        [--rounds 3] [--data DIR] [--tiny]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "clients/python")]

from index.runtime import configure_threads  # noqa: E402

configure_threads()  # before faiss loads: its idle OpenMP threads must not busy-wait on a shared machine

from benchmarks.common import data_dir, load_dataset, markdown_table, recall_at_k, write_results  # noqa: E402
from index import quality  # noqa: E402
from index.catalog import Catalog  # noqa: E402
from index.collection import Collection  # noqa: E402
from index.contract import CollectionOptions, Query  # noqa: E402
from index.query_sample import QuerySample  # noqa: E402
from index.tuning import Tuning  # noqa: E402
from nestor_client.models import CollectionConfig, QualityConfig, SearchParams  # noqa: E402

INDEXES: dict[str, dict[str, Any]] = {
    "hnsw": {"index": {"type": "hnsw"}},
    "int8_hnsw": {"index": {"type": "hnsw"}, "quantize": {"type": "int8"}},
    "ivf_pq": {"index": {"type": "ivf_pq", "train_threshold": 1000}},
    "binary_hnsw": {"index": {"type": "hnsw"}, "quantize": {"type": "binary"}},
    "leanvec128_hnsw": {"index": {"type": "hnsw"}, "reduce": {"type": "leanvec", "dim": 128}},
}
_LOW = quality._low  # calibration's lower bound, kept for `hand_on_calib` when --no-margin replaces it
OVERS = tuple(o for o in quality.OVER_LADDER if o <= 32)


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _commit() -> str:
    head = ["git", "rev-parse", "--short", "HEAD"]
    return subprocess.run(head, capture_output=True, text=True, check=False, cwd=Path(__file__).parent).stdout.strip()


def _build(workdir: Path, kind: str, base: np.ndarray) -> tuple[Catalog, Collection]:
    catalog = Catalog(workdir / kind, CollectionOptions(save_idle_seconds=3600, save_max_seconds=3600))
    config = {"dim": base.shape[1], "metric": "cosine", "quality": {"recall_target": 0.9}, **INDEXES[kind]}
    # a learned transform fits at 2,048 points by default: a --tiny set is smaller, and would never train
    config["training"] = {"threshold": min(2048, len(base))}
    coll, _ = catalog.create(kind, CollectionConfig.model_validate(config))
    assert isinstance(coll, Collection)
    for s in range(0, len(base), 5000):
        coll.upsert(list(range(s, min(s + 5000, len(base)))), base[s : s + 5000])
    f = coll.fields[""]
    while f.state.index is None or not f.state.index.is_trained or f.state.upto < f.labels.n:
        time.sleep(0.2)
    return catalog, coll


def _recall(coll: Collection, queries: np.ndarray, gt: np.ndarray, params: SearchParams | None) -> float:
    res = coll.search([Query(v, limit=10, with_payload=False, params=params) for v in queries])
    return recall_at_k([[int(h.id) for h in r.hits] for r in res], gt, 10)  # ids are the base rows


def _found(coll: Collection, queries: np.ndarray, gt: np.ndarray, params: SearchParams | None) -> np.ndarray:
    """Exact top-10 neighbours found, per query."""
    res = coll.search([Query(v, limit=10, with_payload=False, params=params) for v in queries])
    return np.array([len({int(h.id) for h in r.hits} & set(t[:10].tolist())) for r, t in zip(res, gt, strict=True)])


def _qps(coll: Collection, queries: np.ndarray, settings: list[SearchParams | None], rounds: int) -> list[Any]:
    """Single-query (wall QPS, CPU QPS) of each setting: interleaved passes, the fastest pass of each. CPU QPS
    counts this thread's CPU time only (the single-query path runs on it): the machine's other load does not."""
    wall, cpu = [0.0] * len(settings), [0.0] * len(settings)
    for _ in range(rounds):
        for j, p in enumerate(settings):
            todo = [Query(v, limit=10, with_payload=False, params=p) for v in queries]
            for q in todo[:50]:  # warm-up
                coll.search([q])
            w0, c0 = time.perf_counter(), time.thread_time()
            for q in todo:
                coll.search([q])
            w, c = time.perf_counter() - w0, time.thread_time() - c0
            wall[j], cpu[j] = max(wall[j], len(todo) / w), max(cpu[j], len(todo) / max(c, 1e-9))
    return list(zip(wall, cpu, strict=True))


def _rows(coll: Collection, kind: str, tiny: bool) -> list[tuple[float | None, list[int]]]:
    """The hand-tuning grid: (oversampling, the primary knob's ladder)."""
    f = coll.fields[""]
    if kind == "ivf_pq":
        nlist = getattr(f.state.index, "nlist", 1) or 1
        ladder = [v for v in quality.NPROBE_LADDER if v < nlist] + [nlist]
        return [(o, ladder) for o in OVERS[: 6 if tiny else None]]
    ladder = [v for v in quality.EF_LADDER if 10 <= v <= 2048]
    overs: tuple[float | None, ...] = OVERS[: 6 if tiny else None] if kind != "hnsw" else (None,)
    return [(o, ladder) for o in overs]


def _contenders(coll: Collection, kind: str, q: np.ndarray, gt: np.ndarray, target: float, tiny: bool) -> Any:
    """Per oversampling, the smallest ef / nprobe whose recall@10 on the held-out queries meets `target`
    (a binary search: recall grows with both), with that recall; the oracle is the fastest of them."""
    primary = "nprobe" if kind == "ivf_pq" else "ef"
    out: list[tuple[SearchParams, float]] = []
    for over, ladder in _rows(coll, kind, tiny):

        def at(v: int, over: float | None = over) -> SearchParams:
            return SearchParams.model_validate({primary: v, "oversampling": over})

        seen: dict[int, float] = {}

        def rec(i: int, at: Any = at, seen: dict[int, float] = seen, ladder: list[int] = ladder) -> float:
            if i not in seen:
                seen[i] = _recall(coll, q, gt, at(ladder[i]))
            return seen[i]

        lo, hi = 0, len(ladder) - 1
        if rec(hi) < target:
            continue
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if rec(mid) >= target else (mid + 1, hi)
        out.append((at(ladder[hi]), rec(hi)))
        if hi == 0:
            break  # the smallest rung: more oversampling only adds work
    return out


def _describe(p: SearchParams | None) -> str:
    if p is None:
        return "none meets it"
    return ", ".join(f"{k}={v:g}" for k in ("ef", "nprobe", "oversampling") if (v := getattr(p, k)) is not None)


def _held(split: str, folds: int, n_queries: int, seed: int) -> list[np.ndarray]:
    """The benchmark queries each fold measures (sorted indices; together every query once). `random`: a seeded
    permutation cut in `folds`, so each fold is a uniform sample of the queries, as a user's reservoir is of their
    stream; `interleaved`: every folds-th query; `halves`: contiguous blocks (runs 5 and 6; queries 500-999 were
    harder than 0-499 at every index and target, so the fold calibrated on them over-provisioned the other)."""
    if split == "random":
        order = np.random.default_rng(seed).permutation(n_queries)
        return [np.sort(order[n_queries * i // folds : n_queries * (i + 1) // folds]) for i in range(folds)]
    if split == "interleaved":
        return [np.arange(i, n_queries, folds) for i in range(folds)]
    edges = [n_queries * i // folds for i in range(folds + 1)]
    return [np.arange(a, b) for a, b in zip(edges, edges[1:], strict=False)]


def _folds(args: Any, n_queries: int, seen: np.ndarray, queries: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(the rows calibration sees, the benchmark queries measured with its choice) per fold."""
    if args.sample != "cv":
        return [(seen, np.arange(n_queries))]
    out = []
    for held in _held(args.split, args.folds, n_queries, args.split_seed):
        rest = np.ones(n_queries, bool)
        rest[held] = False
        out.append((queries[rest], held))
    return out


def _calibrate(
    f: Any, tmp: Path, rows: np.ndarray, target: float, queries: int | None
) -> tuple[SearchParams | None, Any, float, list[tuple[SearchParams, float]]]:
    """Calibrate `f` for `target` on a reservoir holding exactly `rows` (as the search path offers them);
    (the chosen knobs, the quality info, seconds, the timed candidates and their seconds per query)."""
    size = queries or (len(rows) if len(rows) else 1000)
    # fresh, nothing of earlier searches; none at all for perturbed rows (`--sample rows`)
    sample = QuerySample(Path(tempfile.mkdtemp(dir=tmp)), f.dim, size if len(rows) else 0)
    if len(rows):
        sample.offer(f.prepare(np.ascontiguousarray(rows, np.float32)))
    f.query_sample = sample
    # a reservoir exactly full never "grows" (quality.sample_grew): the measuring searches cannot start a
    # background calibration on the benchmark queries
    f.tuning = Tuning(QualityConfig(recall_target=target, queries=size))
    t0 = time.perf_counter()
    quality.calibrate(f)  # what the indexer runs after a build (and once real queries pile up)
    return f.tuning.params, f.tuning.info(), time.perf_counter() - t0, list(f.tuning.candidates)


def _total(parts: list[tuple[int, float]]) -> float:
    """QPS over parts measured separately: (queries, QPS) each; their times add up."""
    return sum(n for n, _ in parts) / sum(n / max(q, 1e-9) for n, q in parts)


def _row(coll: Collection, kind: str, target: float, data: Any, seen: np.ndarray, args: Any, tmp: Path) -> Any:
    """One (index, target) row: calibrate per fold, measure each fold's choice on its held-out queries, and
    the oracle's contenders on all of them."""
    f = coll.fields[""]
    folds = _folds(args, data.n_queries, seen, data.queries)
    chosen: list[SearchParams | None] = []
    infos, calib_s, hits, per_fold, timed = [], 0.0, 0.0, [], []
    for rows, held in folds:
        p, info, s, cands_s = _calibrate(f, tmp, rows, target, args.calib_queries)
        timed.append([(_describe(c), round(sec * 1e6, 1)) for c, sec in cands_s])  # why this choice: us / query
        chosen.append(p)
        infos.append(info)
        calib_s += s
        q, gt = data.queries[held], data.gt[held]
        per_fold.append(_recall(coll, q, gt, None))  # no params: the knobs calibration chose
        hits += per_fold[-1] * len(q)
    during = _uptime()
    cands = _contenders(coll, kind, data.queries, data.gt, target, args.tiny)
    auto: list[tuple[int, float]] = []
    auto_cpu: list[tuple[int, float]] = []
    hand: list[list[tuple[int, float]]] = [[] for _ in cands]
    hand_cpu: list[list[tuple[int, float]]] = [[] for _ in cands]
    for p, (_, held) in zip(chosen, folds, strict=True):
        q = data.queries[held]
        qps = _qps(coll, q, [p, *(c[0] for c in cands)], args.rounds)
        auto.append((len(q), qps[0][0]))
        auto_cpu.append((len(q), qps[0][1]))
        for j in range(len(cands)):
            hand[j].append((len(q), qps[j + 1][0]))
            hand_cpu[j].append((len(q), qps[j + 1][1]))
    best = max(range(len(cands)), key=lambda j: _total(hand_cpu[j])) if cands else None
    # how alike the folds are: each one's recall at one fixed setting (the hand-tuned one), and the halves' too;
    # and that setting on each fold's calibration queries, with the lower bound calibration needs to reach the
    # target: a mean at the target and a bound below it is the margin's doing, a mean below it the sample's
    at_fixed, halves_fixed, on_calib, hit = [], [], [], np.zeros(0, np.int64)
    if best is not None:
        hit = _found(coll, data.queries, data.gt, cands[best][0])
        at_fixed = [float(hit[h].mean() / 10) for _, h in folds]
        halves_fixed = [float(hit[h].mean() / 10) for h in _held("halves", len(folds), data.n_queries, 0)]
        for _, h in folds:
            rest = np.setdiff1d(np.arange(data.n_queries), h)
            on_calib.append((float(hit[rest].mean() / 10), _LOW(hit[rest], np.full(len(rest), 10))))
    names = sorted({_describe(p) for p in chosen})
    same = best is not None and names == [_describe(cands[best][0])]
    cal = [i.calibration for i in infos]
    row = {
        "index": kind,
        "target": target,
        "chosen": " | ".join(_describe(p) for p in chosen) if len(names) > 1 else names[0],
        "state": "/".join(sorted({i.state for i in infos})),
        "calib_source": cal[0].source if cal[0] else None,
        "calib_queries": [c.queries if c else None for c in cal] if len(cal) > 1 else (cal[0] and cal[0].queries),
        "calib_recall": float(np.mean([c.recall for c in cal if c])) if all(cal) else None,
        "calib_s": calib_s,
        "recall": hits / data.n_queries,
        "fold_recall": per_fold,
        "fold_recall_fixed": at_fixed,
        "halves_recall_fixed": halves_fixed,
        "hand_on_calib": on_calib if args.sample == "cv" else [],
        "hand_found": hit.tolist() if best is not None else [],  # per query: how other splits would differ
        "calib_timed": timed,
        "qps": _total(auto),
        "hand": _describe(cands[best][0] if best is not None else None),
        "hand_recall": cands[best][1] if best is not None else None,
        "hand_qps": _total(hand[best]) if best is not None else None,
        "cpu_qps": _total(auto_cpu),
        "hand_cpu_qps": _total(hand_cpu[best]) if best is not None else None,
        "qps_vs_hand": _total(auto) / _total(hand[best]) if best is not None else None,
        "cpu_vs_hand": (1.0 if same else _total(auto_cpu) / _total(hand_cpu[best])) if best is not None else None,
        "same": same,
        "folds": len(folds),
        "uptime_during": during,
    }
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--targets", type=float, nargs="+", default=[0.9, 0.95, 0.99])
    ap.add_argument("--index", nargs="+", default=list(INDEXES), choices=list(INDEXES))
    ap.add_argument("--data", default=None)
    ap.add_argument("--sample", choices=["seen", "rows", "cv"], default="seen")
    ap.add_argument("--seen", type=int, default=1000, help="base rows past --n the reservoir holds (`seen`)")
    ap.add_argument("--folds", type=int, default=2, help="`cv`: calibrate on all folds but one, measure on it")
    ap.add_argument("--split", choices=["random", "interleaved", "halves"], default="random", help="`cv` folds")
    ap.add_argument("--split-seed", type=int, default=0, help="`--split random`: the permutation's seed")
    ap.add_argument("--calib-queries", type=int, default=None, help="quality.queries (default: all it is given)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="a smoke run: 2,000 points, 100 queries")
    ap.add_argument("--out", default="quality", help="a name under benchmarks/results/, or a .json path")
    ap.add_argument("--no-margin", action="store_true", help="diagnostic: calibration's bound is the plain mean")
    args = ap.parse_args(argv)
    if args.no_margin:  # what the margin costs, against the same oracle: such rows never count towards the bar
        quality._low = lambda found, want: float(found.sum() / max(int(want.sum()), 1))
    if args.tiny:
        args.n, args.queries, args.seen, args.rounds = min(args.n, 2000), min(args.queries, 100), 500, 1
    before = _uptime()
    data = load_dataset(n=args.n, n_queries=args.queries, data=args.data, gt_depth=10, tiny_n=2000, tiny_queries=100)
    seen = np.empty((0, data.dim), np.float32)
    if args.sample == "seen":
        full = np.load(data_dir(args.data) / data.name / "base.npy", mmap_mode="r")
        seen = np.ascontiguousarray(full[data.n : data.n + args.seen], dtype=np.float32)
        if not len(seen):
            raise SystemExit("--sample seen needs base rows past --n; lower --n or pass --sample rows")
    rows: list[dict[str, Any]] = []
    during = ""
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.index:
            t0 = time.perf_counter()
            catalog, coll = _build(Path(tmp), kind, data.base)
            build_s = time.perf_counter() - t0
            try:
                for target in args.targets:
                    row = {**_row(coll, kind, target, data, seen, args, Path(tmp)), "build_s": build_s}
                    during = during or row["uptime_during"]
                    rows.append(row)
                    print(row, flush=True)
            finally:
                catalog.close()
    cols: list[Any] = [
        "index",
        "target",
        ("chosen", "chosen by the target", ""),
        ("calib_recall", "calibration recall", ".3f"),
        ("calib_s", "calibration s", ".1f"),
        ("recall", "recall@10", ".3f"),
        ("qps", "QPS", ".0f"),
        ("hand", "best hand-tuned", ""),
        ("hand_recall", "its recall@10", ".3f"),
        ("hand_qps", "its QPS", ".0f"),
        ("cpu_qps", "CPU QPS", ".0f"),
        ("hand_cpu_qps", "its CPU QPS", ".0f"),
        ("cpu_vs_hand", "CPU QPS / hand-tuned", ".2f"),
        ("qps_vs_hand", "wall QPS / hand-tuned", ".2f"),
    ]
    print(markdown_table(rows, cols))
    meta = {
        "n": data.n,
        "queries": data.n_queries,
        "sample": args.sample,
        "seen": len(seen),
        "split": args.split if args.sample == "cv" else None,
        "bound": "mean (--no-margin)" if args.no_margin else "one-sided 95 %",
        "split_seed": args.split_seed if args.sample == "cv" and args.split == "random" else None,
        "uptime_before": before,
        "uptime_during": during,
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
    }
    print(meta)
    out = args.out if args.out.endswith(".json") or not args.tiny else args.out + "_tiny"
    write_results(out, {"rows": rows, **meta, "dataset": data.describe()})


if __name__ == "__main__":
    main()
