"""A readers-writer lock: many searches at once, or one index mutation.

hnswlib's `add_items` is not safe against a concurrent `knn_query`, and faiss indexes are not safe
for concurrent add and search, so backends guard their native structure with this lock.
Writers are preferred, so a stream of searches cannot starve the indexer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

__all__ = ["RWLock"]


class RWLock:
    def __init__(self) -> None:
        # The read side takes the mutex directly (`with` on a Condition is a Python call) and by
        # acquire/release in try/finally: half the cost of `with` on the Lock (every search passes
        # here twice: index/gate.py).
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0
        self._guard = _ReadGuard(self)

    def read(self) -> _ReadGuard:
        return self._guard

    def _acquire_read(self) -> None:
        mutex = self._mutex
        mutex.acquire()
        try:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        finally:
            mutex.release()

    def _release_read(self) -> None:
        mutex = self._mutex
        mutex.acquire()
        try:
            self._readers -= 1
            if not self._readers and self._waiting_writers:  # only a writer waits for no readers
                self._cond.notify_all()
        finally:
            mutex.release()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class _ReadGuard:
    """A reusable context manager for the read side (cheaper than a generator on the search path)."""

    __slots__ = ("_lock",)

    def __init__(self, lock: RWLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        self._lock._acquire_read()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self._lock._release_read()
