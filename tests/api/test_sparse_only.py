"""Sparse-only collections (`sparse_vectors` and no dense vector): create, upsert, search, query, get and
scroll, delete, a restart, snapshots and compaction, through REST and the Python client."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from nestor_client import NestorClient, SparseVector
from nestor_client.errors import ApiError
from tests.api.conftest import running

CONFIG: dict[str, Any] = {"sparse_vectors": {"s": {}, "w": {"modifier": "idf"}}}
POINTS: list[dict[str, Any]] = [
    {"id": 1, "vector": {"s": {"indices": [1, 7], "values": [1.0, 2.0]}}, "payload": {"g": "a"}},
    {"id": 2, "vector": {"s": {"indices": [7], "values": [3.0]}, "w": {"indices": [5], "values": [1.0]}}},
    {"id": 3, "vector": {"w": {"indices": [5, 6], "values": [2.0, 1.0]}}, "payload": {"g": "a"}},
    {"id": 4, "vector": {}, "payload": {"g": "b"}},  # no vector at all: a payload-only point
]


def _pairs(res: Any) -> list[tuple[Any, float]]:
    return [(p.id, p.score) for p in res.points]


def _load(c: NestorClient, name: str = "so") -> None:
    c.create_collection(name, **CONFIG)
    assert c.upsert(name, points=POINTS).upserted == 4


def test_create_upsert_search_query_get(client: NestorClient) -> None:
    _load(client)
    info = client.get_collection("so")
    assert info.count == 4 and info.config.vectors == {} and set(info.config.sparse_vectors or {}) == {"s", "w"}
    assert _pairs(client.search("so", {"indices": [7, 1], "values": [1.0, 10.0]}, using="s")) == [(1, 12.0), (2, 3.0)]
    got = client.get("so", [1, 3, 4], with_vector=True)
    assert {p.id: p.vector for p in got} == {
        1: {"s": SparseVector(indices=[1, 7], values=[1.0, 2.0])},
        3: {"w": SparseVector(indices=[5, 6], values=[2.0, 1.0])},
        4: {},
    }
    page = client.scroll("so", filter={"must": [{"key": "g", "match": {"value": "a"}}]}, limit=10)
    assert [p.id for p in page[0]] == [1, 3]
    # the pipeline: RRF of the two sparse vectors, and a rescore of one over the other's candidates
    pre = [
        {"query": {"indices": [7], "values": [1.0]}, "using": "s", "limit": 5},
        {"query": {"indices": [5], "values": [1.0]}, "using": "w", "limit": 5},
    ]
    fused = client.query("so", {"fusion": "rrf"}, prefetch=pre, limit=3)
    assert fused.stages.kind == "fusion" and {p.id for p in fused.points} == {1, 2, 3}
    res = client.query("so", {"indices": [1], "values": [1.0]}, using="s", prefetch=pre[:1], limit=3)
    assert _pairs(res) == [(1, 1.0)]  # point 2 was a candidate, but shares no index with the rescore
    idf5 = math.log(0.5 / 2.5 + 1)
    client.delete("so", ids=[3])
    assert _pairs(client.search("so", {"indices": [5], "values": [1.0]}, using="w")) == [
        (2, pytest.approx(math.log(0.5 / 1.5 + 1), rel=1e-6))
    ]
    assert idf5 != math.log(0.5 / 1.5 + 1)  # the delete changed the document frequencies


def test_bad_input_is_refused(client: NestorClient) -> None:
    _load(client)
    http = client._http  # type: ignore[attr-defined]
    for body in (
        {"vector": [1.0, 2.0]},  # no dense vector to search
        {"vector": {"indices": [1], "values": [1.0]}},  # a sparse query needs `using`
        {"vector": {"indices": [1], "values": [1.0]}, "using": "nope"},
        {"text": "hello", "using": "s"},  # `s` has no encoder
    ):
        r = http.post("/collections/so/points/search", json=body)
        assert r.status_code in (400, 422), (body, r.text)
    for point in (
        {"id": 9, "vector": [1.0, 2.0]},  # a dense vector where there is none
        {"id": 9, "vector": {"d": [1.0]}},
        {"id": 9, "vector": {"s": {"indices": [1, 1], "values": [1.0, 2.0]}}},
    ):
        r = http.put("/collections/so/points", json={"points": [POINTS[0], point]})
        assert r.status_code == 422, (point, r.text)
    assert client.count("so") == 4
    with pytest.raises(ApiError):
        client.create_collection("empty", vectors={})


def test_restart_snapshot_and_compaction(tmp_path: Path) -> None:
    with running(tmp_path / "data", optimizer_interval=0) as c:
        _load(c)
        snap = c.create_snapshot("so")
        c.upsert("so", points=[{"id": i, "vector": {"s": {"indices": [7], "values": [0.5]}}} for i in range(10, 60)])
        c.delete("so", ids=list(range(10, 50)) + [2])
        out = c.optimize("so", wait=True)
        assert out["status"] == "completed" and out["last"]["points"] == 13
        c.restore_snapshot("copy", snap.name, source="so")
    with running(tmp_path / "data", optimizer_interval=0) as c:  # and after a restart
        assert c.count("so") == 13 and c.count("copy") == 4
        hits = _pairs(c.search("so", {"indices": [7], "values": [1.0]}, using="s", limit=20))
        assert hits[0] == (1, 2.0) and sorted(pid for pid, _ in hits[1:]) == list(range(50, 60))
        assert _pairs(c.search("copy", {"indices": [7], "values": [1.0]}, using="s")) == [(2, 3.0), (1, 2.0)]


def test_bm25_only_collection_takes_text(client: NestorClient) -> None:
    """A keyword-search collection: one bm25 sparse vector, filled and searched by `text`."""
    bm25 = {"modifier": "idf", "encoder": {"name": "bm25", "config": {"avg_len": 6}}}
    client.create_collection("kw", sparse_vectors={"bm25": bm25})
    docs = ["Django REST framework JWT authentication", "Flask web microframework", "numpy arrays for python"]
    client.upsert("kw", points=[{"id": i, "text": t} for i, t in enumerate(docs)])
    http = client._http  # type: ignore[attr-defined]
    r = http.post("/collections/kw/points/search", json={"text": "django jwt", "using": "bm25"})
    assert r.status_code == 200, r.text
    assert [p["id"] for p in r.json()["result"]] == [0]
    r = http.post("/collections/kw/points/query", json={"query": {"text": "web framework"}, "limit": 2})
    assert r.status_code == 200, r.text
    body = r.json()["result"]
    assert [p["id"] for p in body["points"]] == [1, 0] and body["stages"]["using"] == "bm25"
