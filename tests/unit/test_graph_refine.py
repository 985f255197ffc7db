"""The level-0 refinement after a bulk build (`Graph.refine`, index/_graph.cpp; the policy in
index/backends/graph.py, called by index/indexer.py `_rebuild`): the refined links are valid (checked
again by the state loader), bounded, every node still reachable from the entry point, the result the
same for any thread count, and recall on a small set not lower. Its effect at 100k: benchmarks/NATIVE.md."""

from __future__ import annotations

import threading
from collections import deque

import numpy as np
import pytest

from index.backends import graph as graph_mod
from index.backends.base import IndexParams, Space
from index.backends.graph import GraphIndex

N, DIM, M = 3000, 32, 8


def _data(n: int = N, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((24, DIM)).astype(np.float32)
    x = centres[rng.integers(0, 24, n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)  # embeddings as the engine mostly sees them
    return np.ascontiguousarray(x, dtype=np.float32)


def _graph(codec: str, x: np.ndarray, space: Space = Space.ip) -> GraphIndex:
    idx = GraphIndex(DIM, space, codec, m=M, ef_construction=40, threads=1)  # type: ignore[arg-type]
    idx.train(x)
    idx.add(x, np.arange(len(x), dtype=np.int64))
    return idx


def _recall(idx: GraphIndex, x: np.ndarray, q: np.ndarray, space: Space) -> float:
    """recall@10, the mean over ef 16, 24, 48 and 96."""
    if space is Space.ip:
        exact = np.argsort(-(q @ x.T), axis=1)[:, :10]
    else:
        exact = np.argsort(((q[:, None, :] - x[None, :, :]) ** 2).sum(-1), axis=1)[:, :10]
    out = []
    for ef in (16, 24, 48, 96):
        got = idx.search(q, 10, IndexParams(ef=ef)).labels
        out.append(np.mean([len(set(got[i]) & set(exact[i])) / 10 for i in range(len(q))]))
    return float(np.mean(out))


def _check_links(state: dict[str, np.ndarray], m0: int) -> None:
    links0, n = state["links0"], len(state["labels"])
    seen = state["levels"] > 0  # where the descent can come down (the upper layers are not refined)
    todo = deque(np.flatnonzero(seen).tolist())
    for node in range(n):
        cnt = int(links0[node, 0])
        assert 1 <= cnt <= m0, f"node {node} has {cnt} links"
        row = links0[node, 1 : cnt + 1]
        assert len(set(row.tolist())) == cnt, f"node {node} links to a node twice"
        assert node not in row and ((row >= 0) & (row < n)).all()
    while todo:  # level 0 reaches every node from there: none was cut off
        node = todo.popleft()
        for nb in links0[node, 1 : int(links0[node, 0]) + 1]:
            if not seen[nb]:
                seen[nb] = True
                todo.append(int(nb))
    assert seen.all(), f"{int((~seen).sum())} nodes unreachable at level 0"


@pytest.mark.parametrize(("codec", "space"), [("int8", Space.ip), ("float32", Space.l2)])
def test_refined_links_are_valid_and_recall_does_not_drop(codec: str, space: Space) -> None:
    x = _data()
    q = _data(200, seed=9)
    idx = _graph(codec, x, space)
    before = idx._graph.get_state()
    _check_links(before, 2 * M)  # as built: so a node cut off below is the refinement's doing
    recall_before = _recall(idx, x, q, space)
    assert idx._graph.refine(graph_mod._REFINE_ROUNDS, graph_mod._REFINE_POOL, 2)  # as the policy does
    after = idx._graph.get_state()
    assert not np.array_equal(after["links0"], before["links0"]), "the refinement changed no link"
    for key in ("upper", "levels", "labels", "codes"):  # level 0 only
        np.testing.assert_array_equal(after[key], before[key])
    _check_links(after, 2 * M)
    # the state loader's own checks (targets, counts, levels) accept it
    other = GraphIndex(DIM, space, codec, m=M, ef_construction=40, threads=1)  # type: ignore[arg-type]
    other.train(x)
    other._graph.set_state(after)
    # measured +0.03 to +0.04 here; a pool of the closest alone (no far links kept) fell by ~0.25
    assert _recall(idx, x, q, space) >= recall_before - 0.005


def test_the_same_links_for_any_thread_count() -> None:
    x = _data()
    one, two = _graph("int8", x), _graph("int8", x)
    two._graph.set_state(one._graph.get_state())  # the same graph to start from
    assert one._graph.refine(2, 40, 1) and two._graph.refine(2, 40, 2)
    np.testing.assert_array_equal(one._graph.get_state()["links0"], two._graph.get_state()["links0"])


def test_bad_arguments_and_empty_graphs() -> None:
    x = _data(200)
    idx = _graph("int8", x)
    with pytest.raises(ValueError, match="at least 1"):
        idx._graph.refine(0, 40, 1)
    with pytest.raises(ValueError, match="at least 1"):
        idx._graph.refine(1, 0, 1)
    empty = GraphIndex(DIM, Space.ip, "int8", m=M, threads=1)
    empty.train(x)
    assert not empty._graph.refine(1, 40, 1)


def test_the_policy_refines_a_large_bulk_build_then_reorders(monkeypatch: pytest.MonkeyPatch) -> None:
    x = _data()
    monkeypatch.setattr(graph_mod, "_REORDER_MIN", 10**9)
    small = _graph("int8", x)
    before = small._graph.get_state()["links0"]
    small.refine()  # below the minimum: left as built
    np.testing.assert_array_equal(small._graph.get_state()["links0"], before)
    monkeypatch.setattr(graph_mod, "_REFINE_MIN", 1000)
    monkeypatch.setattr(graph_mod, "_REORDER_MIN", 1000)
    small.refine()
    state = small._graph.get_state()
    assert small._ordered == N
    assert not np.all(np.diff(state["labels"]) > 0), "renumbered for the new links"
    _check_links(state, 2 * M)


def test_searches_run_while_it_refines() -> None:
    x = _data()
    idx = _graph("int8", x)
    q = _data(20, seed=7)
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: list[np.ndarray] = []

    def search() -> None:
        try:
            while not stop.is_set():
                seen.append(idx.search(q, 10, IndexParams(ef=32)).labels)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t = threading.Thread(target=search)
    t.start()
    try:
        assert idx._graph.refine(2, 40, 1)
    finally:
        stop.set()
        t.join()
    assert not errors
    assert seen and all(((got >= 0) & (got < N)).all() for got in seen)
