"""A plain float32 (or int8) graph query straight to hits in one native call (`native.answer`,
index/_graph_hits.h).

Driven through `Collection.search` three ways: the one call, the native path before it (`native.answer`
off: `native.search`'s unrolled walk, then `HitReader.finish`) and the Python planner (`native.ENABLED`
off), on dot, cosine and L2 (and int8 codes, with and without the rescore), with rows not yet indexed
and deleted points still in the graph: the same strategy, ids in the same order, the same scores. A spy
on `native.answer` counts the queries it really answered, so a silent fallback cannot pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from index import native
from index.backends.graph import GraphIndex
from index.contract import Query
from index.encoded import EncodedIndex
from index.errors import InvalidRequest, NestorError
from nestor_client.models import SearchParams
from tests.synth import manifold
from tests.unit.index.conftest import Engine, wait_indexed

N, DIM, K, TAIL = 1200, 16, 10, 40


@pytest.fixture
def answered(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The limit of every query `native.answer` answered (not None)."""
    got: list[int] = []
    real = native.answer

    def spy(field: Any, index: Any, upto: int, q: Query, ids: list[Any]) -> Any:
        res = real(field, index, upto, q, ids)
        if res is not None:
            got.append(q.limit)
        return res

    monkeypatch.setattr(native, "answer", spy)
    return got


@pytest.fixture(autouse=True)
def native_on() -> Iterator[None]:
    yield
    native.ENABLED = True


def _three(coll: Any, queries: list[Query], monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], ...]:
    """The results by the one call, by the native path before it, and by the planner."""
    one = [coll.search([q])[0] for q in queries]
    with monkeypatch.context() as m:
        m.setattr(native, "answer", lambda *a: None)
        old = [coll.search([q])[0] for q in queries]
    native.ENABLED = False
    planned = [coll.search([q])[0] for q in queries]
    native.ENABLED = True
    return one, old, planned


def _same(a: list[Any], b: list[Any], *, exact: bool, strategy: str = "hnsw") -> None:
    for x, y in zip(a, b, strict=True):
        assert x.strategy == y.strategy == strategy
        assert [h.id for h in x.hits] == [h.id for h in y.hits]
        if exact:  # the same walk and the same float: not merely close
            assert [h.score for h in x.hits] == [h.score for h in y.hits]
        else:
            np.testing.assert_allclose([h.score for h in x.hits], [h.score for h in y.hits], rtol=1e-5, atol=1e-5)
        assert all(h.payload is None and h.vectors is None for h in x.hits)


INT8: dict[str, dict[str, Any]] = {
    "int8-cosine-rescore": {"metric": "cosine", "quantize": {"type": "int8"}, "rerank": {"oversampling": 2}},
    "int8-l2-norescore": {"metric": "l2", "quantize": {"type": "int8"}, "rerank": {"enabled": False}},
}


def _collection(engine: Engine, metric: str, seed: int, extra: dict[str, Any] | None = None) -> tuple[Any, np.ndarray]:
    data = manifold(N + TAIL, DIM, seed=seed, normalize=metric != "l2")
    cfg = {"dim": DIM, "metric": metric, "index": {"type": "hnsw", "ef": 24}, **(extra or {})}
    coll = engine.create("c", cfg)
    coll.upsert(list(range(N)), data[:N], [{"i": i} for i in range(N)])
    wait_indexed(coll)
    assert type(coll.fields[""].state.index) is (GraphIndex if extra is None else EncodedIndex)
    return coll, data


@pytest.mark.parametrize("metric", ["dot", "l2", "cosine"])
def test_the_one_call_matches_the_native_path_and_the_planner_with_a_tail_and_deletes(
    engine: Engine, answered: list[int], metric: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    coll, data = _collection(engine, metric, seed=3)
    coll.pause_indexing()  # the tail stays unindexed and the deleted points stay in the graph
    coll.upsert(list(range(N, N + TAIL)), data[N:])
    near = [Query(vector=data[i] + 0.01, limit=K, with_payload=False) for i in range(0, N, 60)]
    gone = {h.id for h in coll.search([near[0]])[0].hits[:3]}
    coll.delete(sorted(gone))
    tail_q = [Query(vector=data[i], limit=K, with_payload=False) for i in range(N, N + TAIL, 8)]
    ef_q = [Query(vector=data[i], limit=7, params=SearchParams(ef=40), with_payload=False) for i in (5, 500)]
    queries = near + tail_q + ef_q
    answered.clear()
    one, old, planned = _three(coll, queries, monkeypatch)
    # straight to hits: every query, cosine ones (data + 0.01) normalised first as the general path does
    assert len(answered) == len(queries)
    _same(one, old, exact=True)
    _same(one, planned, exact=False)
    for r in one[: len(near) + len(tail_q)]:
        assert len(r.hits) == K and not gone & {h.id for h in r.hits}
    for i, r in zip(range(N, N + TAIL, 8), one[len(near) : len(near) + len(tail_q)], strict=True):
        assert r.hits[0].id == i  # an unindexed row is scored exactly: its own vector finds it first
    assert [len(r.hits) for r in one[-2:]] == [7, 7]
    if metric == "l2":
        assert one[-3].hits[0].score == pytest.approx(0.0, abs=1e-3)  # a distance, not a negated square


def test_every_other_query_kind_answers_as_before(
    engine: Engine, answered: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    coll, data = _collection(engine, "cosine", seed=8)
    v = data[7]
    plain = Query(vector=v, limit=K, with_payload=False)
    others = [
        Query(vector=v * 3.0, limit=K, with_payload=False),  # normalised first, then straight to hits
        Query(vector=v, limit=K),  # with payloads
        Query(vector=v, limit=K, with_payload=False, with_vector=True),
        Query(vector=v, limit=K, offset=2, with_payload=False),
        Query(vector=v, limit=K, score_threshold=0.9, with_payload=False),
        Query(vector=v, limit=K, params=SearchParams(exact=True), with_payload=False),
    ]
    answered.clear()
    one, old, planned = _three(coll, [plain, *others], monkeypatch)
    assert answered == [K, K]  # the plain query and the one to normalise only
    for a, b in zip(one, planned, strict=True):
        assert [h.id for h in a.hits] == [h.id for h in b.hits] and a.strategy == b.strategy
        np.testing.assert_allclose([h.score for h in a.hits], [h.score for h in b.hits], rtol=1e-5, atol=1e-5)
    _same(one[:2], old[:2], exact=True)
    assert [h.id for h in one[1].hits] == [h.id for h in one[0].hits]
    assert one[0].hits[0].id == 7 and one[2].hits[0].payload == {"i": 7} and one[3].hits[0].vectors is not None
    assert [h.id for h in one[4].hits][: K - 2] == [h.id for h in one[0].hits][2:]
    assert one[6].strategy != "hnsw"
    funnel = SearchParams.model_validate({"funnel": [{"dim": 8, "limit": 40}]})
    with pytest.raises(InvalidRequest, match="funnel"):  # `check_params`'s error, as before
        coll.search([Query(vector=v, limit=K, params=funnel, with_payload=False)])


@pytest.mark.parametrize("metric", ["dot", "cosine", "leanvec-cosine"])
def test_bad_vectors_raise_the_same_errors(engine: Engine, answered: list[int], metric: str) -> None:
    # a LeanVec collection too: its query is checked before it is projected, as the general path does
    reduced = {"reduce": {"type": "leanvec", "dim": 8}, "training": {"threshold": 256}}
    leanvec = metric.startswith("leanvec-")
    metric = metric.removeprefix("leanvec-")
    coll, data = _collection(engine, metric, seed=5, extra=reduced if leanvec else None)
    nan, inf = data[0].copy(), data[0].copy()
    nan[3], inf[5] = np.nan, np.inf
    bad = [nan, inf, data[0][:8], np.zeros(DIM + 1, np.float32)]
    if metric == "cosine":
        bad.append(np.zeros(DIM, np.float32))  # no direction
    for v in bad:
        errors = []
        for enabled in (True, False):
            native.ENABLED = enabled
            with pytest.raises(NestorError) as e:
                coll.search([Query(vector=v, limit=K, with_payload=False)])
            errors.append((type(e.value), str(e.value)))
        native.ENABLED = True
        assert errors[0] == errors[1]
    assert answered == []


def test_hits_map_labels_to_ids_and_drop_deleted_ones(engine: Engine) -> None:
    coll, data = _collection(engine, "dot", seed=9)
    field = coll.fields[""]
    g = field.state.index._graph
    n = field.labels.n
    alive = field.alive
    ids: list[Any] = [f"p{i}" for i in range(n)]
    got = g.hits(data[0], K, K, 24, False, None, alive, n, n, False, ids)
    assert got is not None and len(got) == K
    labels, scores = g.query(data[:1], None, K, K, K, 24, False, None, alive, n, n, None, native.PLAIN, 1)[0]
    assert [h.id for h in got] == [ids[lab] for lab in labels]
    assert [h.score for h in got] == scores
    ids[labels[1]] = None  # deleted after the search read `alive`: index/hits.py drops it too
    again = g.hits(data[0], K, K, 24, False, None, alive, n, n, False, ids)
    assert again is not None and [h.id for h in again] == [h.id for h in got if h is not got[1]]
    assert (
        g.hits(data[0], K, K, 24, False, None, alive, n, n, False, ids[:3]) is not None
    )  # labels past the list: dropped
    assert len(g.hits(data[0], K, K, 24, False, None, alive, n, n, False, ids[:3]) or []) <= 3
    assert g.hits(data[0][:4], K, K, 24, False, None, alive, n, n, False, ids) is None  # another dim
    assert (
        g.hits(data[0] * 2, K, K, 24, False, None, alive, n, n, True, ids) is None
    )  # cosine, not unit: normalise first
    with pytest.raises(ValueError, match="tail"):
        g.hits(data[0], K, K, 24, False, None, alive, n - 5, n, False, ids)  # an unindexed tail without the rows


def _with_tail_and_deaths(engine: Engine, spec: dict[str, Any]) -> tuple[Any, np.ndarray, list[Query], set[Any]]:
    """A trained collection of `spec` (its metric and config), an unindexed tail of TAIL rows, three of a
    query's hits deleted; the queries (every 70th row, one with its own ef and oversampling) and the dead."""
    cfg = dict(spec)
    metric = cfg.pop("metric")
    coll, data = _collection(engine, metric, seed=4, extra={**cfg, "training": {"threshold": 256}})
    coll.pause_indexing()
    coll.upsert(list(range(N, N + TAIL)), data[N:])
    queries = [Query(vector=data[i], limit=K, with_payload=False) for i in range(0, N + TAIL, 70)]
    gone = {h.id for h in coll.search([queries[1]])[0].hits[:3]}
    coll.delete(sorted(gone))
    queries.append(Query(vector=data[9], limit=5, params=SearchParams(ef=40, oversampling=3), with_payload=False))
    return coll, data, queries, gone


@pytest.mark.parametrize("name", sorted(INT8))
def test_int8_codes_take_the_same_road(
    engine: Engine, answered: list[int], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the int8 graph quantizes the query itself: the walk, the rescore from the float32 rows (or the codes'
    # own scores), the tail and the liveness in the same one call
    coll, data, queries, gone = _with_tail_and_deaths(engine, INT8[name])
    answered.clear()
    one, old, planned = _three(coll, queries, monkeypatch)
    assert len(answered) == len(queries)
    strategy = one[0].strategy
    _same(one, old, exact=True, strategy=strategy)
    _same(one, planned, exact=False, strategy=strategy)
    assert all(not gone & {h.id for h in r.hits} for r in one)


@pytest.mark.parametrize("flag", ["GRAPH_HITS", "REDUCED_HITS"])
def test_a_native_module_without_the_call_takes_the_old_road(
    engine: Engine, answered: list[int], monkeypatch: pytest.MonkeyPatch, flag: str
) -> None:
    # a `_graph` built before `Graph.hits` (GRAPH_HITS), or before its `full=` query for a reduced walk
    # (REDUCED_HITS, a LeanVec collection): a checkout whose .so was not rebuilt takes the native path as before
    reduced = {"reduce": {"type": "leanvec", "dim": 8}, "training": {"threshold": 256}}
    coll, data = _collection(engine, "dot", seed=6, extra=reduced if flag == "REDUCED_HITS" else None)
    q = Query(vector=data[3], limit=K, with_payload=False)
    want = coll.search([q])[0]
    monkeypatch.setattr(native, flag, False)
    answered.clear()
    got = coll.search([q])[0]
    assert answered == [] and [h.id for h in got.hits] == [h.id for h in want.hits]
    assert [h.score for h in got.hits] == [h.score for h in want.hits]


LEANVEC: dict[str, dict[str, Any]] = {
    "leanvec-dot": {"metric": "dot", "reduce": {"type": "leanvec", "dim": 8}, "rerank": {"oversampling": 3}},
    "leanvec-cosine-rescaled": {
        "metric": "cosine",
        "reduce": {"type": "leanvec", "dim": 8, "rescale": True},
        "rerank": {"oversampling": 3},
    },
    "leanvec8-l2-rescaled": {
        "metric": "l2",
        "reduce": {"type": "leanvec", "dim": 8, "rescale": True},
        "quantize": {"type": "int8"},
        "rerank": {"oversampling": 3},
    },
}


@pytest.mark.parametrize("name", sorted(LEANVEC))
def test_leanvec_walks_take_the_one_call_too(
    engine: Engine, answered: list[int], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the query projected in Python, then the reduced walk (float32 or int8 codes), the rescore of the full
    # rows with the user's vector, the tail and the liveness in one call: as `_codes_unfiltered` did them
    metric = LEANVEC[name]["metric"]
    coll, data, queries, gone = _with_tail_and_deaths(engine, LEANVEC[name])
    assert coll.fields[""].state.index.reducer is not None
    queries.append(Query(vector=data[N + 5], limit=K, with_payload=False))  # an unindexed row's own vector
    if metric == "cosine":
        queries.append(Query(vector=data[11] * 3.0, limit=K, with_payload=False))  # normalised first
    answered.clear()
    one, old, planned = _three(coll, queries, monkeypatch)
    assert len(answered) == len(queries)
    strategy = one[0].strategy
    assert strategy.startswith("leanvec")
    _same(one, old, exact=True, strategy=strategy)
    _same(one, planned, exact=False, strategy=strategy)
    assert all(not gone & {h.id for h in r.hits} for r in one)
    assert one[len(queries) - (2 if metric == "cosine" else 1)].hits[0].id == N + 5  # scored from its full row
