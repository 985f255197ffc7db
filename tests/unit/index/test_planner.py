"""The dense search planner: which strategy answers, and that every strategy answers exactly here.

Each test names the strategy it expects, so a planner that silently takes another road fails; the
answers are compared with a numpy oracle over the points the filter allows. The HNSW graphs are
small enough (300 points, ef 64) that the graph walk is exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from index import native
from index.backends.base import Hits
from index.collection import Collection
from index.contract import CollectionOptions, Query
from index.dense import DenseField
from index.selection import Selection
from nestor_client.models import Filter, PayloadSchemaType, SearchParams
from tests.unit.index.conftest import F32, Engine, ids_scores, rows, top_cosine, top_l2, wait_indexed

N, DIM = 300, 16
THRESHOLD = 40  # filters matching at most this many points run exactly


@pytest.fixture
def options() -> CollectionOptions:
    return CollectionOptions(save_idle_seconds=3600, save_max_seconds=3600, exact_filter_threshold=THRESHOLD)


def _make(engine: Engine, metric: str, index: str, seed: int = 0) -> tuple[Collection, dict[int, F32]]:
    coll = engine.create(f"{metric}-{index}", {"dim": DIM, "metric": metric, "index": {"type": index}})
    data = rows(np.random.default_rng(seed), N, DIM)
    coll.upsert(list(range(N)), data, [{"g": i % 10, "i": i} for i in range(N)])
    for key in ("g", "i"):  # indexed filters: the strategy names the plan alone (no "+payload_scan")
        coll.create_payload_index(key, PayloadSchemaType.integer)
    wait_indexed(coll)
    return coll, dict(enumerate(data))


def _oracle(metric: str, data: dict[int, F32], q: F32, k: int) -> list[tuple[Any, float]]:
    return top_l2(data, q, k) if metric == "l2" else top_cosine(data, q, k)


def _check(got: list[Any], want: list[tuple[Any, float]]) -> None:
    ids, scores = ids_scores(got)
    assert ids == [p for p, _ in want]
    np.testing.assert_allclose(scores, [s for _, s in want], rtol=1e-4, atol=1e-4)


class Where:
    """A payload filter and the same condition on a point's index, for the oracle."""

    def __init__(self, cond: dict[str, Any], keep: Callable[[int], bool]) -> None:
        self.filter = Filter.model_validate({"must": [cond]})
        self.keep = keep

    def of(self, data: dict[int, F32]) -> dict[int, F32]:
        return {i: v for i, v in data.items() if self.keep(i)}


FIRST_30 = Where({"key": "i", "range": {"lt": 30}}, lambda i: i < 30)  # at most THRESHOLD: exact
GROUPS_012 = Where({"key": "g", "match": {"any": [0, 1, 2]}}, lambda i: i % 10 in (0, 1, 2))  # 90: ANN
QUARTER = Where({"key": "i", "range": {"lt": 75}}, lambda i: i < 75)  # 75: above the walk's beam (ef 64)
GROUPS_345 = Where({"key": "g", "match": {"any": [3, 4, 5]}}, lambda i: i % 10 in (3, 4, 5))
GROUP_1 = Where({"key": "g", "match": {"any": [1]}}, lambda i: i % 10 == 1)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_strategies_by_index_filter_and_knobs(engine: Engine, metric: str) -> None:
    hnsw, data = _make(engine, metric, "hnsw")
    flat, _ = _make(engine, metric, "flat")
    rng = np.random.default_rng(1)
    cases = [
        (flat, None, None, "exact"),
        (flat, GROUPS_012, None, "exact_filtered"),
        (hnsw, None, None, "hnsw"),
        (hnsw, None, SearchParams(exact=True), "exact"),
        (hnsw, FIRST_30, None, "exact_filtered"),
        (hnsw, QUARTER, None, "hnsw_acorn"),  # 25 %: below filter_walk_fraction
        (hnsw, GROUPS_012, None, "hnsw_postfilter"),  # 30 %: broad
    ]
    for coll, where, params, strategy in cases:
        for _ in range(3):
            q = rows(rng, 1, DIM)[0]
            flt = None if where is None else where.filter
            res = coll.search([Query(q, limit=7, filter=flt, params=params)])[0]
            assert res.strategy == strategy, (coll.name, flt, params)
            _check(res.hits, _oracle(metric, data if where is None else where.of(data), q, 7))


def test_a_broad_filter_whose_candidates_mostly_fail_it_walks_with_the_filter(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    coll, data = _make(engine, "cosine", "hnsw")
    monkeypatch.setattr(native, "ENABLED", False)  # the Python planner's road (test_native.py: the native one)
    monkeypatch.setattr(Selection, "contains", lambda self, labels: np.zeros(labels.shape, bool))
    q = rows(np.random.default_rng(4), 1, DIM)[0]
    res = coll.search([Query(q, limit=7, filter=GROUPS_012.filter)])[0]
    assert res.strategy == "hnsw_filtered"
    _check(res.hits, top_cosine(GROUPS_012.of(data), q, 7))


def test_a_filtered_walk_that_comes_up_short_falls_back_to_exact(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    coll, data = _make(engine, "l2", "hnsw")
    field = coll.fields[""]
    assert isinstance(field, DenseField) and field.state.index is not None
    index = field.state.index
    real = index.search

    def short(queries: F32, k: int, params: Any, allowed: Any = None) -> Hits:
        h = real(queries, k, params, allowed)
        labels, scores = h.labels.copy(), h.scores.copy()
        labels[:, 2:], scores[:, 2:] = -1, -np.inf  # the walk found two of the k
        return Hits(labels, scores)

    monkeypatch.setattr(index, "search", short)
    monkeypatch.setattr(native, "ENABLED", False)  # the Python planner's road (test_native.py: the native one)
    q = rows(np.random.default_rng(2), 1, DIM)[0]
    res = coll.search([Query(q, limit=9, filter=GROUPS_345.filter)])[0]
    assert res.strategy == "exact_fallback"
    _check(res.hits, top_l2(GROUPS_345.of(data), q, 9))


def test_the_unindexed_tail_is_searched_exactly_and_merged(engine: Engine) -> None:
    coll, data = _make(engine, "l2", "hnsw")
    field = coll.fields[""]
    assert isinstance(field, DenseField)
    rng = np.random.default_rng(3)
    coll.pause_indexing()
    try:
        tail = np.stack([data[j] for j in range(50)]) + 0.3 * rows(rng, 50, DIM)  # near indexed points
        coll.upsert(list(range(N, N + 50)), tail)
        moved = rows(rng, 1, DIM)[0]
        coll.upsert([7], moved[None, :])  # an indexed point overwritten: old label out of the graph
        data.update({N + j: tail[j] for j in range(50)})
        data[7] = moved
        assert field.state.upto == N and coll.info().index.pending == 51
        for j in range(0, 50, 5):
            res = coll.search([Query(tail[j], limit=1)])[0]
            assert res.strategy == "hnsw" and [h.id for h in res.hits] == [N + j]
        for j in range(10, 15):
            q = data[j] + 0.1 * rows(rng, 1, DIM)[0]  # an indexed point and its tail neighbour rank high
            want = top_l2(data, q, 10)
            assert any(p >= N for p, _ in want) and any(p < N for p, _ in want)
            _check(coll.search([Query(q, limit=10)])[0].hits, want)
        res = coll.search([Query(moved, limit=2)])[0]
        assert res.hits[0].id == 7 and res.hits[0].score == pytest.approx(0.0, abs=1e-3)
        assert 7 not in {h.id for h in res.hits[1:]}  # the old vector's label is gone
    finally:
        coll.resume_indexing()
    wait_indexed(coll)
    assert coll.info().index.pending == 0


@pytest.mark.parametrize("index", ["hnsw", "flat"])
def test_score_threshold_keeps_the_nearer_points_under_l2(engine: Engine, index: str) -> None:
    coll, data = _make(engine, "l2", index)
    q = rows(np.random.default_rng(4), 1, DIM)[0]
    ranked = top_l2(data, q, N)
    t = (ranked[5][1] + ranked[6][1]) / 2  # six points are nearer than t
    res = coll.search([Query(q, limit=20, score_threshold=t)])[0]
    _check(res.hits, ranked[:6])
    assert all(h.score <= t for h in res.hits)


@pytest.mark.parametrize("index", ["hnsw", "flat"])
def test_score_threshold_keeps_the_more_similar_points_under_cosine(engine: Engine, index: str) -> None:
    coll, data = _make(engine, "cosine", index)
    q = rows(np.random.default_rng(5), 1, DIM)[0]
    ranked = top_cosine(data, q, N)
    t = (ranked[3][1] + ranked[4][1]) / 2
    res = coll.search([Query(q, limit=20, score_threshold=t)])[0]
    _check(res.hits, ranked[:4])
    assert all(h.score >= t for h in res.hits)


@pytest.mark.parametrize("params", [None, SearchParams(exact=True)], ids=["hnsw", "exact"])
def test_offset_pages_through_the_ranking(engine: Engine, params: SearchParams | None) -> None:
    coll, data = _make(engine, "cosine", "hnsw")
    q = rows(np.random.default_rng(6), 1, DIM)[0]
    ranked = top_cosine(data, q, 20)
    for offset in (0, 3, 10):
        res = coll.search([Query(q, limit=5, offset=offset, params=params)])[0]
        _check(res.hits, ranked[offset : offset + 5])
    res = coll.search([Query(q, limit=5, offset=28, filter=GROUP_1.filter, params=params)])[0]
    assert [h.id for h in res.hits] == [p for p, _ in top_cosine(GROUP_1.of(data), q, 30)[28:]]  # the last 2
    # a batch of queries takes the grouped path: same pages
    batch = coll.search([Query(q, limit=5, offset=o, params=params) for o in (0, 3)])
    assert [ids_scores(r.hits)[0] for r in batch] == [[p for p, _ in ranked[o : o + 5]] for o in (0, 3)]
