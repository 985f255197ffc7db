"""Nestor's compressed collections against full precision and the raw-library baselines, in one run.

Each Nestor config is a real collection driven in-process (``index.collection.Collection``): the whole
base is upserted in one call, the background indexer trains the transforms once (``training.threshold``
= n, so the fit sees the complete collection) and builds the index; then every knob of the config's sweep
is timed single-query on one thread (``common.time_single``: median of passes after a warm-up, faiss
OpenMP and numpy BLAS limited to one thread, as ``compression_baselines.py`` does). Bytes per vector come
from ``coll.info()["memory"]`` (RAM by component) divided by n.

Sections (``--only``, comma-separated):

* ``a`` full-precision HNSW (m16 efc200), the reference; sweep ef
* ``b`` int8 HNSW (Nestor's graph over per-dimension int8 codes) + rescore x2; sweep ef
* ``c`` binary 1-bit + rescore, vectors on disk, HNSW and flat; sweep oversampling
* ``d`` binary 2-bit asymmetric + rescore, vectors on disk, flat and HNSW; sweep oversampling
* ``e`` LeanVec-ID 384->128 HNSW + rerank; sweep ef x oversampling
* ``f`` LeanVec-OOD 128 (query sample = sample_kw) vs LeanVec-ID 128, flat, keyword and normal queries
* ``g`` PCA-Matryoshka 128 vs plain truncation 128, flat: recall before rerank, rerank, and a funnel
* ``h`` LeanVec-ID 128 HNSW, int8 rerank store, vectors on disk
* ``i`` LeanVec-ID 384->128 with int8 codes of the reduced vectors (as SVS pairs LeanVec with LVQ-8), HNSW +
  rerank; sweep ef x oversampling
* baselines (``compression_baselines.py``): ``qdrant``, ``hnswlib``, ``pca``, ``binary``, ``sq8``
  (``baselines`` = all five)

Run from the repo root::

    .venv/bin/python benchmarks/bench_compression.py                      # everything, full data
    .venv/bin/python benchmarks/bench_compression.py --n 20000 --only a,c --outdir /tmp/cb   # dev

It prints the tables and the bar lines, and writes ``<outdir>/results/compression.json``,
``<outdir>/COMPRESSION.md`` and the two plots ``<outdir>/compression_recall_{qps,memory}.png``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as bench_core.py: idle OpenMP threads must not spin

import argparse  # noqa: E402
import gc  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
for _p in (BENCH, REPO, REPO / "clients" / "python"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import harness  # noqa: E402
import numpy as np  # noqa: E402
from common import (  # noqa: E402
    F32,
    I64,
    Stopwatch,
    data_dir,
    environment,
    exact_topk_ip,
    load_dataset,
    markdown_table,
    recall_at_k,
    time_single,
    write_results,
)
from compression_baselines import (  # noqa: E402
    COLUMNS as BASELINE_COLUMNS,
)
from compression_baselines import (  # noqa: E402
    faiss_binary_hnsw_refine,
    faiss_hnsw_sq8_refine,
    faiss_pca_hnsw_refine,
    hnswlib_float,
    one_thread,
    qdrant_edge_int8,
)

from index.collection import Collection, CollectionOptions, Query  # noqa: E402
from index.runtime import configure_threads  # noqa: E402
from nestor_client.models import (  # noqa: E402
    BinaryQuantizeConfig,
    CollectionConfig,
    FlatIndexConfig,
    FunnelStage,
    HnswIndexConfig,
    Int8QuantizeConfig,
    LeanVecReduceConfig,
    MatryoshkaReduceConfig,
    RerankConfig,
    SearchParams,
    TrainingConfig,
)

Row = dict[str, Any]

K = 10
F32_BYTES = 384 * 4  # a float32 vector of this dataset (recomputed from the data in main)
TARGET = 0.95
NESTOR_SECTIONS = ("a", "b", "c", "d", "e", "f", "g", "h", "i")
BASELINE_KEYS = ("qdrant", "hnswlib", "pca", "binary", "sq8")
MEM_PARTS = ("vectors", "graph", "codes", "rerank", "transform", "ids", "payload")
HNSW = HnswIndexConfig(m=16, ef_construction=200)
# The indexer persists its index when idle (and every minute while busy): here only at close(), after the
# timing, so a background save never overlaps a timed pass. The saved size is measured after close().
OPTIONS = CollectionOptions(save_idle_seconds=1e6, save_max_seconds=1e6)
BUILD_TIMEOUT_S = 3600.0


# ----------------------------------------------------------------------------------------------- data


@dataclass
class Data:
    base: F32
    queries: F32
    gt: I64
    queries_kw: F32
    gt_kw: I64
    sample_kw: F32
    describe: dict[str, Any]

    @property
    def n(self) -> int:
        return int(self.base.shape[0])

    def query_set(self, which: str) -> tuple[F32, I64]:
        return (self.queries_kw, self.gt_kw) if which == "kw" else (self.queries, self.gt)


def load_data(n: int | None, n_queries: int | None, root: str | None) -> Data:
    ds = load_dataset(n=n, n_queries=n_queries, data=root)
    folder = data_dir(root) / ds.name
    nq = ds.n_queries
    qkw = np.ascontiguousarray(np.load(folder / "queries_kw.npy")[:nq], dtype=np.float32)
    if ds.gt_recomputed:
        gt_kw = exact_topk_ip(ds.base, qkw, 100)
    else:
        gt_kw = np.load(folder / "gt_ip_kw.npy")[:nq].astype(np.int64)
    sample = np.ascontiguousarray(np.load(folder / "sample_kw.npy"), dtype=np.float32)
    desc = ds.describe() | {"n_queries_kw": int(qkw.shape[0]), "n_sample_kw": int(sample.shape[0])}
    try:  # how many distinct texts the OOD query sample shares with the keyword queries it is evaluated on
        kw_texts = set((folder / "queries_kw.txt").read_text().splitlines()[:nq])
        desc["sample_kw_texts_in_queries_kw"] = len(kw_texts & set((folder / "sample_kw.txt").read_text().splitlines()))
    except OSError:
        pass
    return Data(ds.base, ds.queries, ds.gt, qkw, gt_kw, sample, desc)


# --------------------------------------------------------------------------------------- nestor engine


@dataclass
class Built:
    name: str
    coll: Collection
    summary: dict[str, Any]


def source_fingerprint() -> dict[str, Any]:
    """Which engine code was measured: git HEAD, and a sha256 over the engine's sources as they are on disk
    (index/, quantization/, the client models), which may differ from HEAD while the engine is being worked on."""
    import hashlib
    import subprocess

    files = sorted(
        [
            *REPO.glob("index/**/*.py"),
            *REPO.glob("quantization/**/*.py"),
            REPO / "clients/python/nestor_client/models.py",
        ]
    )
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(REPO).as_posix().encode())
        h.update(f.read_bytes())
    newest = max(files, key=lambda f: f.stat().st_mtime)
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "index", "quantization"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        head, dirty = "", ""
    return {
        "git_head": head or None,
        "engine_uncommitted_changes": bool(dirty),
        "engine_sources_sha256": h.hexdigest(),
        "engine_sources_newest": newest.relative_to(REPO).as_posix(),
        "engine_sources_newest_mtime_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(newest.stat().st_mtime)),
    }


def _loadavg() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def build_collection(
    name: str, label: str, section: str, cfg: CollectionConfig, data: Data, workdir: Path, sample: F32 | None = None
) -> Built:
    """Create the collection, upsert the whole base in one call, wait for the trained, complete index
    (build time = upsert start to index ready) and for the indexer's save, then read its memory."""
    d = workdir / name
    shutil.rmtree(d, ignore_errors=True)
    gc.collect()
    coll = Collection.create(name, d, cfg, OPTIONS)
    if sample is not None:
        coll.add_query_sample(sample)
    n = data.n
    t0 = time.perf_counter()
    coll.upsert(list(range(n)), data.base)
    upsert_s = time.perf_counter() - t0
    plain_flat = isinstance(cfg.index, FlatIndexConfig) and not cfg.compressed
    while True:
        idx = coll.info()["index"]
        done = idx["state"] == "ready" and not idx["pending"] and idx.get("trained", True)
        if done and (plain_flat or idx["indexed"] >= n):
            break
        if time.perf_counter() - t0 > BUILD_TIMEOUT_S:
            raise TimeoutError(f"{name}: index not ready after {BUILD_TIMEOUT_S:.0f}s: {idx}")
        time.sleep(0.05)
    build_s = time.perf_counter() - t0
    info = coll.info()
    mem = info["memory"]
    ram = {p: mem.get(p, {}).get("ram", 0) / n for p in MEM_PARTS}
    disk = {p: mem.get(p, {}).get("disk", 0) / n for p in MEM_PARTS}
    summary = {
        "section": section,
        "name": name,
        "config": label,
        "spec": info["index"].get("spec") or cfg.index.type,
        "n": n,
        "upsert_s": upsert_s,
        "build_s": build_s,
        "ram_bytes_per_vector": sum(ram.values()),
        "disk_bytes_per_vector": sum(disk.values()),
        **{f"ram_{p}": v for p, v in ram.items()},
        **{f"disk_{p}": v for p, v in disk.items()},
        "codes_fraction_of_f32": ram["codes"] / F32_BYTES,
        "placement": info.get("placement"),
        "index_info": info["index"],
        "collection_config": cfg.model_dump(mode="json"),
        "loadavg_after_build": _loadavg(),
    }
    print(
        f"  built {name:<22} {summary['spec']:<34} build {build_s:6.1f}s (upsert {upsert_s:4.1f}s)"
        f"  RAM {summary['ram_bytes_per_vector']:7.1f} B/vec  codes {ram['codes']:6.1f}  graph {ram['graph']:6.1f}"
        f"  vectors {ram['vectors']:6.1f}  rerank {ram['rerank']:6.1f}",
        flush=True,
    )
    return Built(name, coll, summary)


def measure_nestor(
    built: Built,
    data: Data,
    knob: str,
    params: SearchParams,
    *,
    series: str,
    queries: str = "normal",
    repeats: int,
    warmup: int,
    **extra: Any,
) -> Row:
    """Single-query QPS (one thread) and recall@10 of one knob setting of a built collection."""
    qs_vec, gt = data.query_set(queries)
    coll = built.coll
    qs = [Query(vector=q, limit=K, params=params, with_payload=False) for q in qs_vec]

    def one(i: int) -> list[Any]:
        return [h.id for h in coll.search([qs[i]])[0].hits]

    with one_thread():
        timing, found = time_single(one, len(qs), repeats, warmup)
    strategy = coll.search([qs[0]])[0].strategy
    s = built.summary
    row: Row = {
        "section": s["section"],
        "system": "nestor",
        "config": s["config"],
        "series": series,
        "spec": s["spec"],
        "knob": knob,
        "queries": queries,
        "recall_at_10": recall_at_k(found, gt, K),
        "qps": timing.qps,
        "p50_ms": timing.p50_ms,
        "p99_ms": timing.p99_ms,
        "qps_runs": timing.qps_runs,
        "build_s": s["build_s"],
        "ram_bytes_per_vector": s["ram_bytes_per_vector"],
        "ram_codes": s["ram_codes"],
        "ram_vectors": s["ram_vectors"],
        "strategy": strategy,
        "params": params.model_dump(mode="json", exclude_none=True),
        **extra,
    }
    print(
        f"    {series:<40} {knob:<26} {queries:<6} recall@10={row['recall_at_10']:.4f} qps={row['qps']:8.0f}",
        flush=True,
    )
    return row


@dataclass
class Ctx:
    data: Data
    workdir: Path
    repeats: int
    warmup: int
    configs: list[dict[str, Any]]
    rows: list[Row]

    def build(self, name: str, label: str, section: str, cfg: CollectionConfig, sample: F32 | None = None) -> Built:
        b = build_collection(name, label, section, cfg, self.data, self.workdir, sample)
        self.configs.append(b.summary)
        return b

    def measure(self, built: Built, knob: str, params: SearchParams, *, series: str, **kw: Any) -> Row:
        row = measure_nestor(
            built, self.data, knob, params, series=series, repeats=self.repeats, warmup=self.warmup, **kw
        )
        self.rows.append(row)
        return row

    def close(self, built: Built) -> None:
        with Stopwatch() as sw:
            built.coll.close()  # saves the index
        d = self.workdir / built.name
        disk = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
        built.summary.update(save_on_close_s=sw.seconds, disk_after_close_bytes_per_vector=disk / self.data.n)
        shutil.rmtree(d, ignore_errors=True)
        gc.collect()


def _training(n: int) -> TrainingConfig:
    return TrainingConfig(threshold=max(64, n))


METRIC = "dot"  # --metric; the vectors are unit-norm, so cosine ranks the same (and int8 uses direct codes)


def _cfg(data: Data, **kw: Any) -> CollectionConfig:
    return CollectionConfig(dim=data.base.shape[1], metric=METRIC, training=_training(data.n), **kw)


# ------------------------------------------------------------------------------------------- sections


def section_a(ctx: Ctx, efs: Sequence[int]) -> None:
    """Full-precision HNSW (hnswlib, m16 efc200), the reference."""
    label = "full HNSW m16 (float32)"
    b = ctx.build("a_hnsw", label, "a", _cfg(ctx.data, index=HNSW))
    try:
        for ef in efs:
            ctx.measure(b, f"ef={ef}", SearchParams(ef=ef), series=label, ef=ef)
    finally:
        ctx.close(b)


def section_b(ctx: Ctx, efs: Sequence[int]) -> None:
    """int8 HNSW (Nestor's graph over per-dimension int8 codes) + rescore with the float32 vectors, oversampling 2."""
    label = "int8 HNSW + rescore x2"
    cfg = _cfg(ctx.data, index=HNSW, quantize=Int8QuantizeConfig(), rerank=RerankConfig(oversampling=2))
    b = ctx.build("b_int8", label, "b", cfg)
    try:
        for ef in efs:
            ctx.measure(b, f"ef={ef}", SearchParams(ef=ef), series=label, ef=ef, oversampling=2)
    finally:
        ctx.close(b)


def _binary(ctx: Ctx, section: str, bits: int, query: str, structures: Sequence[str], overs: Sequence[float]) -> None:
    for structure in structures:
        index: Any = HNSW if structure == "hnsw" else FlatIndexConfig()
        tag = f"{bits}-bit{' asym' if query == 'asymmetric' else ''}"
        label = f"binary {tag} {structure} + rescore, on_disk"
        cfg = _cfg(ctx.data, index=index, quantize=BinaryQuantizeConfig(bits=bits, query=query), on_disk=True)
        b = ctx.build(f"{section}_bin{bits}_{structure}", label, section, cfg)
        try:
            for over in overs:
                ctx.measure(b, f"over={over:g}", SearchParams(oversampling=over), series=label, oversampling=over)
        finally:
            ctx.close(b)


def section_c(ctx: Ctx, overs: Sequence[float]) -> None:
    """1-bit sign codes (Hamming), full vectors memory-mapped, HNSW and flat."""
    _binary(ctx, "c", 1, "hamming", ("hnsw", "flat"), overs)


def section_d(ctx: Ctx, overs: Sequence[float]) -> None:
    """2-bit codes, asymmetric rescoring of the Hamming shortlist, then the full rerank; on disk."""
    _binary(ctx, "d", 2, "asymmetric", ("flat", "hnsw"), overs)


def section_i(ctx: Ctx, efs: Sequence[int], overs: Sequence[float]) -> None:
    """LeanVec-ID 384->128 with int8 codes of the reduced vectors in the graph, rerank with float32."""
    section_e(ctx, efs, overs, int8=True)


def section_e(ctx: Ctx, efs: Sequence[int], overs: Sequence[float], *, int8: bool = False) -> None:
    """LeanVec-ID 384->128, Nestor's graph on the reduced vectors (float32, or int8 codes of them for
    section i), rerank with the float32 vectors."""
    label = "LeanVec-ID 128 int8 HNSW + rerank" if int8 else "LeanVec-ID 128 HNSW + rerank"
    cfg = _cfg(
        ctx.data,
        index=HNSW,
        reduce=LeanVecReduceConfig(dim=128, mode="id"),
        quantize=Int8QuantizeConfig() if int8 else None,
    )
    b = ctx.build("i_leanvec_id_int8" if int8 else "e_leanvec_id", label, "i" if int8 else "e", cfg)
    try:
        for over in overs:
            for ef in efs:
                ctx.measure(
                    b,
                    f"ef={ef} over={over:g}",
                    SearchParams(ef=ef, oversampling=over),
                    series=f"{label} x{over:g}",
                    ef=ef,
                    oversampling=over,
                )
    finally:
        ctx.close(b)


def section_f(ctx: Ctx, overs: Sequence[float], dims: Sequence[int] = (128, 64)) -> None:
    """LeanVec-OOD (query map fitted on sample_kw) vs LeanVec-ID at each reduced dim, exact scan of the
    reduced vectors, so only the projection differs; keyword and normal queries, without and with rerank."""
    variants = [
        (dim, mode, f"LeanVec-{mode.upper()} {dim} flat", ctx.data.sample_kw if mode == "ood" else None)
        for dim in dims
        for mode in ("ood", "id")
    ]
    for dim, mode, label, sample in variants:
        cfg = _cfg(ctx.data, index=FlatIndexConfig(), reduce=LeanVecReduceConfig(dim=dim, mode=mode))
        b = ctx.build(f"f_leanvec_{mode}_{dim}", label, "f", cfg, sample)
        try:
            for queries in ("kw", "normal"):
                series = f"{label} ({queries} q)"
                ctx.measure(b, "no rerank", SearchParams(rescore=False), series=series, queries=queries, candidates=K)
                for over in overs:
                    ctx.measure(
                        b,
                        f"rerank {int(round(over * K))}",
                        SearchParams(rescore=True, oversampling=over),
                        series=series,
                        queries=queries,
                        candidates=int(round(over * K)),
                        oversampling=over,
                    )
        finally:
            ctx.close(b)


FUNNEL = [FunnelStage(dim=128, limit=200), FunnelStage(dim=256, limit=50)]


def section_g(ctx: Ctx, overs: Sequence[float]) -> None:
    """PCA-Matryoshka 128 vs plain truncation 128 (flat index over the 128-dim prefixes)."""
    for rotate, label in (("pca", "PCA-Matryoshka 128 flat"), (None, "truncation 128 flat")):
        cfg = _cfg(ctx.data, index=FlatIndexConfig(), reduce=MatryoshkaReduceConfig(dim=128, rotate=rotate))
        b = ctx.build(f"g_mrl_{rotate or 'none'}", label, "g", cfg)
        try:
            ctx.measure(b, "no rerank", SearchParams(rescore=False, funnel=[]), series=label, candidates=K)
            for over in overs:
                c = int(round(over * K))
                ctx.measure(
                    b,
                    f"rerank {c}",
                    SearchParams(rescore=True, oversampling=over, funnel=[]),
                    series=label,
                    candidates=c,
                    oversampling=over,
                )
            ctx.measure(
                b,
                "funnel 128:200>256:50>rerank",
                SearchParams(funnel=FUNNEL),
                series=label,
                candidates=200,
                funnel=[s.model_dump() for s in FUNNEL],
            )
        finally:
            ctx.close(b)


def section_h(ctx: Ctx, efs: Sequence[int], overs: Sequence[float]) -> None:
    """LeanVec-ID 128 HNSW with the rerank from int8 codes in RAM; float32 vectors memory-mapped."""
    label = "LeanVec-ID 128 HNSW + int8 rerank, on_disk"
    cfg = _cfg(
        ctx.data,
        index=HNSW,
        reduce=LeanVecReduceConfig(dim=128, mode="id"),
        rerank=RerankConfig(store="int8"),
        on_disk=True,
    )
    b = ctx.build("h_leanvec_int8", label, "h", cfg)
    try:
        for over in overs:
            for ef in efs:
                ctx.measure(
                    b,
                    f"ef={ef} over={over:g}",
                    SearchParams(ef=ef, oversampling=over),
                    series=f"{label} x{over:g}",
                    ef=ef,
                    oversampling=over,
                )
    finally:
        ctx.close(b)


# ------------------------------------------------------------------------------------------ baselines


def run_baseline(key: str, data: Data, workdir: Path, repeats: int, warmup: int, efs: Sequence[int]) -> list[Row]:
    base, q, gt = data.base, data.queries, data.gt
    kw: dict[str, Any] = {"repeats": repeats, "warmup": warmup}
    runs: dict[str, Callable[[], list[Row]]] = {
        "qdrant": lambda: qdrant_edge_int8(base, q, gt, efs, workdir=workdir, **kw),
        "hnswlib": lambda: hnswlib_float(base, q, gt, efs, **kw),
        "pca": lambda: faiss_pca_hnsw_refine(base, q, gt, 128, efs, **kw),
        "binary": lambda: faiss_binary_hnsw_refine(base, q, gt, efs, ms=(16,), **kw),
        "sq8": lambda: faiss_hnsw_sq8_refine(base, q, gt, efs, **kw),
    }
    rows = runs[key]()
    for r in rows:
        series = r["name"]
        if key == "pca":  # two k_factor curves under one name
            series += " " + r["knob"].split()[-1]
        r.update(system="baseline", baseline=key, series=series, queries="normal", loadavg_after=_loadavg())
    return rows


# ---------------------------------------------------------------------------------------------- bars


def _series(rows: list[Row], **match: Any) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            out.setdefault(r["series"], []).append(r)
    return out


def qps_at_recall(points: list[Row], target: float = TARGET) -> dict[str, Any] | None:
    """QPS where a sweep (rows in knob order, recall rising) first reaches ``target``: interpolated between
    the last knob below and the first knob at or above it (linear in recall, geometric in QPS), and the
    first reaching knob's own QPS. None if no knob reaches the target."""
    for i, r in enumerate(points):
        if r["recall_at_10"] >= target:
            first = {"knob": r["knob"], "recall": r["recall_at_10"], "qps": r["qps"]}
            if i == 0:
                return {"qps": r["qps"], "first": first, "interpolated": False}
            p = points[i - 1]
            span = r["recall_at_10"] - p["recall_at_10"]
            t = (target - p["recall_at_10"]) / span if span > 0 else 1.0
            qps = math.exp(math.log(p["qps"]) + t * (math.log(r["qps"]) - math.log(p["qps"])))
            return {"qps": qps, "first": first, "interpolated": True, "between": [p["knob"], r["knob"]]}
    return None


def best_at_recall(series: dict[str, list[Row]], target: float = TARGET) -> tuple[str, dict[str, Any]] | None:
    found = [(name, q) for name, pts in series.items() if (q := qps_at_recall(pts, target)) is not None]
    return max(found, key=lambda x: x[1]["qps"]) if found else None


def _fmt_q(name: str, q: dict[str, Any]) -> str:
    f = q["first"]
    return f"{name}: {q['qps']:.0f} QPS@{TARGET} (first knob {f['knob']}: recall {f['recall']:.4f}, {f['qps']:.0f} QPS)"


def bars(nestor: list[Row], baselines: list[Row]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(bar: str, ok: bool | None, value: str) -> None:
        status = "n/a" if ok is None else ("PASS" if ok else "FAIL")
        out.append({"bar": bar, "status": status, "value": value})

    # 1. int8 HNSW + rescore vs qdrant-edge int8 at recall 0.95
    bar = "int8 HNSW + rescore single-query QPS at recall@10>=0.95 >= qdrant-edge int8's"
    mine = best_at_recall(_series(nestor, section="b"))
    theirs = best_at_recall(_series(baselines, baseline="qdrant"))
    if not _series(nestor, section="b") or not _series(baselines, baseline="qdrant"):
        add(bar, None, "section b or baseline qdrant not run")
    elif mine is None or theirs is None:
        add(bar, False, f"recall 0.95 not reached: nestor {mine}, qdrant-edge {theirs}")
    else:
        ratio = mine[1]["qps"] / theirs[1]["qps"]
        add(bar, ratio >= 1.0, f"ratio {ratio:.2f}x; {_fmt_q('nestor', mine[1])}; {_fmt_q('qdrant-edge', theirs[1])}")

    # 2. binary + rescore: recall >= 0.95 with codes in RAM <= 1/16 of float32
    bar = "binary + rescore recall@10>=0.95 with in-RAM codes <= 1/16 of float32"
    bin_rows = [r for r in nestor if r["section"] in ("c", "d") and r["queries"] == "normal"]
    if not bin_rows:
        add(bar, None, "sections c/d not run")
    else:
        ok_rows = [r for r in bin_rows if r["recall_at_10"] >= TARGET and r["ram_codes"] <= F32_BYTES / 16]
        if ok_rows:
            r = max(ok_rows, key=lambda r: r["qps"])
            add(
                bar,
                True,
                f"{r['config']} {r['knob']}: recall {r['recall_at_10']:.4f}, codes {r['ram_codes']:.1f} B/vec "
                f"= 1/{F32_BYTES / r['ram_codes']:.0f} of float32 ({F32_BYTES} B), {r['qps']:.0f} QPS, "
                f"all RAM {r['ram_bytes_per_vector']:.0f} B/vec",
            )
        else:
            r = max(bin_rows, key=lambda r: r["recall_at_10"])
            add(
                bar,
                False,
                f"best: {r['config']} {r['knob']}: recall {r['recall_at_10']:.4f}, codes {r['ram_codes']:.1f} B/vec "
                f"(limit {F32_BYTES / 16:.0f})",
            )

    # 3. LeanVec-ID 128 + rerank >= 1.5x full HNSW QPS at recall 0.95
    # (section e: float32 reduced vectors in the graph; section i: int8 codes of them, as SVS's LeanVec+LVQ)
    full = best_at_recall(_series(nestor, section="a"))
    for sec in ("e", "i"):
        codes = "int8 codes" if sec == "i" else "float32"
        bar = f"LeanVec-ID 128 ({codes}) + rerank QPS >= 1.5x full HNSW QPS at recall@10=0.95"
        lv = best_at_recall(_series(nestor, section=sec))
        if not _series(nestor, section=sec) or not _series(nestor, section="a"):
            add(bar, None, f"section a or {sec} not run")
        elif lv is None or full is None:
            add(bar, False, f"recall 0.95 not reached: LeanVec {lv}, full HNSW {full}")
        else:
            ratio = lv[1]["qps"] / full[1]["qps"]
            add(bar, ratio >= 1.5, f"ratio {ratio:.2f}x; {_fmt_q(lv[0], lv[1])}; {_fmt_q('full HNSW', full[1])}")

    # 4. LeanVec-OOD > LeanVec-ID on keyword queries, same dim and candidate count
    f_rows = [r for r in nestor if r["section"] == "f" and r["queries"] == "kw"]
    if not f_rows:
        add(
            "LeanVec-OOD recall@10 > LeanVec-ID on keyword queries (same dim, same candidates)",
            None,
            "section f not run",
        )
    dims = sorted({int(r["config"].split()[1]) for r in f_rows}, reverse=True)
    for dim in dims:
        bar = f"LeanVec-OOD recall@10 > LeanVec-ID on keyword queries ({dim} dims, same candidates)"
        by = {
            (r["config"].split()[0], r["knob"]): r["recall_at_10"] for r in f_rows if r["config"].split()[1] == str(dim)
        }
        knobs = sorted({k for _, k in by}, key=lambda k: (k != "no rerank", len(k), k))
        parts, ok = [], True
        for k in knobs:
            o, i = by.get(("LeanVec-OOD", k)), by.get(("LeanVec-ID", k))
            if o is None or i is None:
                continue
            ok &= o > i
            parts.append(f"{k}: OOD {o:.4f} vs ID {i:.4f} ({o - i:+.4f})")
        add(bar, ok and bool(parts), "; ".join(parts))

    # 5. PCA-Matryoshka 128 vs truncation, before rerank
    bar = "PCA-Matryoshka 128 recall@10 before rerank >= plain truncation + 0.10"
    g = {r["config"]: r["recall_at_10"] for r in nestor if r["section"] == "g" and r["knob"] == "no rerank"}
    pca, trunc = g.get("PCA-Matryoshka 128 flat"), g.get("truncation 128 flat")
    if pca is None or trunc is None:
        add(bar, None, "section g not run")
    else:
        add(bar, pca >= trunc + 0.10, f"PCA-Matryoshka {pca:.4f} vs truncation {trunc:.4f} ({pca - trunc:+.4f})")
    return out


def bar_lines(results: list[dict[str, Any]]) -> list[str]:
    return [f"[{b['status']}] {b['bar']}: {b['value']}" for b in results]


# --------------------------------------------------------------------------------------------- tables

CONFIG_COLUMNS = [
    ("section", "sec", ""),
    ("config", "config", ""),
    ("spec", "index spec", ""),
    ("build_s", "build s", ".1f"),
    ("upsert_s", "of which upsert s", ".1f"),
    ("ram_bytes_per_vector", "RAM B/vec", ".0f"),
    ("ram_vectors", "vectors", ".0f"),
    ("ram_graph", "graph", ".0f"),
    ("ram_codes", "codes", ".1f"),
    ("ram_rerank", "rerank", ".0f"),
    ("ram_transform", "transform", ".1f"),
    ("ram_ids", "ids", ".0f"),
    ("disk_after_close_bytes_per_vector", "disk B/vec", ".0f"),
]

SEARCH_COLUMNS = [
    ("section", "sec", ""),
    ("series", "config", ""),
    ("knob", "knob", ""),
    ("queries", "queries", ""),
    ("recall_at_10", "recall@10", ".4f"),
    ("qps", "QPS (1 thread)", ".0f"),
    ("p50_ms", "p50 ms", ".3f"),
    ("ram_bytes_per_vector", "RAM B/vec", ".0f"),
    ("strategy", "strategy", ""),
]


# ---------------------------------------------------------------------------------------------- plots

_MARKERS = "osD^v<>pXhP*"


def _nestor_style(i: int) -> dict[str, Any]:
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab20")
    return {"color": cmap(i % 20), "marker": _MARKERS[i % len(_MARKERS)]}


def plot_recall_qps(nestor: list[Row], baselines: list[Row], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(18, 10), gridspec_kw={"width_ratios": [1.35, 1]})
    main = [r for r in nestor if r["section"] not in ("f", "g")]
    study = [r for r in nestor if r["section"] in ("f", "g")]
    for i, (name, pts) in enumerate(_series(main).items()):
        st = _nestor_style(i)
        ax.plot([p["recall_at_10"] for p in pts], [p["qps"] for p in pts], "-", lw=1.8, ms=6, label=name, **st)
    greys = ["#444444", "#777777", "#999999", "#555555", "#888888", "#333333"]
    for j, (name, pts) in enumerate(_series(baselines).items()):
        ax.plot(
            [p["recall_at_10"] for p in pts],
            [p["qps"] for p in pts],
            "--",
            color=greys[j % len(greys)],
            marker=_MARKERS[(j + 5) % len(_MARKERS)],
            mfc="none",
            lw=1.2,
            ms=6,
            label=f"[baseline] {name}",
        )
    ax.axvline(TARGET, color="red", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("recall@10")
    ax.set_ylabel("single-query QPS, one thread (log)")
    ax.set_title("Nestor compression configs vs baselines (normal queries)")
    lo = min([r["recall_at_10"] for r in main + baselines] + [0.9])
    ax.set_xlim(max(0.0, lo - 0.02), 1.0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=2, framealpha=0.9)

    for i, (name, pts) in enumerate(_series(study).items()):
        st = _nestor_style(i + 3)
        ls = "--" if "kw q" in name else "-"
        ax2.plot([p["recall_at_10"] for p in pts], [p["qps"] for p in pts], ls, lw=1.5, ms=6, label=name, **st)
        for p in pts:
            ax2.annotate(
                p["knob"].replace("rerank ", "r").replace("no rerank", "raw").replace("funnel 128:200>256:50>", "F:"),
                (p["recall_at_10"], p["qps"]),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax2.axvline(TARGET, color="red", lw=0.8, ls=":")
    ax2.set_yscale("log")
    ax2.set_xlabel("recall@10")
    ax2.set_ylabel("single-query QPS, one thread (log)")
    ax2.set_title("Reduction studies, flat index (raw = no rerank, rN = rerank N candidates)")
    ax2.grid(True, which="both", alpha=0.3)
    if study:
        ax2.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=2, framealpha=0.9)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_recall_memory(
    nestor: list[Row], baselines: list[Row], configs: list[dict[str, Any]], path: Path, title: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(14, 7.5))
    # the flat-index reduction studies (f, g) all sit at ~2.2 KB (float32 vectors in RAM + 128-dim codes)
    normal = [r for r in nestor if r["queries"] == "normal" and r["section"] not in ("f", "g")]
    by_config: dict[str, list[Row]] = {}
    for r in normal:
        by_config.setdefault(r["config"], []).append(r)
    cmap = plt.get_cmap("tab10")
    colors = [cmap(c) for c in (0, 1, 2, 3, 4, 5, 6, 8, 9)]  # no grey: greys are the baselines
    for i, (name, pts) in enumerate(by_config.items()):
        color, marker = colors[i % len(colors)], _MARKERS[i % len(_MARKERS)]
        x = pts[0]["ram_bytes_per_vector"]
        ys = [p["recall_at_10"] for p in pts]
        ax.plot([x, x], [min(ys), max(ys)], "-", color=color, lw=3, alpha=0.35)
        ax.plot([x], [max(ys)], marker=marker, color=color, ms=10, ls="", label=f"{name}: {x:.0f} B")
        ax.plot([x], [min(ys)], marker=marker, color=color, ms=5, ls="")
    greys = ["#222222", "#555555", "#888888", "#3d3d3d", "#6e6e6e", "#a0a0a0"]
    by_base: dict[str, list[Row]] = {}
    for r in baselines:
        by_base.setdefault(r["name"], []).append(r)
    for j, (name, pts) in enumerate(by_base.items()):
        color, marker = greys[j % len(greys)], _MARKERS[(j + 3) % len(_MARKERS)]
        ys = [p["recall_at_10"] for p in pts]
        x_all, x_comp = pts[0]["bytes_per_vector"], pts[0]["compressed_bytes_per_vector"]
        ax.plot([x_all, x_all], [min(ys), max(ys)], "--", color=color, lw=1)
        label = f"[baseline] {name}: {x_all:.0f} B"
        if abs(x_comp - x_all) > 1:
            label += f" ({x_comp:.0f} B w/o f32)"
            ax.plot([x_comp], [max(ys)], marker=marker, color=color, mfc="none", ms=9, ls="")
            ax.plot([x_comp, x_all], [max(ys)] * 2, ":", color=color, lw=0.8)
        ax.plot([x_all], [max(ys)], marker=marker, color=color, ms=9, ls="", label=label)
    ax.axvline(F32_BYTES, color="black", lw=0.8, ls=":")
    ax.annotate("float32 vector (1536 B)", (F32_BYTES, 0.02), xycoords=("data", "axes fraction"), fontsize=7)
    ax.axhline(TARGET, color="red", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel(
        "bytes per vector in RAM (log). Nestor: info()['memory'] RAM / n (on_disk: float32 vectors mmapped, not "
        "counted). Baselines: filled = as run (float32 rerank vectors in RAM), hollow = without them"
    )
    ax.set_ylabel("recall@10: big marker = best knob of the sweep, small = worst")
    lo = min([r["recall_at_10"] for r in normal + baselines] + [0.9])
    ax.set_ylim(max(0.0, lo - 0.02), 1.0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), framealpha=0.9)
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    _ = configs


# ------------------------------------------------------------------------------------------- markdown

_OBS_START = "<!-- observations:start -->"
_OBS_END = "<!-- observations:end -->"


def _kept_observations(md_path: Path) -> str:
    if not md_path.exists():
        return ""
    text = md_path.read_text()
    if _OBS_START in text and _OBS_END in text:
        return text[text.index(_OBS_START) : text.index(_OBS_END) + len(_OBS_END)]
    return ""


def write_markdown(
    path: Path,
    command: str,
    payload: dict[str, Any],
    tables: dict[str, str],
    lines: list[str],
    pngs: list[str],
) -> None:
    env = payload["environment"]
    data = payload["data"]
    kept = _kept_observations(path) or f"{_OBS_START}\n{_OBS_END}"
    parts = [
        "# Compression benchmark: Nestor compressed collections vs full precision and raw libraries",
        "",
        "Generated by `benchmarks/bench_compression.py` (tables, bars and plots are rewritten on every run;",
        "the observations block below is kept).",
        "",
        "```",
        command,
        "```",
        "",
        f"* Data: `{data['name']}`, n = {data['n']:,} x {data['dim']} (float16 on disk, float32 in use), "
        f"{data['n_queries']} queries (`queries.npy`, ground truth `gt_ip.npy`) and {data['n_queries_kw']} keyword "
        f"queries (`queries_kw.npy`, `gt_ip_kw.npy`); LeanVec-OOD's query sample is `sample_kw.npy` "
        f"({data['n_sample_kw']} keyword queries; {data.get('sample_kw_texts_in_queries_kw', '?')} of its distinct "
        "texts also occur in `queries_kw`). Metric: dot (unit vectors).",
        f"* Machine: {env['cpu_count']} CPUs, {env['platform']}, Python {env['python']}; load average at start "
        f"{_la(env.get('loadavg_start'))}, at end {_la(env.get('loadavg_end'))}. Run started {env['time_utc']}, "
        f"took {payload['elapsed_s'] / 60:.1f} min.",
        _engine_line(env.get("engine_source")),
        "* QPS: single-query, one thread — one `coll.search([Query])` call per query (Nestor in-process, no HTTP,"
        " no payloads) or one library call per query (baselines), `common.time_single`: median of "
        f"{payload['repeats']} passes over all queries after {payload['warmup']} warm-up queries; faiss OpenMP and "
        "numpy BLAS limited to one thread. Recall@10 against exact inner-product ground truth.",
        "* Nestor build: `Collection.create`, one `upsert` of the whole base (durable: float32 file fsync + SQLite),"
        " then the background indexer (2 threads; its periodic index saves deferred to `close()`) trains once"
        " (`training.threshold` = n; the transforms are fitted on a 50,000-row sample of the collection, the"
        " engine's `_FIT_SAMPLE`) and builds the index. Build s = "
        "upsert start until `info()['index']` is ready with every row indexed. disk B/vec = the collection directory "
        "after `close()` (float32 file, SQLite, saved index) / n.",
        "* Nestor bytes/vector: `coll.info()['memory'][part]['ram'] / n`, summed over vectors, graph, codes, "
        "rerank, transform, ids, payload. `vectors` is 0 with `on_disk` (float32 file memory-mapped; pages the "
        "rerank touches sit in the OS page cache). hnswlib's codes and graph include the engine's capacity slack "
        "(hnswlib resizes by doubling, 131,072 slots for 100k) and `ids` is the engine's estimate of its id maps.",
        "* Baselines: the functions of `benchmarks/compression_baselines.py`, run in the same process right "
        "after the Nestor sections; their bytes/vector are as that module defines them (serialized index / n, "
        "`bytes_per_vector` includes the float32 rerank vectors, `compressed_bytes_per_vector` does not).",
        "* `QPS@0.95`: along a sweep in knob order, interpolated between the last knob below 0.95 and the first "
        "at or above it (linear in recall, geometric in QPS); the first reaching knob's own numbers are printed "
        "next to it. For sweeps with several curves (LeanVec ef x oversampling) the best curve counts.",
        "",
        "## Bars",
        "",
        *[f"* `{ln.split(']')[0]}]`{ln[ln.index(']') + 1 :]}" for ln in lines],
        "",
        kept,
        "",
        "## Recall vs QPS",
        "",
        f"![recall vs QPS]({pngs[0]})",
        "",
        "## Recall vs bytes per vector in RAM",
        "",
        f"![recall vs memory]({pngs[1]})",
        "",
        "## Nestor configs: build and memory (bytes per vector, RAM by component)",
        "",
        tables["configs"],
        "",
        "## Nestor sweeps",
        "",
        tables["search"],
        "",
        "## Baselines (compression_baselines.py, same run)",
        "",
        tables["baselines"],
        "",
    ]
    if payload.get("errors"):
        parts += ["## Errors", "", *[f"* `{k}`: {v}" for k, v in payload["errors"].items()], ""]
    path.write_text("\n".join(parts))


def _engine_line(fp: dict[str, Any] | None) -> str:
    if not fp:
        return "* Engine code: not recorded."
    line = (
        f"* Engine code measured: git HEAD `{fp['git_head']}`"
        f"{' plus uncommitted changes in index/ and quantization/' if fp['engine_uncommitted_changes'] else ''}; "
        f"sha256 of the engine sources on disk `{fp['engine_sources_sha256'][:16]}…` (newest: "
        f"`{fp['engine_sources_newest']}`, {fp['engine_sources_newest_mtime_utc']})."
    )
    return line + (f" {fp['note']}" if fp.get("note") else "")


def _la(v: list[float] | None) -> str:
    return "n/a" if not v else " / ".join(f"{x:.2f}" for x in v)


# ----------------------------------------------------------------------------------------------- main


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x]


def _floats(s: str) -> list[float]:
    return [float(x) for x in s.split(",") if x]


def main(argv: Sequence[str] | None = None) -> None:
    global F32_BYTES
    configure_threads()  # the engine's thread-pool defaults, as `nestor serve` sets them
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, default=None, help="base vectors (default: all 100,000)")
    parser.add_argument("--queries", type=int, default=None, help="queries per set (default: all 1,000)")
    parser.add_argument("--data", default=None, help="data root (default: $NESTOR_DATA or ../shared/data)")
    parser.add_argument("--only", default=",".join(NESTOR_SECTIONS + ("baselines",)), help="sections, e.g. a,c,qdrant")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--outdir", default=str(BENCH), help="where COMPRESSION.md, the PNGs and results/ go")
    parser.add_argument("--workdir", default=None, help="scratch directory for the collections (default: a tmpdir)")
    parser.add_argument("--efs-a", type=_ints, default=[32, 48, 64, 96, 128])
    parser.add_argument("--efs-b", type=_ints, default=[16, 24, 32, 48, 64, 96, 128])
    parser.add_argument("--overs-bin", type=_floats, default=[10, 20, 40])
    parser.add_argument("--overs-bin2", type=_floats, default=[2, 4, 10])
    parser.add_argument("--efs-lv", type=_ints, default=[32, 48, 64, 96, 128, 192, 256])
    parser.add_argument("--overs-lv", type=_floats, default=[2, 4, 8])
    parser.add_argument("--overs-f", type=_floats, default=[2, 4, 10])
    parser.add_argument("--dims-f", type=_ints, default=[128, 64])
    parser.add_argument("--metric", choices=["dot", "cosine"], default="dot", help="the Nestor collections' metric")
    parser.add_argument("--overs-g", type=_floats, default=[4, 20])
    parser.add_argument("--efs-h", type=_ints, default=[32, 64, 128, 256])
    parser.add_argument("--overs-h", type=_floats, default=[2, 4])
    parser.add_argument("--efs-baselines", type=_ints, default=[16, 24, 32, 48, 64, 96, 128])
    parser.add_argument("--replot", default=None, help="only redo bars, tables, plots and markdown from this JSON")
    parser.add_argument("--tiny", action="store_true", help="a few hundred points, one point per sweep: a smoke run")
    args = parser.parse_args(argv)
    harness.set_tiny(args.tiny)
    if args.tiny:  # one setting per sweep, one pass, and the tables next to the tiny results, not in benchmarks/
        args.efs_a = args.efs_b = args.efs_lv = args.efs_h = args.efs_baselines = [32]
        args.overs_bin, args.overs_bin2, args.overs_lv, args.overs_f = [10.0], [4.0], [4.0], [4.0]
        args.dims_f, args.overs_g, args.overs_h = [64], [4.0], [2.0]
        args.repeats, args.warmup = 1, 2
        if Path(args.outdir).resolve() == BENCH.resolve():
            args.outdir = str(harness.results_dir() / "compression")
    global METRIC
    METRIC = args.metric
    if args.replot:
        import json

        payload = json.loads(Path(args.replot).read_text())
        F32_BYTES = 4 * int(payload["data"]["dim"])
        report(payload, Path(args.outdir).resolve())
        return

    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if "baselines" in only:
        only |= set(BASELINE_KEYS)
    unknown = only - set(NESTOR_SECTIONS) - set(BASELINE_KEYS) - {"baselines"}
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; known: {NESTOR_SECTIONS + BASELINE_KEYS}")

    t_start = time.perf_counter()
    env = environment()
    env["packages"].update({p: _pkg_version(p) for p in ("qdrant-edge-py", "matplotlib", "threadpoolctl")})
    env["engine_source"] = source_fingerprint()
    data = load_data(args.n, args.queries, args.data)
    F32_BYTES = 4 * int(data.base.shape[1])
    print(f"data: {data.describe}", flush=True)
    outdir = Path(args.outdir).resolve()
    (outdir / "results").mkdir(parents=True, exist_ok=True)
    own_tmp = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_compression_"))
    workdir.mkdir(parents=True, exist_ok=True)

    ctx = Ctx(data, workdir, args.repeats, args.warmup, configs=[], rows=[])
    sections: dict[str, Callable[[], None]] = {
        "a": lambda: section_a(ctx, args.efs_a),
        "b": lambda: section_b(ctx, args.efs_b),
        "c": lambda: section_c(ctx, args.overs_bin),
        "d": lambda: section_d(ctx, args.overs_bin2),
        "e": lambda: section_e(ctx, args.efs_lv, args.overs_lv),
        "f": lambda: section_f(ctx, args.overs_f, args.dims_f),
        "g": lambda: section_g(ctx, args.overs_g),
        "h": lambda: section_h(ctx, args.efs_h, args.overs_h),
        "i": lambda: section_i(ctx, args.efs_lv, args.overs_lv),
    }
    errors: dict[str, str] = {}
    timings: dict[str, dict[str, Any]] = {}
    for key, fn in sections.items():
        if key not in only:
            continue
        print(f"== {key}: {(globals()[f'section_{key}'].__doc__ or '').splitlines()[0]}", flush=True)
        t0 = time.perf_counter()
        try:
            fn()
        except Exception as exc:  # keep the other sections' results
            errors[key] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        timings[key] = {"seconds": time.perf_counter() - t0, "loadavg_end": _loadavg()}
    baseline_rows: list[Row] = []
    for key in BASELINE_KEYS:
        if key not in only:
            continue
        print(f"== baseline {key}", flush=True)
        t0 = time.perf_counter()
        try:
            baseline_rows.extend(run_baseline(key, data, workdir, args.repeats, args.warmup, args.efs_baselines))
        except Exception as exc:
            errors[f"baseline {key}"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        timings[f"baseline {key}"] = {"seconds": time.perf_counter() - t0, "loadavg_end": _loadavg()}
        gc.collect()
    if own_tmp:
        shutil.rmtree(workdir, ignore_errors=True)
    env["loadavg_end"] = _loadavg()

    elapsed = time.perf_counter() - t_start
    command = ".venv/bin/python " + " ".join(
        [Path(sys.argv[0]).as_posix() if argv is None else "bench_compression.py"]
        + list(sys.argv[1:] if argv is None else argv)
    )
    payload = {
        "environment": env,
        "data": data.describe,
        "k": K,
        "target_recall": TARGET,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "command": command,
        "sections": sorted(only),
        "section_timings": timings,
        "elapsed_s": elapsed,
        "configs": ctx.configs,
        "rows": ctx.rows,
        "baseline_rows": baseline_rows,
        "errors": errors,
    }
    report(payload, outdir)
    print(f"elapsed {elapsed / 60:.1f} min")
    if errors:  # the other sections' results are written; the exit status still says something broke
        raise SystemExit(f"sections failed: {', '.join(errors)}")


def report(payload: dict[str, Any], outdir: Path) -> None:
    """Bars, tables, results JSON, plots and COMPRESSION.md from one run's payload."""
    configs, rows, baseline_rows = payload["configs"], payload["rows"], payload["baseline_rows"]
    payload["bars"] = bars(rows, baseline_rows)
    lines = bar_lines(payload["bars"])
    tables = {
        "configs": markdown_table(configs, CONFIG_COLUMNS),
        "search": markdown_table(rows, SEARCH_COLUMNS),
        "baselines": markdown_table(baseline_rows, BASELINE_COLUMNS),
    }
    for t in tables.values():
        print()
        print(t)
    print()
    for ln in lines:
        print(ln)
    no_plots = harness.missing("matplotlib")
    skipped = {"plots": "needs matplotlib"} if no_plots else {}
    payload["meta"] = {"skipped": skipped, "threads_pinned": "1 search thread on every side (see environment)"}
    json_path = write_results(outdir / "results" / "compression.json", payload)
    data = payload["data"]
    title = f"{data['name']} n={data['n']:,}, {data['n_queries']} queries, 1 thread, recall@10"
    pngs = ["compression_recall_qps.png", "compression_recall_memory.png"]
    if no_plots:
        print("matplotlib is not installed: the plots are not redrawn", file=sys.stderr)
    else:
        plot_recall_qps(rows, baseline_rows, outdir / pngs[0], title)
        plot_recall_memory(rows, baseline_rows, configs, outdir / pngs[1], title)
    write_markdown(outdir / "COMPRESSION.md", payload["command"], payload, tables, lines, pngs)
    print(f"\nwrote {json_path}, {outdir / 'COMPRESSION.md'}, {outdir / pngs[0]}, {outdir / pngs[1]}")


def _pkg_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
