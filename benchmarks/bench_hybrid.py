"""Hybrid retrieval quality and latency (issue 16): dense, BM25 and their fusions through Nestor's query pipeline.

    .venv/bin/python benchmarks/bench_hybrid.py            # 100k summaries, 1,000 names -> results/hybrid.json
    .venv/bin/python benchmarks/bench_hybrid.py --tiny     # 5k summaries, the names whose summary is among them

Data: `../shared/data/pypi-minilm`: the 100k summaries of `base.txt` with their MiniLM vectors (`base.npy`),
the 1,000 package names of `names.txt` with theirs (`names.npy`), and `qrels_names.npy` (the base id of each
name's one relevant summary). Quality is MRR@10 (1/rank of that summary in the top 10, else 0) and
recall@10 (the share of names that find it in the top 10), as `bench_bm25.py` and the dataset README compute
them. The README's references: exact dense 0.348, BM25 (bm25s) 0.330, RRF with k = 60 of the top 100 of
each 0.383.

One collection: a dense vector `d` (384, cosine, a flat index: exact search) and a sparse vector `bm25`
(`modifier: idf`) filled by the `bm25` encoder (k1 1.5, b 0.75, `avg_len` the corpus's mean tokens, as
bm25s computes it). Every method is a query tree run in process through `index.pipeline` (`check` + `run`,
the engine half of `POST /points/query`), its result the root's top 10:
- dense: a leaf on `d` (the name's MiniLM vector, precomputed);
- bm25: a leaf on `bm25` (the name's text encoded per query, included in its time);
- rrf k=60: `{"rrf": {"k": 60}}` over a dense and a bm25 prefetch of 100 each: the README's reference
  method, and what the hybrid `text` shorthand runs (`server/hybrid.py`);
- rrf k=2 (the pipeline's default, Qdrant's) and dbsf over the same two prefetches.
`--dense-index hnsw` gives `d` an HNSW index instead (default settings), for latency next to a fast dense
search. Latency: single queries on this thread, `REPEATS` passes with the methods interleaved per query in a
random order;
dense and bm25 leaves are also timed at limit 100 (the hybrid's parts) to compare the hybrid p50 with
the sum of its parts' p50s.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as index/runtime.py, before faiss loads

import argparse  # noqa: E402
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` when run as a script
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the repo root

from common import data_dir, environment, markdown_table, write_results  # noqa: E402

from encoders.bm25 import Bm25Config, Bm25Encoder  # noqa: E402
from index import pipeline  # noqa: E402
from index.collection import Collection  # noqa: E402
from index.contract import CollectionOptions, SparseVec  # noqa: E402
from index.runtime import configure_threads  # noqa: E402
from index.sparse import SparseField  # noqa: E402
from nestor_client.models import CollectionConfig  # noqa: E402

REPEATS = 3
BATCH = 1000
DEPTH = 100  # each side's prefetch, as the reference fusion (and the hybrid shorthand)


def load(root: Path, n: int | None, n_queries: int | None) -> dict[str, Any]:
    folder = root / "pypi-minilm"
    docs = (folder / "base.txt").read_text(encoding="utf-8").rstrip("\n").split("\n")
    names = (folder / "names.txt").read_text(encoding="utf-8").rstrip("\n").split("\n")
    qrels = np.load(folder / "qrels_names.npy")
    base = np.load(folder / "base.npy", mmap_mode="r")
    qvec = np.load(folder / "names.npy")
    n = len(docs) if n is None else min(n, len(docs))
    keep = np.flatnonzero(qrels < n)
    keep = keep[:n_queries] if n_queries else keep
    return {
        "docs": docs[:n],
        "base": np.asarray(base[:n], dtype=np.float32),
        "names": [names[i] for i in keep],
        "qvec": qvec[keep].astype(np.float32),
        "qrels": qrels[keep],
    }


def quality(found: list[list[int]], qrels: np.ndarray) -> dict[str, float]:
    rr, hit = [], []
    for row, rel in zip(found, qrels.tolist(), strict=True):
        rank = row.index(rel) + 1 if rel in row[:10] else 0
        rr.append(1.0 / rank if rank else 0.0)
        hit.append(1.0 if rank else 0.0)
    return {"mrr@10": float(np.mean(rr)), "recall@10": float(np.mean(hit))}


class Hybrid:
    """The collection, and one query tree per method."""

    def __init__(self, data: dict[str, Any], workdir: Path, dense_index: str = "flat") -> None:
        docs = data["docs"]
        probe = Bm25Encoder(Bm25Config())
        avg_len = float(np.mean([len(probe.terms(d)) for d in docs]))
        self.encoder = Bm25Encoder(Bm25Config(k1=1.5, b=0.75, avg_len=avg_len))
        cfg = CollectionConfig.model_validate(
            {
                "vectors": {"d": {"dim": data["base"].shape[1], "metric": "cosine", "index": {"type": dense_index}}},
                "sparse_vectors": {"bm25": {"modifier": "idf"}},
            }
        )
        self.coll = Collection.create("hybrid", workdir / "hybrid", cfg, CollectionOptions(save_idle_seconds=3600))
        t0 = time.perf_counter()
        sparse = self.encoder.embed_documents(docs).sparse()
        for s in range(0, len(docs), BATCH):
            part = sparse[s : s + BATCH]
            vectors = {"d": data["base"][s : s + BATCH], "bm25": [SparseVec(i, v) for i, v in part]}
            self.coll.upsert(list(range(s, s + len(part))), vectors)
        f = self.coll.fields["bm25"]
        assert isinstance(f, SparseField)
        while f.tail_entries() > f.postings.entries // 64:  # the indexer folds the tail in once writes pause
            time.sleep(0.05)
        while True:  # the dense index too (an HNSW graph builds in the background)
            idx = self.coll.info().vectors["d"].index
            if idx.state == "ready" and not idx.pending:
                break
            time.sleep(0.2)
        self.load_s = time.perf_counter() - t0
        self.avg_len = avg_len

    def sparse(self, text: str) -> SparseVec:
        idx, val = self.encoder.embed_query([text]).sparse()[0]
        return SparseVec(idx, val)

    def methods(self) -> dict[str, Callable[[np.ndarray, str], pipeline.Stage]]:
        def dense(limit: int) -> Callable[[np.ndarray, str], pipeline.Stage]:
            return lambda v, t: pipeline.Stage(query=v, using="d", limit=limit)

        def bm25(limit: int) -> Callable[[np.ndarray, str], pipeline.Stage]:
            return lambda v, t: pipeline.Stage(query=self.sparse(t), using="bm25", limit=limit)

        def fused(how: pipeline.Fusion) -> Callable[[np.ndarray, str], pipeline.Stage]:
            return lambda v, t: pipeline.Stage(query=how, limit=10, prefetch=[dense(DEPTH)(v, t), bm25(DEPTH)(v, t)])

        return {
            "dense": dense(10),
            "bm25": bm25(10),
            "rrf k=60": fused(pipeline.Fusion("rrf", 60)),
            "rrf k=2": fused(pipeline.Fusion("rrf", 2)),
            "dbsf": fused(pipeline.Fusion("dbsf")),
            "dense, limit 100": dense(DEPTH),
            "bm25, limit 100": bm25(DEPTH),
        }

    def run(self, tree: pipeline.Stage) -> list[int]:
        pipeline.check(self.coll, tree)
        hits, _ = pipeline.run(self.coll, tree, with_payload=False)
        return [int(h.id) for h in hits[:10]]  # type: ignore[arg-type]

    def close(self) -> None:
        self.coll.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--data", default=None, help="the data root holding pypi-minilm/ (default ../shared/data)")
    ap.add_argument("--n", type=int, default=None, help="the first N summaries (default: all 100k)")
    ap.add_argument("--queries", type=int, default=None, help="the first Q names (default: all)")
    ap.add_argument("--tiny", action="store_true", help="5,000 summaries and at most 200 names")
    ap.add_argument("--repeats", type=int, default=REPEATS)
    ap.add_argument("--dense-index", default="flat", choices=["flat", "hnsw"], help="flat: exact (the reference)")
    ap.add_argument("--out", default=None, help="results name under benchmarks/results/, or a .json path")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    configure_threads()
    args = parse_args(argv)
    if args.tiny:
        args.n, args.queries = args.n or 5000, args.queries or 200
    data = load(data_dir(args.data), args.n, args.queries)
    load_before = os.getloadavg()[0]
    print(f"{len(data['docs'])} documents, {len(data['names'])} queries; load {load_before:.2f}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench_hybrid_"))
    try:
        eng = Hybrid(data, workdir, args.dense_index)
        methods = eng.methods()
        found: dict[str, list[list[int]]] = {m: [] for m in methods}
        lat: dict[str, list[float]] = {m: [] for m in methods}
        cpu: dict[str, list[float]] = {m: [] for m in methods}  # this thread's CPU time: steadier under load
        loads = []
        order = list(methods)
        rng = np.random.default_rng(0)
        for rep in range(args.repeats):
            for vec, text in zip(data["qvec"], data["names"], strict=True):
                # a fresh random order per query: a method that always followed the same one would always
                # find that query's graph path warm (or cold) in the CPU caches
                for m in [order[i] for i in rng.permutation(len(order))]:
                    c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
                    got = eng.run(methods[m](vec, text))
                    lat[m].append((time.perf_counter_ns() - t0) / 1e6)
                    cpu[m].append((time.thread_time_ns() - c0) / 1e6)
                    if rep == 0:
                        found[m].append(got)
            loads.append(os.getloadavg()[0])
        rows = []
        for m in methods:
            r: dict[str, Any] = {"method": m, **quality(found[m], data["qrels"])}
            r["p50_ms"] = float(np.percentile(lat[m], 50))
            r["p99_ms"] = float(np.percentile(lat[m], 99))
            r["cpu_p50_ms"] = float(np.percentile(cpu[m], 50))
            rows.append(r)
        by = {r["method"]: r for r in rows}
        parts = by["dense, limit 100"]["p50_ms"] + by["bm25, limit 100"]["p50_ms"]
        parts10 = by["dense"]["p50_ms"] + by["bm25"]["p50_ms"]
        cpu_parts = by["dense, limit 100"]["cpu_p50_ms"] + by["bm25, limit 100"]["cpu_p50_ms"]
        for m in ("rrf k=60", "rrf k=2", "dbsf"):
            by[m]["p50_vs_parts"] = by[m]["p50_ms"] / parts
            by[m]["cpu_p50_vs_parts"] = by[m]["cpu_p50_ms"] / cpu_parts
            by[m]["p50_vs_parts_at_10"] = by[m]["p50_ms"] / parts10
        load_s, avg_len = eng.load_s, eng.avg_len
        eng.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    cols: list[Any] = [
        "method",
        ("mrr@10", "MRR@10", ".3f"),
        ("recall@10", "recall@10", ".3f"),
        ("p50_ms", "p50 ms", ".3f"),
        ("p99_ms", "p99 ms", ".3f"),
        ("p50_vs_parts", "p50 / (dense + bm25 p50, limit 100)", ".2f"),
        ("p50_vs_parts_at_10", "p50 / (dense + bm25 p50, limit 10)", ".2f"),
        ("cpu_p50_ms", "CPU p50 ms", ".3f"),
        ("cpu_p50_vs_parts", "CPU p50 / (dense + bm25, limit 100)", ".2f"),
    ]
    table = markdown_table(rows, cols)
    print(table)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    out = {
        "argv": sys.argv[1:] if argv is None else argv,
        "commit": commit.stdout.strip(),
        "documents": len(data["docs"]),
        "queries": len(data["names"]),
        "avg_len": avg_len,
        "dense_index": args.dense_index,
        "load_s": load_s,
        "load_before": load_before,
        "load_during": [min(loads), max(loads)],
        "environment": environment(),
        "results": by,
        "table": table,
    }
    write_results(args.out or ("hybrid_tiny" if args.tiny else "hybrid"), out)
    return out


if __name__ == "__main__":
    main()
