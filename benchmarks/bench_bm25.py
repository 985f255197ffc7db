"""BM25 (issue 16): Nestor's bm25 encoder plus a sparse vector with `modifier: idf`, against bm25s, in one run.

    .venv/bin/python benchmarks/bench_bm25.py                         # 100k summaries -> results/bm25.json
    .venv/bin/python benchmarks/bench_bm25.py --n 5000 --queries 100 --out bm25_5k   # a quick look

Data: `../shared/data/pypi-minilm`: `base.txt` (the 100k summaries), `names.txt` (1,000 package names, the
known-item queries) and `qrels_names.npy` (the base id of each name's summary). Quality is MRR@10 (1/rank of
the relevant summary in the top 10, else 0) and recall@10 (the share of queries that find it in the top 10),
computed like the dataset README's reference (bm25s 0.3.16, English stopwords, a Snowball stemmer: 0.330).

bm25s: `bm25s.tokenize(stopwords="en", stemmer=Stemmer("english"))`, `BM25()` with its defaults (lucene,
k1 1.5, b 0.75). Nestor: the `bm25` encoder with the same k1 and b and `avg_len` the corpus's mean length,
then a second configuration with Qdrant's defaults (k1 1.2, avg_len 256); documents upserted in batches of
1,000 through `Collection.upsert` (each batch fsynced, as every write), searched through `Collection.search`.

Speed: single queries on this thread, text in, ids out, in both engines (tokenise + score + top 10; no
payloads), `REPEATS` interleaved passes, median QPS. Build: tokenise + index, whole corpus. Bytes per
document: bm25s's score matrix (data, indices, indptr) and vocabulary; Nestor's stored CSR rows (disk)
plus its posting lists and document frequencies (RAM).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as index/runtime.py, before faiss loads

import argparse  # noqa: E402
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` when run as a script
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the repo root

from common import _version, data_dir, environment, markdown_table, write_results  # noqa: E402

from encoders.bm25 import Bm25Config, Bm25Encoder  # noqa: E402
from index.collection import Collection  # noqa: E402
from index.contract import CollectionOptions, Query, SparseVec  # noqa: E402
from index.runtime import configure_threads  # noqa: E402
from index.sparse import SparseField  # noqa: E402
from nestor_client.models import CollectionConfig  # noqa: E402

REPEATS = 3
BATCH = 1000


def load(root: Path, n: int | None, n_queries: int | None) -> tuple[list[str], list[str], np.ndarray]:
    folder = root / "pypi-minilm"
    docs = (folder / "base.txt").read_text(encoding="utf-8").rstrip("\n").split("\n")[:100_000]
    names = (folder / "names.txt").read_text(encoding="utf-8").rstrip("\n").split("\n")[:1000]
    qrels = np.load(folder / "qrels_names.npy")
    keep = np.arange(len(names)) if n is None else np.flatnonzero(qrels < n)
    keep = keep[:n_queries] if n_queries else keep
    docs = docs if n is None else docs[:n]
    return docs, [names[i] for i in keep], qrels[keep]


def quality(found: list[list[int]], qrels: np.ndarray) -> dict[str, float]:
    rr, hit = [], []
    for row, rel in zip(found, qrels.tolist(), strict=True):
        rank = row.index(rel) + 1 if rel in row[:10] else 0
        rr.append(1.0 / rank if rank else 0.0)
        hit.append(1.0 if rank else 0.0)
    return {"mrr@10": float(np.mean(rr)), "recall@10": float(np.mean(hit))}


def load_avg() -> float:
    return os.getloadavg()[0]


class Bm25s:
    name = "bm25s"

    def __init__(self, docs: list[str]) -> None:
        import bm25s
        import Stemmer

        self.bm25s = bm25s
        self.stemmer = Stemmer.Stemmer("english")
        t0 = time.perf_counter()
        tokens = bm25s.tokenize(docs, stopwords="en", stemmer=self.stemmer, show_progress=False)
        self.tokenize_s = time.perf_counter() - t0
        self.retriever = bm25s.BM25()
        t0 = time.perf_counter()
        self.retriever.index(tokens, show_progress=False)
        self.index_s = time.perf_counter() - t0
        self.avg_len = float(np.mean([len(d) for d in tokens.ids]))
        scores = self.retriever.scores
        matrix = sum(int(scores[k].nbytes) for k in ("data", "indices", "indptr"))
        vocab = sum(len(w) + 8 for w in self.retriever.vocab_dict)  # the strings plus an id each, roughly
        self.bytes = {"matrix": matrix, "vocabulary": vocab}

    def search(self, text: str) -> list[int]:
        q = self.bm25s.tokenize([text], stopwords="en", stemmer=self.stemmer, return_ids=False, show_progress=False)
        if not q[0]:
            return []
        ids, _ = self.retriever.retrieve(q, k=10, show_progress=False, n_threads=0)  # 0: on this thread
        return [int(x) for x in ids[0]]


class Bm25sScores:
    """bm25s's fastest single-query path we found: `get_scores` (its eager CSC sum) and a numpy top 10.
    `retrieve` costs about ten times more per query (its batching and result handling around the same sum)."""

    name = "bm25s (get_scores + top-k)"

    def __init__(self, ref: Bm25s) -> None:
        self.ref = ref
        self.tokenize_s, self.index_s, self.bytes = ref.tokenize_s, ref.index_s, ref.bytes

    def search(self, text: str) -> list[int]:
        ref = self.ref
        q = ref.bm25s.tokenize([text], stopwords="en", stemmer=ref.stemmer, return_ids=False, show_progress=False)
        if not q[0]:
            return []
        s = ref.retriever.get_scores(q[0])
        top = np.argpartition(-s, 10)[:10]
        top = top[np.argsort(-s[top], kind="stable")]
        return [int(x) for x in top if s[x] > 0]


class Nestor:
    def __init__(self, docs: list[str], config: Bm25Config, label: str, workdir: Path) -> None:
        self.name = label
        self.encoder = Bm25Encoder(config)
        cfg = CollectionConfig.model_validate(
            {"vectors": {"d": {"dim": 1, "index": {"type": "flat"}}}, "sparse_vectors": {"bm25": {"modifier": "idf"}}}
        )
        self.dir = workdir / label
        self.coll = Collection.create("bm25", self.dir, cfg, CollectionOptions(save_idle_seconds=3600))
        t0 = time.perf_counter()
        vecs = self.encoder.embed_documents(docs).sparse()
        self.tokenize_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for s in range(0, len(docs), BATCH):
            part = vecs[s : s + BATCH]
            dense = np.ones((len(part), 1), np.float32)
            self.coll.upsert(list(range(s, s + len(part))), {"d": dense, "bm25": [SparseVec(i, v) for i, v in part]})
        f = self.coll.fields["bm25"]
        assert isinstance(f, SparseField)
        while f.tail_entries() > f.postings.entries // 64:  # the indexer folds the tail in once writes pause
            time.sleep(0.05)
        self.index_s = time.perf_counter() - t0  # until searchable through the postings
        self.field = f
        self.strategies: dict[str, int] = {}

    @property
    def bytes(self) -> dict[str, int]:
        """RAM: the stored rows' copy (indices, values, offsets; no spare capacity), the postings (with the
        per-term bounds and the document frequencies). Disk: the CSR files."""
        f = self.field
        rows = f.store.n_entries * 8 + (f.store.n_docs + 1) * 8
        return {"rows": rows, "postings": f.postings.ram_bytes()}

    @property
    def disk_bytes(self) -> int:
        return self.field.store.disk_bytes()

    def search(self, text: str) -> list[int]:
        idx, val = self.encoder.embed_query([text]).sparse()[0]
        q = Query(vector=np.zeros(0, np.float32), using="bm25", sparse=SparseVec(idx, val), with_payload=False)
        res = self.coll.search([q])[0]
        self.strategies[res.strategy] = self.strategies.get(res.strategy, 0) + 1
        return [int(h.id) for h in res.hits]  # type: ignore[arg-type]

    def close(self) -> None:
        self.coll.close()


def run_queries(engine: Any, queries: list[str]) -> tuple[list[list[int]], float, list[float]]:
    lat: list[float] = []
    found = []
    t_all = time.perf_counter()
    for q in queries:
        t0 = time.perf_counter_ns()
        found.append(engine.search(q))
        lat.append((time.perf_counter_ns() - t0) / 1e6)
    return found, len(queries) / (time.perf_counter() - t_all), lat


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--data", default=None, help="the data root holding pypi-minilm/ (default ../shared/data)")
    ap.add_argument("--n", type=int, default=None, help="the first N summaries (default: all 100k)")
    ap.add_argument("--queries", type=int, default=None, help="the first Q names (default: all 1,000)")
    ap.add_argument("--out", default="bm25", help="results name under benchmarks/results/, or a .json path")
    ap.add_argument("--tiny", action="store_true", help="a smoke run: the first 2,000 summaries and 50 names")
    args = ap.parse_args(argv)
    if args.tiny:
        args.n, args.queries = min(args.n or 2000, 2000), min(args.queries or 50, 50)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    configure_threads()
    args = parse_args(argv)
    docs, queries, qrels = load(data_dir(args.data), args.n, args.queries)
    load_before = load_avg()
    print(f"{len(docs)} documents, {len(queries)} queries; load {load_before:.2f}", flush=True)
    ref = Bm25s(docs)
    workdir = Path(tempfile.mkdtemp(prefix="bench_bm25_"))
    engines: list[Any] = [ref, Bm25sScores(ref)]
    try:
        engines.append(Nestor(docs, Bm25Config(k1=1.5, b=0.75, avg_len=ref.avg_len), "nestor", workdir))
        engines.append(Nestor(docs, Bm25Config(), "nestor (qdrant defaults)", workdir))
        rows: dict[str, dict[str, Any]] = {}
        qps: dict[str, list[float]] = {e.name: [] for e in engines}
        lats: dict[str, list[float]] = {e.name: [] for e in engines}
        cpu: dict[str, list[float]] = {e.name: [] for e in engines}  # process CPU ms per query: steadier under load
        loads = []
        for _ in range(REPEATS):  # interleaved passes
            for e in engines:
                c0 = time.process_time()
                found, q, lat = run_queries(e, queries)
                cpu[e.name].append((time.process_time() - c0) * 1000 / len(queries))
                qps[e.name].append(q)
                lats[e.name] += lat
                rows.setdefault(e.name, {}).update(quality(found, qrels))
                loads.append(load_avg())
        for e in engines:
            n_docs = len(docs)
            r = rows[e.name]
            r["qps"] = statistics.median(qps[e.name])
            r["cpu_ms"] = statistics.median(cpu[e.name])
            r["cpu_ms_min"] = min(cpu[e.name])
            r["p50_ms"] = float(np.percentile(lats[e.name], 50))
            r["p99_ms"] = float(np.percentile(lats[e.name], 99))
            r["tokenize_s"] = e.tokenize_s
            r["index_s"] = e.index_s
            r["bytes_per_doc"] = sum(e.bytes.values()) / n_docs
            r["bytes"] = e.bytes
            r["disk_bytes_per_doc"] = getattr(e, "disk_bytes", 0) / n_docs or None
            if isinstance(e, Nestor):
                r["strategies"] = dict(e.strategies)
        best = max(rows[e.name]["qps"] for e in engines[:2])
        best_cpu = min(rows[e.name]["cpu_ms"] for e in engines[:2])
        for e in engines:
            rows[e.name]["qps_vs_bm25s"] = rows[e.name]["qps"] / best  # against bm25s's faster path
            rows[e.name]["cpu_vs_bm25s"] = best_cpu / rows[e.name]["cpu_ms"]  # the same ratio in CPU time
    finally:
        for e in engines[2:]:
            e.close()
        shutil.rmtree(workdir, ignore_errors=True)
    cols: list[Any] = [
        "engine",
        ("mrr@10", "MRR@10", ".3f"),
        ("recall@10", "recall@10", ".3f"),
        ("qps", "QPS", ".0f"),
        ("qps_vs_bm25s", "QPS vs best bm25s", ".2f"),
        ("cpu_ms", "CPU ms/query", ".3f"),
        ("cpu_vs_bm25s", "CPU speed vs best bm25s", ".2f"),
        ("p50_ms", "p50 ms", ".3f"),
        ("p99_ms", "p99 ms", ".3f"),
        ("tokenize_s", "tokenize s", ".2f"),
        ("index_s", "index s", ".2f"),
        ("bytes_per_doc", "RAM bytes/doc", ".1f"),
        ("disk_bytes_per_doc", "disk bytes/doc", ".1f"),
    ]
    table = markdown_table([{"engine": name, **r} for name, r in rows.items()], cols)
    print(table)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    out = {
        "argv": sys.argv[1:] if argv is None else argv,
        "commit": commit.stdout.strip(),
        "documents": len(docs),
        "queries": len(queries),
        "avg_len": ref.avg_len,
        "load_before": load_before,
        "load_during": [min(loads), max(loads)],
        "bm25s": _version("bm25s"),
        "environment": environment(),
        "results": rows,
        "table": table,
    }
    write_results(args.out, out)
    return out


if __name__ == "__main__":
    main()
