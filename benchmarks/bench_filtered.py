"""Filtered search (issue 14): Nestor against qdrant-edge, in process, one search thread each, in one run.

    .venv/bin/python benchmarks/bench_filtered.py                          # 100k points -> results/filtered.json
    .venv/bin/python benchmarks/bench_filtered.py --scale 1m               # 1M points -> results/filtered_1m.json
    .venv/bin/python benchmarks/bench_filtered.py --scale 300k             # 300k: when 1M builds do not fit
    .venv/bin/python benchmarks/bench_filtered.py --n 20000 --queries 200 --out filtered_20k   # a quick look

Data: `../shared/data/pypi-minilm` (384-d MiniLM, cosine), the first `--n` points and `--queries` queries.
`--scale 1m` makes ten copies of those points (1M from the 100k; 10 x `--n` with `--n`; `300k` three), each vector plus
seeded gaussian noise of norm `NOISE`, renormalised (`scale_data.scaled`, shared with bench_scale.py);
payloads are drawn for every point the same way, the ground truth recomputed exactly. A results file gets a
`.md` twin holding the printed summary.

Payloads, seeded: `tenant` (keyword, 1,000 values), `cat` (integer, 10 values), `year` (integer, 25 values),
`tags` (1-4 distinct keywords out of 250, so one tag is on ~1 % of the points) and `zone` ("far" on the
10 % of points whose best inner product with any of the 1,000 queries of the file is lowest, else "near":
the matches of `zone == far` lie away from every query). Both engines index all five keys.

Both engines get the same vectors and HNSW m 16 / ef_construction `--ef-construction` (one segment on the
qdrant side); index build threads `--build-threads` on both sides. Searches run one query at a time on this
thread: Nestor answers a single query on the calling thread; qdrant-edge's search pool is
`max_search_threads=1`; OpenMP/OpenBLAS/MKL are pinned to 1.

For every filter (and unfiltered): the exact filtered top-10 (numpy over the matching points), then for
each engine the smallest ef (Nestor `SearchParams.ef`, qdrant `SearchParams.hnsw_ef`) in `EFS` with
recall@10 >= 0.95, swept in lockstep (a Nestor pass, then a qdrant pass); at that ef, `REPEATS` timed
passes per engine, alternating, report QPS (median of passes), p50 and p99 latency (pooled), and Nestor's
strategy. The load average is sampled before each section and after every pass. Then `count` with each
indexed filter, scroll through all points in pages of 1,000 against `get` of all ids in pages of 1,000,
and the payload indexes' RAM per field.
"""

from __future__ import annotations

import os

# Before numpy and faiss load: one thread in every native pool (searches are compared on one thread each).
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as index/runtime.py

import argparse  # noqa: E402
import inspect
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` when run as a script
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the repo root

import harness  # noqa: E402
from common import (  # noqa: E402
    DEFAULT_DATASET,
    Dataset,
    _version,
    data_dir,
    environment,
    load_dataset,
    markdown_table,
    write_results,
)
from scale_data import NOISE, scaled  # noqa: E402  - the 1M generator, shared with bench_scale.py

from index.collection import Collection  # noqa: E402
from index.contract import CollectionOptions, Query  # noqa: E402
from index.runtime import configure_threads  # noqa: E402
from nestor_client.models import (  # noqa: E402
    CollectionConfig,
    Filter,
    HnswIndexConfig,
    PayloadIndexParams,
    PayloadSchemaType,
    SearchParams,
)

try:
    import qdrant_edge as qe
except ImportError:  # the bench extra is not installed: Nestor alone
    qe = None  # type: ignore[assignment]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

K = 10
TARGET = 0.95  # recall@10 at which engines are compared
EFS = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048]
REPEATS = 3  # timed passes per engine at the chosen ef
COPIES = {"100k": 1, "300k": 3, "1m": 10}
N_TENANTS, N_CATS, N_YEARS, N_TAGS = 1000, 10, 25, 250
FAR_SHARE = 0.10
PAGE = 1000  # scroll and get page size
VALUE_GRAPH_KEYS = ("cat", "year", "zone")  # --value-graphs: the keys whose mid-sized values get graphs

SCHEMA: dict[str, PayloadSchemaType] = {
    "tenant": PayloadSchemaType.keyword,
    "cat": PayloadSchemaType.integer,
    "year": PayloadSchemaType.integer,
    "tags": PayloadSchemaType.keyword,
    "zone": PayloadSchemaType.keyword,
}

# label -> filter in Nestor's (Qdrant's) JSON shape; `must` of match.value / match.any / range only, which
# `Filter.model_validate` (Nestor), `qdrant_filter` and `mask_of` (the ground truth) all read.
FILTERS: dict[str, dict[str, Any]] = {
    "0.1 %: tenant == t7": {"must": [{"key": "tenant", "match": {"value": "t7"}}]},
    "1 %: tags has g7": {"must": [{"key": "tags", "match": {"value": "g7"}}]},
    "10 %: cat == 3": {"must": [{"key": "cat", "match": {"value": 3}}]},
    "50 %: year >= 2012": {"must": [{"key": "year", "range": {"gte": 2012}}]},
    "and: cat == 3, year >= 2012": {
        "must": [{"key": "cat", "match": {"value": 3}}, {"key": "year", "range": {"gte": 2012}}]
    },
    "any of 5 tenants": {"must": [{"key": "tenant", "match": {"any": ["t1", "t2", "t3", "t4", "t5"]}}]},
    "far from queries: zone == far": {"must": [{"key": "zone", "match": {"value": "far"}}]},
}
UNFILTERED = "none (unfiltered)"


# ------------------------------------------------------------------------------------------------ data


def best_query_score(base: F32, queries: F32, chunk: int = 50_000) -> F32:
    """Each point's highest inner product with any query."""
    out = np.empty(base.shape[0], dtype=np.float32)
    for s in range(0, base.shape[0], chunk):
        out[s : s + chunk] = (queries @ base[s : s + chunk].T).max(axis=0)
    return out


def payload_columns(base: F32, all_queries: F32, seed: int = 7) -> dict[str, np.ndarray]:
    """Seeded payload columns; keyword columns as numpy strings, `tags` as an [n, 4] array padded with ""."""
    n = base.shape[0]
    rng = np.random.default_rng(seed)
    n_tags: I64 = rng.integers(1, 5, size=(n,))
    tag_ids = np.concatenate(  # 4 distinct tags a point (the first n_tags kept), in chunks to bound memory
        [np.argpartition(rng.random((min(n - s, 100_000), N_TAGS)), 4, axis=1)[:, :4] for s in range(0, n, 100_000)]
    )
    tags = np.char.add("g", tag_ids.astype(str))
    tags[np.arange(4)[None, :] >= n_tags[:, None]] = ""
    far = best_query_score(base, all_queries)
    zone = np.where(far <= np.quantile(far, FAR_SHARE), "far", "near")
    return {
        "tenant": np.char.add("t", rng.integers(N_TENANTS, size=(n,)).astype(str)),
        "cat": rng.integers(N_CATS, size=(n,)),
        "year": 2000 + rng.integers(N_YEARS, size=(n,)),
        "tags": tags,
        "zone": zone,
    }


def payload_rows(cols: dict[str, np.ndarray], start: int, stop: int) -> list[dict[str, Any] | None]:
    t, c, y, g, z = (cols[k][start:stop].tolist() for k in ("tenant", "cat", "year", "tags", "zone"))
    return [
        {"tenant": t[i], "cat": c[i], "year": y[i], "tags": [x for x in g[i] if x], "zone": z[i]}
        for i in range(stop - start)
    ]


def mask_of(spec: dict[str, Any], cols: dict[str, np.ndarray]) -> npt.NDArray[np.bool_]:
    """Evaluate a `must` filter over the payload columns (an array column matches when any element does)."""
    mask = np.ones(len(cols["cat"]), dtype=bool)
    for cond in spec["must"]:
        col = cols[cond["key"]]
        if "match" in cond and "value" in cond["match"]:
            hit = col == cond["match"]["value"]
        elif "match" in cond:
            hit = np.isin(col, cond["match"]["any"])
        else:
            r = cond["range"]
            hit = np.ones(col.shape, dtype=bool)
            for op, fn in (("gte", np.greater_equal), ("gt", np.greater), ("lte", np.less_equal), ("lt", np.less)):
                if op in r:
                    hit &= fn(col, r[op])
        mask &= hit.any(axis=1) if hit.ndim == 2 else hit
    return mask


@dataclass
class Truth:
    """The exact filtered top K of every query: ids best first (padded with -1), the K-th score, the mean score."""

    ids: I64
    kth: F32
    mean_score: float


def filtered_truth(base: F32, queries: F32, masks: dict[str, Any], chunk: int = 50_000) -> dict[str, Truth]:
    """Exact top K by inner product among each mask's points (None: all). One pass over the base in chunks."""
    nq = queries.shape[0]
    best = {name: (np.full((nq, 0), -np.inf, np.float32), np.empty((nq, 0), np.int64)) for name in masks}
    for s in range(0, base.shape[0], chunk):
        scores = queries @ base[s : s + chunk].T
        for name, mask in masks.items():
            cols = np.arange(scores.shape[1]) if mask is None else np.flatnonzero(mask[s : s + chunk])
            sc = np.concatenate([best[name][0], scores[:, cols]], axis=1)
            ids = np.concatenate([best[name][1], np.broadcast_to(cols + s, (nq, len(cols)))], axis=1)
            if sc.shape[1] > K:
                part = np.argpartition(-sc, K - 1, axis=1)[:, :K]
                sc, ids = np.take_along_axis(sc, part, axis=1), np.take_along_axis(ids, part, axis=1)
            best[name] = (sc, ids)
    out = {}
    for name, (sc, ids) in best.items():
        order = np.argsort(-sc, axis=1, kind="stable")
        top = np.take_along_axis(ids, order, axis=1)
        # a filter no point matches (tiny data): nothing to find, and no k-th score
        kth = np.take_along_axis(sc, order, axis=1)[:, -1] if sc.shape[1] else np.full(len(sc), -np.inf, np.float32)
        out[name] = Truth(np.pad(top, ((0, 0), (0, K - top.shape[1])), constant_values=-1), kth, float(sc.mean()))
    return out


def recall(found: list[list[int]], truth: Truth, base: F32, queries: F32, mask: Any) -> float:
    """Recall@K: the share of the exact top K found, a point tied with the K-th counting as found (the data
    has duplicate vectors). A found point must match the filter (`mask`; None: any point)."""
    ids = np.full((len(found), K), -1, dtype=np.int64)
    for i, row in enumerate(found):
        ids[i, : min(K, len(row))] = row[:K]
    valid = ids >= 0
    safe = np.where(valid, ids, 0)
    scores = np.einsum("qkd,qd->qk", base[safe], queries)
    ok = valid & (scores >= truth.kth[:, None] - 1e-6)
    if mask is not None:
        ok &= mask[safe]
    want = (truth.ids >= 0).sum(axis=1)
    return float(np.minimum(ok.sum(axis=1), want).sum() / max(int(want.sum()), 1))


# --------------------------------------------------------------------------------------------- engines


class Engine:
    """One side of the comparison: build it, then run prepared single queries."""

    name: str

    def prepare(self, queries: F32, spec: dict[str, Any] | None, ef: int) -> list[Any]:
        raise NotImplementedError

    def run(self, prepared: Any) -> list[int]:
        raise NotImplementedError

    def detail(self) -> str | None:
        """What the last query did (Nestor's strategy), if the engine says."""
        return None

    def close(self) -> None:
        raise NotImplementedError


class NestorEngine(Engine):
    name = "nestor"

    def __init__(
        self, folder: Path, dim: int, ef_construction: int, build_threads: int, value_graphs: bool = False
    ) -> None:
        self.value_graphs = value_graphs
        config = CollectionConfig(
            dim=dim, metric="cosine", index=HnswIndexConfig(m=16, ef_construction=ef_construction)
        )
        self.coll = Collection.create("bench", folder, config, CollectionOptions(index_threads=build_threads))
        self._strategy: str | None = None

    def load(self, base: F32, cols: dict[str, np.ndarray], batch: int = 5000) -> dict[str, float]:
        """Payload indexes, then the points with indexing paused, then the HNSW build: seconds of each."""
        t0 = time.perf_counter()
        for key, schema in SCHEMA.items():
            graphs = self.value_graphs and key in VALUE_GRAPH_KEYS
            spec = PayloadIndexParams(type=schema, value_graphs=True) if graphs else schema
            self.coll.create_payload_index(key, spec)
        self.coll.pause_indexing()
        for i in range(0, base.shape[0], batch):
            stop = min(base.shape[0], i + batch)
            self.coll.upsert(list(range(i, stop)), base[i:stop], payload_rows(cols, i, stop))
        t1 = time.perf_counter()
        self.coll.resume_indexing()
        deadline = time.monotonic() + 24 * 3600
        while (idx := self.coll.info().index).state != "ready" or idx.pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"index not ready: {idx}")
            time.sleep(0.2)
        t2 = time.perf_counter()
        while self.coll.tenants.step():  # the value graphs (index/tenants.py), after the main graph
            pass
        return {"load_s": t1 - t0, "index_s": t2 - t1, "value_graphs_s": time.perf_counter() - t2}

    def prepare(self, queries: F32, spec: dict[str, Any] | None, ef: int) -> list[Any]:
        flt = None if spec is None else Filter.model_validate(spec)
        params = SearchParams(ef=ef)
        return [Query(vector=q, limit=K, filter=flt, params=params, with_payload=False) for q in queries]

    def run(self, prepared: Any) -> list[int]:
        res = self.coll.search([prepared])[0]
        self._strategy = res.strategy
        return [int(h.id) for h in res.hits]

    def detail(self) -> str | None:
        return self._strategy

    def count(self, spec: dict[str, Any]) -> Callable[[], int]:
        flt = Filter.model_validate(spec)
        return lambda: self.coll.count_where(flt)

    def close(self) -> None:
        self.coll.close()


def qdrant_filter(spec: dict[str, Any]) -> Any:
    conds: list[Any] = []
    for c in spec["must"]:
        if "range" in c:
            conds.append(qe.FieldCondition(key=c["key"], range=qe.RangeFloat(**c["range"])))
        elif "any" in c["match"]:
            conds.append(qe.FieldCondition(key=c["key"], match=qe.MatchAny(any=c["match"]["any"])))
        else:
            conds.append(qe.FieldCondition(key=c["key"], match=qe.MatchValue(c["match"]["value"])))
    return qe.Filter(must=conds)


class QdrantEngine(Engine):
    """qdrant-edge: one EdgeShard, everything in one HNSW segment, a search pool of one thread."""

    name = "qdrant-edge"

    def __init__(self, folder: Path, n: int, dim: int, ef_construction: int, build_threads: int) -> None:
        hnsw = qe.HnswIndexConfig(
            m=16,
            ef_construct=ef_construction,
            full_scan_threshold=10_000,  # KB, Qdrant's default: its planner's exact-vs-graph cut-over
            max_indexing_threads=build_threads,
        )
        segment_kb = n * dim * 4 // 1024 * 2 + 1024  # room for every vector: the optimizer makes one segment
        optimizers = qe.EdgeOptimizersConfig(
            default_segment_number=1,
            max_segment_size=segment_kb,
            indexing_threshold=1,  # KB: build the HNSW at any size (the default leaves < ~6,600 points plain)
        )
        self.config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine),
            hnsw_config=hnsw,
            optimizers=optimizers,
            max_search_threads=1,
            wal_enabled=False,
        )
        self.shard = qe.EdgeShard.create(str(folder), self.config)

    def load(self, base: F32, cols: dict[str, np.ndarray], batch: int = 5000) -> dict[str, float]:
        """Payload indexes first (so the optimizer builds Qdrant's per-value payload links), the points
        (made into `Point`s from lists here: part of the load time), then `optimize()`, which builds the
        HNSW segment: seconds of each."""
        t0 = time.perf_counter()
        self.upsert_all(base, cols, batch)
        t1 = time.perf_counter()
        self.shard.optimize()
        self.shard.flush()
        return {"load_s": t1 - t0, "index_s": time.perf_counter() - t1}

    def upsert_all(self, base: F32, cols: dict[str, np.ndarray], batch: int = 5000) -> None:
        """The payload indexes, then the points in batches (not optimized: no HNSW segment yet)."""
        for key, schema in SCHEMA.items():
            self.shard.update(qe.UpdateOperation.create_field_index(key, getattr(qe.PayloadSchemaType, schema.title())))
        for i in range(0, base.shape[0], batch):
            stop = min(base.shape[0], i + batch)
            rows = payload_rows(cols, i, stop)
            pts = [qe.Point(j, base[j].tolist(), rows[j - i]) for j in range(i, stop)]
            self.shard.update(qe.UpdateOperation.upsert_points(pts))

    def prepare(self, queries: F32, spec: dict[str, Any] | None, ef: int) -> list[Any]:
        flt = None if spec is None else qdrant_filter(spec)
        params = qe.SearchParams(hnsw_ef=ef)
        return [
            qe.QueryRequest(limit=K, query=qe.Query.Nearest(q.tolist()), filter=flt, params=params, with_payload=False)
            for q in queries
        ]

    def run(self, prepared: Any) -> list[int]:
        return [int(p.id) for p in self.shard.query(prepared)]

    def count(self, spec: dict[str, Any]) -> Callable[[], int]:
        req = qe.CountRequest(exact=True, filter=qdrant_filter(spec))
        return lambda: self.shard.count(req)

    def close(self) -> None:
        self.shard.close()


# ----------------------------------------------------------------------------------------- measuring


@dataclass
class Side:
    """One engine's state in a section: the sweep so far, then the timed passes."""

    engine: Engine
    ef: int | None = None
    recall: float = 0.0
    reached: bool = False
    sweep: list[tuple[int, float]] = field(default_factory=list)
    lat_ns: list[int] = field(default_factory=list)
    qps_runs: list[float] = field(default_factory=list)
    strategies: Counter[str] = field(default_factory=Counter)


def one_pass(
    engine: Engine, prepared: list[Any], strategies: Counter[str] | None = None
) -> tuple[list[list[int]], list[int], float]:
    """Every query once, in order: the ids found, the latencies (ns) and the pass's QPS."""
    found: list[list[int]] = []
    lat: list[int] = []
    clock = time.perf_counter_ns
    t_pass = clock()
    for p in prepared:
        t = clock()
        found.append(engine.run(p))
        lat.append(clock() - t)
        if strategies is not None and (s := engine.detail()) is not None:
            strategies[s] += 1
    return found, lat, len(prepared) / ((clock() - t_pass) / 1e9)


def load1() -> float:
    return os.getloadavg()[0]


def section(
    engines: list[Engine], queries: F32, spec: dict[str, Any] | None, score: Callable[[list[list[int]]], float]
) -> dict[str, Any]:
    """Sweep ef in lockstep to each engine's smallest with recall >= TARGET (`score`: the recall of a pass's
    results), then time there, alternating; the recall reported is the last timed pass's."""
    sides = [Side(e) for e in engines]
    load_before = os.getloadavg()
    during: list[float] = []
    for ef in EFS:
        todo = [s for s in sides if not s.reached]
        if not todo:
            break
        for s in todo:
            found, _, _ = one_pass(s.engine, s.engine.prepare(queries, spec, ef))
            s.ef, s.recall = ef, score(found)
            s.sweep.append((ef, s.recall))
            s.reached = s.recall >= TARGET
            during.append(load1())
    prepared = {id(s): s.engine.prepare(queries, spec, s.ef or EFS[-1]) for s in sides}
    for _ in range(1 if harness.is_tiny() else REPEATS):
        for s in sides:
            found, lat, qps = one_pass(s.engine, prepared[id(s)], s.strategies)
            s.recall = score(found)
            s.lat_ns += lat
            s.qps_runs.append(qps)
            during.append(load1())
    out: dict[str, Any] = {"load_before": list(load_before), "load_during_1min": during}
    for s in sides:
        ms = np.asarray(s.lat_ns, dtype=np.float64) / 1e6
        out[s.engine.name] = {
            "ef": s.ef,
            "recall": s.recall,
            "reached": s.reached,
            "qps": statistics.median(s.qps_runs),
            "qps_runs": s.qps_runs,
            "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)),
            "sweep": s.sweep,
            "strategies": dict(s.strategies.most_common()),
        }
    return out


def p50_calls(fn: Callable[[], Any], times: int) -> float:
    lat = []
    for _ in range(times):
        t = time.perf_counter_ns()
        fn()
        lat.append(time.perf_counter_ns() - t)
    return float(np.median(lat)) / 1e6


def scroll_all(coll: Any, page: int) -> int:
    """Page through every point with `Collection.scroll` (index/scroll.py: `scroll(flt, *, limit, offset,
    with_payload, with_vector)` returning (hits, next offset)), payloads on as `get` has them. An object
    with `points`/`hits` and `next_page_offset`, or the filter named `filter`, work too."""
    scroll = coll.scroll
    names = inspect.signature(scroll).parameters
    kw: dict[str, Any] = {"limit": page}
    kw |= {
        k: v for k, v in (("flt", None), ("filter", None), ("with_payload", True), ("with_vector", False)) if k in names
    }
    seen, offset = 0, None
    while True:
        res = scroll(offset=offset, **kw)
        if isinstance(res, tuple):
            hits, offset = res
        else:
            hits = getattr(res, "points", None) or getattr(res, "hits", None) or []
            offset = res.next_page_offset
        seen += len(hits)
        if offset is None or not hits:
            return seen


def get_all(coll: Collection, n: int, page: int) -> int:
    seen = 0
    for i in range(0, n, page):
        seen += len(coll.get(list(range(i, min(n, i + page))), with_payload=True))
    return seen


def best_of(fn: Callable[[], int], times: int = 3) -> tuple[float, int]:
    """Median wall time (s) of `times` calls, and what the last call returned."""
    runs, got = [], 0
    for _ in range(times):
        t = time.perf_counter()
        got = fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs), got


# ------------------------------------------------------------------------------------------------ main


def git_commit() -> str:
    """The short commit, ``+dirty`` when tracked files differ (the full hash is in ``meta``)."""
    head = harness.commit()
    return (head["commit"] or "unknown")[:7] + ("+dirty" if head["dirty"] else "")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--data", default=None, help="the data root holding pypi-minilm/ (default ../shared/data)")
    ap.add_argument("--n", type=int, default=None, help="use the first N base points (default: all 100k)")
    ap.add_argument("--scale", choices=sorted(COPIES), default="100k", help="300k, 1m: 3, 10 noisy copies")
    ap.add_argument("--queries", type=int, default=1000, help="use the first Q queries (default: all 1,000)")
    ap.add_argument("--out", default=None, help="results name under benchmarks/results/, or a .json path")
    ap.add_argument("--ef-construction", type=int, default=100, help="HNSW build beam, both engines (m is 16)")
    ap.add_argument("--build-threads", type=int, default=os.cpu_count() or 1, help="index build threads, both")
    ap.add_argument(
        "--value-graphs",
        action="store_true",
        help=f"Nestor's value_graphs on {', '.join(VALUE_GRAPH_KEYS)} (what qdrant-edge's payload_m links do)",
    )
    ap.add_argument("--no-qdrant", action="store_true", help="Nestor alone (also when qdrant-edge is missing)")
    ap.add_argument("--tiny", action="store_true", help="a few hundred points, 5 queries, 1 pass: a smoke run")
    args = ap.parse_args(argv)
    harness.set_tiny(args.tiny)
    if args.tiny:
        args.queries, args.build_threads = min(args.queries, 5), 1
    return args


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    configure_threads()
    commit = git_commit()
    env = environment()  # the load average at the start
    # Tiny: 2,000 points, so that every filter of the suite still matches something.
    ds: Dataset = load_dataset(n=args.n, n_queries=args.queries, data=args.data, gt_depth=K, tiny_n=2000)
    all_queries = np.load(data_dir(args.data) / DEFAULT_DATASET / "queries.npy").astype(np.float32)  # for `zone`
    base = scaled(ds.base, COPIES[args.scale])
    n, dim = base.shape
    queries = ds.queries
    use_qdrant = qe is not None and not args.no_qdrant
    if qe is None and not args.no_qdrant:
        log("qdrant-edge is not installed (pip install -e '.[bench]'): measuring Nestor alone")
    threads = {
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
        "nestor_search": "one query per call, on the calling thread",
        "qdrant_max_search_threads": 1 if use_qdrant else None,
        "build_threads": args.build_threads,
        "value_graphs": list(VALUE_GRAPH_KEYS) if args.value_graphs else [],
    }
    log(f"commit {commit}; {n:,} points ({args.scale}), {len(queries)} queries, dim {dim}; threads {threads}")

    t = time.perf_counter()
    cols = payload_columns(base, all_queries)
    masks: dict[str, Any] = {UNFILTERED: None} | {name: mask_of(spec, cols) for name, spec in FILTERS.items()}
    truth = filtered_truth(base, queries, masks)
    truth_s = time.perf_counter() - t
    log(f"payloads and exact filtered ground truth: {truth_s:.1f} s")

    tmp = Path(tempfile.mkdtemp(prefix="nestor-bench-filtered-"))
    engines: list[Engine] = []
    results: dict[str, Any] = {}
    try:
        nestor = NestorEngine(tmp / "nestor", dim, args.ef_construction, args.build_threads, args.value_graphs)
        engines.append(nestor)
        build = {"nestor": nestor.load(base, cols)}
        log(
            f"nestor: loaded in {build['nestor']['load_s']:.1f} s, indexed in {build['nestor']['index_s']:.1f} s"
            f" + value graphs {build['nestor'].get('value_graphs_s', 0.0):.1f} s"
        )
        qdrant: QdrantEngine | None = None
        if use_qdrant:
            qdrant = QdrantEngine(tmp / "qdrant", n, dim, args.ef_construction, args.build_threads)
            engines.append(qdrant)
            build["qdrant-edge"] = qdrant.load(base, cols)
            info = qdrant.shard.info()
            log(
                f"qdrant-edge: loaded in {build['qdrant-edge']['load_s']:.1f} s, "
                f"optimized in {build['qdrant-edge']['index_s']:.1f} s "
                f"({info.segments_count} segments, {info.indexed_vectors_count:,} of {info.points_count:,} indexed)"
            )

        searches: dict[str, Any] = {}
        for name in masks:
            spec = FILTERS.get(name)
            tr, mask = truth[name], masks[name]
            score = partial(recall, truth=tr, base=base, queries=queries, mask=mask)
            searches[name] = section(engines, queries, spec, score)
            searches[name]["matching"] = float(masks[name].mean()) if masks[name] is not None else 1.0
            searches[name]["truth_mean_score"] = tr.mean_score
            row = searches[name]
            log(
                f"{name}: "
                + "; ".join(
                    f"{e.name} ef {row[e.name]['ef']} recall {row[e.name]['recall']:.3f} "
                    f"p50 {row[e.name]['p50_ms']:.3f} ms"
                    for e in engines
                )
            )

        counts: dict[str, Any] = {}
        reps = max(50, len(queries))
        for name, spec in FILTERS.items():
            load_before = os.getloadavg()
            counts[name] = {"load_before": list(load_before), "nestor_p50_ms": p50_calls(nestor.count(spec), reps)}
            if qdrant is not None:
                counts[name]["qdrant_p50_ms"] = p50_calls(qdrant.count(spec), reps)
            counts[name]["load_during_1min"] = load1()

        scroll: dict[str, Any] = {"load_before": list(os.getloadavg())}
        get_s, got = best_of(lambda: get_all(nestor.coll, n, PAGE))
        scroll |= {"get_s": get_s, "get_points": got}
        if hasattr(nestor.coll, "scroll"):
            try:
                scroll_s, seen = best_of(lambda: scroll_all(nestor.coll, PAGE))
                scroll |= {"scroll_s": scroll_s, "scroll_points": seen}
            except Exception as exc:  # a shape scroll_all does not know yet: say so, keep the rest of the run
                scroll["error"] = f"Collection.scroll failed: {exc!r} (adapt scroll_all)"
                log(scroll["error"])
        else:
            scroll["skipped"] = "Collection.scroll is not there yet: scroll timing skipped (get timed alone)"
            log(scroll["skipped"])
        scroll["load_during_1min"] = load1()

        memory = {
            k: {"schema": v.data_type.value, "points": v.points, "ram": v.ram, "bytes_per_point": v.ram / n}
            for k, v in nestor.coll.info().payload_schema.items()
        }
    finally:
        for e in engines:
            e.close()
        shutil.rmtree(tmp, ignore_errors=True)

    results = {
        "commit": commit,
        "n": n,
        "scale": args.scale,
        "queries": len(queries),
        "dim": dim,
        "m": 16,
        "ef_construction": args.ef_construction,
        "threads": threads,
        "qdrant_edge_version": _version("qdrant-edge-py"),
        "noise": NOISE if COPIES[args.scale] > 1 else None,
        "efs": EFS,
        "environment": env,
        "ground_truth_s": truth_s,
        "build_s": build,
        "search": searches,
        "count": counts,
        "scroll": scroll,
        "payload_index_memory": memory,
        "meta": {
            "threads_pinned": threads,
            "skipped": {} if use_qdrant else {"qdrant-edge": "not installed" if qe is None else "--no-qdrant"},
        },
    }
    text = report(results, [e.name for e in engines])
    print(text)
    out = args.out or (
        "filtered" + ("" if args.scale == "100k" else f"_{args.scale}") + ("" if args.n is None else f"_n{n}")
    )
    path = write_results(out, results)
    path.with_suffix(".md").write_text(text + "\n")
    print(f"\nresults: {path} and {path.with_suffix('.md').name}")
    return results


def report(r: dict[str, Any], names: list[str]) -> str:
    """The markdown summary: the search table, count, scroll and get, payload-index memory, the bars."""
    base = r["search"][UNFILTERED]
    rows = []
    for name, s in r["search"].items():
        row: dict[str, Any] = {
            "filter": name,
            "matching": f"{s['matching']:.2%}",
            "top-10 score": s["truth_mean_score"],
        }
        for e in names:
            tag = "N" if e == "nestor" else "Q"
            row |= {
                f"{tag} ef": s[e]["ef"] if s[e]["reached"] else f"{s[e]['ef']} (<{TARGET})",
                f"{tag} recall": s[e]["recall"],
                f"{tag} p50": s[e]["p50_ms"],
                f"{tag} p99": s[e]["p99_ms"],
                f"{tag} QPS": s[e]["qps"],
            }
        strategies = s["nestor"]["strategies"]
        row["N strategy"] = ", ".join(f"{k} x{v}" if len(strategies) > 1 else k for k, v in strategies.items())
        row["N p50 / unfiltered"] = s["nestor"]["p50_ms"] / base["nestor"]["p50_ms"]
        if "qdrant-edge" in names:
            row["N QPS / Q QPS"] = s["nestor"]["qps"] / s["qdrant-edge"]["qps"]
        row["load before / max during"] = f"{s['load_before'][0]:.2f} / {max(s['load_during_1min']):.2f}"
        rows.append(row)
    fmt = {
        "score": ".3f",
        "recall": ".3f",
        "p50": ".3f",
        "p99": ".3f",
        "QPS": ",.0f",
        "p50 / unfiltered": ".2f",
        "QPS / Q QPS": ".2f",
    }
    cols = [(c, c, fmt.get(c.split(" ", 1)[-1], "")) for c in rows[0]]
    build = ", ".join(f"{k} load {v['load_s']:.1f} s + index {v['index_s']:.1f} s" for k, v in r["build_s"].items())
    out = [
        f"## Filtered search, {r['n']:,} points (scale {r['scale']}), {r['queries']} queries, commit {r['commit']}",
        "",
        f"HNSW m 16, ef_construction {r['ef_construction']}; N = Nestor, "
        + ("Q = qdrant-edge (the same build parameters); " if "qdrant-edge" in names else "qdrant-edge not run; ")
        + f"the smallest ef with recall@10 >= {TARGET}; latencies in ms, one query at a time; top-10 score: the "
        "mean inner product of the exact filtered top 10 (lower: the matches lie farther from the queries).",
        f"qdrant-edge-py {r['qdrant_edge_version']}. Threads: {r['threads']}. "
        f"Load average at start: {[round(x, 2) for x in r['environment']['loadavg_start']]}.",
        f"Build: {build} ({r['threads']['build_threads']} build threads each); "
        f"ground truth {r['ground_truth_s']:.0f} s.",
        "",
        markdown_table(rows, cols),
        "",
    ]
    counts = [
        {"filter": k, "Nestor count p50 (ms)": v["nestor_p50_ms"], "qdrant count p50 (ms)": v.get("qdrant_p50_ms")}
        for k, v in r["count"].items()
    ]
    out += [markdown_table(counts, [(c, c, ".3f") if c != "filter" else c for c in counts[0]]), ""]
    sc = r["scroll"]
    get = f"get of all {sc['get_points']:,} ids in pages of {PAGE:,}: {sc['get_s']:.3f} s"
    if "scroll_s" in sc:
        out.append(f"scroll of all {sc['scroll_points']:,} points in pages of {PAGE:,}: {sc['scroll_s']:.3f} s; {get}")
    else:
        out.append(f"{sc.get('skipped') or sc.get('error')}; {get}")
    mem = [{"field": k} | v for k, v in r["payload_index_memory"].items()]
    columns: list[tuple[str, str, str] | str] = ["field", "schema", "points", ("ram", "RAM (bytes)", ",")]
    columns.append(("bytes_per_point", "bytes per point", ".2f"))
    out += ["", markdown_table(mem, columns), "", "The bars (issue 14):"]
    filtered = [v for k, v in r["search"].items() if k != UNFILTERED]
    ratio = max(v["nestor"]["p50_ms"] for v in filtered) / base["nestor"]["p50_ms"]
    out.append(
        f"- recall@10 >= {TARGET} reached by Nestor on every filter: {all(v['nestor']['reached'] for v in filtered)}"
    )
    out.append(f"- Nestor filtered p50 <= 2x unfiltered: worst {ratio:.2f}x")
    if "qdrant-edge" in names:
        qps = min(v["nestor"]["qps"] / v["qdrant-edge"]["qps"] for v in filtered)
        out.append(f"- Nestor QPS >= qdrant-edge QPS per filter: worst {qps:.2f}x")
    out.append(f"- count p50 < 2 ms: worst {max(v['nestor_p50_ms'] for v in r['count'].values()):.3f} ms")
    if "scroll_s" in sc:
        out.append(f"- scroll faster than get: {sc['scroll_s']:.3f} s against {sc['get_s']:.3f} s")
    tenant = r["payload_index_memory"].get("tenant")
    if tenant:
        out.append(f"- keyword index at 1,000 values < 16 bytes per point: {tenant['bytes_per_point']:.2f}")
    return "\n".join(out)


if __name__ == "__main__":
    main()
