"""Every backend against the same contract and against the exact oracle."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from index.backends.base import IndexParams, Space, VectorIndex
from index.backends.faiss_float import FaissFloatIndex
from index.backends.flat import FlatIndex
from index.backends.graph import GraphIndex
from index.backends.hnsw import HnswIndex
from index.backends.ivfpq import IvfPqIndex
from tests.synth import exact_topk, recall, split

DIM = 32
N = 2000

Factory = Callable[[Space], VectorIndex]
BACKENDS: dict[str, tuple[Factory, Callable[[Path], VectorIndex], float]] = {
    # name: (make, load, recall@10 floor without rerank)
    "flat": (lambda s: FlatIndex(DIM, s), FlatIndex.load, 1.0),
    "hnsw": (lambda s: HnswIndex(DIM, s, m=16, ef_construction=64, ef=64), HnswIndex.load, 0.95),
    "ivf_pq": (lambda s: IvfPqIndex(DIM, s, nbits=4, m=16, nprobe=16), IvfPqIndex.load, 0.50),
    "faiss_hnsw_sq8": (lambda s: FaissFloatIndex(DIM, s, "HNSW16,SQ8", ef=64), FaissFloatIndex.load, 0.85),
    "faiss_flat": (lambda s: FaissFloatIndex(DIM, s, "Flat"), FaissFloatIndex.load, 1.0),
    "graph_int8": (lambda s: GraphIndex(DIM, s, "int8", ef_construction=64, ef=64), GraphIndex.load, 0.90),
    "graph_f32": (lambda s: GraphIndex(DIM, s, "float32", ef_construction=64, ef=64), GraphIndex.load, 0.95),
}


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return split(N, 100, DIM, seed=7)


_CACHE: dict[tuple[str, Space], VectorIndex] = {}


def _shared(name: str, space: Space, base: np.ndarray) -> VectorIndex:
    """A built index reused by the read-only tests (building dominates the run time)."""
    if (name, space) not in _CACHE:
        _CACHE[name, space] = _built(name, space, base)
    return _CACHE[name, space]


def _built(name: str, space: Space, base: np.ndarray) -> VectorIndex:
    make = BACKENDS[name][0]
    idx = make(space)
    idx.train(base)
    idx.add(base, np.arange(N, dtype=np.int64) * 10)  # labels need not be positions
    return idx


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("space", [Space.ip, Space.l2])
def test_recall_against_exact(name: str, space: Space, data: tuple[np.ndarray, np.ndarray]) -> None:
    base, queries = data
    idx = _shared(name, space, base)
    assert idx.count == N
    hits = idx.search(queries, 10, IndexParams())
    truth = exact_topk(base, queries, 10, "l2" if space is Space.l2 else "ip") * 10
    assert recall(hits.labels, truth, 10) >= BACKENDS[name][2]
    # scores come best first
    assert np.all(np.diff(hits.scores, axis=1) <= 1e-5)


@pytest.mark.parametrize("name", BACKENDS)
def test_remove_hides_labels(name: str, data: tuple[np.ndarray, np.ndarray]) -> None:
    base, _ = data
    idx = _built(name, Space.ip, base)
    gone = np.arange(0, 500, dtype=np.int64) * 10
    idx.remove(gone)
    idx.remove(gone)  # removing twice is harmless
    assert idx.count == N - 500
    hits = idx.search(base[:500], 5, IndexParams())
    assert not np.isin(hits.labels, gone).any()


@pytest.mark.parametrize("name", BACKENDS)
def test_allowed_restricts_results(name: str, data: tuple[np.ndarray, np.ndarray]) -> None:
    base, queries = data
    idx = _shared(name, Space.ip, base)
    allowed = np.arange(0, N, 7, dtype=np.int64) * 10
    hits = idx.search(queries[:20], 10, IndexParams(ef=128, nprobe=64), allowed)
    got = hits.labels[hits.labels >= 0]
    assert len(got) > 0 and np.isin(got, allowed).all()


@pytest.mark.parametrize("name", BACKENDS)
def test_save_load_gives_identical_results(name: str, data: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    base, queries = data
    idx = _built(name, Space.ip, base)
    idx.remove(np.array([10, 20, 30], dtype=np.int64))
    before = idx.search(queries, 10, IndexParams())
    idx.save(tmp_path / name)
    loaded = BACKENDS[name][1](tmp_path / name)
    after = loaded.search(queries, 10, IndexParams())
    assert loaded.count == idx.count
    np.testing.assert_array_equal(before.labels, after.labels)
    np.testing.assert_allclose(before.scores, after.scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", BACKENDS)
def test_k_larger_than_collection_pads(name: str) -> None:
    base, queries = split(300, 5, DIM, seed=3)
    make = BACKENDS[name][0]
    idx = make(Space.ip)
    if name == "ivf_pq":
        idx = IvfPqIndex(DIM, Space.ip, nlist=4, m=8, nbits=4, nprobe=4)
    idx.train(base)
    idx.add(base[:20], np.arange(20, dtype=np.int64))
    hits = idx.search(queries, 50, IndexParams())
    assert hits.labels.shape == (5, 50)
    assert ((hits.labels >= 0).sum(axis=1) == 20).all()
    assert np.isneginf(hits.scores[:, 20:]).all()


def test_hnsw_grows_past_initial_capacity() -> None:
    base, _ = split(3000, 1, DIM, seed=1)
    idx = HnswIndex(DIM, Space.ip, capacity=16)
    idx.add(base, np.arange(3000, dtype=np.int64))
    assert idx.count == 3000
    assert idx.search(base[:3], 1, IndexParams()).labels[:, 0].tolist() == [0, 1, 2]
