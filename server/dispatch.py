"""Where a cheap search runs: inline on the event loop when it is alone, on a worker thread when it is not.

A cheap search (an in-RAM graph walk, well under a millisecond) costs less than a hop to a thread, so a
lone request runs it inline. But inline searches are served one after another on the event loop's thread,
and the second core idles. The walk itself is native code that releases the GIL, so when several requests
are in progress, each hands its search to a small pool of threads: the loop parses and answers the next
requests while the walks run on the other cores. When every search thread is busy, the loop runs the search
itself rather than queue it: both cores are busy either way, and the queue would only add hand-offs.

"Alone" is decided after one turn of the loop (`asyncio.sleep(0)`): requests that arrived together (read in
the same poll) have their tasks queued behind this one, and that turn lets each of them announce itself
before any decides. One turn costs a few microseconds, far less than a thread hop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["SearchDispatch", "default_threads"]

T = TypeVar("T")


def default_threads(processes: int = 1) -> int:
    """The cores this process may run on (its CPU affinity, which `taskset` and container limits set), shared
    out among the `processes` server processes of `nestor serve --processes N`.

    When that share is one core or less, 0: every search runs inline. The other processes keep the other
    cores busy, and a thread per process would only add hand-offs (measured in benchmarks/CONCURRENCY.md:
    two processes on two cores serve more at 8 connections inline, and spend less CPU a request)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    share = cores // max(1, processes)
    return share if processes <= 1 or share >= 2 else 0


class SearchDispatch:
    """One per app (`app.state.dispatch`); its counters are read by the tests and `GET /metrics`-style probes.

    `threads` worker threads (0: every search inline, the behaviour before this module). Counters are touched
    only from the event loop's thread, so they need no lock."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self.waiting = 0  # searches between arrival and their decision
        self.running = 0  # searches on a worker thread now
        self.inline = 0  # searches that ran on the loop (totals since start)
        self.offloaded = 0

    async def run(self, fn: Callable[[], T]) -> T:
        """`fn()` inline if no other search is waiting or running, or if every search thread is busy; else on one."""
        if self.threads <= 0:
            self.inline += 1
            return fn()
        self.waiting += 1
        try:
            await asyncio.sleep(0)  # one turn: the requests read with this one reach this point too
        finally:
            self.waiting -= 1
        # Alone, or every search thread already busy: the loop searches itself. Queueing behind busy threads
        # only adds two thread wake-ups and GIL hand-offs per search (measured: slower at 32 connections).
        if (self.waiting == 0 and self.running == 0) or self.running >= self.threads:
            self.inline += 1
            return fn()
        return await self.offload(fn)

    async def offload(self, fn: Callable[[], T]) -> T:
        """`fn()` on a worker thread, always (searches that are not cheap, or when others are in flight)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max(1, self.threads), thread_name_prefix="nestor-search")
        self.offloaded += 1
        self.running += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn)
        finally:
            self.running -= 1

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
