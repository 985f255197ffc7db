"""One unfiltered IVF-PQ query natively (index/ivf_search.py): faiss's shortlist, reranked by `_graph.exact`.

Driven through `Collection.search` twice, natively and with `native.ENABLED` off (the Python planner's
IVF-PQ path), on both metrics, with rows not yet indexed and deleted points still in faiss's lists:
the same strategy, ids in the same order, the same scores. A spy on `IvfPqIndex.shortlist` checks that
the native path really ran, so a silent fallback cannot pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from index import native
from index.backends.ivfpq import FAST_SCAN_IMPLEM, IvfPqIndex
from index.contract import Query
from index.dense import DenseField
from nestor_client.models import SearchParams
from tests.synth import manifold
from tests.unit.index.conftest import Engine, wait_indexed

N, DIM, K, TAIL = 1200, 16, 10, 40
PARAMS = SearchParams(nprobe=4, oversampling=6)


@pytest.fixture
def shortlists(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The k of every native shortlist taken."""
    calls: list[int] = []
    real = IvfPqIndex.shortlist

    def spy(self: IvfPqIndex, query: Any, k: int, nprobe: int | None) -> Any:
        calls.append(k)
        return real(self, query, k, nprobe)

    monkeypatch.setattr(IvfPqIndex, "shortlist", spy)
    return calls


@pytest.fixture(autouse=True)
def native_on() -> Iterator[None]:
    yield
    native.ENABLED = True


def _both(coll: Any, queries: list[Query]) -> tuple[list[Any], list[Any]]:
    native.ENABLED = True
    fast = [coll.search([q])[0] for q in queries]
    native.ENABLED = False
    slow = [coll.search([q])[0] for q in queries]
    native.ENABLED = True
    return fast, slow


def _same(fast: list[Any], slow: list[Any]) -> None:
    for a, b in zip(fast, slow, strict=True):
        assert a.strategy == b.strategy == "ivf_pq"
        assert [h.id for h in a.hits] == [h.id for h in b.hits]
        np.testing.assert_allclose([h.score for h in a.hits], [h.score for h in b.hits], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("metric", ["dot", "l2"])
def test_native_ivf_matches_the_planner_with_a_tail_and_deletes(
    engine: Engine, shortlists: list[int], metric: str
) -> None:
    data = manifold(N + TAIL, DIM, seed=3, normalize=metric == "dot")
    coll = engine.create(
        "c", {"dim": DIM, "metric": metric, "index": {"type": "ivf_pq", "nlist": 8, "train_threshold": N}}
    )
    coll.upsert(list(range(N)), data[:N])
    wait_indexed(coll)
    coll.pause_indexing()  # the tail stays unindexed and the deleted points stay in faiss's lists
    coll.upsert(list(range(N, N + TAIL)), data[N:])
    queries = [Query(vector=data[i] + 0.01, limit=K, params=PARAMS, with_payload=False) for i in range(0, N, 60)]
    gone = {h.id for h in coll.search([queries[0]])[0].hits[:3]}
    coll.delete(sorted(gone))
    tail_q = [Query(vector=data[i], limit=K, params=PARAMS, with_payload=False) for i in range(N, N + TAIL, 8)]
    shortlists.clear()
    fast, slow = _both(coll, queries + tail_q)
    assert len(shortlists) == len(queries) + len(tail_q)
    assert set(shortlists) == {K * 6}  # k times the oversampling
    _same(fast, slow)
    for r in fast:
        assert len(r.hits) == K and not gone & {h.id for h in r.hits}
    for i, r in zip(range(N, N + TAIL, 8), fast[len(queries) :], strict=True):
        assert r.hits[0].id == i  # an unindexed row is scored exactly: its own vector finds it first
    if metric == "l2":
        assert fast[-1].hits[0].score == pytest.approx(0.0, abs=1e-3)  # a distance, not a negated square


def test_without_rescore_the_planner_serves_the_codes_scores(engine: Engine, shortlists: list[int]) -> None:
    data = manifold(N, DIM, seed=4)
    coll = engine.create(
        "c", {"dim": DIM, "metric": "dot", "index": {"type": "ivf_pq", "nlist": 8, "train_threshold": N}}
    )
    coll.upsert(list(range(N)), data)
    wait_indexed(coll)
    p = SearchParams(nprobe=4, rescore=False)
    queries = [Query(vector=data[i], limit=K, params=p, with_payload=False) for i in range(0, N, 100)]
    fast, slow = _both(coll, queries)
    assert not shortlists
    _same(fast, slow)


def test_the_single_query_kernel_is_set_after_training_and_loading(engine: Engine) -> None:
    data = manifold(N, DIM, seed=5)
    coll = engine.create(
        "c", {"dim": DIM, "metric": "dot", "index": {"type": "ivf_pq", "nlist": 8, "train_threshold": N}}
    )
    coll.upsert(list(range(N)), data)
    wait_indexed(coll)
    assert _kernel(coll) == FAST_SCAN_IMPLEM
    engine.restart()
    assert _kernel(engine.get("c")) == FAST_SCAN_IMPLEM


def _kernel(coll: Any) -> int:
    f = coll.fields[""]
    assert isinstance(f, DenseField) and isinstance(f.state.index, IvfPqIndex)
    faiss_index: Any = f.state.index._index
    return int(faiss_index.implem)
