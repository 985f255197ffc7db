"""One unfiltered IVF-PQ query natively (index/ivf_search.py): faiss's shortlist and its rerank in one call.

Driven through `Collection.search` twice, natively and with `native.ENABLED` off (the Python planner's
IVF-PQ path), on both metrics, with rows not yet indexed and deleted points still in faiss's lists:
the same strategy, ids in the same order, the same scores. A spy on `IvfPqIndex.rerank` checks that
the native path really ran, so a silent fallback cannot pass.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import faiss
import numpy as np
import pytest

from index import _graph, native
from index.backends.base import Space
from index.backends.ivfpq import _LIBFAISS, FAST_SCAN_IMPLEM, IvfPqIndex
from index.contract import Query
from index.dense import DenseField
from index.errors import InvalidVector
from nestor_client.models import SearchParams
from tests.synth import manifold
from tests.unit.index.conftest import Engine, wait_indexed

N, DIM, K, TAIL = 1200, 16, 10, 40
PARAMS = SearchParams(nprobe=4, oversampling=6)


@pytest.fixture
def shortlists(monkeypatch: pytest.MonkeyPatch, to_hits: list[int]) -> list[int]:
    """The k of every native shortlist taken (faiss's search and the rerank in one call), to (labels,
    scores) or to hits (`IvfPqIndex.hits`, whose calls `to_hits` also records) when that gave some."""
    calls: list[int] = []
    real, real_hits = IvfPqIndex.rerank, IvfPqIndex.hits

    def spy(self: IvfPqIndex, query: Any, k_ann: int, *args: Any) -> Any:
        calls.append(k_ann)
        return real(self, query, k_ann, *args)

    def spy_hits(self: IvfPqIndex, vector: Any, k_ann: int, *args: Any) -> Any:
        got = real_hits(self, vector, k_ann, *args)
        if got is not None:
            calls.append(k_ann)
            to_hits.append(k_ann)
        return got

    monkeypatch.setattr(IvfPqIndex, "rerank", spy)
    monkeypatch.setattr(IvfPqIndex, "hits", spy_hits)
    return calls


@pytest.fixture
def to_hits() -> list[int]:
    """The k of every shortlist that went straight to hits (`IvfPqIndex.hits`)."""
    return []


@pytest.fixture(params=["one call", "faiss's Python API", "an older native module"])
def through(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The native path as it runs here (faiss's C++ search called from `_graph.FaissIvf`), as it runs on
    a faiss that module refuses (the shortlist through faiss's Python API, then `_graph.exact`), and with a
    native module built before `FaissIvf` existed (the same fallback)."""
    if request.param == "faiss's Python API":
        monkeypatch.setattr(IvfPqIndex, "_bind", lambda self, index: None)
    elif request.param == "an older native module":
        monkeypatch.delattr(_graph, "FaissIvf")
    return str(request.param)


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


@pytest.mark.parametrize("metric", ["dot", "l2", "cosine"])
def test_native_ivf_matches_the_planner_with_a_tail_and_deletes(
    engine: Engine, shortlists: list[int], to_hits: list[int], metric: str, through: str
) -> None:
    data = manifold(N + TAIL, DIM, seed=3, normalize=metric != "l2")
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
    to_hits.clear()
    fast, slow = _both(coll, queries + tail_q)
    assert len(shortlists) == len(queries) + len(tail_q)
    assert set(shortlists) == {K * 6}  # k times the oversampling
    index = coll.fields[""].state.index
    assert (index._native[1] is not None) == (through == "one call")  # the path named really ran
    # straight to hits: every query, cosine ones (data + 0.01) normalised first as the general path does
    assert len(to_hits) == (len(shortlists) if through == "one call" else 0)
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


def test_the_one_call_search_refuses_an_index_without_an_ivf_search() -> None:
    # the vtable check (index/_faiss_ivf.h): a flat index's search is not one the module may call
    with pytest.raises(RuntimeError, match="no IVF search"):
        _graph.FaissIvf(faiss.IndexFlatIP(DIM), _LIBFAISS)


def test_the_one_call_search_pads_and_short_shortlists_give_none() -> None:
    data = manifold(300, DIM, seed=6)
    idx = IvfPqIndex(DIM, Space.ip, nlist=4, nbits=4)
    idx.train(data)
    idx.add(data, np.arange(300, dtype=np.int64))
    alive = np.ones(300, dtype=np.uint8)
    q = data[:1]
    got = idx.rerank(q, 30, 4, data, alive, 300, 300, K, False)
    assert got is not None and got[0][0] == 0 and len(got[0]) == K
    assert idx._native[1] is not None
    assert idx.rerank(q, 301, 4, data, alive, 300, 300, K, False) is None  # faiss pads: fewer than k_ann
    alive[:] = 0
    alive[:5] = 1
    assert idx.rerank(q, 30, 4, data, alive, 300, 300, K, False) is None  # fewer than k live


def test_the_kept_plan_follows_the_knobs(engine: Engine, shortlists: list[int]) -> None:
    # ivf_search keeps its plan on the field: a query with other knobs (or another k) must not reuse it
    data = manifold(N, DIM, seed=7)
    coll = engine.create(
        "c", {"dim": DIM, "metric": "dot", "index": {"type": "ivf_pq", "nlist": 8, "train_threshold": N}}
    )
    coll.upsert(list(range(N)), data)
    wait_indexed(coll)
    for over, limit in ((6, K), (3, K), (3, 20), (6, K)):
        p = SearchParams(nprobe=4, oversampling=over)
        coll.search([Query(vector=data[0], limit=limit, params=p, with_payload=False)])
    assert shortlists == [K * 6, K * 3, 20 * 3, K * 6]


def test_only_the_plain_query_goes_straight_to_hits(engine: Engine, to_hits: list[int], shortlists: list[int]) -> None:
    # `ivf_search.answer` serves ids-and-scores queries of a unit (cosine) vector; every other query takes the
    # general path, with the same hits as the planner's
    data = manifold(N, DIM, seed=8)
    coll = engine.create(
        "c", {"dim": DIM, "metric": "cosine", "index": {"type": "ivf_pq", "nlist": 8, "train_threshold": N}}
    )
    coll.upsert(list(range(N)), data, [{"i": i} for i in range(N)])
    wait_indexed(coll)
    v = data[7]
    plain = Query(vector=v, limit=K, params=PARAMS, with_payload=False)
    others = [
        Query(vector=v, limit=K, params=PARAMS),  # with payloads
        Query(vector=v, limit=K, offset=2, params=PARAMS, with_payload=False),
        Query(vector=v, limit=K, score_threshold=0.9, params=PARAMS, with_payload=False),
    ]
    scaled = Query(vector=v * 3.0, limit=K, params=PARAMS, with_payload=False)  # normalised first, then straight
    fast, slow = _both(coll, [plain, scaled, *others])
    assert len(to_hits) == 2 and len(shortlists) == 2 + len(others)  # the others: `search`, to (labels, scores)
    _same(fast, slow)
    assert [h.id for h in fast[1].hits] == [h.id for h in fast[0].hits]
    assert fast[2].hits[0].payload == {"i": 7}
    assert [h.id for h in fast[3].hits][: K - 2] == [h.id for h in fast[0].hits][2:]
    assert fast[0].hits[0].id == 7 and fast[0].hits[0].payload is None and fast[0].hits[0].vectors is None
    bad = v.copy()
    bad[3] = np.nan
    with pytest.raises(InvalidVector, match="NaN"):
        coll.search([Query(vector=bad, limit=K, params=PARAMS, with_payload=False)])


def test_hits_map_labels_to_ids_and_drop_deleted_ones() -> None:
    data = manifold(300, DIM, seed=9)
    idx = IvfPqIndex(DIM, Space.ip, nlist=4, nbits=4)
    idx.train(data)
    idx.add(data, np.arange(300, dtype=np.int64))
    alive = np.ones(300, dtype=np.uint8)
    ids: list[Any] = [f"p{i}" for i in range(300)]
    got = idx.hits(data[0], 30, 4, data, alive, 300, 300, K, False, False, ids)
    assert got is not None and len(got) == K
    labels, scores = idx.rerank(data[:1], 30, 4, data, alive, 300, 300, K, False) or ([], [])
    assert [h.id for h in got] == [ids[lab] for lab in labels]
    assert [h.score for h in got] == pytest.approx(scores)
    ids[labels[1]] = None  # deleted after the search read `alive`: index/hits.py drops it too
    again = idx.hits(data[0], 30, 4, data, alive, 300, 300, K, False, False, ids)
    assert again is not None and [h.id for h in again] == [h.id for h in got if h is not got[1]]
    assert idx.hits(data[0][:4], 30, 4, data, alive, 300, 300, K, False, False, ids) is None  # another dim


@pytest.mark.parametrize("held", ["the faiss index's lock", "the swap gate"])
def test_a_search_waits_for_a_writer(engine: Engine, held: str) -> None:
    # the native call takes the IVF lock's read side itself, and the gate's read side is a native lock too: a
    # search started while a writer holds either must not finish before the writer lets go
    data = manifold(N, DIM, seed=10)
    coll = engine.create(
        "c", {"dim": DIM, "metric": "dot", "index": {"type": "ivf_pq", "nlist": 8, "train_threshold": N}}
    )
    coll.upsert(list(range(N)), data)
    wait_indexed(coll)
    index = coll.fields[""].state.index
    assert isinstance(index, IvfPqIndex)
    q = Query(vector=data[5], limit=K, params=PARAMS, with_payload=False)
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.append(coll.search([q])[0]))
    lock = index._lock.write() if held == "the faiss index's lock" else coll.gate.swapping()
    with lock:
        reader.start()
        reader.join(0.3)
        assert reader.is_alive() and not got  # waiting for the writer (a search takes well under 0.3 s)
    reader.join()
    assert got and got[0].hits[0].id == 5


def test_ivf_trains_on_every_row_up_to_its_minimum_sample(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    # below IVF_MIN_SAMPLE rows (65,536) k-means and the PQ codebooks see every row, not 64 a list: on 100k
    # MiniLM vectors half the sample cost IVF512 0.005 of recall@10 at equal nprobe and rerank
    sizes: list[int] = []
    real = IvfPqIndex.train

    def spy(self: IvfPqIndex, sample: Any) -> None:
        sizes.append(len(sample))
        real(self, sample)

    monkeypatch.setattr(IvfPqIndex, "train", spy)
    n, dim = 24_000, 8  # more than the 20,000 the sample used to stop at
    data = manifold(n, dim, seed=11)
    coll = engine.create(
        "c", {"dim": dim, "metric": "dot", "index": {"type": "ivf_pq", "nlist": 8, "m": 4, "train_threshold": n}}
    )
    coll.upsert(list(range(n)), data)
    wait_indexed(coll)
    assert sizes == [n]
    assert len(coll.search([Query(vector=data[3], limit=K, params=PARAMS, with_payload=False)])[0].hits) == K
