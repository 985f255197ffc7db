"""The "candidates, then a better score" paths as query pipelines, against their special paths.

    .venv/bin/python benchmarks/bench_pipeline.py                      # -> results/pipeline.json
    .venv/bin/python benchmarks/bench_pipeline.py --n 5000 --queries 50 --rounds 1   # a quick look

Each section loads one collection through the engine (in-process, no HTTP) and answers the same queries
two ways, interleaved round by round so that load from other processes hits both alike:
- `special`: `search` with the path's own knobs (a Matryoshka funnel in `params.funnel`, a MUVERA
  field's FDE candidates and MaxSim, an int8 index's oversampled rerank);
- `pipeline`: `index.pipeline` with one prefetch (the index's candidates, `params.rescore=false`, as
  many as the special path takes) and a vector query that rescores them exactly on the same vector.

Sections: `funnel` (pypi-minilm, PCA-Matryoshka 128 dims on the native graph, 40 candidates),
`muvera` (pypi-minilm-tokens, (k_sim, d_proj, r_reps) = (2, 32, 20), HNSW over FDEs, 200 candidates),
`int8` (pypi-minilm, int8 codes on the native graph, its default oversampling), and `fusion`: RRF of two
dense searches (HNSW and int8 HNSW over the same vectors) against each search alone, the pipeline's
own cost on top of its leaves; and `own`: the pipeline's own Python per query, apart from the search
(the int8 pair's check and run against a collection whose `search` returns a fixed answer, against a
`Query` and that same call; a hot loop, so a floor: between real searches the caches are cold).
Reported: recall@10 against the exact ground truth, the share of queries whose ids are identical in
both forms, median QPS over the rounds, p50 latency, and the process CPU time per query (steadier than
wall time when other processes load the machine), single-query, one thread.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as index/runtime.py, before faiss loads

import argparse  # noqa: E402
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
sys.path.insert(2, str(Path(__file__).resolve().parents[1] / "clients" / "python"))

from common import (  # noqa: E402
    data_dir,
    environment,
    load_dataset,
    markdown_table,
    recall_at_k,
    time_single,
    write_results,
)

from index.catalog import Catalog  # noqa: E402
from index.collection import Collection  # noqa: E402
from index.contract import Query  # noqa: E402
from index.pipeline import Fusion, Stage, check, run  # noqa: E402
from index.runtime import configure_threads  # noqa: E402
from nestor_client.models import CollectionConfig, FunnelStage, SearchParams  # noqa: E402

K = 10
SECTIONS = ("funnel", "muvera", "int8", "fusion", "own")
Searcher = Callable[[int], list[Any]]


def load(
    catalog: Catalog, name: str, config: dict[str, Any], ids: list[int], vectors: Any, batch: int = 2000
) -> Collection:
    coll = catalog.create(name, CollectionConfig.model_validate(config))[0]
    assert isinstance(coll, Collection)
    for s in range(0, len(ids), batch):
        coll.upsert(ids[s : s + batch], vectors[s : s + batch])
    deadline = time.monotonic() + 1800
    while True:  # until trained (if it trains) and fully indexed
        info = coll.info()
        idx = next(iter(info.vectors.values())).index
        if idx.state == "ready" and not idx.pending and getattr(idx, "trained", True) is not False:
            return coll
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} never finished indexing: {idx}")
        time.sleep(0.2)


def special(coll: Collection, queries: Any, params: SearchParams | None) -> Searcher:
    def one(i: int) -> list[Any]:
        return [h.id for h in coll.search([Query(queries[i], limit=K, params=params, with_payload=False)])[0].hits]

    return one


def pipeline(coll: Collection, queries: Any, candidates: int, leaf: SearchParams) -> Searcher:
    def one(i: int) -> list[Any]:
        q = queries[i]  # one array in both nodes, as a caller in Python passes it (equal copies: a byte compare)
        root = Stage(q, limit=K, prefetch=[Stage(q, limit=candidates, params=leaf)])
        check(coll, root)
        return [h.id for h in run(coll, root, with_payload=False)[0]]

    return one


def compare(name: str, ways: dict[str, Searcher], nq: int, gt: Any, rounds: int) -> list[dict[str, Any]]:
    """The forms, interleaved: per round one pass of each (in reverse order every other round); QPS is the
    median over rounds."""
    qps: dict[str, list[float]] = {w: [] for w in ways}
    lat: dict[str, list[float]] = {w: [] for w in ways}
    cpu: dict[str, list[float]] = {w: [] for w in ways}  # process CPU time per query: steadier under load
    found: dict[str, list[Any]] = {}
    loads: list[float] = []
    for r in range(rounds):
        # every other round in reverse order, so that neither form always runs after the other
        for way, fn in list(ways.items())[:: -1 if r % 2 else 1]:
            c0 = time.process_time()
            timing, out = time_single(fn, nq, repeats=1, warmup=min(20, nq))
            cpu[way].append((time.process_time() - c0) * 1000 / (nq + min(20, nq)))
            qps[way].append(timing.qps)
            lat[way].append(timing.p50_ms or 0.0)
            found[way] = out
            loads.append(os.getloadavg()[0])
    first, *rest = found.values()
    same = float(np.mean([all(a == b for b in others) for a, *others in zip(first, *rest, strict=True)]))
    return [
        {
            "section": name,
            "form": way,
            "recall": recall_at_k(found[way], gt, K),
            "same_ids": same,
            "qps": statistics.median(qps[way]),
            "qps_runs": qps[way],
            "p50_ms": statistics.median(lat[way]),
            "cpu_ms": statistics.median(cpu[way]),
            "cpu_ms_min": min(cpu[way]),  # the round least disturbed by other processes
            "cpu_runs": cpu[way],
            # this form's CPU over the first form's in the same round (the two ran back to back), median
            "cpu_ratio_paired": statistics.median(a / b for a, b in zip(cpu[way], cpu[next(iter(ways))], strict=True)),
            "load_during": max(loads),
        }
        for way in ways
    ]


def funnel_section(catalog: Catalog, args: argparse.Namespace) -> list[dict[str, Any]]:
    ds = load_dataset(args.n, args.queries, args.data)
    n, dim = ds.base.shape
    red = min(128, dim // 2)
    cfg = {"dim": dim, "training": {"threshold": n}, "reduce": {"type": "matryoshka", "dim": red, "rotate": "pca"}}
    coll = load(catalog, "funnel", cfg, list(range(n)), ds.base)
    params = SearchParams(funnel=[FunnelStage(dim=red, limit=40), FunnelStage(dim=dim, limit=K)])
    leaf = SearchParams(rescore=False, funnel=[])
    ways = {"special": special(coll, ds.queries, params), "pipeline": pipeline(coll, ds.queries, 40, leaf)}
    return compare("funnel", ways, len(ds.queries), ds.gt, args.rounds)


def int8_section(catalog: Catalog, args: argparse.Namespace) -> list[dict[str, Any]]:
    ds = load_dataset(args.n, args.queries, args.data)
    n, dim = ds.base.shape
    cfg = {"dim": dim, "training": {"threshold": n}, "quantize": {"type": "int8"}}
    coll = load(catalog, "int8", cfg, list(range(n)), ds.base)
    index = coll.fields[""].state.index  # type: ignore[union-attr]
    over = float(getattr(index, "default_oversampling", 1.0))
    ways = {
        "special": special(coll, ds.queries, None),
        "pipeline": pipeline(coll, ds.queries, math.ceil(K * over), SearchParams(rescore=False)),
    }
    rows = compare("int8", ways, len(ds.queries), ds.gt, args.rounds)
    for r in rows:
        r["candidates"] = math.ceil(K * over)
    return rows


def muvera_section(catalog: Catalog, args: argparse.Namespace) -> list[dict[str, Any]]:
    folder = data_dir(args.data) / "pypi-minilm-tokens"
    tokens = np.load(folder / "tokens.npy").astype(np.float32)
    offsets = np.load(folder / "offsets.npy").astype(np.int64)
    q_tokens = np.load(folder / "q_tokens.npy").astype(np.float32)
    q_off = np.load(folder / "q_offsets.npy").astype(np.int64)
    n = min(args.mv_docs, len(offsets) - 1)
    nq = min(args.queries, len(q_off) - 1)
    docs = [tokens[offsets[i] : offsets[i + 1]] for i in range(n)]
    queries = [q_tokens[q_off[i] : q_off[i + 1]] for i in range(nq)]
    gt = np.load(folder / "gt_chamfer.npy")[:nq, :K].astype(np.int64)
    if n < len(offsets) - 1:  # a slice of the documents: exact MaxSim again, over the slice
        gt = np.array([np.argsort([-(q @ d.T).max(axis=1).sum() for d in docs], kind="stable")[:K] for q in queries])
    mv = {
        "type": "muvera",
        "k_sim": 2,
        "d_proj": min(32, tokens.shape[1]),
        "r_reps": 20,
        "oversampling": 20,
        "token_dtype": "float16",
    }
    cfg = {"dim": tokens.shape[1], "metric": "dot", "multivector": mv, "index": {"type": "hnsw"}}
    coll = load(catalog, "muvera", cfg, list(range(n)), docs, batch=500)
    ways = {
        "special": special(coll, queries, None),
        "pipeline": pipeline(coll, queries, 20 * K, SearchParams(rescore=False)),
    }
    return compare("muvera", ways, nq, gt, args.rounds)


def fusion_section(catalog: Catalog, args: argparse.Namespace) -> list[dict[str, Any]]:
    """RRF of two dense searches (the same vectors under two names, HNSW and int8 HNSW) against the sum of
    the two searches alone: the pipeline's own cost on top of its leaves."""
    ds = load_dataset(args.n, args.queries, args.data)
    n, dim = ds.base.shape
    int8 = {"dim": dim, "quantize": {"type": "int8"}, "training": {"threshold": n}}
    cfg = {"vectors": {"a": {"dim": dim}, "b": int8}}
    coll = catalog.create("fusion", CollectionConfig.model_validate(cfg))[0]
    assert isinstance(coll, Collection)
    for s in range(0, n, 2000):
        coll.upsert(list(range(s, min(s + 2000, n))), {"a": ds.base[s : s + 2000], "b": ds.base[s : s + 2000]})
    deadline = time.monotonic() + 1800
    while not all(
        v.index.state == "ready" and not v.index.pending and getattr(v.index, "trained", True) is not False
        for v in coll.info().vectors.values()
    ):
        if time.monotonic() > deadline:
            raise TimeoutError("the fusion collection never finished indexing")
        time.sleep(0.2)
    qs = ds.queries

    def leaf(using: str) -> Searcher:
        def one(i: int) -> list[Any]:
            q = Query(qs[i], limit=K, using=using, with_payload=False)
            return [h.id for h in coll.search([q])[0].hits]

        return one

    def fused(i: int) -> list[Any]:
        root = Stage(
            Fusion("rrf"), limit=K, prefetch=[Stage(qs[i], using="a", limit=K), Stage(qs[i], using="b", limit=K)]
        )
        check(coll, root)
        return [h.id for h in run(coll, root, with_payload=False)[0]]

    a, b = leaf("a"), leaf("b")

    def both(i: int) -> list[Any]:  # the two searches back to back: the leaves in the caches' state fusion sees
        b(i)
        return a(i)

    ways = {"search a": a, "search b": b, "a then b": both, "rrf(a, b)": fused}
    rows = compare("fusion", ways, len(qs), ds.gt, args.rounds)
    fu = rows[3]
    fu["p50_over_sum"] = fu["p50_ms"] / sum(r["p50_ms"] for r in rows[:2])
    fu["cpu_over_sum"] = fu["cpu_ms"] / sum(r["cpu_ms"] for r in rows[:2])
    fu["cpu_min_over_sum"] = fu["cpu_ms_min"] / sum(r["cpu_ms_min"] for r in rows[:2])
    fu["p50_over_both"] = fu["p50_ms"] / rows[2]["p50_ms"]
    fu["cpu_min_over_both"] = fu["cpu_ms_min"] / rows[2]["cpu_ms_min"]
    return rows


class _Canned:
    """A collection whose `search` answers at once with a fixed result: what is left is the caller's Python."""

    distributed = False  # a local collection's, as the one it wraps

    def __init__(self, coll: Collection, answer: Any) -> None:
        self.coll, self.answer, self.config = coll, answer, coll.config

    def vector_config(self, using: str | None) -> Any:
        return self.coll.vector_config(using)

    def search(self, queries: list[Query], *, partial: bool = False) -> list[Any]:
        return [self.answer]


def own_section(catalog: Catalog, args: argparse.Namespace) -> list[dict[str, Any]]:
    ds = load_dataset(min(args.n, 2000), args.queries, args.data)
    n, dim = ds.base.shape
    cfg = {"dim": dim, "training": {"threshold": n}, "quantize": {"type": "int8"}}
    coll = load(catalog, "own", cfg, list(range(n)), ds.base)
    canned = _Canned(coll, coll.search([Query(ds.queries[0], limit=K, with_payload=False)])[0])
    qs, leaf = ds.queries, SearchParams(rescore=False)

    def special_one(i: int) -> list[Any]:
        return [h.id for h in canned.search([Query(qs[i], limit=K, params=None, with_payload=False)])[0].hits]

    def pipeline_one(i: int) -> list[Any]:
        root = Stage(qs[i], limit=K, prefetch=[Stage(qs[i], limit=2 * K, params=leaf)])
        check(canned, root)  # type: ignore[arg-type]
        return [h.id for h in run(canned, root, with_payload=False)[0]]  # type: ignore[arg-type]

    ways = {"special": special_one, "pipeline": pipeline_one}
    best = dict.fromkeys(ways, math.inf)
    reps = max(1, 20_000 // len(qs))
    for _ in range(args.rounds * 5):
        for way, fn in ways.items():
            c0 = time.thread_time()
            for _ in range(reps):
                for i in range(len(qs)):
                    fn(i)
            best[way] = min(best[way], (time.thread_time() - c0) * 1e6 / (reps * len(qs)))
    rows = [{"section": "own", "form": w, "own_us": best[w]} for w in ways]
    rows[1]["own_over_special_us"] = best["pipeline"] - best["special"]
    return rows


def report(rows: list[dict[str, Any]]) -> str:
    cols = [
        ("section", "path", ""),
        ("form", "form", ""),
        ("recall", "recall@10", ".3f"),
        ("same_ids", "same ids", ".3f"),
        ("qps", "QPS (median)", ".0f"),
        ("p50_ms", "p50 ms", ".2f"),
        ("cpu_ms", "CPU ms/query", ".2f"),
        ("p50_over_sum", "p50 / sum of leaves", ".2f"),
        ("cpu_over_sum", "CPU / sum of leaves", ".2f"),
        ("cpu_ms_min", "CPU ms/query (best round)", ".3f"),
        ("cpu_ratio_paired", "CPU / first form's, same round (median)", ".3f"),
        ("cpu_min_over_sum", "best-round CPU / sum", ".2f"),
        ("p50_over_both", "p50 / a then b", ".2f"),
        ("cpu_min_over_both", "best-round CPU / a then b", ".2f"),
        ("load_during", "max load", ".2f"),
        ("own_us", "own Python µs/query (best)", ".2f"),
        ("own_over_special_us", "pipeline - special µs", ".2f"),
    ]
    return markdown_table(rows, cols)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50_000, help="pypi-minilm base vectors (funnel, int8)")
    ap.add_argument("--mv-docs", type=int, default=5000, help="pypi-minilm-tokens documents (muvera)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of both forms")
    ap.add_argument("--skip", default="", help=f"comma-separated sections to skip, of {','.join(SECTIONS)}")
    ap.add_argument("--data", default=None, help="benchmark data root (default: ../shared/data or $NESTOR_DATA)")
    ap.add_argument("--out", default="pipeline", help="result name under benchmarks/results, or a .json path")
    ap.add_argument("--tiny", action="store_true", help="a smoke run: 1,000 points, 250 documents, 8 queries, 1 round")
    args = ap.parse_args(argv)
    if args.tiny:
        args.n, args.mv_docs, args.queries, args.rounds = min(args.n, 1000), min(args.mv_docs, 250), 8, 1
    configure_threads()
    skip = {s for s in args.skip.split(",") if s}
    env = environment()
    env["uptime_before"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nestor-pipeline-") as tmp:
        catalog = Catalog(Path(tmp))
        try:
            sections = (("funnel", funnel_section), ("muvera", muvera_section), ("int8", int8_section))
            for name, fn in (*sections, ("fusion", fusion_section), ("own", own_section)):
                if name not in skip:
                    rows += fn(catalog, args)
        finally:
            catalog.close()
    env["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    path = write_results(args.out, {"environment": env, "commit": commit, "args": vars(args), "rows": rows})
    print(report(rows))  # noqa: T201
    print(f"\n{env['uptime_before']}\n{env['uptime_after']}\nwritten to {path}")  # noqa: T201


if __name__ == "__main__":
    main()
