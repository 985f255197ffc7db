"""Compressed-vector ANN baselines: what other libraries reach with int8 / PCA / binary codes plus a rerank.

Five baselines, each a function ``(base, queries, gt, ...) -> list[row]`` that builds an index once and
sweeps one search knob. Every row is a dict with at least::

    name, knob, recall_at_10, qps, build_s, bytes_per_vector, bytes_source

* ``qps`` is single-query throughput on one thread: one search call per query, sequentially, measured with
  :func:`common.time_single` (median of ``repeats`` passes after a warm-up). faiss runs with
  ``omp_set_num_threads(1)``, numpy's BLAS is limited to one thread (threadpoolctl, when installed),
  qdrant-edge with ``max_search_threads=1``, hnswlib with ``num_threads=1``.
* Builds use each library's default threading (both cores) and are timed end to end (train + add, or
  upsert + optimize for qdrant-edge).
* ``bytes_per_vector`` is the in-RAM size per base vector of everything a query touches, *including* the
  full-precision vectors used for the rerank (float32, 1536 B at d=384). ``compressed_bytes_per_vector`` is the
  same without those rerank vectors (i.e. what must stay in RAM if the originals live on disk).
  ``bytes_source`` says how each number was obtained: faiss = ``serialize_index`` size / n, hnswlib =
  ``index_file_size()`` / n, qdrant-edge = the sizes of the indexed segment's files / n (its quantized
  codes are kept in RAM, graph and originals are memory-mapped), plus the process RSS growth over the
  build as a cross-check (``rss_delta_bytes_per_vector``).

Run as a script (from the repo root)::

    .venv/bin/python benchmarks/compression_baselines.py [--n 100000] [--queries 1000] [--repeats 3]

It prints a markdown table and writes ``benchmarks/results/compression_baselines.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as bench_core.py: idle OpenMP threads must not spin

import argparse  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common`, `baselines` when run as a script

import harness  # noqa: E402
import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
from baselines import build_hnswlib, omp_threads  # noqa: E402
from common import (  # noqa: E402
    F32,
    I64,
    Stopwatch,
    Timing,
    environment,
    load_dataset,
    markdown_table,
    recall_at_k,
    time_single,
    write_results,
)

Row = dict[str, Any]

K = 10
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 200
DEFAULT_EFS: tuple[int, ...] = (16, 24, 32, 48, 64, 96, 128)
RESULTS_NAME = "compression_baselines"


# -------------------------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """faiss OpenMP and numpy BLAS on one thread (BLAS only if threadpoolctl is installed)."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(omp_threads(1))
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - optional
            pass
        else:
            stack.enter_context(threadpool_limits(limits=1))
        yield


def rss_bytes() -> int:
    """Resident set size of this process (bytes), from /proc (0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def rerank_ip(base: F32, q: F32, cand: npt.NDArray[np.int64], k: int = K) -> npt.NDArray[np.int64]:
    """Exact inner-product rerank of candidate ids (``-1`` padding dropped); top ``k`` ids, best first."""
    cand = cand[cand >= 0]
    scores = base[cand] @ q
    if scores.shape[0] > k:
        top = np.argpartition(-scores, k - 1)[:k]
        return cand[top[np.argsort(-scores[top])]]
    return cand[np.argsort(-scores)]


def effective_efs(efs: Sequence[int], floor: int) -> list[int]:
    """The distinct search widths actually used when each library raises ef to at least ``floor``."""
    return sorted({max(int(ef), floor) for ef in efs})


def measure(
    name: str,
    knob: str,
    search_one: Callable[[int], Any],
    gt: I64,
    build_s: float,
    sizes: dict[str, Any],
    repeats: int,
    warmup: int,
    **extra: Any,
) -> Row:
    """Time ``search_one`` over all queries on one thread and build the result row."""
    with one_thread():
        timing, found = time_single(search_one, gt.shape[0], repeats, warmup)
    row = result_row(name, knob, recall_at_k(found, gt, K), timing, build_s, sizes, **extra)
    print(f"  {name:<34} {knob:<18} recall@10={row['recall_at_10']:.4f} qps={row['qps']:8.0f}", flush=True)
    return row


def result_row(
    name: str, knob: str, recall: float, timing: Timing, build_s: float, sizes: dict[str, Any], **extra: Any
) -> Row:
    return {
        "name": name,
        "knob": knob,
        "recall_at_10": recall,
        "qps": timing.qps,
        "build_s": build_s,
        **sizes,
        "p50_ms": timing.p50_ms,
        "p99_ms": timing.p99_ms,
        "qps_runs": timing.qps_runs,
        **extra,
    }


def _faiss_bytes(index: Any) -> int:
    import faiss

    return int(faiss.serialize_index(index).nbytes)


def _faiss_binary_bytes(index: Any) -> int:
    import faiss

    return int(faiss.serialize_index_binary(index).nbytes)


def _sizes(n: int, index_bytes: float, rerank_bytes_per_vector: float, source: str, **extra: Any) -> dict[str, Any]:
    compressed = index_bytes / n
    return {
        "bytes_per_vector": compressed + rerank_bytes_per_vector,
        "compressed_bytes_per_vector": compressed,
        "rerank_bytes_per_vector": rerank_bytes_per_vector,
        "bytes_source": source,
        **extra,
    }


# ----------------------------------------------------------------------------------- 1. qdrant-edge


def _dir_bytes(path: Path) -> dict[str, int]:
    """Allocated-on-disk size (st_blocks, so sparse preallocations count as what they use) of each file."""
    return {str(p.relative_to(path)): p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file()}


def _qdrant_segment_sizes(shard_dir: Path, n: int) -> dict[str, Any]:
    """Per-vector bytes of the indexed segment, by component, from its files (logical sizes)."""
    parts = {"quantized": 0, "hnsw_graph": 0, "original_vectors": 0, "id_tracker": 0, "other": 0}
    for p in (shard_dir / "segments").rglob("*"):
        if not p.is_file():
            continue
        rel = p.relative_to(shard_dir / "segments").as_posix()
        size = p.stat().st_size
        if "/vector_storage/quantized" in rel:
            parts["quantized"] += size
        elif "/vector_index/" in rel:
            parts["hnsw_graph"] += size
        elif rel.endswith("vector_storage/matrix.dat"):
            parts["original_vectors"] += size
        elif "/id_tracker." in rel:
            parts["id_tracker"] += size
        elif "/payload_storage/" not in rel:  # payload pages are preallocated and empty here
            parts["other"] += size
    return {f"{k}_bytes_per_vector": v / n for k, v in parts.items()}


def qdrant_edge_int8(
    base: F32,
    queries: F32,
    gt: I64,
    efs: Sequence[int] = DEFAULT_EFS,
    oversampling: float = 2.0,
    repeats: int = 3,
    warmup: int = 50,
    workdir: Path | None = None,
    batch: int = 2000,
) -> list[Row]:
    """qdrant-edge-py: Dot distance, HNSW m=16 ef_construct=200, int8 scalar quantization kept in RAM,
    search with rescore=True and ``oversampling``. All points are upserted, then ``optimize()`` builds the
    HNSW index; the whole base ends up in one indexed segment (``default_segment_number=1``, a large
    ``max_segment_size``, a small ``indexing_threshold``) — checked with ``info()`` before timing.

    API used: ``EdgeShard.create``, ``update(UpdateOperation.upsert_points([Point(id, vector)]))``,
    ``optimize()``, ``info()``, ``query(QueryRequest(query=Query.Nearest(vec), params=SearchParams(hnsw_ef,
    quantization=QuantizationSearchParams(rescore=True, oversampling))))``."""
    import qdrant_edge as qe

    n, d = base.shape
    tmp_root = Path(tempfile.mkdtemp(prefix="qdrant_edge_", dir=workdir))
    shard_dir = tmp_root / "shard"
    config = qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(size=d, distance=qe.Distance.Dot),
        hnsw_config=qe.HnswIndexConfig(m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCTION, full_scan_threshold=1_000),
        quantization_config=qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, always_ram=True),
        optimizers=qe.EdgeOptimizersConfig(
            default_segment_number=1,
            max_segment_size=4 * n * d * 4 // 1024 + 1024,  # KB: room for the whole base in one segment
            # KB: any segment above ~650 vectors gets an HNSW index (tiny runs hold fewer: index at any size)
            indexing_threshold=1 if harness.is_tiny() else 1_000,
        ),
        max_search_threads=1,
        wal_enabled=False,
    )
    gc.collect()
    rss0 = rss_bytes()
    shard = qe.EdgeShard.create(str(shard_dir), config)
    try:
        with Stopwatch() as t_upsert:
            for start in range(0, n, batch):
                chunk = base[start : start + batch]
                points = [qe.Point(id=start + j, vector=v) for j, v in enumerate(chunk.tolist())]
                shard.update(qe.UpdateOperation.upsert_points(points))
            del points
        with Stopwatch() as t_opt:
            optimized = shard.optimize()
        shard.flush()
        info = shard.info()
        facts = {
            "segments_count": info.segments_count,
            "points_count": info.points_count,
            "indexed_vectors_count": info.indexed_vectors_count,
            "optimize_returned": optimized,
            "upsert_s": t_upsert.seconds,
            "optimize_s": t_opt.seconds,
        }
        print(f"  qdrant-edge info after optimize: {facts}", flush=True)
        if info.points_count != n or info.indexed_vectors_count < n:
            raise RuntimeError(f"qdrant-edge did not index every point: {facts}")
        build_s = t_upsert.seconds + t_opt.seconds

        qlist = queries.tolist()
        # Warm the index (quantized codes, graph and originals paged in) before measuring RSS.
        warm = qe.SearchParams(hnsw_ef=max(efs), quantization=qe.QuantizationSearchParams(rescore=True))
        for vec in qlist:
            shard.query(qe.QueryRequest(limit=K, query=qe.Query.Nearest(vec), params=warm))
        gc.collect()
        rss_delta = rss_bytes() - rss0
        parts = _qdrant_segment_sizes(shard_dir, n)
        original = parts["original_vectors_bytes_per_vector"]
        total = sum(parts.values())
        sizes = {
            "bytes_per_vector": total,
            "compressed_bytes_per_vector": total - original,
            "rerank_bytes_per_vector": original,
            "bytes_source": "segment file sizes / n (int8 codes always_ram; graph + float32 originals mmap)",
            "rss_delta_bytes_per_vector": rss_delta / n,
            **parts,
            "disk_bytes_per_vector": sum(_dir_bytes(shard_dir).values()) / n,
        }

        rows = []
        for ef in efs:
            params = qe.SearchParams(
                hnsw_ef=ef,
                quantization=qe.QuantizationSearchParams(rescore=True, oversampling=oversampling),
            )

            def one(i: int, params: Any = params) -> list[Any]:
                hits = shard.query(qe.QueryRequest(limit=K, query=qe.Query.Nearest(qlist[i]), params=params))
                return [h.id for h in hits]

            rows.append(
                measure(
                    "qdrant-edge HNSW int8+rescore",
                    f"hnsw_ef={ef}",
                    one,
                    gt,
                    build_s,
                    sizes,
                    repeats,
                    warmup,
                    oversampling=oversampling,
                    threads="max_search_threads=1",
                    build_threads="default (max_indexing_threads=0)",
                    **facts,
                )
            )
        return rows
    finally:
        shard.close()
        shutil.rmtree(tmp_root, ignore_errors=True)


# ------------------------------------------------------------------------------- 2. faiss PCA + HNSW


def faiss_pca_hnsw_refine(
    base: F32,
    queries: F32,
    gt: I64,
    dim: int = 128,
    efs: Sequence[int] = DEFAULT_EFS,
    k_factors: Sequence[int] = (2, 4),
    repeats: int = 3,
    warmup: int = 50,
) -> list[Row]:
    """faiss ``PCAMatrix(d→dim)`` + ``IndexHNSWFlat(dim, M=16)`` (efConstruction 200) in an
    ``IndexPreTransform``, wrapped in ``IndexRefineFlat`` so ``k_factor·k`` candidates are reranked with
    the float32 vectors. Inner product throughout. The PCA's centring offset is zeroed after training
    (y = A·x, a plain projection): inner products of centred projections do not preserve the ranking,
    whereas the uncentred projection keeps ⟨Ax, Aq⟩ ≈ ⟨x, q⟩ (it matched L2-on-centred recall in a
    30k-vector check)."""
    import faiss

    n, d = base.shape
    name = f"faiss PCA{dim}+HNSWFlat+RFlat"
    with Stopwatch() as t_build:
        pca = faiss.PCAMatrix(d, dim)
        hnsw = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        pre = faiss.IndexPreTransform(pca, hnsw)
        pre.train(base)
        faiss.copy_array_to_vector(np.zeros(dim, dtype=np.float32), pca.b)
        pre.add(base)
        refined = faiss.IndexRefineFlat(pre, faiss.swig_ptr(base))
    sizes = _sizes(
        n,
        _faiss_bytes(pre),
        d * 4,
        "faiss.serialize_index(PCA+HNSWFlat) / n, + float32 refine vectors",
        code_bytes_per_vector=dim * 4,
    )
    rows = []
    q = queries
    for kf in k_factors:
        for ef in efs:
            hnsw.hnsw.efSearch = ef
            refined.k_factor = kf

            def one(i: int) -> Any:
                return refined.search(q[i : i + 1], K)[1][0]

            rows.append(
                measure(name, f"ef={ef} kf={kf}", one, gt, t_build.seconds, sizes, repeats, warmup, threads="omp=1")
            )
    return rows


# --------------------------------------------------------------------------- 3. binary codes + rerank


def sign_codes(x: F32, mean: F32) -> npt.NDArray[np.uint8]:
    """1 bit per dimension: ``x - mean > 0``, packed (d/8 bytes per row)."""
    return np.packbits(x - mean > 0, axis=1)


def faiss_binary_hnsw_refine(
    base: F32,
    queries: F32,
    gt: I64,
    efs: Sequence[int] = DEFAULT_EFS,
    k_factor: int | Sequence[int] = (10, 20, 40),
    ms: Sequence[int] = (16, 32),
    flat: bool = True,
    repeats: int = 3,
    warmup: int = 50,
) -> list[Row]:
    """Sign bits of mean-centred vectors (d bits = d/8 bytes) in ``faiss.IndexBinaryHNSW`` (M in ``ms``,
    efConstruction 200), Hamming top ``k_factor·k`` reranked by exact inner product in numpy against the
    float32 base; plus the exhaustive ``IndexBinaryFlat`` variant (knob = k_factor only)."""
    import faiss

    n, d = base.shape
    kfs = [k_factor] if isinstance(k_factor, int) else list(k_factor)
    q = queries
    rows: list[Row] = []
    with Stopwatch() as t_codes:
        mean = base.mean(axis=0).astype(np.float32)
        codes = sign_codes(base, mean)
    qcodes = sign_codes(queries, mean)

    for m in ms:
        name = f"faiss BinaryHNSW M={m} + IP rerank"
        with Stopwatch() as t_build:
            index = faiss.IndexBinaryHNSW(d, m)
            index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            index.add(codes)
        build_s = t_codes.seconds + t_build.seconds
        sizes = _sizes(
            n,
            _faiss_binary_bytes(index),
            d * 4,
            "faiss.serialize_index_binary / n, + float32 rerank vectors",
            code_bytes_per_vector=d // 8,
        )
        for kf in kfs:
            kc = kf * K
            for ef in effective_efs(efs, kc):
                index.hnsw.efSearch = ef

                def one(i: int, index: Any = index, kc: int = kc) -> Any:
                    return rerank_ip(base, q[i], index.search(qcodes[i : i + 1], kc)[1][0].astype(np.int64))

                rows.append(
                    measure(
                        name,
                        f"ef={ef} kf={kf}",
                        one,
                        gt,
                        build_s,
                        sizes,
                        repeats,
                        warmup,
                        threads="omp=1, BLAS=1",
                    )
                )
        del index
    if flat:
        name = "faiss BinaryFlat + IP rerank"
        with Stopwatch() as t_build:
            bflat = faiss.IndexBinaryFlat(d)
            bflat.add(codes)
        build_s = t_codes.seconds + t_build.seconds
        sizes = _sizes(
            n,
            _faiss_binary_bytes(bflat),
            d * 4,
            "faiss.serialize_index_binary / n, + float32 rerank vectors",
            code_bytes_per_vector=d // 8,
        )
        for kf in kfs:
            kc = kf * K

            def one_flat(i: int, kc: int = kc) -> Any:
                return rerank_ip(base, q[i], bflat.search(qcodes[i : i + 1], kc)[1][0].astype(np.int64))

            rows.append(
                measure(name, f"kf={kf}", one_flat, gt, build_s, sizes, repeats, warmup, threads="omp=1, BLAS=1")
            )
    return rows


# ------------------------------------------------------------------------------- 4. faiss HNSW + SQ8


def faiss_hnsw_sq8_refine(
    base: F32,
    queries: F32,
    gt: I64,
    efs: Sequence[int] = DEFAULT_EFS,
    oversampling: int = 2,
    repeats: int = 3,
    warmup: int = 50,
) -> list[Row]:
    """``faiss.IndexHNSWSQ(d, QT_8bit, 16, METRIC_INNER_PRODUCT)``, efConstruction 200: search
    ``oversampling·k`` candidates, rerank them by exact float32 inner product in numpy."""
    import faiss

    n, d = base.shape
    name = f"faiss HNSWSQ8 + IP rerank x{oversampling}"
    with Stopwatch() as t_build:
        qt_8bit: Any = faiss.ScalarQuantizer.QT_8bit  # an enum int; the stubs ask for a ScalarQuantizer
        index = faiss.IndexHNSWSQ(d, qt_8bit, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.train(base)
        index.add(base)
    sizes = _sizes(
        n,
        _faiss_bytes(index),
        d * 4,
        "faiss.serialize_index / n, + float32 rerank vectors",
        code_bytes_per_vector=d,
    )
    kc = oversampling * K
    q = queries
    rows = []
    for ef in effective_efs(efs, kc):
        index.hnsw.efSearch = ef

        def one(i: int) -> Any:
            return rerank_ip(base, q[i], index.search(q[i : i + 1], kc)[1][0])

        rows.append(
            measure(
                name,
                f"ef={ef}",
                one,
                gt,
                t_build.seconds,
                sizes,
                repeats,
                warmup,
                oversampling=oversampling,
                threads="omp=1, BLAS=1",
            )
        )
    return rows


# ------------------------------------------------------------------------------------- 5. hnswlib


def hnswlib_float(
    base: F32,
    queries: F32,
    gt: I64,
    efs: Sequence[int] = DEFAULT_EFS,
    repeats: int = 3,
    warmup: int = 50,
) -> list[Row]:
    """Raw hnswlib, ``space="ip"``, M=16, ef_construction=200, float32 vectors, queries on one thread."""
    n = base.shape[0]
    index, build_s = build_hnswlib(base, M=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION)
    size = float(index.index_file_size())
    sizes = _sizes(n, size, 0.0, "hnswlib index_file_size() / n (float32 vectors + graph)", code_bytes_per_vector=0)
    q = queries
    rows = []
    for ef in effective_efs(efs, K):
        index.set_ef(ef)

        def one(i: int) -> Any:
            return index.knn_query(q[i : i + 1], k=K, num_threads=1)[0][0]

        rows.append(
            measure(
                "hnswlib float32",
                f"ef={ef}",
                one,
                gt,
                build_s,
                sizes,
                repeats,
                warmup,
                threads="num_threads=1",
                build_threads="default (all cores)",
            )
        )
    return rows


# ------------------------------------------------------------------------------------------- main


COLUMNS = [
    ("name", "baseline", ""),
    ("knob", "knob", ""),
    ("recall_at_10", "recall@10", ".4f"),
    ("qps", "QPS (1 thread)", ".0f"),
    ("p50_ms", "p50 ms", ".3f"),
    ("build_s", "build s", ".1f"),
    ("bytes_per_vector", "B/vec (all)", ".0f"),
    ("compressed_bytes_per_vector", "B/vec (w/o rerank f32)", ".0f"),
]


def wait_for_quiet(flag: Path = Path("/tmp/nestor_bench_quiet"), poll_s: float = 10.0) -> None:
    """Block while ``flag`` exists (another benchmark asked for a quiet machine)."""
    import time

    waited = False
    while flag.exists():
        if not waited:
            print(f"waiting for {flag} to disappear ...", flush=True)
            waited = True
        time.sleep(poll_s)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=None, help="base vectors (default: all)")
    parser.add_argument("--queries", type=int, default=None, help="queries (default: all)")
    parser.add_argument("--data", default=None, help="data root (default: $NESTOR_DATA or ../shared/data)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--efs", type=int, nargs="+", default=list(DEFAULT_EFS))
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["qdrant", "pca", "binary", "sq8", "hnswlib"],
        default=["qdrant", "pca", "binary", "sq8", "hnswlib"],
    )
    parser.add_argument("--out", default=RESULTS_NAME, help="result name or .json path")
    parser.add_argument("--tiny", action="store_true", help="a few hundred points, one ef, one pass: a smoke run")
    args = parser.parse_args(argv)
    harness.set_tiny(args.tiny)
    if args.tiny:
        args.efs, args.repeats, args.warmup = [32], 1, 2
    else:
        wait_for_quiet()
    skipped = {"qdrant": "needs qdrant_edge (the bench extra)"} if harness.missing("qdrant_edge") else {}
    args.only = [k for k in args.only if k not in skipped]
    env = environment()
    env["packages"].update({"qdrant-edge-py": _pkg_version("qdrant-edge-py")})
    data = load_dataset(n=args.n, n_queries=args.queries, data=args.data)
    print(f"data: {data.describe()}", flush=True)
    base, queries, gt = data.base, data.queries, data.gt
    common_kw: dict[str, Any] = {"repeats": args.repeats, "warmup": args.warmup}
    runs: dict[str, Callable[[], list[Row]]] = {
        "qdrant": lambda: qdrant_edge_int8(base, queries, gt, args.efs, **common_kw),
        "hnswlib": lambda: hnswlib_float(base, queries, gt, args.efs, **common_kw),
        "sq8": lambda: faiss_hnsw_sq8_refine(base, queries, gt, args.efs, **common_kw),
        "pca": lambda: faiss_pca_hnsw_refine(base, queries, gt, 128, args.efs, **common_kw),
        "binary": lambda: faiss_binary_hnsw_refine(base, queries, gt, args.efs, **common_kw),
    }
    rows: list[Row] = []
    errors: dict[str, str] = {}
    for key in runs:
        if key not in args.only:
            continue
        print(f"== {key}", flush=True)
        try:
            rows.extend(runs[key]())
        except Exception as exc:  # keep the other baselines' results
            errors[key] = f"{type(exc).__name__}: {exc}"
            print(f"  {key} failed: {errors[key]}", flush=True)
        gc.collect()
    env["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    print()
    print(markdown_table(rows, COLUMNS))
    path = write_results(
        args.out,
        {"environment": env, "data": data.describe(), "k": K, "rows": rows, "errors": errors}
        | {"meta": {"skipped": skipped, "threads_pinned": "1 search thread on every side (faiss omp=1)"}},
    )
    print(f"\nwrote {path}")
    if errors:  # the other baselines' rows are written; the exit status still says something broke
        raise SystemExit(f"baselines failed: {', '.join(errors)}")


def _pkg_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
