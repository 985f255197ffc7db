"""The readers-writer lock (`index/rwlock.py`) under every search: readers share it, a writer excludes
them, and a waiting writer goes before readers that come after it (writers are preferred, so a stream of
searches cannot starve the indexer). Its read side takes the mutex by `acquire`/`release` (cheaper than
`with`): these check that the mutex is always given back, whatever the path."""

from __future__ import annotations

import threading
import time

from index.rwlock import RWLock
from tests.unit.index.conftest import until


def test_readers_share_and_a_waiting_writer_goes_first() -> None:
    lk = RWLock()
    lk._acquire_read()
    lk._acquire_read()  # two readers at once
    order: list[str] = []

    def writer() -> None:
        with lk.write():
            order.append("w")

    def reader() -> None:
        with lk.read():
            order.append("r")

    w = threading.Thread(target=writer)
    w.start()
    until(lambda: lk._waiting_writers == 1, what="the writer to wait")
    r = threading.Thread(target=reader)  # comes after the writer: waits behind it
    r.start()
    lk._release_read()
    assert not order  # one reader still holds it
    lk._release_read()
    w.join(10)
    r.join(10)
    assert order == ["w", "r"]
    assert lk._readers == 0 and not lk._writer and not lk._mutex.locked()


def test_a_writer_excludes_readers_under_load() -> None:
    lk = RWLock()
    state = {"writing": 0, "bad": 0, "reads": 0}

    def reader() -> None:
        for _ in range(2000):
            with lk.read():
                if state["writing"]:
                    state["bad"] += 1
                state["reads"] += 1

    def writer() -> None:
        for _ in range(200):
            with lk.write():
                state["writing"] = 1
                time.sleep(0)  # gives the GIL away while writing: a reader let in would see it
                state["writing"] = 0

    threads = [threading.Thread(target=reader) for _ in range(3)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert state["bad"] == 0 and state["reads"] == 6000
    assert lk._readers == 0 and not lk._mutex.locked()


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
