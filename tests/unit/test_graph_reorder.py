"""The graph's breadth-first renumbering (`Graph.reorder`, index/_graph.cpp; the policy in
index/backends/graph.py): the same answers before and after, labels still found (removes, `positions`),
adds after it, a save and load of the reordered state, damaged reordered states refused, and a graph
that reads the collection's rows never reordered. The native path against the Python planner on
reordered graphs: tests/unit/index/test_native.py (its graphs are reordered there)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from index.backends import graph as graph_mod
from index.backends.base import IndexParams, Space
from index.backends.graph import GraphIndex

N, DIM, M = 1200, 32, 8


def _data(n: int = N, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((16, DIM)).astype(np.float32)
    x = centres[rng.integers(0, 16, n)] + 0.4 * rng.standard_normal((n, DIM)).astype(np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


def _graph(codec: str, x: np.ndarray, labels: np.ndarray, space: Space = Space.ip) -> GraphIndex:
    idx = GraphIndex(DIM, space, codec, m=M, ef_construction=48, threads=1)  # type: ignore[arg-type]
    idx.train(x)
    idx.add(x, labels)
    return idx


def _search(idx: GraphIndex, q: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    hits = idx.search(q, k, IndexParams(ef=64))
    return hits.labels, hits.scores


@pytest.mark.parametrize("space", [Space.ip, Space.l2])
@pytest.mark.parametrize("codec", ["int8", "float32"])
def test_reordering_changes_the_layout_not_the_answers(codec: str, space: Space) -> None:
    x = _data()
    labels = np.arange(N, dtype=np.int64) * 3 + 1  # labels that are not positions
    idx = _graph(codec, x, labels, space)
    q = _data(40, seed=9)
    before = _search(idx, q)
    assert idx._graph.reorder()
    state = idx._graph.get_state()
    assert not np.all(np.diff(state["labels"]) > 0), "a breadth-first order is not the insertion order"
    assert sorted(state["labels"].tolist()) == labels.tolist()
    after = _search(idx, q)
    # the same walk (links renumbered, in the same order): the same hits and scores
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_allclose(after[1], before[1], rtol=1e-6)
    # every label is still found where it now is; unknown ones are not
    pos = idx._graph.positions(np.array([labels[5], 2, labels[-1], labels[0]], np.int64))
    assert pos[1] == -1
    assert state["labels"][pos[[0, 2, 3]]].tolist() == [labels[5], labels[-1], labels[0]]


def test_removes_and_adds_after_a_reorder() -> None:
    x = _data()
    idx = _graph("int8", x, np.arange(N, dtype=np.int64), Space.l2)  # a point is its own nearest
    idx._graph.reorder()
    gone = np.arange(0, 300, dtype=np.int64)
    idx.remove(gone)
    assert idx.count == N - 300
    got, _ = _search(idx, x[:300])
    assert not np.isin(got, gone).any()
    # new points go after the reordered ones; labels must still increase past the largest
    extra = _data(200, seed=11)
    idx.add(extra, np.arange(N, N + 200, dtype=np.int64))
    with pytest.raises(ValueError, match="labels must increase"):
        idx.add(extra[:1], np.array([N + 100], np.int64))
    got, _ = _search(idx, extra[:50], k=1)
    # as often their own nearest as in a graph never reordered (int8 codes can tie close points)
    control = _graph("int8", x, np.arange(N, dtype=np.int64), Space.l2)
    control.add(extra, np.arange(N, N + 200, dtype=np.int64))
    want = (_search(control, extra[:50], k=1)[0][:, 0] == np.arange(N, N + 50)).mean()
    assert want >= 0.8
    assert (got[:, 0] == np.arange(N, N + 50)).mean() >= want - 0.04
    idx.remove(np.array([N + 3], np.int64))
    assert N + 3 not in _search(idx, extra[3:4])[0]
    assert idx.count == N - 300 + 199


@pytest.mark.parametrize("codec", ["int8", "float32"])
def test_a_reordered_graph_saves_and_loads(tmp_path: Path, codec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    x = _data()
    idx = _graph(codec, x, np.arange(N, dtype=np.int64) * 2)
    idx.remove(np.arange(0, 100, 2, dtype=np.int64))
    idx._graph.reorder()
    q = _data(30, seed=4)
    want = _search(idx, q)
    idx.save(tmp_path / "g")
    monkeypatch.setattr(graph_mod, "_REORDER_MIN", 10**9)  # loaded as saved
    back = GraphIndex.load(tmp_path / "g")
    assert back.count == idx.count
    np.testing.assert_array_equal(back._graph.get_state()["labels"], idx._graph.get_state()["labels"])
    np.testing.assert_array_equal(_search(back, q)[0], want[0])
    monkeypatch.setattr(graph_mod, "_REORDER_MIN", 100)  # loaded and reordered again: the same answers
    again = GraphIndex.load(tmp_path / "g")
    np.testing.assert_array_equal(_search(again, q)[0], want[0])


def test_a_reordered_state_with_a_label_twice_is_refused(tmp_path: Path) -> None:
    x = _data()
    idx = _graph("int8", x, np.arange(N, dtype=np.int64))
    idx._graph.reorder()
    idx.save(tmp_path / "g")
    labels = np.load(tmp_path / "g" / "labels.npy")
    labels[9] = labels[400]
    np.save(tmp_path / "g" / "labels.npy", labels)
    with pytest.raises(ValueError, match=f"label {labels[9]} is on two nodes"):
        GraphIndex.load(tmp_path / "g")


def test_the_policy_reorders_own_codes_as_they_grow_and_never_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph_mod, "_REORDER_MIN", 500)
    x = _data()
    idx = GraphIndex(DIM, Space.ip, "int8", m=M, ef_construction=48, threads=1)
    idx.train(x)
    idx.add(x[:400], np.arange(400, dtype=np.int64))
    assert np.all(np.diff(idx._graph.get_state()["labels"]) > 0), "below the minimum: left in insertion order"
    idx.add(x[400:600], np.arange(400, 600, dtype=np.int64))
    assert idx._ordered == 600
    idx.add(x[600:700], np.arange(600, 700, dtype=np.int64))
    assert idx._ordered == 600, "grown by less than a quarter: not yet"
    idx.add(x[700:], np.arange(700, N, dtype=np.int64))
    assert idx._ordered == N

    class Rows:
        def buffer(self) -> np.ndarray:
            return x

        def follow(self, reader: object) -> None:
            pass

    over_rows = GraphIndex(DIM, Space.ip, "float32", m=M, ef_construction=48, threads=1, rows=Rows())  # type: ignore[arg-type]
    over_rows.add(x, np.arange(N, dtype=np.int64))
    assert over_rows._ordered == 0
    assert not over_rows._graph.reorder(), "a graph over the store's rows keeps their order"
    assert np.all(np.diff(over_rows._graph.get_state()["labels"]) > 0)


def test_searches_and_deletes_run_while_it_reorders() -> None:
    x = _data()
    idx = _graph("int8", x, np.arange(N, dtype=np.int64), Space.l2)
    q = _data(20, seed=7)
    more = _data(400, seed=8)
    stop = threading.Event()
    seen: list[np.ndarray] = []
    errors: list[BaseException] = []

    def search() -> None:
        try:
            while not stop.is_set():
                seen.append(_search(idx, q)[0])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    gone = np.arange(0, N, 7, dtype=np.int64)

    def delete() -> None:  # one label at a time, from another thread, while nodes move
        for lab in gone:
            idx.remove(lab[None])

    threads = [threading.Thread(target=search) for _ in range(2)]
    deleter = threading.Thread(target=delete)
    for t in [*threads, deleter]:
        t.start()
    added = 0
    try:
        # each round appends nodes, so the next breadth-first order moves the old ones again
        while deleter.is_alive() or added < 60:
            step = more[added : added + 10]
            idx.add(step, np.arange(N + added, N + added + len(step), dtype=np.int64))
            added += len(step)
            assert idx._graph.reorder()
    finally:
        stop.set()
        for t in [*threads, deleter]:
            t.join()
    assert not errors
    assert len(seen) >= 2
    for got in seen:  # every answer is one of the graph's, whole
        assert ((got >= 0) & (got < N + added)).all()
    # exactly the deleted labels are tombstoned, wherever their nodes moved
    state = idx._graph.get_state()
    np.testing.assert_array_equal(np.sort(state["labels"][state["deleted"] == 1]), gone)
    assert idx.count == N + added - len(gone)
    assert not np.isin(_search(idx, q)[0], gone).any()
