"""Sparse vectors and BM25 through REST and the Python client: create, upsert, search, get; bad input gets
a 422 and writes nothing; a restart keeps everything; `text` fills a bm25 sparse vector and searches it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from nestor_client import NestorClient, SparseVector
from nestor_client.errors import ApiError

SPARSE = {
    "vectors": {"d": {"dim": 2, "index": {"type": "flat"}}},
    "sparse_vectors": {"s": {}, "w": {"modifier": "idf"}},
}
POINTS: list[dict[str, Any]] = [
    {"id": 1, "vector": {"d": [1, 0], "s": {"indices": [1, 7], "values": [1.0, 2.0]}}, "payload": {"g": "a"}},
    {"id": 2, "vector": {"d": [0, 1], "s": {"indices": [7], "values": [3.0]}, "w": {"indices": [5], "values": [1]}}},
    {"id": 3, "vector": {"d": [1, 1], "w": {"indices": [5, 6], "values": [2.0, 1.0]}}, "payload": {"g": "a"}},
]


def _load(c: NestorClient, name: str = "sp") -> None:
    c.create_collection(name, **SPARSE)
    assert c.upsert(name, points=POINTS).upserted == 3


def _pairs(res: Any) -> list[tuple[Any, float]]:
    return [(p.id, p.score) for p in res.points]


def test_upsert_search_get(client: NestorClient) -> None:
    _load(client)
    assert _pairs(client.search("sp", {"indices": [7, 1], "values": [1.0, 10.0]}, using="s")) == [(1, 12.0), (2, 3.0)]
    res = client.search(
        "sp",
        SparseVector(indices=[7], values=[1.0]),
        using="s",
        filter={"must": [{"key": "g", "match": {"value": "a"}}]},
        with_vector=["s"],
    )
    assert _pairs(res) == [(1, 2.0)] and res.strategy == "sparse_rows_filtered+payload_scan"  # g has no payload index
    assert res.points[0].vector == {"s": SparseVector(indices=[1, 7], values=[1.0, 2.0])}
    # rescoring a given set of points: a has_id filter (points sharing no index are left out)
    res = client.search(
        "sp", {"indices": [1, 7], "values": [1.0, 1.0]}, using="s", filter={"must": [{"has_id": [2, 3]}]}
    )
    assert _pairs(res) == [(2, 3.0)]
    # idf: N = 2 points have w; df(5) = 2, df(6) = 1
    idf5, idf6 = math.log(0.5 / 2.5 + 1), math.log(1.5 / 1.5 + 1)
    got = _pairs(client.search("sp", {"indices": [5, 6], "values": [1.0, 1.0]}, using="w"))
    assert [pid for pid, _ in got] == [3, 2]
    assert got[0][1] == pytest.approx(2 * idf5 + idf6, rel=1e-6) and got[1][1] == pytest.approx(idf5, rel=1e-6)
    client.delete("sp", ids=[2])  # now df(5) = 1 and N = 1
    got = _pairs(client.search("sp", {"indices": [5], "values": [1.0]}, using="w"))
    assert got == [(3, pytest.approx(2 * math.log(0.5 / 1.5 + 1), rel=1e-6))]
    rec = client.get("sp", [1, 3], with_vector=True)
    assert rec[0].vector["s"] == SparseVector(indices=[1, 7], values=[1.0, 2.0])  # type: ignore[index]
    assert "s" not in rec[1].vector and rec[1].vector["w"].indices == [5, 6]  # type: ignore[operator, index, union-attr]
    batch = client.search_batch("sp", [{"vector": {"indices": [7], "values": [1.0]}, "using": "s", "limit": 1}])
    assert _pairs(batch[0]) == [(1, 2.0)]
    info = client.get_collection("sp")
    assert info.vectors["w"].index["type"] == "inverted" and info.vectors["w"].index["modifier"] == "idf"


BAD_POINTS = [
    {"s": {"indices": [1, 1], "values": [1, 2]}},  # a duplicate index
    {"s": {"indices": [1, 2], "values": [1]}},  # lengths differ
    {"s": {"indices": [-1], "values": [1]}},  # not uint32
    {"s": {"indices": [2**32], "values": [1]}},
    {"s": {"indices": [1], "values": [math.inf]}},
    {"s": {"indices": [1], "values": [math.nan]}},
    {"s": {"indices": [1.5], "values": [1]}},
    {"s": [1.0, 2.0]},  # a dense vector for a sparse name
    {"d": {"indices": [1], "values": [1]}},  # a sparse vector for a dense name
    {"nope": {"indices": [1], "values": [1]}},
]


@pytest.mark.parametrize("bad", BAD_POINTS)
def test_bad_points_get_422_and_write_nothing(client: NestorClient, bad: dict[str, Any]) -> None:
    _load(client)
    before = _pairs(client.search("sp", {"indices": [1, 7], "values": [1, 1]}, using="s"))
    good = {"id": 9, "vector": {"d": [1, 0], "s": {"indices": [1], "values": [5]}}}
    body = {"points": [good, {"id": 10, "vector": {"d": [1, 0], **bad}}]}
    r = _post(client, "PUT", "/collections/sp/points", body)
    assert r.status_code == 422, r.text
    assert client.count("sp") == 3
    assert _pairs(client.search("sp", {"indices": [1, 7], "values": [1, 1]}, using="s")) == before


def _post(c: NestorClient, method: str, path: str, body: Any) -> Any:
    """msgpack, which (unlike JSON) carries NaN and Infinity: the engine's own checks must refuse them."""
    return c._http.request(method, path, content=msgpack.packb(body), headers={"content-type": "application/msgpack"})


BAD_SEARCHES = [
    ({"vector": {"indices": [1, 1], "values": [1, 2]}, "using": "s"}, 422),
    ({"vector": {"indices": [1], "values": [math.nan]}, "using": "s"}, 422),
    ({"vector": {"indices": [1], "values": [1]}}, 422),  # sparse with no using
    ({"vector": {"indices": [1], "values": [1]}, "using": "d"}, 422),  # sparse for a dense vector
    ({"vector": [1.0, 0.0], "using": "s"}, 422),  # dense for a sparse vector
    ({"vector": {"indices": [1], "values": [1]}, "using": "nope"}, 400),
]


@pytest.mark.parametrize(("body", "status"), BAD_SEARCHES)
def test_bad_searches(client: NestorClient, body: dict[str, Any], status: int) -> None:
    _load(client)
    r = _post(client, "POST", "/collections/sp/points/search", body)
    assert r.status_code == status, r.text


@pytest.mark.parametrize(
    "config",
    [
        {"vectors": {"s": {"dim": 2}}, "sparse_vectors": {"s": {}}},  # one name, two kinds
        {"dim": 2, "sparse_vectors": {"": {}}},  # sparse vectors are named
        {"dim": 2, "sparse_vectors": {"s": {"modifier": "bm25"}}},
        {"dim": 2, "sparse_vectors": {"s": {"encoder": {"name": "hash"}}}},  # a dense encoder
        {"dim": 2, "shards": 2, "sparse_vectors": {"s": {}}},
    ],
)
def test_bad_configs(client: NestorClient, config: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as exc:
        client.create_collection("bad", **config)
    assert 400 <= exc.value.status < 500
    assert "bad" not in [c.name for c in client.list_collections()]


def test_restart_keeps_sparse_vectors(server: Callable[..., Any]) -> None:
    with server() as c:
        _load(c)
        c.upsert("sp", points=[{"id": 1, "vector": {"d": [1, 0], "s": {"indices": [7], "values": [9.0]}}}])
        queries = [({"indices": [7], "values": [1.0]}, "s"), ({"indices": [5, 6], "values": [1.0, 0.5]}, "w")]
        before = [_pairs(c.search("sp", q, using=u, with_vector=True)) for q, u in queries]
    with server() as c:
        after = [_pairs(c.search("sp", q, using=u, with_vector=True)) for q, u in queries]
        assert after == before and before[0] == [(1, 9.0), (2, 3.0)]
        assert c.count("sp") == 3


def test_text_fills_bm25_and_searches_it(client: NestorClient) -> None:
    client.create_collection(
        "docs",
        vectors={"dense": {"dim": 16, "encoder": {"name": "hash", "config": {"dim": 16}}}},
        sparse_vectors={"bm25": {"modifier": "idf", "encoder": {"name": "bm25", "config": {"avg_len": 6}}}},
    )
    texts = [
        "Django REST framework JWT authentication",
        "A fast web framework for building APIs",
        "Plotting library for the web",
        "Authentication helpers for Flask",
    ]
    client.upsert("docs", points=[{"id": i, "text": t} for i, t in enumerate(texts)])
    r = client._http.post("/collections/docs/points/search", json={"text": "django jwt", "using": "bm25"})
    assert r.status_code == 200
    assert [h["id"] for h in r.json()["result"]] == [0]
    r = client._http.post(
        "/collections/docs/points/search", json={"text": "authenticating frameworks", "using": "bm25"}
    )
    ids = [h["id"] for h in r.json()["result"]]
    assert ids[0] == 0 and set(ids) == {0, 1, 3}  # stems: authenticating ~ authentication, frameworks ~ framework
    stored = client.get("docs", [2], with_vector=["bm25"])[0].vector["bm25"]  # type: ignore[index]
    assert len(stored.indices) == 3  # plotting, library, web: "for" and "the" are stopwords
    bad = {"name": "bm25", "config": {"k1": -1}}
    with pytest.raises(ApiError):
        client.create_collection("bad", dim=2, sparse_vectors={"b": {"encoder": bad}})


def test_snapshot_restores_sparse_vectors(client: NestorClient) -> None:
    _load(client)
    snap = client.create_snapshot("sp")
    client.upsert("sp", points=[{"id": 4, "vector": {"d": [1, 0], "s": {"indices": [7], "values": [50.0]}}}])
    client.delete("sp", ids=[2])
    client.restore_snapshot("copy", snap.name, source="sp")
    assert client.count("copy") == 3
    got = _pairs(client.search("copy", {"indices": [7], "values": [1.0]}, using="s", with_vector=True))
    assert got == [(2, 3.0), (1, 2.0)]  # as at the snapshot: no point 4, point 2 still there
    idf5 = math.log(0.5 / 2.5 + 1)
    assert _pairs(client.search("copy", {"indices": [5], "values": [1.0]}, using="w")) == [
        (3, pytest.approx(2 * idf5, rel=1e-6)),
        (2, pytest.approx(idf5, rel=1e-6)),
    ]


def test_msgpack_and_async_clients(tmp_path: Any) -> None:
    import asyncio

    from nestor_client import AsyncNestorClient
    from tests.api.conftest import running

    with running(tmp_path / "data", wire="msgpack") as c:
        _load(c)
        assert _pairs(c.search("sp", {"indices": [7], "values": [1.0]}, using="s")) == [(2, 3.0), (1, 2.0)]
        transport = c._http  # the app, in process

        async def go() -> list[tuple[Any, float]]:
            import httpx

            app_transport = httpx.ASGITransport(app=transport.app)  # type: ignore[attr-defined]
            async with httpx.AsyncClient(transport=app_transport, base_url="http://t") as http:
                ac = AsyncNestorClient(http_client=http)  # type: ignore[arg-type]
                await ac.upsert("sp", points=[{"id": 5, "vector": {"d": [1, 0], "s": {"indices": [7], "values": [4]}}}])
                return _pairs(await ac.search("sp", SparseVector(indices=[7], values=[1.0]), using="s", limit=1))

        assert asyncio.run(go()) == [(5, 4.0)]
