"""The native search path (index/native.py, index/_graph_query.h) against the Python planner's.

Every plan the native path runs is driven through `Collection.search` twice, natively and with
`native.ENABLED` off, and the two must give the same strategy, the same ids in the same order and the
same scores: unfiltered (fully indexed, with an unindexed tail, after deletes and overwrites), a
broad filter (the postfilter, and the checked walk when too few of its candidates match), a narrower
one (ACORN), from a payload index's bitmap and from SQL's label list, and batches. Each case also
checks that the native call really ran, so a path that silently fell back cannot pass.
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
from index.backends import graph as graph_mod
from index.collection import Collection
from index.contract import CollectionOptions, Query
from nestor_client.models import Filter, PayloadSchemaType, SearchParams
from tests.synth import manifold
from tests.unit.index.conftest import Engine, wait_indexed

N, DIM, K = 1500, 24, 10
THRESHOLD = 40  # filters matching more than this many points walk the graph


@pytest.fixture
def options() -> CollectionOptions:
    return CollectionOptions(save_idle_seconds=3600, save_max_seconds=3600, exact_filter_threshold=THRESHOLD)


@pytest.fixture(autouse=True)
def reordered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Graphs with their own codes (int8, LeanVec) this small are renumbered too (`Graph.reorder`), so
    every comparison below also runs on a reordered graph."""
    monkeypatch.setattr(graph_mod, "_REORDER_MIN", 256)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The walk of every native call made (spied on `Graph.query`, and `Graph.hits`: a plain walk when it
    answered, `native.answer`)."""
    seen: list[int] = []
    real, real_hits = _graph.Graph.query, _graph.Graph.hits

    def spy(self: Any, *args: Any) -> Any:
        seen.append(args[12])
        return real(self, *args)

    def spy_hits(self: Any, *args: Any) -> Any:
        got = real_hits(self, *args)
        if got is not None:
            seen.append(native.PLAIN)
        return got

    monkeypatch.setattr(_graph.Graph, "query", spy)
    monkeypatch.setattr(_graph.Graph, "hits", spy_hits)
    yield seen


CONFIGS: dict[str, dict[str, Any]] = {
    "float-dot": {"metric": "dot", "index": {"type": "hnsw", "ef": 24}},
    "float-l2": {"metric": "l2", "index": {"type": "hnsw", "ef": 24}},
    "int8-cosine": {
        "metric": "cosine",
        "index": {"type": "hnsw", "ef": 24},
        "quantize": {"type": "int8"},
        "rerank": {"oversampling": 2},
        "training": {"threshold": 256},
    },
    "int8-l2-norescore": {
        "metric": "l2",
        "index": {"type": "hnsw", "ef": 24},
        "quantize": {"type": "int8"},
        "rerank": {"enabled": False},
        "training": {"threshold": 256},
    },
    "leanvec-dot": {
        "metric": "dot",
        "index": {"type": "hnsw", "ef": 24},
        "reduce": {"type": "leanvec", "dim": 12},
        "rerank": {"oversampling": 3},
        "training": {"threshold": 256},
    },
    # int8 codes of rescaled LeanVec-reduced vectors: the reduced int8 walk and the full rerank in one call
    "leanvec8-dot": {
        "metric": "dot",
        "index": {"type": "hnsw", "ef": 24},
        "reduce": {"type": "leanvec", "dim": 12, "rescale": True},
        "quantize": {"type": "int8"},
        "rerank": {"oversampling": 3},
        "training": {"threshold": 256},
    },
}


def _make(engine: Engine, name: str) -> tuple[Collection, np.ndarray]:
    coll = engine.create(name, {"dim": DIM, **CONFIGS[name]})
    data = manifold(N + 40, DIM, seed=3, normalize=False)
    base, queries = data[:N], data[N:]
    # g: 50 groups; side: which half of the first coordinate (a filter against the query's direction)
    pay: list[Any] = [{"g": i % 50, "side": int(base[i, 0] > 0), "u": i % 50} for i in range(N)]
    coll.upsert(list(range(N)), base, pay)
    coll.create_payload_index("g", PayloadSchemaType.integer)
    coll.create_payload_index("side", PayloadSchemaType.integer)
    wait_indexed(coll)
    return coll, queries


def _both(coll: Collection, queries: list[Query], *, batch: bool = False) -> tuple[list[Any], list[Any]]:
    """The results natively, then by the Python planner: one search call per query, or one batch."""

    def run() -> list[Any]:
        return coll.search(queries) if batch else [coll.search([q])[0] for q in queries]

    try:
        native.ENABLED = True
        fast = run()
        native.ENABLED = False
        slow = run()
    finally:
        native.ENABLED = True
    return fast, slow


def _same(fast: list[Any], slow: list[Any]) -> set[str]:
    for a, b in zip(fast, slow, strict=True):
        assert a.strategy == b.strategy
        assert [h.id for h in a.hits] == [h.id for h in b.hits]
        np.testing.assert_allclose([h.score for h in a.hits], [h.score for h in b.hits], rtol=1e-5, atol=1e-5)
    return {r.strategy for r in fast}


def _where(cond: dict[str, Any]) -> Filter:
    return Filter.model_validate({"must": [cond]})


BROAD = _where({"key": "g", "range": {"lt": 25}})  # 50 %: postfilter
NARROW = _where({"key": "g", "range": {"lt": 5}})  # 10 %: ACORN
TINY = _where({"key": "g", "match": {"any": [7]}})  # 30 points: exact, the planner's
SQL_NARROW = _where({"key": "u", "range": {"lt": 5}})  # no payload index: SQL's label list, ACORN


@pytest.mark.parametrize("name", list(CONFIGS))
def test_native_matches_python_on_every_plan(engine: Engine, calls: list[int], name: str) -> None:
    coll, queries = _make(engine, name)
    kinds = {"float": "hnsw", "int8": "int8_hnsw", "leanvec": "leanvec_hnsw", "leanvec8": "leanvec_int8_hnsw"}
    kind = kinds[name.split("-")[0]]
    index = coll.fields[""].state.index  # type: ignore[union-attr]
    graph = getattr(index, "inner", index)._graph
    in_order = bool(np.all(np.diff(graph.get_state()["labels"]) > 0))
    assert in_order == (kind == "hnsw")  # a float graph over the rows keeps their order; the others not
    assert getattr(getattr(index, "reducer", None), "rescale", False) == (name == "leanvec8-dot")
    if name == "leanvec8-dot":
        assert index.spec == "LeanVec12-rescaled,SQ8,HNSW16"

    def run(flt: Filter | None, params: SearchParams | None = None, qs: Any = queries, batch: bool = False) -> set[str]:
        return _same(*_both(coll, [Query(vector=q, limit=K, filter=flt, params=params) for q in qs], batch=batch))

    assert run(None) == {kind}
    assert run(None, SearchParams(ef=48)) == {kind}
    assert run(None, batch=True) == {kind}
    assert run(BROAD) == {f"{kind}_postfilter"}
    assert run(NARROW) == {f"{kind}_acorn"}
    assert run(SQL_NARROW) == {f"{kind}_acorn+payload_scan"}
    assert run(TINY) == {"exact_filtered"}
    # along the first axis, against a filter on its sign: no candidate of the broad walk matches, so
    # the checked walk answers
    against = [5 * np.eye(DIM, dtype=np.float32)[0] + 0.01 * q for q in queries[:5]]
    strategies = run(_where({"key": "side", "match": {"any": [0]}}), qs=against)
    assert f"{kind}_filtered" in strategies
    assert {PLAIN, POSTFILTER, ACORN, CHECKED} <= set(calls)

    # tombstones: deleted points are never returned, by either path
    coll.delete(list(range(0, N, 3)))
    assert run(None) == {kind}
    assert run(None, batch=True) == {kind}
    assert run(NARROW) == {f"{kind}_acorn"}

    # an unindexed tail (new points and overwrites), merged exactly by both
    coll.pause_indexing()
    fresh = manifold(60, DIM, seed=9, normalize=False)
    ids: list[Any] = list(range(N, N + 40)) + list(range(1, 40, 2))
    coll.upsert(ids, fresh, [{"g": i % 50, "side": 0} for i in range(60)])
    calls.clear()
    assert run(None) == {kind}
    assert run(None, batch=True) == {kind}
    assert run(NARROW) == {f"{kind}_acorn"}
    assert run(BROAD) <= {f"{kind}_postfilter", f"{kind}_filtered"}
    assert calls  # the native path ran on the tail
    if CONFIGS[name]["metric"] != "dot":  # a tail point finds itself
        assert coll.search([Query(vector=fresh[5], limit=K)])[0].hits[0].id == N + 5


def test_a_native_walk_that_comes_up_short_falls_back_to_exact(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    coll, queries = _make(engine, "float-l2")
    real = native._Runner.call

    def short(self: Any, *args: Any, **kw: Any) -> Any:
        return [(labels[:2], scores[:2]) for labels, scores in real(self, *args, **kw)]  # two of the k

    monkeypatch.setattr(native._Runner, "call", short)
    got = coll.search([Query(vector=q, limit=K, filter=NARROW) for q in queries[:5]])
    exact = coll.search([Query(vector=q, limit=K, filter=NARROW, params=SearchParams(exact=True)) for q in queries[:5]])
    for a, b in zip(got, exact, strict=True):
        assert a.strategy == "exact_fallback"
        assert [h.id for h in a.hits] == [h.id for h in b.hits] and len(a.hits) == K


def test_batches_run_natively_on_several_threads(engine: Engine, calls: list[int]) -> None:
    coll, queries = _make(engine, "int8-cosine")
    batch = [Query(vector=q, limit=K, params=SearchParams(ef=32)) for q in queries]
    fast, slow = _both(coll, batch, batch=True)
    assert _same(fast, slow) == {"int8_hnsw"}
    assert calls == [PLAIN]  # one call for the whole batch
    one = [coll.search([q])[0] for q in batch]  # single queries give the same hits as the batch
    assert [[h.id for h in r.hits] for r in one] == [[h.id for h in r.hits] for r in fast]


def test_disabled_path_is_not_taken(engine: Engine, calls: list[int]) -> None:
    coll, queries = _make(engine, "float-dot")
    _both(coll, [Query(vector=queries[0], limit=K)])
    assert calls == [PLAIN]  # once, from the enabled pass only


PLAIN, ACORN, CHECKED, POSTFILTER = native.PLAIN, native.ACORN, native.CHECKED, native.POSTFILTER


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 300_000), max_size=3000),
    st.lists(st.tuples(st.integers(0, 300_000), st.integers(1, 70_000)), max_size=4),
    st.booleans(),
)
def test_roaring_bitmaps_are_read_exactly(values: list[int], ranges: list[tuple[int, int]], runs: bool) -> None:
    bm = BitMap(values)
    for start, length in ranges:  # long ranges make full bitmap containers, and run containers below
        bm.add_range(start, start + length)
    if runs:
        bm.run_optimize()
    assert _graph._allowed_labels(bm.serialize()) == list(bm)
    assert _graph._allowed_labels(np.asarray(list(bm), np.int64)) == list(bm)


def test_a_damaged_bitmap_is_a_value_error() -> None:
    good = BitMap(range(0, 100_000, 3)).serialize()
    for bad in (b"", b"\x00\x01", good[:-1], good[:10], b"\xff" * 64):
        with pytest.raises(ValueError):
            _graph._allowed_labels(bad)


def test_bad_arguments_are_value_errors() -> None:
    g = _graph.Graph(4, "ip", "float32")
    q = np.ones((1, 4), np.float32)
    alive = np.ones(8, bool)
    with pytest.raises(ValueError, match="k <= width"):
        g.query(q, None, 0, 1, 1, 8, False, None, alive, 0, 0, None, PLAIN, 1)
    with pytest.raises(ValueError, match="dimension"):
        g.query(np.ones((1, 5), np.float32), None, 1, 1, 1, 8, False, None, alive, 0, 0, None, PLAIN, 1)
    with pytest.raises(ValueError, match="needs the rows"):
        g.query(q, None, 1, 1, 1, 8, False, None, alive, 0, 3, None, PLAIN, 1)
    with pytest.raises(ValueError, match="needs the allowed"):
        g.query(q, None, 1, 1, 1, 8, False, None, alive, 0, 0, None, ACORN, 1)
    with pytest.raises(ValueError, match="unknown walk"):
        g.query(q, None, 1, 1, 1, 8, False, None, alive, 0, 0, None, 9, 1)
    assert g.query(q, None, 1, 1, 1, 8, False, None, alive, 0, 0, None, PLAIN, 1) == [([], [])]  # empty graph
