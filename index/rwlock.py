"""A readers-writer lock: many searches at once, or one index mutation.

hnswlib's `add_items` is not safe against a concurrent `knn_query`, and faiss indexes are not safe
for concurrent add and search, so backends guard their native structure with this lock.
Writers are preferred, so a stream of searches cannot starve the indexer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType

try:
    from index import _graph
except ImportError:  # no native module: `shared` gives the Python lock
    _graph = None  # type: ignore[assignment]

__all__ = ["NativeRWLock", "RWLock", "shared"]


class RWLock:
    def __init__(self) -> None:
        # the read side takes the mutex directly: `with` on a Lock is C, on a Condition a Python call
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0
        self._guard = _ReadGuard(self)

    def read(self) -> _ReadGuard:
        return self._guard

    # The read side is on every search's path (the swap gate's, the payload indexes'): it takes the mutex by
    # `acquire` and `release` in a try, which here costs ~0.3 us a side less than `with` on the same Lock.
    def _acquire_read(self) -> None:
        m = self._mutex
        m.acquire()
        try:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        finally:
            m.release()

    def _release_read(self) -> None:
        m = self._mutex
        m.acquire()
        try:
            self._readers -= 1
            if not self._readers and self._waiting_writers:  # only a writer waits for no readers
                self._cond.notify_all()
        finally:
            m.release()

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


class NativeRWLock:
    """`RWLock`'s interface over `_graph.RWLock`, a writer-preferring pthread rwlock whose read side native
    code takes without the GIL (`_graph.FaissIvf`: a search no longer pays a Python `with` for it)."""

    def __init__(self) -> None:
        self.native = _graph.RWLock()
        self._guard = _NativeRead(self.native)
        # RWLock's read side as `gate.reads` calls it: the C++ methods themselves, no Python frame between
        self._acquire_read: Callable[[], None] = self.native.acquire_read
        self._release_read: Callable[[], None] = self.native.release

    def read(self) -> _NativeRead:
        return self._guard

    @contextmanager
    def write(self) -> Iterator[None]:
        self.native.acquire_write()
        try:
            yield
        finally:
            self.native.release()


class _NativeRead:
    __slots__ = ("_acquire", "_release")

    def __init__(self, native: _graph.RWLock) -> None:
        self._acquire, self._release = native.acquire_read, native.release

    def __enter__(self) -> None:
        self._acquire()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self._release()


def shared() -> RWLock | NativeRWLock:
    """A lock native code can share (`NativeRWLock`), or the Python one without the native module."""
    return NativeRWLock() if _graph is not None and hasattr(_graph, "RWLock") else RWLock()
