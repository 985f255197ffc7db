"""The native exact scan (`_graph.exact`, index/_graph_exact.h) of a filter's few matches.

A filter matching at most `exact_filter_threshold` points (or too sparse a share of the graph to walk)
is scored exactly. `native.search` runs that plan in one C++ call that reads the payload index's roaring
bitmap in place; the Python planner runs it with faiss and numpy. Checked here: the call against a numpy
oracle over every container kind of a bitmap (array, bitset, run), label arrays, tombstones, the `n`
cut-off and both metrics; and through `Collection.search`, the native plan against the Python one on
every kind of index (the scan needs only the float32 rows), from a payload index and from SQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroaring import BitMap

from index import _graph, native
from index.contract import CollectionOptions, Query
from nestor_client.models import Filter, PayloadSchemaType, SearchParams
from tests.synth import manifold
from tests.unit.index.conftest import Engine, wait_indexed

N, DIM, K = 1200, 16, 10


def _oracle(
    q: np.ndarray, rows: np.ndarray, alive: np.ndarray, n: int, labels: list[int], k: int, l2: bool
) -> tuple[list[int], np.ndarray]:
    keep = np.array([x for x in labels if x < min(n, len(rows)) and alive[x]], np.int64)
    if not len(keep):
        return [], np.empty(0, np.float32)
    r = rows[keep].astype(np.float64)
    s = -((r - q.astype(np.float64)) ** 2).sum(axis=1) if l2 else r @ q.astype(np.float64)
    order = np.lexsort((keep, -s))[:k]  # best first, ties by label
    best = s[order]
    return keep[order].tolist(), (np.sqrt(np.maximum(-best, 0)) if l2 else best)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 150_000), max_size=600),
    st.lists(st.tuples(st.integers(0, 150_000), st.integers(1, 70_000)), max_size=2),
    st.booleans(),
    st.integers(1, 40),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_the_scan_is_the_oracles_top_k(
    values: list[int], ranges: list[tuple[int, int]], runs: bool, k: int, l2: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    total = 160_000
    rows = rng.normal(size=(total, 4)).astype(np.float32)
    alive = rng.random(total) < 0.8
    n = int(rng.integers(total // 2, total + 1))
    bm = BitMap(values)
    for start, length in ranges:  # long ranges: bitset containers, and run containers after run_optimize
        bm.add_range(start, start + length)
    if runs:
        bm.run_optimize()
    q = rng.normal(size=(2, 4)).astype(np.float32)
    by_bytes = _graph.exact(q, rows, alive, n, bm.serialize(), k, l2)
    by_labels = _graph.exact(q, rows, alive, n, np.asarray(list(bm), np.int64), k, l2)
    assert by_bytes == by_labels
    for row, (labels, scores) in enumerate(by_bytes):
        want, want_scores = _oracle(q[row], rows, alive, n, list(bm), k, l2)
        np.testing.assert_allclose(scores, want_scores, rtol=1e-4, atol=1e-4)
        assert labels == want or sorted(scores) == sorted(want_scores.tolist())  # near-ties may swap


def test_no_filter_scans_every_live_row_below_n() -> None:
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(500, 8)).astype(np.float32)
    alive = np.ones(500, bool)
    alive[::2] = False
    q = rng.normal(size=(1, 8)).astype(np.float32)
    labels, _ = _graph.exact(q, rows, alive, 400, None, 500, False)[0]
    assert sorted(labels) == list(range(1, 400, 2))


def test_bad_arguments_are_value_errors() -> None:
    rows = np.ones((8, 4), np.float32)
    alive = np.ones(8, bool)
    q = np.ones((1, 4), np.float32)
    with pytest.raises(ValueError, match="k >= 1"):
        _graph.exact(q, rows, alive, 8, None, 0, False)
    with pytest.raises(ValueError, match="dimension"):
        _graph.exact(np.ones((1, 5), np.float32), rows, alive, 8, None, 1, False)
    with pytest.raises(ValueError, match="roaring"):
        _graph.exact(q, rows, alive, 8, b"\xff" * 16, 1, False)
    with pytest.raises(ValueError, match="C-contiguous"):
        _graph.exact(q, rows[:, :2], alive, 8, None, 1, False)


# ---------------------------------------------------------------------------------------------
# Through the collection: the native plan against the Python one


@pytest.fixture
def options() -> CollectionOptions:
    return CollectionOptions(save_idle_seconds=3600, save_max_seconds=3600, exact_filter_threshold=60)


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many native exact scans ran."""
    seen: list[int] = []
    real = _graph.exact

    def spy(*args: Any) -> Any:
        seen.append(1)
        return real(*args)

    monkeypatch.setattr(_graph, "exact", spy)
    yield seen


CONFIGS: dict[str, dict[str, Any]] = {
    "hnsw-dot": {"metric": "dot", "index": {"type": "hnsw"}},
    "hnsw-l2": {"metric": "l2", "index": {"type": "hnsw"}},
    "int8-cosine": {
        "metric": "cosine",
        "index": {"type": "hnsw"},
        "quantize": {"type": "int8"},
        "training": {"threshold": 256},
    },
    "flat-cosine": {"metric": "cosine", "index": {"type": "flat"}},
    "ivf_pq-l2": {"metric": "l2", "index": {"type": "ivf_pq", "nlist": 8, "train_threshold": 400}},
}

TENANT = Filter.model_validate({"must": [{"key": "g", "match": {"value": 7}}]})  # 24 points
SQL_TENANT = Filter.model_validate({"must": [{"key": "u", "match": {"value": 7}}]})  # no index: SQL's labels


def _compare(coll: Any, queries: np.ndarray, flt: Filter, **kw: Any) -> set[str]:
    batch = [Query(vector=q, limit=K, filter=flt, with_payload=False, **kw) for q in queries]
    try:
        native.ENABLED = True
        fast = [coll.search([q])[0] for q in batch]
        native.ENABLED = False
        slow = [coll.search([q])[0] for q in batch]
    finally:
        native.ENABLED = True
    for a, b in zip(fast, slow, strict=True):
        assert a.strategy == b.strategy
        assert [h.id for h in a.hits] == [h.id for h in b.hits]
        np.testing.assert_allclose([h.score for h in a.hits], [h.score for h in b.hits], rtol=1e-5, atol=1e-5)
    return {r.strategy for r in fast}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_exact_plan_runs_natively_and_matches_python(engine: Engine, scans: list[int], name: str) -> None:
    coll = engine.create(name, {"dim": DIM, **CONFIGS[name]})
    data = manifold(N + 30, DIM, seed=4, normalize=False)
    base, queries = data[:N], data[N:]
    coll.upsert(list(range(N)), base, [{"g": i % 50, "u": i % 50} for i in range(N)])
    coll.create_payload_index("g", PayloadSchemaType.integer)
    wait_indexed(coll)
    assert _compare(coll, queries, TENANT) == {"exact_filtered"}
    assert len(scans) == len(queries)  # every native search was one scan, and only the native ones
    assert _compare(coll, queries, SQL_TENANT) == {"exact_filtered+payload_scan"}
    assert _compare(coll, queries[:5], TENANT, params=SearchParams(exact=True)) == {"exact_filtered"}

    coll.delete(list(range(7, N, 100)))  # tombstones
    coll.pause_indexing()  # and an unindexed tail: new points, and overwrites of the tenant's
    fresh = manifold(40, DIM, seed=8, normalize=False)
    coll.upsert(list(range(N, N + 20)) + list(range(13, 1013, 50)), fresh, [{"g": 7, "u": 7}] * 40)
    scans.clear()
    assert _compare(coll, queries, TENANT) == {"exact_filtered"}
    assert len(scans) == len(queries)
    got = coll.search([Query(vector=fresh[3], limit=K, filter=TENANT, with_payload=False)])[0]
    assert {int(h.id) for h in got.hits}.isdisjoint(range(7, N, 100))
    if CONFIGS[name]["metric"] != "dot":  # a new point finds itself
        assert got.hits[0].id == N + 3
