"""The readers-writer lock (index/rwlock.py): readers share it, a writer waits for them, and a waiting
writer goes before readers that come after it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from index.rwlock import RWLock


def _until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10  # liveness only: a correct lock gets there in microseconds
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def test_readers_share_and_a_waiting_writer_goes_before_later_readers() -> None:
    lk = RWLock()
    order: list[str] = []
    with lk.read(), lk.read():  # two readers at once
        assert lk._readers == 2

        def writer() -> None:
            with lk.write():
                order.append("writer")

        def reader() -> None:
            with lk.read():
                order.append("late reader")

        w = threading.Thread(target=writer)
        w.start()
        _until(lambda: lk._waiting_writers == 1, "the writer to wait")
        r = threading.Thread(target=reader)
        r.start()
        time.sleep(0.05)  # room for a wrong lock to let either through
        assert order == []  # the writer waits for the readers, the late reader for the writer
    w.join(10)
    r.join(10)
    assert order == ["writer", "late reader"]
    assert lk._readers == 0 and not lk._writer and lk._waiting_writers == 0


def test_a_reader_that_raises_releases_the_lock() -> None:
    lk = RWLock()
    try:
        with lk.read():
            raise KeyError("x")
    except KeyError:
        pass
    done = threading.Event()

    def writer() -> None:
        with lk.write():
            done.set()

    threading.Thread(target=writer).start()
    assert done.wait(10)
