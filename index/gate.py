"""The swap gate: a collection's readers against the swap of a compaction's new generation.

A compaction relabels every live point, so the label map, the field stores, the indexes and the
SQLite store are replaced together, in place, on the same `Collection` object. A read that used the
old label map with the new stores would return wrong points, so each public read holds the read side
of this gate for its whole run, and the swap holds the write side for the few milliseconds it takes.
Reads nest (a search asks for a filter's selection), so a thread that already holds the read side
passes straight through: a writer-preferring lock would otherwise deadlock a nested read against a
waiting swap.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Concatenate, ParamSpec, Protocol, TypeVar, cast

from index.rwlock import shared

__all__ = ["SwapGate", "WriterWait", "reads"]

P = ParamSpec("P")
R = TypeVar("R")


class SwapGate:
    def __init__(self) -> None:
        self._lock = shared()  # native where built: its read side costs a C call, not a Python method
        self._local = threading.local()
        # set while a compaction holds the collection's write lock on its way to the swap (WriterWait)
        self.pending = threading.Event()

    @contextmanager
    def reading(self) -> Iterator[None]:
        local = self._local
        if getattr(local, "depth", 0):
            local.depth += 1
            try:
                yield
            finally:
                local.depth -= 1
            return
        self._lock._acquire_read()
        local.depth = 1
        try:
            yield
        finally:
            local.depth = 0
            self._lock._release_read()

    @contextmanager
    def swapping(self) -> Iterator[None]:
        """Exclusive: no read runs while the generation is replaced."""
        with self._lock.write():
            yield


class WriterWait:
    """What a reader waits on for a write in flight (`hits.py`, after an overwrite moved a row): the
    collection's write lock, unless a compaction holds it on its way to the swap. Then no write is in
    flight, and waiting would deadlock: the reader holds the gate's read side, which the swap waits for."""

    def __init__(self, lock: threading.Lock, gate: SwapGate) -> None:
        self._lock, self._gate = lock, gate
        self._held = threading.local()

    def __enter__(self) -> None:
        while not self._lock.acquire(timeout=0.01):
            if self._gate.pending.is_set():
                self._held.on = False
                return
        self._held.on = True

    def __exit__(self, *exc: object) -> None:
        if self._held.on:
            self._lock.release()


class _Gated(Protocol):
    gate: SwapGate


G = TypeVar("G", bound=_Gated)


def reads(fn: Callable[Concatenate[G, P], R]) -> Callable[Concatenate[G, P], R]:
    """Run a collection method under the read side of its swap gate (re-entrant per thread)."""

    @functools.wraps(fn)
    def wrapper(self: G, *args: P.args, **kwargs: P.kwargs) -> R:
        gate = self.gate
        local = gate._local
        if getattr(local, "depth", 0):
            return fn(self, *args, **kwargs)
        gate._lock._acquire_read()
        local.depth = 1
        try:
            return fn(self, *args, **kwargs)
        finally:
            local.depth = 0
            gate._lock._release_read()

    return cast("Callable[Concatenate[G, P], R]", wrapper)
