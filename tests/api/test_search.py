"""Search through the client: recall against the exact oracle, filters, strategies, restarts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from nestor_client import LimitExceeded, NestorClient
from tests.api.conftest import wait_indexed
from tests.synth import exact_topk, recall, split

DIM = 24
N = 3000

INDEXES: dict[str, tuple[dict[str, Any], float]] = {
    "flat": ({"type": "flat"}, 1.0),
    "hnsw": ({"type": "hnsw", "m": 16, "ef_construction": 100, "ef": 64}, 0.95),
    "ivf_pq": ({"type": "ivf_pq", "train_threshold": 1000, "nprobe": 16, "oversampling": 30}, 0.95),
}


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return split(N, 50, DIM, seed=11)


def _load(client: NestorClient, name: str, index: dict[str, Any], base: np.ndarray) -> None:
    client.create_collection(name, dim=DIM, metric="cosine", index=index)
    payloads = [
        {"bucket": i % 100, "price": float(i), "color": ["red", "green", "blue"][i % 3]} for i in range(len(base))
    ]
    client.upload(name, ids=list(range(len(base))), vectors=base, payloads=payloads, batch_size=1000)
    wait_indexed(client, name)


@pytest.mark.parametrize("kind", INDEXES)
def test_recall_against_exact(client: NestorClient, data: tuple[np.ndarray, np.ndarray], kind: str) -> None:
    base, queries = data
    index, floor = INDEXES[kind]
    _load(client, kind, index, base)
    truth = exact_topk(base, queries, 10)
    found = client.search_batch(kind, [{"vector": q.tolist(), "limit": 10, "with_payload": False} for q in queries])
    assert {r.strategy for r in found} == {"exact" if kind == "flat" else kind}
    got = np.array([[h.id for h in r] for r in found])
    assert recall(got, truth, 10) >= floor
    single = client.search(kind, queries[0], limit=10, with_payload=False)
    assert [h.id for h in single] == got[0].tolist()
    info = client.get_collection(kind)
    assert info.count == N and info.index["indexed"] == N


def test_ivf_pq_trains_at_threshold_and_searches_exactly_before(
    client: NestorClient, data: tuple[np.ndarray, np.ndarray]
) -> None:
    base, queries = data
    client.create_collection("ivf", dim=DIM, index={"type": "ivf_pq", "train_threshold": 2000, "retrain_growth": 1.4})
    client.upload("ivf", ids=list(range(1000)), vectors=base[:1000])
    info = client.get_collection("ivf")
    assert info.index["trained"] is False and info.index["state"] == "untrained"
    res = client.search("ivf", queries[0], limit=5)
    assert res.strategy == "exact"
    assert [h.id for h in res] == exact_topk(base[:1000], queries[:1], 5)[0].tolist()
    client.upload("ivf", ids=list(range(1000, 2000)), vectors=base[1000:2000])
    idx = wait_indexed(client, "ivf")
    assert idx["trained"] is True and idx["trained_on"] == 2000 and idx["spec"].startswith("IVF")
    assert client.search("ivf", queries[0], limit=5).strategy == "ivf_pq"
    client.upload("ivf", ids=list(range(2000, 3000)), vectors=base[2000:3000])  # grows 1.5x > 1.4x: retrain
    idx = wait_indexed(client, "ivf")
    assert idx["trained_on"] == 3000 and idx["indexed"] == 3000


def test_ivf_pq_rescore_improves_recall(client: NestorClient, data: tuple[np.ndarray, np.ndarray]) -> None:
    base, queries = data
    _load(client, "pq", {"type": "ivf_pq", "train_threshold": 1000, "m": 6, "nprobe": 16}, base)
    truth = exact_topk(base, queries, 10)

    def run(params: dict[str, Any]) -> float:
        found = client.search_batch("pq", [{"vector": q.tolist(), "limit": 10, "params": params} for q in queries])
        return recall(np.array([[h.id for h in r] for r in found]), truth, 10)

    raw, rescored = run({"rescore": False}), run({"rescore": True, "oversampling": 20})
    assert rescored >= 0.95 and rescored > raw + 0.1


def test_selective_filter_returns_limit_hits_exactly(client: NestorClient, data: tuple[np.ndarray, np.ndarray]) -> None:
    base, queries = data
    _load(client, "h", INDEXES["hnsw"][0], base)
    flt = {"must": [{"key": "bucket", "match": {"any": [7, 8]}}]}  # 60 of 3000 points
    res = client.search("h", queries[0], limit=25, filter=flt)
    assert res.strategy == "exact_filtered+payload_scan"  # no payload index on "bucket": SQL found the 60
    assert len(res) == 25 and all(h.payload["bucket"] in (7, 8) for h in res)
    allowed = np.array([i for i in range(N) if i % 100 in (7, 8)])
    expect = allowed[exact_topk(base[allowed], queries[:1], 25)[0]]
    assert [h.id for h in res] == expect.tolist()
    # fewer matches than limit: every match comes back
    res = client.search(
        "h",
        queries[0],
        limit=25,
        filter={
            "must": [{"key": "bucket", "match": {"value": 9}}],
            "must_not": [{"key": "color", "match": {"value": "red"}}],
        },
    )
    assert len(res) == len([i for i in range(N) if i % 100 == 9 and i % 3 != 0])


def test_broad_filter_uses_the_graph_and_still_fills_limit(tmp_path: Any, data: tuple[np.ndarray, np.ndarray]) -> None:
    from tests.api.conftest import running

    base, queries = data
    with running(tmp_path, exact_filter_threshold=100) as client:
        _load(client, "h", INDEXES["hnsw"][0], base)
        flt = {
            "must": [{"key": "price", "range": {"gte": 100, "lt": 2900}}],
            "should": [
                {"key": "color", "match": {"value": "red"}},
                {"key": "color", "match": {"value": "blue"}},
            ],
        }
        for q in queries[:10]:
            res = client.search("h", q, limit=10, filter=flt)
            # most points match: the unfiltered walk's candidates are tested, or the walk checks the filter
            assert res.strategy in {"hnsw_postfilter+payload_scan", "hnsw_filtered+payload_scan"}
            assert len(res) == 10
            assert all(100 <= h.payload["price"] < 2900 and h.payload["color"] != "green" for h in res)


def test_unindexed_points_are_searchable_at_once(client: NestorClient) -> None:
    client.create_collection("fresh", dim=4, index={"type": "hnsw"})
    client.upsert("fresh", ids=[1], vectors=[[1.0, 0, 0, 0]])
    hits = client.search("fresh", [1.0, 0, 0, 0], limit=3)  # acknowledged => visible, indexed or not
    assert [h.id for h in hits] == [1]


def test_search_options(client: NestorClient) -> None:
    client.create_collection("o", dim=2, metric="l2", index={"type": "hnsw"})
    client.upsert("o", ids=[1, 2, 3], vectors=[[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]], payloads=[{"n": 1}, {"n": 2}, None])
    hits = client.search("o", [0.0, 0.0], limit=3, with_vector=True)
    assert [h.id for h in hits] == [1, 2, 3]
    assert [h.score for h in hits] == pytest.approx([0.0, 5.0, 10.0])  # l2 scores are distances
    assert hits[1].vector == pytest.approx([3.0, 4.0])
    assert [h.id for h in client.search("o", [0.0, 0.0], limit=1, offset=1)] == [2]
    assert [h.id for h in client.search("o", [0.0, 0.0], limit=3, score_threshold=6.0)] == [1, 2]
    assert client.search("o", [0.0, 0.0], limit=1, with_payload=False)[0].payload is None
    assert client.search("o", [0.0, 0.0], limit=2, params={"exact": True}).strategy == "exact"
    with pytest.raises(LimitExceeded):
        client.search("o", [0.0, 0.0], limit=10**6)


def test_dot_metric_ranks_by_inner_product(client: NestorClient) -> None:
    client.create_collection("d", dim=2, metric="dot", index={"type": "flat"})
    client.upsert("d", ids=["small", "big"], vectors=[[1.0, 0.0], [10.0, 1.0]])
    hits = client.search("d", [1.0, 0.0], limit=2)
    assert [h.id for h in hits] == ["big", "small"] and hits[0].score == pytest.approx(10.0)


@pytest.mark.parametrize("kind", ["hnsw", "ivf_pq"])
def test_restart_gives_identical_results(
    server: Callable[..., Any], data: tuple[np.ndarray, np.ndarray], kind: str
) -> None:
    base, queries = data
    searches = [{"vector": q.tolist(), "limit": 10} for q in queries]
    with server() as c:
        _load(c, kind, INDEXES[kind][0], base)
        c.delete(kind, ids=list(range(300)))
        c.upsert(kind, ids=[5000], vectors=base[:1], payloads=[{"late": True}])
        before = [[(h.id, round(h.score, 5)) for h in r] for r in c.search_batch(kind, searches)]
        info = c.get_collection(kind)
    with server() as c:
        after = [[(h.id, round(h.score, 5)) for h in r] for r in c.search_batch(kind, searches)]
        again = c.get_collection(kind)
        assert again.count == info.count == N - 300 + 1
        assert c.get(kind, [5000])[0].payload == {"late": True}
        assert c.get(kind, [0, 299]) == []
    assert after == before
