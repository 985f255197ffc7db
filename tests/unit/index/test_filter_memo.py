"""A keyword value's search in one native call, its bitmap memoised (`search._dense_filtered`).

`filter_fast.select_few` keeps a keyword value's live labels, serialised, until the payload indexes' next
write (their `version`); `native.exact_vector` checks and normalises the query in the scan's own call.
Checked through `Collection.search`, on every metric, with query vectors off unit length: the hits are
the exact filtered search of the points as they are now, after each kind of write (a point upserted into
the value, overwritten into it and out of it, deleted, the index dropped and made again); a vector the
check turns down gets the error it got before, word for word; the memo's answer is the general
evaluator's, is kept while nothing is written, and is read again after any write.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pyroaring import BitMap

from index import _graph, native
from index.collection import Collection
from index.contract import Query
from index.errors import InvalidVector
from index.filter_fast import select_few
from nestor_client.models import Filter, PayloadSchemaType
from tests.unit.index.conftest import Engine, wait_indexed
from tests.unit.index.test_native_exact import _oracle as _oracle_rows

N, DIM, K = 400, 24, 5
TENANTS = ("t3", "t4", "nobody")


def _tenant(i: int) -> str:
    return f"t{i % 20}"


def _flt(t: str) -> Filter:
    return Filter.model_validate({"must": [{"key": "t", "match": {"value": t}}]})


def _oracle(data: dict[int, tuple[np.ndarray, str]], metric: str, q: np.ndarray, t: str) -> list[tuple[int, float]]:
    """The exact top K (id, score) of the points of tenant `t`, as the collection stores them."""
    out = []
    for pid, (v, tv) in data.items():
        if tv != t:
            continue
        v64, q64 = v.astype(np.float64), q.astype(np.float64)
        if metric == "cosine":
            s = float(v64 @ q64 / np.linalg.norm(v64) / np.linalg.norm(q64))
        elif metric == "dot":
            s = float(v64 @ q64)
        else:
            s = -float(np.linalg.norm(v64 - q64))
        out.append((pid, s))
    best = sorted(out, key=lambda e: (-e[1], e[0]))[:K]
    return [(pid, -s if metric == "l2" else s) for pid, s in best]


def _check(c: Collection, data: dict[int, tuple[np.ndarray, str]], metric: str, queries: np.ndarray) -> None:
    for t in TENANTS:
        for q in queries:
            res = c.search([Query(q, limit=K, filter=_flt(t), with_payload=False)])[0]
            want = _oracle(data, metric, q, t)
            assert res.strategy == "exact_filtered"
            assert [h.id for h in res.hits] == [pid for pid, _ in want]
            np.testing.assert_allclose([h.score for h in res.hits], [s for _, s in want], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_hits_are_the_exact_filtered_search_after_every_write(engine: Engine, metric: str) -> None:
    rng = np.random.default_rng(11)
    c = engine.create(
        "memo", {"dim": DIM, "metric": metric, "index": {"type": "hnsw"}, "payload_schema": {"t": "keyword"}}
    )
    vecs = rng.normal(size=(N, DIM)).astype(np.float32)
    c.upsert(list(range(N)), vecs, [{"t": _tenant(i)} for i in range(N)])
    wait_indexed(c, 30)
    stored = {i: (c.field(None).vector_of(np.array([c.labels.label_of[i]]))[0], _tenant(i)) for i in range(N)}
    queries = rng.normal(size=(4, DIM)).astype(np.float32) * 3  # off unit length: the call normalises them
    _check(c, stored, metric, queries)
    assert ("t", "t3") in c.payload.memo  # the road taken keeps the value's bitmap

    def write(pid: int, t: str, v: np.ndarray) -> None:
        c.upsert([pid], v[None, :], [{"t": t}])
        stored[pid] = (c.field(None).vector_of(np.array([c.labels.label_of[pid]]))[0], t)

    write(10_000, "t3", queries[0] * 2)  # new, into t3, right on a query
    _check(c, stored, metric, queries)
    write(3, "t4", queries[1])  # overwritten out of t3 (its old label stays in t3's posting, dead)
    _check(c, stored, metric, queries)
    write(4, "t3", queries[2])  # overwritten into t3
    _check(c, stored, metric, queries)
    c.delete([23, 43, 10_000])
    for pid in (23, 43, 10_000):
        del stored[pid]
    _check(c, stored, metric, queries)
    assert c.delete_payload_index("t")  # no index: SQL answers, and a new index starts from the store
    c.create_payload_index("t", PayloadSchemaType.keyword)
    _check(c, stored, metric, queries)


def test_the_memo_is_the_general_answer_until_a_write(engine: Engine) -> None:
    c = engine.create("memo", {"dim": DIM, "metric": "cosine", "payload_schema": {"t": "keyword", "n": "integer"}})
    rng = np.random.default_rng(5)
    c.upsert(
        list(range(N)), rng.normal(size=(N, DIM)).astype(np.float32), [{"t": _tenant(i), "n": i} for i in range(N)]
    )
    c.delete([3])
    p, schema, flt = c.payload, c.config.payload_schema, _flt("t3")
    raw = select_few(p, flt, schema, 100)
    assert type(raw) is bytes and BitMap.deserialize(raw) == c.payload.select(flt, c.labels.label_of)
    assert 3 not in BitMap.deserialize(raw) and len(BitMap.deserialize(raw)) == N // 20 - 1
    assert select_few(p, flt, schema, 100) is raw  # nothing written: the kept answer
    c.upsert([N], rng.normal(size=(1, DIM)).astype(np.float32), [{"t": "t9"}])  # another value
    again = select_few(p, flt, schema, 100)
    assert again is not raw and again == raw  # read again after a write, the same labels
    big = select_few(p, flt, schema, 5)  # more than `most`: the bitmap, not kept
    assert type(big) is BitMap and big == BitMap.deserialize(raw)
    for spec in (
        {"must": [{"key": "n", "match": {"value": 3}}]},  # an integer index
        {"must": [{"key": "t", "match": {"any": ["t3", "t4"]}}]},
        {"must": [{"key": "t", "match": {"value": "t3"}}, {"key": "n", "match": {"value": 3}}]},
        {"must": [{"key": "u", "match": {"value": "t3"}}]},  # no index
    ):
        assert select_few(p, Filter.model_validate(spec), schema, 100) is None


BAD: list[Any] = [
    np.full(DIM, np.nan, np.float32),
    np.r_[np.ones(DIM - 1), np.inf].astype(np.float32),
    np.full(DIM, 1e20, np.float32),  # finite, but its square is not: the native check declines it too
    np.zeros(DIM, np.float32),  # no cosine direction
    np.ones(DIM + 1, np.float32),
]


@pytest.mark.parametrize("v", BAD, ids=["nan", "inf", "overflow", "zeros", "dim"])
def test_a_vector_turned_down_gets_the_same_error(engine: Engine, v: np.ndarray) -> None:
    c = engine.create("memo", {"dim": DIM, "metric": "cosine", "payload_schema": {"t": "keyword"}})
    c.upsert(list(range(40)), np.ones((40, DIM), np.float32), [{"t": _tenant(i)} for i in range(40)])
    errors = []
    for enabled in (True, False):
        native.ENABLED = enabled
        try:
            with pytest.raises(Exception) as got:
                c.search([Query(v, limit=K, filter=_flt("t3"))])
        finally:
            native.ENABLED = True
        errors.append((type(got.value), str(got.value)))
    assert errors[0] == errors[1]
    if v.shape == (DIM,) and not (np.abs(v) > 1e18).any():  # the overflow is numpy's warning, an error under pytest
        assert errors[0][0] is InvalidVector


@pytest.mark.parametrize("metric", [0, 1, 2])
def test_the_one_call_scan_is_the_oracles_top_k_of_the_checked_query(metric: int) -> None:
    rng = np.random.default_rng(metric)
    rows = rng.normal(size=(300, 37)).astype(np.float32)
    alive = rng.random(300) > 0.1
    labels = sorted(rng.choice(300, 101, replace=False).tolist())
    raw = BitMap(labels).serialize()
    q = rng.normal(size=37).astype(np.float32) * 2.5  # off unit length: cosine (1) scales it, 0 and 2 do not
    got = _graph.exact_vector(q, rows, alive, 290, raw, 10, metric)
    assert got is not None
    want, want_s = _oracle_rows(q / np.linalg.norm(q) if metric == 1 else q, rows, alive, 290, labels, 10, metric == 2)
    assert got[0] == want
    np.testing.assert_allclose(got[1], want_s, rtol=1e-4, atol=1e-4)
    # not numpy's own arrays (the buffer protocol's way), liveness as bytes, a float64 query: the same
    assert _graph.exact_vector(q, memoryview(rows), memoryview(alive.view(np.uint8)), 290, raw, 10, metric) == got
    assert _graph.exact_vector(q, rows, alive.view(np.uint8), 290, raw, 10, metric) == got
    assert _graph.exact_vector(q.astype(np.float64), rows, alive, 290, raw, 10, metric)[0] == got[0]  # type: ignore[index]
    for other in (q[:5], np.stack([q, q]), "not a vector"):  # not one row of the dimension: the caller's check
        assert _graph.exact_vector(other, rows, alive, 290, raw, 10, metric) is None
    with pytest.raises(ValueError):
        _graph.exact_vector(q, rows[:, ::2], alive, 290, raw, 10, metric)  # rows not contiguous: refused
