"""The ingest pipeline's engine: read, then work in a thread pool, then commit in order, with back-pressure.

The calling thread reads chunk after chunk and hands each to a pool of workers (validation and encoding).
At most `depth` chunks are between the reader and the commit point, so memory stays bounded whatever
the input size: when the window is full, the reader waits for the oldest chunk and commits it. Commits
happen in source order, one at a time, so "everything before this row is committed" is a single number
a job can persist and resume from.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

__all__ = ["run_ordered"]

C = TypeVar("C")
R = TypeVar("R")

_POLL = 0.1  # seconds between checks of `stopped` while waiting for a worker


def run_ordered(
    chunks: Iterable[C],
    work: Callable[[C], R],
    commit: Callable[[R], None],
    *,
    workers: int,
    depth: int,
    stopped: Callable[[], bool],
) -> bool:
    """Commit `work(chunk)` for every chunk, in order. Returns False when `stopped()` cut it short.

    An exception from `work` or `commit` propagates, after the chunks in flight are dropped; nothing
    after the last successful commit has been committed."""
    depth = max(depth, 1)
    pool = ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix="ingest")
    window: deque[Future[R]] = deque()

    def commit_oldest() -> bool:
        head = window[0]
        while True:
            if stopped():
                return False
            try:
                result = head.result(timeout=_POLL)
                break
            except FutureTimeout:
                continue
        window.popleft()
        commit(result)
        return True

    try:
        for chunk in chunks:
            if stopped():
                return False
            window.append(pool.submit(work, chunk))
            while len(window) >= depth:
                if not commit_oldest():
                    return False
        while window:
            if not commit_oldest():
                return False
        return True
    finally:
        # Do not wait for a batch being encoded: its result is dropped, and replayed on resume.
        pool.shutdown(wait=False, cancel_futures=True)
