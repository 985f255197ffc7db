"""The int8 graph's unrolled plan is decided once per field, config, index and knobs (`native._Codes`),
and the common result (ids and scores, nothing else asked for) is assembled on a short road
(`HitReader.finish`): both must give what the Python planner gives, whatever changes in between."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import numpy as np

from index import native
from index.contract import Query
from index.dense import DenseField
from nestor_client.models import SearchParams
from tests.unit.index import test_native as tn
from tests.unit.index.conftest import Engine, wait_indexed
from tests.unit.index.test_native import K, N, _both, _make, _same

# test_native's fixtures: its options, its small-graph reordering, and the spy on the native calls
options, reordered, calls = tn.options, tn.reordered, tn.calls


def _memo(coll: Any) -> Any:
    f = coll.fields[""]
    assert isinstance(f, DenseField)
    return f.native_codes[0] if f.native_codes else None  # the latest first


def test_the_int8_memo_follows_the_knobs(engine: Engine, calls: list[int]) -> None:
    coll, queries = _make(engine, "int8-cosine")
    knobs = [
        None,
        SearchParams(ef=48),
        SearchParams(rescore=False),
        SearchParams(oversampling=4),
        SearchParams(ef=32, rescore=True, oversampling=1),
        None,
    ]
    scores = []
    for p in knobs:
        calls.clear()
        fast, slow = _both(coll, [Query(vector=q, limit=K, params=p, with_payload=False) for q in queries])
        assert _same(fast, slow) == {"int8_hnsw"}
        assert calls  # the native call ran
        memo = _memo(coll)
        assert memo is not None and memo.runs  # the unrolled road answered
        assert memo.knobs == ((None,) if p is None else (p.ef, p.rescore, p.oversampling))
        scores.append([h.score for r in fast for h in r.hits])
    # the knobs took effect: code scores without the rescore differ from the exact ones
    assert not np.allclose(scores[0], scores[2])


def test_alternating_knobs_reuse_their_memos(engine: Engine) -> None:
    """Plain searches and a pipeline's params, query by query, on one field: each keeps its plan (one memo
    alone was rebuilt on every query), and the memos stay few."""
    coll, queries = _make(engine, "int8-cosine")
    a, b = None, SearchParams(ef=48, rescore=True, oversampling=2)
    seen: dict[int, object] = {}
    for i in range(6):
        p = a if i % 2 == 0 else b
        fast, slow = _both(coll, [Query(vector=queries[i], limit=K, params=p, with_payload=False)])
        assert _same(fast, slow) == {"int8_hnsw"}
        memo = _memo(coll)
        assert seen.setdefault(i % 2, memo) is memo, "a memo was rebuilt for knobs it already had"
    for j in range(8):  # more distinct knobs than are kept
        _both(coll, [Query(vector=queries[0], limit=K, params=SearchParams(ef=20 + j), with_payload=False)])
    f = coll.fields[""]
    assert isinstance(f, DenseField)
    assert len(f.native_codes) == native._CODES_KEPT


def test_the_int8_memo_follows_a_new_index(engine: Engine) -> None:
    coll, queries = _make(engine, "int8-cosine")
    qs = [Query(vector=q, limit=K, with_payload=False) for q in queries]
    assert _same(*_both(coll, qs)) == {"int8_hnsw"}
    old = _memo(coll)
    old_index, old_graph = old.index, weakref.ref(old.inner()._graph)
    del old
    coll.delete(list(range(0, N, 2)))
    assert coll.optimize()  # a compaction: every point relabelled, a new index
    st = coll.optimizer.wait(60)
    assert st.last_error is None and coll.labels.n == N // 2
    wait_indexed(coll)
    # nothing keeps the replaced index or its graph alive (the memo holds them weakly)
    gc.collect()
    assert old_index() is None and old_graph() is None
    fast, slow = _both(coll, qs)
    assert _same(fast, slow) == {"int8_hnsw"}
    assert all(h.id % 2 == 1 for r in fast for h in r.hits)  # no deleted point
    f = coll.fields[""]
    assert isinstance(f, DenseField)
    assert _memo(coll).index() is f.state.index


def test_ids_only_hits_drop_a_point_deleted_after_the_walk(engine: Engine) -> None:
    coll, queries = _make(engine, "float-dot")
    q = Query(vector=queries[0], limit=K, with_payload=False)
    f = coll.fields[""]
    assert isinstance(f, DenseField)
    ranked = native.search(f, f.prepare_one(queries[0]), K, None, None)
    assert ranked is not None and len(ranked[0]) == K
    labels, scores, strategy = ranked
    gone = coll.hits.labels.ids[labels[3]]
    coll.delete([gone])  # between the walk and the ids
    got = coll.hits.finish(q, f, ranked)
    assert [h.id for h in got.hits] == [coll.hits.labels.ids[lab] for lab in labels if lab != labels[3]]
    assert [h.score for h in got.hits] == [s for i, s in enumerate(scores) if i != 3]
    assert got.strategy == strategy and gone not in {h.id for h in got.hits}
