"""Writes through the client: atomic batches, overwrite, delete, get, count, and bad input."""

from __future__ import annotations

import base64
from pathlib import Path

import msgpack
import numpy as np
import pytest

from nestor_client import (
    CollectionNotFound,
    DimensionMismatch,
    DuplicateId,
    InvalidVector,
    NestorClient,
    PayloadTooLarge,
    Unprocessable,
    ValidationError,
)
from tests.api.conftest import running


@pytest.fixture
def coll(client: NestorClient) -> NestorClient:
    client.create_collection("c", dim=4, index={"type": "hnsw", "m": 8})
    return client


def test_upsert_get_overwrite(coll: NestorClient) -> None:
    res = coll.upsert(
        "c", [{"id": 1, "vector": [1, 0, 0, 0], "payload": {"a": 1}}, {"id": "one", "vector": [0, 1, 0, 0]}]
    )
    assert res.upserted == 2 and res.seq == 1
    recs = coll.get("c", [1, "one", "1", 404], with_vector=True)
    assert [r.id for r in recs] == [1, "one"]  # 1 and "1" are different ids
    assert recs[0].payload == {"a": 1} and recs[1].payload == {}
    assert recs[0].vector == pytest.approx([1, 0, 0, 0])
    res = coll.upsert("c", ids=[1], vectors=np.array([[0, 0, 3, 4]], np.float32), payloads=[{"a": 2}])
    assert res.seq == 2 and coll.count("c") == 2
    rec = coll.get("c", [1], with_vector=True)[0]
    assert rec.payload == {"a": 2}
    assert rec.vector == pytest.approx([0, 0, 0.6, 0.8])  # cosine collections store unit vectors
    hits = coll.search("c", [0, 0, 1, 1], limit=5)
    assert [h.id for h in hits] == [1, "one"]


def test_msgpack_wire_round_trip(tmp_path: Path) -> None:
    with running(tmp_path, wire="msgpack") as c:
        c.create_collection("m", dim=3, index={"type": "flat"})
        c.upsert("m", ids=["a", "b"], vectors=np.eye(3, dtype=np.float32)[:2], payloads=[{"x": 1}, None])
        hits = c.search("m", np.array([1, 0.1, 0], np.float32), limit=1, with_vector=True)
        assert hits[0].id == "a" and hits[0].payload == {"x": 1}
        assert hits[0].vector == pytest.approx([1, 0, 0])


@pytest.mark.parametrize(
    "points, error",
    [
        ([{"id": 1, "vector": [1, 2, 3]}], DimensionMismatch),
        ([{"id": 1, "vector": [1, 2, 3, 4, 5]}], DimensionMismatch),
        ([{"id": 1, "vector": [0, 0, 0, 0]}], InvalidVector),  # no cosine direction
        ([{"id": -1, "vector": [1, 2, 3, 4]}], ValidationError),
        ([{"id": 1.5, "vector": [1, 2, 3, 4]}], ValidationError),
        ([{"id": 1, "vector": [1, 2, 3, 4]}, {"id": 1, "vector": [1, 2, 3, 4]}], DuplicateId),
        ([{"id": 1, "vector": [1, 2, 3, 4], "payload": [1, 2]}], ValidationError),
        ([{"id": 1, "vector": "not base64!"}], InvalidVector),
        ([{"id": 1, "vector": "AAAA"}], InvalidVector),
        ([{"id": 1, "vector": "AAAAAA=="}], DimensionMismatch),
    ],
)
def test_bad_batch_is_rejected_whole(coll: NestorClient, points: list[dict[str, object]], error: type) -> None:
    good = {"id": 99, "vector": [1, 1, 1, 1]}
    with pytest.raises(error):
        coll.upsert("c", [good, *points])
    assert coll.count("c") == 0  # the good point of the batch was not written either
    assert coll.get_collection("c").seq == 0


def test_nan_and_inf_are_refused_in_every_encoding(coll: NestorClient, tmp_path: Path) -> None:
    bad = np.array([[1, np.nan, 0, 0]], np.float32)
    with pytest.raises(InvalidVector):
        coll.upsert("c", ids=[1], vectors=bad)  # base64 batch
    with pytest.raises(InvalidVector):
        coll.search("c", np.array([np.inf, 0, 0, 0], np.float32))
    http = coll._http  # raw requests for the encodings the client never produces
    r = http.put(
        "/collections/c/points",
        content=b'{"points":[{"id":1,"vector":[NaN,0,0,0]}]}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "bad_request"
    body = msgpack.packb({"points": [{"id": 1, "vector": [float("inf"), 0.0, 0.0, 0.0]}]})
    r = http.put("/collections/c/points", content=body, headers={"content-type": "application/msgpack"})
    assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_vector"
    assert coll.count("c") == 0


def test_base64_batch_with_wrong_size(coll: NestorClient) -> None:
    blob = base64.b64encode(np.ones(7, "<f4").tobytes()).decode()
    r = coll._http.put("/collections/c/points", json={"batch": {"ids": [1, 2], "vectors": blob}})
    assert r.status_code == 422 and r.json()["error"]["type"] == "dimension_mismatch"


def test_malformed_bodies_are_4xx(coll: NestorClient) -> None:
    http = coll._http
    assert (
        http.put("/collections/c/points", content=b"{", headers={"content-type": "application/json"}).status_code == 400
    )
    r = http.put("/collections/c/points", content=b"\xc1", headers={"content-type": "application/msgpack"})
    assert r.status_code == 400
    r = http.put("/collections/c/points", json={"points": [], "batch": {"ids": [], "vectors": []}})
    assert r.status_code == 422


def test_oversized_batch_is_413(tmp_path: Path) -> None:
    with running(tmp_path, max_batch_points=3, max_body_bytes=4096) as c:
        c.create_collection("c", dim=2, index={"type": "flat"})
        with pytest.raises(PayloadTooLarge):
            c.upsert("c", ids=[1, 2, 3, 4], vectors=np.ones((4, 2), np.float32))
        with pytest.raises(PayloadTooLarge):  # body over max_body_bytes
            c.upsert("c", [{"id": 1, "vector": [1, 1], "payload": {"blob": "x" * 5000}}])
        assert c.count("c") == 0


def test_unknown_collection_is_404_everywhere(client: NestorClient) -> None:
    with pytest.raises(CollectionNotFound):
        client.upsert("nope", ids=[1], vectors=[[1.0]])
    with pytest.raises(CollectionNotFound):
        client.search("nope", [1.0])
    with pytest.raises(CollectionNotFound):
        client.count("nope")
    with pytest.raises(CollectionNotFound):
        client.delete("nope", ids=[1])


def test_delete_by_ids_and_by_filter(coll: NestorClient) -> None:
    n = 50
    coll.upsert(
        "c",
        ids=list(range(n)),
        vectors=np.random.default_rng(0).standard_normal((n, 4)).astype(np.float32),
        payloads=[{"group": i % 5, "tags": ["odd" if i % 2 else "even"]} for i in range(n)],
    )
    assert coll.delete("c", ids=[0, 1, 2, 999]).deleted == 3
    assert coll.count("c") == 47
    assert coll.count("c", filter={"must": [{"key": "group", "match": {"value": 3}}]}) == 10
    res = coll.delete("c", filter={"must": [{"key": "group", "match": {"value": 3}}]})
    assert res.deleted == 10
    assert coll.count("c") == 37
    assert coll.count("c", filter={"must": [{"key": "tags", "match": {"value": "odd"}}]}) == 19
    hits = coll.search("c", [1, 0, 0, 0], limit=100)
    ids = {h.id for h in hits}
    assert len(ids) == 37 and not ids & {0, 1, 2} and all(i % 5 != 3 for i in ids)


@pytest.mark.parametrize(
    "flt",
    [
        {"must": [{"key": "a"}]},
        {"must": [{"key": "a", "match": {"value": 1}, "range": {"gt": 1}}]},
        {"must": [{"key": "a", "range": {}}]},
        {"must": [{"key": 'a"b', "match": {"value": 1}}]},
        {"must": {"key": "a", "match": {"value": 1}}},
        {"should": [{"nested": 1}]},
    ],
)
def test_malformed_filter_is_422(coll: NestorClient, flt: dict[str, object]) -> None:
    with pytest.raises(Unprocessable) as exc:
        coll.count("c", filter=flt)
    assert exc.value.status == 422


def test_filter_depth_limit(tmp_path: Path) -> None:
    with running(tmp_path, max_filter_depth=2) as c:
        c.create_collection("c", dim=2, index={"type": "flat"})
        deep = {"must": [{"must": [{"must": [{"key": "a", "match": {"value": 1}}]}]}]}
        with pytest.raises(Exception) as exc:
            c.count("c", filter=deep)
        assert getattr(exc.value, "status", None) == 422
