"""The quick road of the commonest filters (benchmarks/FILTERS.md, `tenant == t7`).

- `filter_fast.select_one` (one `match` or `range` condition on a ready payload index) gives exactly the
  general evaluator's labels for every index type and condition kind, declines every other shape, and
  refuses a value of the wrong type as the general path does (InvalidFilter, a 422 over REST);
- a search whose filter matches at most `exact_filter_threshold` points is one native exact call
  (`native.exact_few`): the same hits as the Python planner's exact plan, `exact_filtered`, and it sees
  writes (an upsert into the tenant, a delete) at once;
- the exact scan's four-rows-a-step kernel against a numpy oracle at dimensions that are not a multiple of
  the SIMD width, on both metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from pyroaring import BitMap

from index import _graph, native
from index.collection import Collection
from index.contract import Query
from index.errors import InvalidFilter
from index.filter_fast import select_one
from nestor_client.models import Filter, PayloadSchemaType
from tests.unit.index.conftest import Engine, unit, wait_indexed
from tests.unit.index.test_native_exact import _oracle

N, DIM = 600, 24
S = PayloadSchemaType
SCHEMA = {"t": S.keyword, "n": S.integer, "x": S.float, "at": S.datetime, "b": S.bool, "words": S.text}


def _payload(i: int) -> dict[str, Any]:
    return {
        "t": f"t{i % 40}",
        "n": i % 25,
        "x": (i % 100) / 100,
        "at": f"2024-01-{1 + i % 28:02d}T00:00:00Z",
        "b": i % 3 == 0,
        "words": f"alpha w{i % 7}",
        "u": f"t{i % 40}",  # not indexed
    }


@pytest.fixture(scope="module")
def coll(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collection]:
    from tests.unit.index.conftest import QUIET

    eng = Engine(tmp_path_factory.mktemp("fast"), QUIET)
    c = eng.create("fast", {"dim": DIM, "metric": "cosine", "index": {"type": "hnsw"}, "payload_schema": SCHEMA})
    vecs = unit(np.random.default_rng(3).normal(size=(N, DIM)).astype(np.float32))
    c.upsert(list(range(N)), vecs, [_payload(i) for i in range(N)])
    c.delete(list(range(0, N, 11)))  # dead labels stay in the postings: every answer must drop them
    wait_indexed(c, 30)
    yield c
    eng.close()


def _general(c: Collection, flt: Filter) -> BitMap | None:
    return c.payload.select(flt, c.labels.label_of) if c._indexed(flt) else None


ONE = [
    {"key": "t", "match": {"value": "t7"}},
    {"key": "t", "match": {"value": "nobody"}},
    {"key": "t", "match": {"any": ["t1", "t2", "nobody"]}},
    {"key": "t", "match": {"except": ["t1", "t2"]}},
    {"key": "n", "match": {"value": 3}},
    {"key": "n", "match": {"any": [3, 4]}},
    {"key": "n", "range": {"gte": 5, "lt": 9}},
    {"key": "x", "range": {"gt": 0.25, "lte": 0.5}},
    {"key": "at", "range": {"gte": "2024-01-10T00:00:00Z", "lt": "2024-01-12T00:00:00+00:00"}},
    {"key": "b", "match": {"value": True}},
    {"key": "words", "match": {"text": "alpha w3"}},
]


@pytest.mark.parametrize("cond", ONE, ids=[f"{c['key']}-{i}" for i, c in enumerate(ONE)])
def test_one_condition_matches_the_general_evaluator(coll: Collection, cond: dict[str, Any]) -> None:
    flt = Filter.model_validate({"must": [cond]})
    fast, general = select_one(coll.payload, flt, coll.config.payload_schema), _general(coll, flt)
    assert fast is not None and general is not None
    assert fast == general
    assert not fast - coll.payload.live  # no dead label
    assert coll.count_where(flt) == len(general)


OTHER = [
    {"must": [{"key": "t", "match": {"value": "t7"}}, {"key": "n", "match": {"value": 7}}]},
    {"should": [{"key": "t", "match": {"value": "t7"}}]},
    {"must": [{"key": "t", "match": {"value": "t7"}}], "must_not": [{"key": "n", "match": {"value": 7}}]},
    {"must": [{"has_id": [1, 2]}]},
    {"must": [{"is_empty": {"key": "t"}}]},
    {"must": [{"key": "t", "values_count": {"gte": 1}}]},
    {"must": [{"key": "u", "match": {"value": "t7"}}]},  # no index: the general path scans SQL
    {"must": [{"must": [{"key": "t", "match": {"value": "t7"}}]}]},
    {},
]


@pytest.mark.parametrize("spec", OTHER, ids=[str(i) for i in range(len(OTHER))])
def test_every_other_shape_takes_the_general_path(coll: Collection, spec: dict[str, Any]) -> None:
    assert select_one(coll.payload, Filter.model_validate(spec), coll.config.payload_schema) is None


@pytest.mark.parametrize(
    "cond",
    [
        {"key": "t", "match": {"value": 7}},
        {"key": "n", "match": {"value": "seven"}},
        {"key": "t", "range": {"gte": 1}},
        {"key": "at", "range": {"gte": "yesterday"}},
        {"key": "b", "match": {"value": "yes"}},
    ],
)
def test_a_value_of_the_wrong_type_is_refused_as_before(coll: Collection, cond: dict[str, Any]) -> None:
    flt = Filter.model_validate({"must": [cond]})
    with pytest.raises(InvalidFilter) as fast:
        select_one(coll.payload, flt, coll.config.payload_schema)
    with pytest.raises(InvalidFilter) as general:
        coll.payload.check(flt, coll.config.payload_schema)
    assert str(fast.value) == str(general.value)
    with pytest.raises(InvalidFilter):
        coll.search([Query(np.ones(DIM, np.float32), limit=5, filter=flt)])


def test_a_few_matches_are_one_native_call_and_see_writes(coll: Collection) -> None:
    flt = Filter.model_validate({"must": [{"key": "t", "match": {"value": "t7"}}]})
    q = unit(np.random.default_rng(9).normal(size=DIM).astype(np.float32))
    sel, indexed = coll.selection(flt)
    assert indexed and 0 < len(sel) <= coll.options.exact_filter_threshold
    f = coll.field(None)
    assert native.exact_few(f, f.prepare_one(q), 5, sel) is not None  # the quick road is the one taken

    def both() -> tuple[list[tuple[Any, float]], list[tuple[Any, float]]]:
        out = []
        for enabled in (True, False):
            native.ENABLED = enabled
            try:
                res = coll.search([Query(q, limit=5, filter=flt, with_payload=False)])[0]
            finally:
                native.ENABLED = True
            assert res.strategy == "exact_filtered"
            out.append([(h.id, h.score) for h in res.hits])
        return out[0], out[1]

    fast, planner = both()
    assert [i for i, _ in fast] == [i for i, _ in planner]
    np.testing.assert_allclose([s for _, s in fast], [s for _, s in planner], atol=1e-5)
    # a new point of the tenant right on the query comes first; deleting it takes it away again
    coll.upsert([10_000], q[None, :], [{"t": "t7"}])
    assert both()[0][0][0] == 10_000
    coll.delete([10_000])
    assert 10_000 not in [i for i, _ in both()[0]]


@pytest.mark.parametrize("dim", [5, 16, 37, 384])
@pytest.mark.parametrize("l2", [False, True])
def test_the_four_row_scan_matches_numpy(dim: int, l2: bool) -> None:
    rng = np.random.default_rng(dim)
    rows = rng.normal(size=(300, dim)).astype(np.float32)
    alive = rng.random(300) > 0.1
    q = rng.normal(size=(2, dim)).astype(np.float32)
    for m in (1, 3, 4, 7, 101):  # below, at and past a step of four rows
        labels = sorted(rng.choice(300, m, replace=False).tolist())
        got = _graph.exact(q, rows, alive, 290, BitMap(labels).serialize(), 10, l2)
        for qi, (lab, sc) in enumerate(got):
            want, want_s = _oracle(q[qi], rows, alive, 290, labels, 10, l2)
            assert lab == want or sorted(sc) == pytest.approx(sorted(want_s.tolist()), abs=1e-4)
            np.testing.assert_allclose(sc, want_s, rtol=1e-4, atol=1e-4)
