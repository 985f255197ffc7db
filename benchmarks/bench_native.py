"""The native search path (issue 21): Nestor's engine against qdrant-edge and raw hnswlib, interleaved.

Three sections, each repeated ``--runs`` times (3) as a whole; every pair is measured alternately (a pass
of Nestor, then a pass of the baseline, over all queries, one thread each), so both see the same load.
The verdict of each bar takes the median of the per-run ratios, and says whether every run met it.

* ``int8``: Nestor's int8 HNSW + float32 rescore (oversampling 2, ``Collection.search``) against
  qdrant-edge's int8 HNSW + rescore (oversampling 2, ``max_search_threads=1``), both m16 efc200, over an
  ef grid shared by both sides (``INT8_EFS``, or ``--int8-efs``); the ratio is of the best QPS at
  recall@10 >= 0.95 on each side. Bar: >= 1.2x in each run.
* ``float``: Nestor's float32 HNSW through ``Collection.search`` against raw hnswlib (m16 efc200) at the
  same ef, 16 to 256. Bar: >= 0.9x at every ef.
* ``fixed``: the fixed cost per query at ef 16, in us: ``Collection.search`` minus the raw graph call
  (``_graph.search``), with the native path on and off (``native.ENABLED``).
* ``hot``: the same with hot caches: one query repeated on a 300-point collection, the fastest of 7
  timings in thread CPU time (the least noisy figure on a loaded machine).

Each ratio is given twice: of wall-clock QPS, and of CPU time per query (the process's, so a library's
own search thread counts). On a machine shared with other work the CPU time is the steadier measure:
it leaves out the time other processes took, though not what they did to the caches.

Run from the repo root::

    .venv/bin/python benchmarks/bench_native.py                        # the full data, 3 runs
    .venv/bin/python benchmarks/bench_native.py --reuse /tmp/nb        # keep the built indexes between calls
    .venv/bin/python benchmarks/bench_native.py --tiny --n 1500 --data DIR --out x.json   # smoke

Writes ``results/native.json`` (or ``--out``) with the commit, the load per section and every pass.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

BENCH = Path(__file__).resolve().parent
# --tree DIR: import the engine of another checkout (a worktree of an older commit: the "before" of the
# fixed cost), whose Collection.search then runs without a native path
_TREE = Path(sys.argv[sys.argv.index("--tree") + 1]).resolve() if "--tree" in sys.argv[:-1] else BENCH.parent
for _p in (BENCH, _TREE, _TREE / "clients" / "python"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import harness  # noqa: E402
import numpy as np  # noqa: E402
from common import RESULTS_DIR, load_dataset, recall_at_k, write_results  # noqa: E402

try:
    from index import native  # noqa: E402
except ImportError:  # --tree: an engine from before the native path
    native = None  # type: ignore[assignment]
from index.collection import Collection  # noqa: E402
from index.contract import CollectionOptions, Query  # noqa: E402
from index.dense import DenseField  # noqa: E402
from index.runtime import configure_threads  # noqa: E402
from nestor_client.models import (  # noqa: E402
    CollectionConfig,
    HnswIndexConfig,
    Int8QuantizeConfig,
    RerankConfig,
    SearchParams,
    TrainingConfig,
)

K = 10
M, EFC = 16, 200
# Steps of 4 where both sides cross recall 0.95 (ef 48-56 on pypi-minilm), so neither is charged for the
# next step of a coarse grid: with (32, 48, 64, ...) Nestor at 0.947 (ef 48) had to be read at ef 64.
INT8_EFS = [32, 36, 40, 44, 48, 52, 56, 60, 64, 80, 96, 128]
OVERSAMPLING = 2.0
OPTIONS = CollectionOptions(save_idle_seconds=1e6, save_max_seconds=1e6)
Fn = Callable[[int], Any]


def _pass(fn: Fn, n: int) -> dict[str, Any]:
    """One pass over the queries: wall QPS, CPU us per query (of the whole process: a library may search on
    a thread of its own), and the ids (for recall)."""
    out: list[Any] = [None] * n
    c0, t0 = time.process_time(), time.perf_counter()
    for i in range(n):
        out[i] = fn(i)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"qps": n / wall, "cpu_us": cpu / n * 1e6, "ids": out}


def duel(fns: dict[str, Fn], n: int, gt: Any) -> dict[str, dict[str, float]]:
    """Alternate passes of each side (twice each, after a warm-up); per side the better pass."""
    for fn in fns.values():
        _pass(fn, min(n, 50))
    best: dict[str, dict[str, Any]] = {}
    for _ in range(2):
        for name, fn in fns.items():
            p = _pass(fn, n)
            if name not in best or p["qps"] > best[name]["qps"]:
                best[name] = p
    return {
        name: {"qps": p["qps"], "cpu_us": p["cpu_us"], "recall": recall_at_k(p["ids"], gt, K)}
        for name, p in best.items()
    }


def _config(dim: int, n: int, int8: bool) -> CollectionConfig:
    extra: dict[str, Any] = (
        {"quantize": Int8QuantizeConfig(), "rerank": RerankConfig(oversampling=OVERSAMPLING)} if int8 else {}
    )
    return CollectionConfig(
        dim=dim,
        metric="dot",
        index=HnswIndexConfig(m=M, ef_construction=EFC, ef=64),
        training=TrainingConfig(threshold=max(64, n)),
        **extra,
    )


def nestor(workdir: Path, name: str, base: Any, int8: bool) -> Collection:
    """The collection, reopened from ``workdir`` if an earlier call built it with this data."""
    d = workdir / name
    if (d / "collection.json").exists():
        coll = Collection.open(name, d, OPTIONS)
        if coll.count == len(base):
            return coll
        coll.close()
        shutil.rmtree(d)
    coll = Collection.create(name, d, _config(base.shape[1], len(base), int8), OPTIONS)
    t0 = time.perf_counter()
    coll.upsert(list(range(len(base))), base)
    while True:
        idx = coll.info()["index"]
        if idx["state"] == "ready" and not idx["pending"] and idx.get("trained", True) and idx["indexed"] >= len(base):
            break
        time.sleep(0.1)
    print(f"  built {name}: {time.perf_counter() - t0:.1f}s", flush=True)
    return coll


def raw_hnswlib(workdir: Path, base: Any) -> Any:
    import hnswlib

    path = workdir / f"hnswlib-{len(base)}.bin"
    index = hnswlib.Index(space="ip", dim=base.shape[1])
    if path.exists():
        index.load_index(str(path))
    else:
        index.init_index(max_elements=len(base), M=M, ef_construction=EFC, random_seed=100)
        index.add_items(base, np.arange(len(base)))
        index.save_index(str(path))
    index.set_num_threads(1)
    return index


def qdrant_edge(workdir: Path, base: Any) -> Any:
    """qdrant-edge int8 HNSW, as benchmarks/compression_baselines.py configures it (one indexed segment)."""
    import qdrant_edge as qe

    n, d = base.shape
    shard_dir = Path(tempfile.mkdtemp(prefix="qdrant_edge_", dir=workdir)) / "shard"
    config = qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(size=d, distance=qe.Distance.Dot),
        hnsw_config=qe.HnswIndexConfig(m=M, ef_construct=EFC, full_scan_threshold=1_000),
        quantization_config=qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, always_ram=True),
        optimizers=qe.EdgeOptimizersConfig(
            default_segment_number=1,
            max_segment_size=4 * n * d * 4 // 1024 + 1024,
            indexing_threshold=1 if harness.is_tiny() else 1_000,
        ),
        max_search_threads=1,
        wal_enabled=False,
    )
    shard = qe.EdgeShard.create(str(shard_dir), config)
    for start in range(0, n, 2000):
        chunk = base[start : start + 2000]
        shard.update(
            qe.UpdateOperation.upsert_points([qe.Point(id=start + j, vector=v) for j, v in enumerate(chunk.tolist())])
        )
    shard.optimize()
    info = shard.info()
    if info.points_count != n or info.indexed_vectors_count < n:
        raise RuntimeError(f"qdrant-edge did not index every point: {info}")
    return shard


def best_at(rows: list[dict[str, float]], recall: float) -> float | None:
    ok = [r["qps"] for r in rows if r["recall"] >= recall]
    return max(ok) if ok else None


def section_int8(coll: Collection, shard: Any, qs: Any, gt: Any, efs: list[int]) -> dict[str, Any]:
    import qdrant_edge as qe

    qlist = qs.tolist()
    rows = []
    for ef in efs:
        sp = SearchParams(ef=ef)
        queries = [Query(vector=q, limit=K, params=sp, with_payload=False) for q in qs]
        params = qe.SearchParams(
            hnsw_ef=ef, quantization=qe.QuantizationSearchParams(rescore=True, oversampling=OVERSAMPLING)
        )

        def mine(i: int, queries: list[Query] = queries) -> list[Any]:
            return [h.id for h in coll.search([queries[i]])[0].hits]

        def theirs(i: int, params: Any = params) -> list[Any]:
            return [
                h.id for h in shard.query(qe.QueryRequest(limit=K, query=qe.Query.Nearest(qlist[i]), params=params))
            ]

        got = duel({"nestor": mine, "qdrant": theirs}, len(qs), gt)
        rows.append({"ef": ef, **{f"{s}_{k}": v for s, r in got.items() for k, v in r.items()}})
    target = 0.95 if not harness.is_tiny() else 0.0
    a = best_at([{"qps": r["nestor_qps"], "recall": r["nestor_recall"]} for r in rows], target)
    b = best_at([{"qps": r["qdrant_qps"], "recall": r["qdrant_recall"]} for r in rows], target)
    # the same by CPU time: queries per CPU-second
    ac = best_at([{"qps": 1e6 / r["nestor_cpu_us"], "recall": r["nestor_recall"]} for r in rows], target)
    bc = best_at([{"qps": 1e6 / r["qdrant_cpu_us"], "recall": r["qdrant_recall"]} for r in rows], target)
    return {
        "rows": rows,
        "nestor_qps": a,
        "qdrant_qps": b,
        "ratio": (a / b) if a and b else None,
        "nestor_cpu_qps": ac,
        "qdrant_cpu_qps": bc,
        "cpu_ratio": (ac / bc) if ac and bc else None,
    }


def section_float(coll: Collection, raw: Any, qs: Any, gt: Any, efs: list[int]) -> dict[str, Any]:
    mats = [np.ascontiguousarray(q[None, :]) for q in qs]
    rows = []
    for ef in efs:
        sp = SearchParams(ef=ef)
        queries = [Query(vector=q, limit=K, params=sp, with_payload=False) for q in qs]

        def engine(i: int, queries: list[Query] = queries) -> list[Any]:
            return [h.id for h in coll.search([queries[i]])[0].hits]

        def hnsw(i: int, ef: int = ef) -> list[Any]:
            raw.set_ef(ef)  # a no-op after the first call of a pass, and cheap
            return raw.knn_query(mats[i], k=K)[0][0].tolist()  # type: ignore[no-any-return]

        raw.set_ef(ef)
        got = duel({"engine": engine, "hnswlib": hnsw}, len(qs), gt)
        e, h = got["engine"], got["hnswlib"]
        rows.append(
            {
                "ef": ef,
                **{f"{s}_{k}": v for s, r in got.items() for k, v in r.items()},
                "ratio": e["qps"] / h["qps"],
                "cpu_ratio": h["cpu_us"] / e["cpu_us"],
            }
        )
    return {"rows": rows}


def section_fixed(coll: Collection, qs: Any, gt: Any, ef: int = 16) -> dict[str, Any]:
    """Collection.search minus the raw graph call, with the native path on and off."""
    field = coll.fields[""]
    assert isinstance(field, DenseField)
    graph = field.state.index._graph  # type: ignore[union-attr]
    mats = [field.prepare_one(q) for q in qs]
    sp = SearchParams(ef=ef)
    queries = [Query(vector=q, limit=K, params=sp, with_payload=False) for q in qs]

    def raw(i: int) -> list[Any]:
        return graph.search(mats[i], K, ef, None, 1)[0][0].tolist()  # type: ignore[no-any-return]

    answer = getattr(native, "answer", None)  # the one call to hits (hits7); None in an older engine

    def switch(on: bool, to_hits: bool = True) -> Fn:
        def one(i: int) -> list[Any]:
            if native is not None:
                native.ENABLED = on
            if answer is not None:
                native.answer = answer if to_hits else _no_answer
            return [h.id for h in coll.search([queries[i]])[0].hits]

        return one

    sides = {"graph": raw, "native": switch(True), "python": switch(False)}
    if answer is not None:  # the native path without its one call to hits, interleaved: before and after
        sides["native_lists"] = switch(True, to_hits=False)
    try:
        got = duel(sides, len(qs), gt)
    finally:
        if native is not None:
            native.ENABLED = True
        if answer is not None:
            native.answer = answer
    us = {name: 1e6 / r["qps"] for name, r in got.items()}
    return {
        **{f"{s}_{k}": v for s, r in got.items() for k, v in r.items()},
        **{f"fixed_{s}_us": us[s] - us["graph"] for s in sides if s != "graph"},
        **{f"fixed_{s}_cpu_us": got[s]["cpu_us"] - got["graph"]["cpu_us"] for s in sides if s != "graph"},
    }


def _no_answer(*args: Any) -> None:
    return None


def section_hot(work: Path, reps: int = 7, calls: int = 5000) -> dict[str, Any]:
    """The fixed cost with hot caches: one query repeated on a 300-point collection (so the walk is a few
    us), the fastest of `reps` timings of `calls` calls, in thread CPU time: the least noisy measure
    on a loaded machine, and what the code itself costs."""
    import timeit

    d = work / "hot"
    shutil.rmtree(d, ignore_errors=True)
    x = np.random.default_rng(0).normal(size=(300, 384)).astype(np.float32)
    cfg = CollectionConfig(dim=384, metric="dot", index=HnswIndexConfig(m=M, ef_construction=EFC, ef=64))
    coll = Collection.create("hot", d, cfg, OPTIONS)
    try:
        coll.upsert(list(range(300)), x)
        while coll.info()["index"]["pending"]:
            time.sleep(0.05)
        field = coll.fields[""]
        assert isinstance(field, DenseField)
        graph = field.state.index._graph  # type: ignore[union-attr]
        q = Query(vector=x[0], limit=K, params=SearchParams(ef=16), with_payload=False)
        mat = field.prepare_one(x[0])

        def best(fn: Callable[[], Any]) -> float:
            return min(timeit.repeat(fn, number=calls, repeat=reps, timer=time.thread_time)) / calls * 1e6

        out = {"graph_us": best(lambda: graph.search(mat, K, 16, None, 1)), "search_us": best(lambda: coll.search([q]))}
        if native is not None:
            native.ENABLED = False
            out["search_python_us"] = best(lambda: coll.search([q]))
            native.ENABLED = True
        out["fixed_us"] = out["search_us"] - out["graph_us"]
        return out
    finally:
        coll.close()
        shutil.rmtree(d, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    configure_threads()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--queries", type=int, default=None)
    ap.add_argument("--data", default=None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--reuse", default=None, help="a directory that keeps the built indexes between calls")
    ap.add_argument("--only", default="int8,float,fixed,hot")
    ap.add_argument("--out", default=str(RESULTS_DIR / "native.json"))
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--tree", default=None, help="the checkout whose engine to import (default: this one)")
    ap.add_argument("--int8-efs", default=None, help="the int8 section's ef grid, shared by both sides (e.g. 32,48,64)")
    args = ap.parse_args(argv)
    harness.set_tiny(args.tiny)
    only = set(args.only.split(","))
    data = load_dataset(n=args.n, n_queries=args.queries, data=args.data)
    qs, gt = data.queries, data.gt
    float_efs = [16, 32, 64, 128, 256] if not args.tiny else [16, 64]
    int8_efs = INT8_EFS if not args.tiny else [32]
    if args.int8_efs:
        int8_efs = [int(e) for e in args.int8_efs.split(",")]
    work = Path(args.reuse) if args.reuse else Path(tempfile.mkdtemp(prefix="nestor-native-"))
    work.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    f32 = int8 = shard = raw = None
    try:
        if only & {"float", "fixed"}:
            f32 = nestor(work, "f32", data.base, int8=False)
        if "float" in only:
            raw = raw_hnswlib(work, data.base)
        if "int8" in only:
            int8 = nestor(work, "int8", data.base, int8=True)
            shard = qdrant_edge(work, data.base)
        for r in range(args.runs):
            run: dict[str, Any] = {"run": r + 1}
            for name in ("int8", "float", "fixed", "hot"):
                if name not in only:
                    continue
                mark = harness.section_mark()
                if name == "int8":
                    assert int8 is not None
                    res = section_int8(int8, shard, qs, gt, int8_efs)
                elif name == "float":
                    assert f32 is not None
                    res = section_float(f32, raw, qs, gt, float_efs)
                elif name == "hot":
                    res = section_hot(work)
                else:
                    assert f32 is not None
                    res = section_fixed(f32, qs, gt)
                run[name] = {**res, "load": harness.section_load(mark)}
                print(f"run {r + 1} {name}: {_summary(name, res)}  load {os.getloadavg()[0]:.1f}", flush=True)
            runs.append(run)
    finally:
        for c in (f32, int8):
            if c is not None:
                c.close()
        if shard is not None:
            shard.close()
        for left in work.glob("qdrant_edge_*"):  # rebuilt by every call: never kept
            shutil.rmtree(left, ignore_errors=True)
        if not args.reuse:
            shutil.rmtree(work, ignore_errors=True)
    verdict = _verdict(runs, only, float_efs)
    for line in verdict["lines"]:
        print(line)
    meta = {
        "n": data.n,
        "queries": len(qs),
        "engine_tree": str(_TREE),
        "native_path": native is not None,
        "threads_pinned": "one search thread on every side (qdrant-edge max_search_threads=1, hnswlib num_threads=1)",
    }
    write_results(Path(args.out), {"meta": harness.run_meta(meta), "runs": runs, "verdict": verdict})
    return 0


def _summary(name: str, res: dict[str, Any]) -> str:
    if name == "int8":
        a, b = res["nestor_qps"] or 0, res["qdrant_qps"] or 0
        cpu = res["cpu_ratio"] or 0
        return f"nestor {a:,.0f} qps / qdrant {b:,.0f} = {res['ratio'] or 0:.2f}x (by CPU time {cpu:.2f}x)"
    if name == "hot":
        return "  ".join(f"{k} {v:.2f}" for k, v in res.items())
    if name == "float":
        return "  ".join(f"ef{r['ef']} {r['ratio']:.2f}x (cpu {r['cpu_ratio']:.2f}x)" for r in res["rows"])
    us = [res[k] for k in ("fixed_native_us", "fixed_python_us", "fixed_native_cpu_us", "fixed_python_cpu_us")]
    return "fixed us native {:.1f} python {:.1f} (cpu {:.1f} / {:.1f})".format(*us)


def _verdict(runs: list[dict[str, Any]], only: set[str], float_efs: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {"lines": []}
    if "int8" in only:
        ratios = [r["int8"]["ratio"] or 0.0 for r in runs]
        cpu = [r["int8"]["cpu_ratio"] or 0.0 for r in runs]
        out["int8_cpu"] = {
            "ratios": cpu,
            "median": statistics.median(cpu),
            "every_run_ge_1.2": all(x >= 1.2 for x in cpu),
        }
        out["lines"].append(
            f"int8+rescore vs qdrant-edge at recall>=0.95, by CPU time: median {statistics.median(cpu):.2f}x,"
            f" runs {' '.join(f'{x:.2f}' for x in cpu)}"
        )
        out["int8"] = {
            "ratios": ratios,
            "median": statistics.median(ratios),
            "every_run_ge_1.2": all(x >= 1.2 for x in ratios),
        }
        runs_text = " ".join(f"{x:.2f}" for x in ratios)
        med = statistics.median(ratios)
        out["lines"].append(f"int8+rescore vs qdrant-edge at recall>=0.95: median {med:.2f}x, runs {runs_text}")
    if "float" in only:
        per_ef = {
            ef: [next(row["ratio"] for row in r["float"]["rows"] if row["ef"] == ef) for r in runs] for ef in float_efs
        }
        out["float"] = {str(ef): {"ratios": v, "median": statistics.median(v)} for ef, v in per_ef.items()}
        cpu_ef = {
            ef: [next(row["cpu_ratio"] for row in r["float"]["rows"] if row["ef"] == ef) for r in runs]
            for ef in float_efs
        }
        out["float_cpu"] = {str(ef): {"ratios": v, "median": statistics.median(v)} for ef, v in cpu_ef.items()}
        for ef, v in cpu_ef.items():
            out["lines"].append(
                f"engine vs hnswlib ef={ef}, by CPU time: median {statistics.median(v):.3f}x,"
                f" runs {' '.join(f'{x:.3f}' for x in v)}"
            )
        for ef, v in per_ef.items():
            out["lines"].append(
                f"engine vs hnswlib ef={ef}: median {statistics.median(v):.3f}x, runs {' '.join(f'{x:.3f}' for x in v)}"
            )
    if "hot" in only:
        out["hot"] = {k: statistics.median([r["hot"][k] for r in runs]) for k in runs[0]["hot"] if k != "load"}
        out["lines"].append("hot caches, us (median): " + "  ".join(f"{k} {v:.2f}" for k, v in out["hot"].items()))
    if "fixed" in only:
        keys = ("fixed_native_us", "fixed_python_us", "fixed_native_cpu_us", "fixed_python_cpu_us")
        out["fixed"] = {k: statistics.median([r["fixed"][k] for r in runs]) for k in keys}
        f = out["fixed"]
        out["lines"].append(
            f"fixed cost per query at ef16 (median): native {f['fixed_native_us']:.1f} us,"
            f" python {f['fixed_python_us']:.1f} us"
            f" (thread CPU: {f['fixed_native_cpu_us']:.1f} / {f['fixed_python_cpu_us']:.1f} us)"
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
