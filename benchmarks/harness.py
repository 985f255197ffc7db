"""What every benchmark result records about the run, and the `--tiny` mode that keeps the scripts alive in CI.

`common.write_results` stamps every result file with :func:`run_meta`: the commit (``git rev-parse HEAD``
and whether the tree was dirty), the thread pools actually in effect (environment and the native pools
threadpoolctl sees, which covers faiss's OpenMP and numpy's BLAS), the wire format where the script set one,
and the machine's load average: at the start of the process and sampled every few seconds while it ran.
The sampler starts when this module is first imported, i.e. before the script measures anything.

Tiny mode (``--tiny`` on every script, or ``$NESTOR_BENCH_TINY=1``) means a few hundred points, a few
queries and one pass: it checks that a script still runs end to end and writes a well-formed result, and
measures nothing worth quoting. Tiny results go to ``benchmarks/results/tiny/`` (or
``$NESTOR_BENCH_RESULTS``), never over the real results.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent

TINY_N = 400  # base points in tiny mode
TINY_QUERIES = 8  # queries in tiny mode
_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "RAYON_NUM_THREADS")


def is_tiny() -> bool:
    """True when the process runs a tiny smoke pass (the ``--tiny`` flag or ``$NESTOR_BENCH_TINY``)."""
    return "--tiny" in sys.argv[1:] or os.environ.get("NESTOR_BENCH_TINY", "") not in ("", "0")


def set_tiny(on: bool) -> None:
    """Called by a script's ``main`` when ``--tiny`` came in through ``argv`` rather than the command line."""
    if on:
        os.environ["NESTOR_BENCH_TINY"] = "1"


def results_dir() -> Path:
    """Where result files go: ``$NESTOR_BENCH_RESULTS``, else ``results/tiny`` in tiny mode, else ``results``."""
    env = os.environ.get("NESTOR_BENCH_RESULTS")
    if env:
        return Path(env).expanduser().resolve()
    return BENCH_DIR / "results" / ("tiny" if is_tiny() else "")


def redirect(path: Path) -> Path:
    """In tiny mode, a path under ``benchmarks/`` (the real tables and results) moves into :func:`results_dir`."""
    real = path.resolve()
    if is_tiny() and (real.parent == BENCH_DIR or real.parent == BENCH_DIR / "results"):
        return results_dir() / real.name
    return path


# ------------------------------------------------------------------------------------------- commit


@cache
def commit() -> dict[str, Any]:
    """``git rev-parse HEAD`` and whether tracked files differ from it (results of a dirty tree are suspect)."""

    def git(*args: str) -> str | None:
        try:
            run = subprocess.run(["git", *args], cwd=REPO_DIR, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return run.stdout.strip() if run.returncode == 0 else None

    head = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": head, "dirty": None if status is None else bool(status)}


# --------------------------------------------------------------------------------------------- load


class LoadSampler:
    """The 1-minute load average, sampled on a daemon thread: what else the machine did while we measured."""

    def __init__(self, interval: float = 2.0) -> None:
        self.interval = interval
        self.before = list(os.getloadavg())
        self.samples: list[tuple[float, float]] = []  # (seconds since start, 1-min load)
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-load-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append((round(time.monotonic() - self._t0, 1), os.getloadavg()[0]))

    def stop(self) -> None:
        self._stop.set()

    def summary(self) -> dict[str, Any]:
        during = [x for _, x in self.samples] or [os.getloadavg()[0]]
        return {
            "before": self.before,
            "during_1min": during,
            "during_max": max(during),
            "during_mean": sum(during) / len(during),
            "at_write": list(os.getloadavg()),
            "cpu_count": os.cpu_count(),
        }


LOAD = LoadSampler(float(os.environ.get("NESTOR_BENCH_LOAD_INTERVAL", "2")))


def section_mark() -> dict[str, Any]:
    """Call at the start of one section of a script; pass the mark to :func:`section_load` at its end.
    Lets a script report the load per section, not only per run."""
    return {"before": list(os.getloadavg()), "t": time.monotonic() - LOAD._t0}


def section_load(mark: Mapping[str, Any]) -> dict[str, Any]:
    """The load before the section of ``mark`` and the samples taken since (the current load if none yet)."""
    during = [x for t, x in LOAD.samples if t >= mark["t"]] or [os.getloadavg()[0]]
    return {"before": mark["before"], "during_1min": during, "during_max": max(during)}


# ------------------------------------------------------------------------------------------ threads


def thread_pools() -> dict[str, Any]:
    """The thread-count settings and the native pools actually loaded (faiss's OpenMP, numpy's BLAS)."""
    out: dict[str, Any] = {"env": {k: os.environ[k] for k in _THREAD_ENV if k in os.environ}}
    try:
        from threadpoolctl import threadpool_info

        out["native"] = [
            {"api": p.get("user_api"), "lib": p.get("internal_api"), "threads": p.get("num_threads")}
            for p in threadpool_info()
        ]
    except ImportError:
        out["native"] = None
    faiss = sys.modules.get("faiss")
    if faiss is not None:
        out["faiss_omp_max_threads"] = int(faiss.omp_get_max_threads())
    return out


def run_meta(extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The block every result file carries under ``meta``. ``extra`` (a script's own ``meta``: the threads
    it pinned for each side, ``wire_format``, ``skipped``) is kept and wins over the generic fields."""
    meta: dict[str, Any] = {
        **commit(),
        "argv": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "tiny": is_tiny(),
        "threads": thread_pools(),
        "cpu": cpu(),
        "load": LOAD.summary(),
        "time_unix": round(time.time(), 1),
    }
    runner = os.environ.get("NESTOR_BENCH_RUNNER")  # set by run_all.py: the attempt this file belongs to
    if runner:
        meta["runner"] = runner
    meta.update(extra or {})
    return meta


def cpu() -> dict[str, Any]:
    """The processor and the SIMD it offers: a ratio against a native library moves with them (session 18's
    AVX2 AMD EPYC put float HNSW at 0.87x raw hnswlib at ef 16 where session 17's machine gave 1.01x, the same
    code)."""
    model, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model is None:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni") if f in flags]
    return {"model": model, "simd": simd, "count": os.cpu_count()}


def missing(*modules: str) -> list[str]:
    """The modules of ``modules`` this environment cannot import: a script skips what needs them and
    records the skip in its result (``meta.skipped``), never silently."""
    import importlib.util

    return [m for m in modules if importlib.util.find_spec(m) is None]
