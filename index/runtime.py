"""Process-wide settings for the native thread pools under the engine (OpenMP, OpenBLAS).

Nothing here runs at import: importing the engine leaves the process alone. The programs that own a
process call `configure_threads()` at start-up: `nestor serve` (before it imports faiss), the app factory,
the benchmarks' `main` and the test suite's conftest.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["configure_threads"]

log = logging.getLogger("nestor.runtime")


def configure_threads() -> None:
    """Keep idle native threads from busy-waiting. An explicit setting of the user's wins; calling twice is harmless.

    Thread pools that busy-wait starve everything else on a small machine (this one has 2 cores):
    - libgomp (faiss's OpenMP) spins idle threads by default: IVF-PQ training measured 72 s instead of
      3 s, and single-query search 12k instead of 18k QPS. libgomp reads `OMP_WAIT_POLICY` only when it
      loads, with faiss, so call this before faiss is first imported.
    - OpenBLAS threads do the same: under CPU contention a 14x384 by 384x200 matmul (a MaxSim rescore)
      went from 0.05 ms to 1-10 ms. Search-path matrix products are small, so one thread is the right
      default. One thread also keeps the HNSW saver's fork safe (index/backends/hnsw.py).
      `OPENBLAS_NUM_THREADS` is read only when OpenBLAS loads, and numpy may have loaded it already,
      so the same limit is also applied at run time through threadpoolctl.
    """
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        if "faiss" in sys.modules:
            log.warning("faiss was imported before configure_threads(): its OpenMP threads still busy-wait")
    if "OPENBLAS_NUM_THREADS" in os.environ:
        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    import numpy  # noqa: F401  - loads OpenBLAS, so that the limit below finds it
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


@contextmanager
def no_gc() -> Iterator[None]:
    """Cyclic GC paused while a page of payloads is decoded (as msgpack's unpacker does).

    Decoding a thousand payloads allocates thousands of dicts and lists that all survive until the page is
    returned, so the collector runs again and again (and promotes them, setting off full collections) while
    it can free nothing: JSON makes no cycles. That was a third of a scroll's time. Only the thread that
    paused the GC resumes it, so concurrent pages never leave it off."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
