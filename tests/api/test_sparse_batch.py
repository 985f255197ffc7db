"""The columnar upsert (`batch`) with sparse vectors: given columns, `texts` embedded by bm25 (and a dense
encoder), atomic on bad input; and the same through msgpack."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from nestor_client import NestorClient, SparseVector

CONFIG: dict[str, Any] = {"vectors": {"d": {"dim": 2, "index": {"type": "flat"}}}, "sparse_vectors": {"s": {}}}


def _put(client: NestorClient, name: str, batch: dict[str, Any]) -> Any:
    return client._http.put(f"/collections/{name}/points", json={"batch": batch})  # type: ignore[attr-defined]


def test_a_batch_with_sparse_columns(client: NestorClient) -> None:
    client.create_collection("b", **CONFIG)
    batch = {
        "ids": [1, 2, 3],
        "vectors": {
            "d": [[1, 0], [0, 1], [1, 1]],
            "s": [{"indices": [1, 7], "values": [1.0, 2.0]}, None, {"indices": [7], "values": [3.0]}],
        },
        "payloads": [{"g": 1}, None, {"g": 3}],
    }
    r = _put(client, "b", batch)
    assert r.status_code == 200, r.text
    got = {p.id: p.vector for p in client.get("b", [1, 2, 3], with_vector=True)}
    assert got[1] == {"d": [1.0, 0.0], "s": SparseVector(indices=[1, 7], values=[1.0, 2.0])}
    assert got[2] == {"d": [0.0, 1.0]}  # no sparse vector for point 2
    hits = client.search("b", {"indices": [7], "values": [1.0]}, using="s")
    assert [(h.id, h.score) for h in hits] == [(3, 3.0), (1, 2.0)]
    # sparse only: the dense column left out, the points keep only what the batch gives
    r = _put(client, "b", {"ids": [4], "vectors": {"s": [{"indices": [9], "values": [1.0]}]}})
    assert r.status_code == 200, r.text
    assert client.get("b", [4], with_vector=True)[0].vector == {"s": SparseVector(indices=[9], values=[1.0])}


@pytest.mark.parametrize(
    "batch",
    [
        {"ids": [8, 9], "vectors": {"s": [{"indices": [1, 1], "values": [1.0, 2.0]}, None]}},  # duplicate index
        {"ids": [8, 9], "vectors": {"s": [{"indices": [1], "values": [1.0, 2.0]}, None]}},  # lengths differ
        {"ids": [8, 9], "vectors": {"s": [{"indices": [-1], "values": [1.0]}, None]}},  # not uint32
        {"ids": [8, 9], "vectors": {"s": [None]}},  # one vector short
        {"ids": [8, 9], "vectors": {"s": [[1.0, 2.0], [3.0, 4.0]]}},  # a matrix for a sparse vector
        {"ids": [8, 9], "vectors": {"d": [{"indices": [1], "values": [1.0]}, None]}},  # sparse for a dense one
        {"ids": [8, 9], "vectors": {"nope": [None, None]}},
        {"ids": [8, 9], "texts": ["a", "b"]},  # no encoder here
        {"ids": [8, 9]},  # neither vectors nor texts
    ],
)
def test_bad_batches_get_a_4xx_and_write_nothing(client: NestorClient, batch: dict[str, Any]) -> None:
    client.create_collection("b", **CONFIG)
    r = _put(client, "b", batch)
    assert 400 <= r.status_code < 500 and r.status_code != 404, r.text
    assert client.count("b") == 0


def test_batch_texts_fill_bm25(client: NestorClient) -> None:
    bm25 = {"modifier": "idf", "encoder": {"name": "bm25", "config": {"avg_len": 5}}}
    client.create_collection("kw", vectors={"d": {"dim": 2, "index": {"type": "flat"}}}, sparse_vectors={"bm25": bm25})
    texts = ["Django REST framework JWT", None, "numpy arrays for python"]
    batch = {"ids": [1, 2, 3], "vectors": {"d": [[1, 0], [0, 1], [1, 1]]}, "texts": texts}
    r = _put(client, "kw", batch)
    assert r.status_code == 200, r.text
    got = {p.id: p.vector for p in client.get("kw", [1, 2, 3], with_vector=True)}
    assert set(got[1]) == {"d", "bm25"} and set(got[2]) == {"d"} and got[2]["d"] == [0.0, 1.0]
    r = client._http.post(  # type: ignore[attr-defined]
        "/collections/kw/points/search", json={"text": "django jwt", "using": "bm25"}
    )
    assert [h["id"] for h in r.json()["result"]] == [1]
    # the same tokens through a point's text give the same stored vector
    client.upsert("kw", points=[{"id": 9, "vector": {"d": [1, 0]}, "text": texts[0]}])
    again = client.get("kw", [1, 9], with_vector=["bm25"])
    assert again[0].vector == again[1].vector
    r = _put(client, "kw", {"ids": [5, 6], "texts": ["one"]})  # a text per id, or 422
    assert r.status_code == 422 and client.count("kw") == 4


def test_a_sparse_only_collection_loads_by_batch_texts_over_msgpack(client: NestorClient) -> None:
    client.create_collection("kw", sparse_vectors={"bm25": {"encoder": {"name": "bm25", "config": {"avg_len": 4}}}})
    texts = [f"document number {i} about topic{i % 5}" for i in range(50)]
    body = msgpack.packb({"batch": {"ids": list(range(50)), "texts": texts}})
    http = client._http  # type: ignore[attr-defined]
    r = http.put("/collections/kw/points", content=body, headers={"content-type": "application/msgpack"})
    assert r.status_code == 200, r.text
    assert client.count("kw") == 50
    r = http.post("/collections/kw/points/search", json={"text": "topic3", "using": "bm25", "limit": 20})
    assert sorted(h["id"] for h in r.json()["result"]) == [i for i in range(50) if i % 5 == 3]
