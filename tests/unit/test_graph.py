"""The native graph (index/_graph.cpp) through its wrapper: rerank, masks, concurrency, persistence."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from index.backends.base import IndexParams, Space
from index.backends.graph import GraphIndex


def _data(n: int = 1500, d: int = 48, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, d)).astype(np.float32)
    x = centres[rng.integers(0, 20, n)] + 0.3 * rng.standard_normal((n, d)).astype(np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


@pytest.mark.parametrize("space", [Space.ip, Space.l2])
@pytest.mark.parametrize("codec", ["int8", "float32"])
def test_native_rerank_gives_exact_scores_of_the_best_candidates(space: Space, codec: str) -> None:
    x = _data()
    idx = GraphIndex(x.shape[1], space, codec, ef_construction=64)  # type: ignore[arg-type]
    idx.train(x)
    idx.add(x, np.arange(len(x), dtype=np.int64) * 3)  # labels are rows of `rows` below
    rows = np.zeros((3 * len(x), x.shape[1]), np.float32)
    rows[::3] = x
    q = x[7] + 0.05
    got = idx.search_one(q, 10, 200, rows, None, 40)
    assert got is not None
    labels, scores = got
    cand = idx.search(q[None, :], 40, IndexParams(ef=200)).labels[0]
    exact = rows[cand] @ q if space is Space.ip else -((rows[cand] - q) ** 2).sum(axis=1)
    best = np.argsort(-exact, kind="stable")[:10]
    np.testing.assert_array_equal(np.sort(labels), np.sort(cand[best]))
    np.testing.assert_allclose(scores, exact[best][np.argsort(-exact[best], kind="stable")], rtol=1e-4, atol=1e-4)
    assert np.all(np.diff(scores) <= 1e-6)


def test_a_reduced_graph_reranks_against_the_full_query() -> None:
    full = _data(d=64)
    reduced = np.ascontiguousarray(full[:, :16])
    idx = GraphIndex(16, Space.ip, "float32", ef_construction=64)
    idx.add(reduced, np.arange(len(full), dtype=np.int64))
    q = full[11]
    got = idx.search_one(reduced[11], 5, 400, full, q[None, :], 200)
    assert got is not None
    truth = np.argsort(-(full @ q))[:5]
    assert len(set(got[0].tolist()) & set(truth.tolist())) >= 4
    np.testing.assert_allclose(got[1], full[got[0]] @ q, rtol=1e-5)


def test_allowed_mask_and_tombstones() -> None:
    x = _data()
    idx = GraphIndex(x.shape[1], Space.l2, "int8", ef_construction=64)
    idx.train(x)
    idx.add(x[:1000], np.arange(1000, dtype=np.int64))
    allowed = np.arange(0, 1000, 7, dtype=np.int64)
    hits = idx.search(x[:20], 5, IndexParams(ef=64), allowed)
    assert np.isin(hits.labels[hits.labels >= 0], allowed).all()
    idx.remove(np.arange(0, 500, dtype=np.int64))
    assert idx.count == 500
    hits = idx.search(x[:20], 5, IndexParams(ef=64))
    assert (hits.labels >= 500).all()


def test_searches_run_while_adds_go_on() -> None:
    x = _data(n=4000)
    idx = GraphIndex(x.shape[1], Space.ip, "int8", ef_construction=32)
    idx.train(x)
    idx.add(x[:500], np.arange(500, dtype=np.int64))
    errors: list[BaseException] = []
    done = threading.Event()

    def searcher() -> None:
        try:
            while not done.is_set():
                hits = idx.search(x[:8], 5, IndexParams(ef=32))
                assert ((hits.labels >= 0) & (hits.labels < 4000)).all()
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(2)]
    for t in threads:
        t.start()
    for start in range(500, 4000, 250):
        idx.add(x[start : start + 250], np.arange(start, start + 250, dtype=np.int64))
    done.set()
    for t in threads:
        t.join()
    assert not errors
    assert idx.count == 4000


def test_labels_must_increase_and_bad_adds_change_nothing() -> None:
    x = _data(n=100)
    idx = GraphIndex(x.shape[1], Space.ip, "float32")
    idx.add(x[:50], np.arange(50, dtype=np.int64))
    with pytest.raises(ValueError, match="increase"):
        idx.add(x[50:], np.arange(50, dtype=np.int64))
    assert idx.count == 50


def test_save_load_round_trip(tmp_path: Path) -> None:
    x = _data()
    idx = GraphIndex(x.shape[1], Space.ip, "int8", ef_construction=64)
    idx.train(x)
    idx.add(x, np.arange(len(x), dtype=np.int64))
    idx.remove(np.arange(10, dtype=np.int64))
    idx.save(tmp_path / "g")
    back = GraphIndex.load(tmp_path / "g")
    a = idx.search(x[:30], 10, IndexParams(ef=50))
    b = back.search(x[:30], 10, IndexParams(ef=50))
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert back.count == idx.count
    assert back.kernel in {"avx512-vnni", "avx512", "avx2", "plain"}
