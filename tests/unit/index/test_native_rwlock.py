"""The native readers-writer lock (`index/rwlock.py` `NativeRWLock`, under the swap gate and faiss's IVF
lists): readers share it, a writer excludes them, a waiting writer goes before readers that come after it,
and a blocked thread lets others run Python (its wait releases the GIL)."""

from __future__ import annotations

import threading

import pytest

from index.rwlock import NativeRWLock, shared

pytest.importorskip("index._graph")


def test_shared_gives_the_native_lock_where_built() -> None:
    assert isinstance(shared(), NativeRWLock)


def test_readers_share_and_a_waiting_writer_goes_first() -> None:
    lk = NativeRWLock()
    lk._acquire_read()
    lk._acquire_read()  # two readers at once (two holds, as two threads would)
    order: list[str] = []
    writer_in = threading.Event()

    def writer() -> None:
        writer_in.set()
        with lk.write():
            order.append("w")

    def reader() -> None:
        with lk.read():
            order.append("r")

    w = threading.Thread(target=writer)
    w.start()
    writer_in.wait()
    w.join(0.2)
    assert w.is_alive() and not order  # readers hold it: the writer waits (and Python runs meanwhile)
    r = threading.Thread(target=reader)
    r.start()
    r.join(0.2)
    assert r.is_alive() and not order  # a reader after a waiting writer waits too
    lk._release_read()
    lk._release_read()
    w.join()
    r.join()
    assert order == ["w", "r"]


def test_a_write_excludes_readers_until_it_ends() -> None:
    lk = NativeRWLock()
    got: list[str] = []
    r = threading.Thread(target=lambda: (lk._acquire_read(), got.append("r"), lk._release_read()))
    with lk.write():
        r.start()
        r.join(0.2)
        assert r.is_alive() and not got
    r.join()
    assert got == ["r"]
