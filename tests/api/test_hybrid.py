"""The query pipeline on sparse vectors, through REST and the client: a sparse leaf, dense and sparse
prefetches fused (RRF, DBSF) against hand-computed fusions, dense rescoring over a sparse prefetch and the
reverse, query by id, bad sparse queries, and the hybrid `text` shorthand (dense + bm25, fused)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from index.fusion import dbsf
from nestor_client import ApiError, NestorClient
from server.hybrid import HYBRID_DEPTH, HYBRID_RRF_K
from tests.api.conftest import running

# dense "d" (dot product on a flat index, so exact) and sparse "s" (plain dot product)
POINTS: list[dict[str, Any]] = [
    {"id": 1, "vector": {"d": [1.0, 0.0], "s": {"indices": [1, 7], "values": [1.0, 2.0]}}, "payload": {"g": "a"}},
    {"id": 2, "vector": {"d": [0.0, 1.0], "s": {"indices": [7], "values": [3.0]}}, "payload": {"g": "b"}},
    {"id": 3, "vector": {"d": [0.5, 0.9], "s": {"indices": [1, 2], "values": [0.5, 3.0]}}, "payload": {"g": "a"}},
    {"id": 4, "vector": {"d": [-1.0, 0.0], "s": {"indices": [2], "values": [1.0]}}, "payload": {"g": "b"}},
    {"id": 5, "vector": {"d": [0.8, 0.6]}, "payload": {"g": "a"}},
]
SQ = {"indices": [7, 2], "values": [1.0, 0.5]}  # sparse scores: 1: 2.0, 2: 3.0, 3: 1.5, 4: 0.5
DQ = [1.0, 0.5]  # dense scores: 1: 1.0, 2: 0.5, 3: 0.95, 4: -1.0, 5: 1.1


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NestorClient]:
    with running(tmp_path_factory.mktemp("h") / "data") as c:
        c.create_collection(
            "hy",
            vectors={"d": {"dim": 2, "metric": "dot", "index": {"type": "flat"}}},
            sparse_vectors={"s": {}},
        )
        c.upsert("hy", POINTS)
        yield c


def _pairs(res: Any) -> list[tuple[Any, float]]:
    return [(p.id, pytest.approx(p.score, rel=1e-5)) for p in res.points]


def test_a_sparse_leaf_is_the_sparse_search(client: NestorClient) -> None:
    got = client.query("hy", SQ, using="s", limit=3)
    assert _pairs(got) == [(2, 3.0), (1, 2.0), (3, 1.5)]
    assert got.stages.kind == "search" and got.stages.using == "s" and got.stages.strategy.startswith("sparse")
    nearest = client.query("hy", {"nearest": SQ}, using="s", filter={"must": [{"key": "g", "match": {"value": "b"}}]})
    assert _pairs(nearest) == [(2, 3.0), (4, 0.5)]


def test_dense_and_sparse_prefetch_fused_by_hand(client: NestorClient) -> None:
    pre = [{"query": DQ, "using": "d", "limit": 4}, {"query": SQ, "using": "s", "limit": 4}]
    dense = [5, 1, 3, 2]  # 1.1, 1.0, 0.95, 0.5
    sparse = [2, 1, 3, 4]  # 3.0, 2.0, 1.5, 0.5
    assert [p.id for p in client.query("hy", DQ, using="d", limit=4).points] == dense
    assert [p.id for p in client.query("hy", SQ, using="s", limit=4).points] == sparse
    for k in (2, 60):
        want: dict[int, float] = {}
        for lst in (dense, sparse):
            for pos, pid in enumerate(lst):
                want[pid] = want.get(pid, 0.0) + 1 / (pos + k)
        got = client.query("hy", {"rrf": {"k": k}}, prefetch=pre, limit=5)
        assert {p.id: p.score for p in got.points} == pytest.approx(want)
    got = client.query("hy", {"fusion": "rrf"}, prefetch=pre, limit=2)  # k = 2
    assert [p.id for p in got.points] == [2, 1]  # 1/5 + 1/2 = 0.7, 1/3 + 1/3 = 0.67; then 5 and 3 at 0.5
    assert got.stages.kind == "fusion" and [s.using for s in got.stages.stages] == ["d", "s"]
    dl = [(5, 1.1), (1, 1.0), (3, 0.95), (2, 0.5)]
    sl = [(2, 3.0), (1, 2.0), (3, 1.5), (4, 0.5)]
    want_dbsf = dict(dbsf([dl, sl]))
    got = client.query("hy", {"fusion": "dbsf"}, prefetch=pre, limit=5)
    assert {p.id: p.score for p in got.points} == pytest.approx(want_dbsf, rel=1e-5)


def test_dense_rescore_over_a_sparse_prefetch_and_the_reverse(client: NestorClient) -> None:
    # sparse top 2 are {2, 1}; rescored on d: 1 -> 1.0, 2 -> 0.5
    got = client.query("hy", DQ, using="d", prefetch={"query": SQ, "using": "s", "limit": 2})
    assert _pairs(got) == [(1, 1.0), (2, 0.5)]
    assert got.stages.kind == "rescore" and got.stages.stages[0].using == "s"
    # dense top 3 are {5, 1, 3}; rescored on s: 1 -> 2.0, 3 -> 1.5; 5 has no sparse vector: not a hit
    got = client.query("hy", SQ, using="s", prefetch={"query": DQ, "using": "d", "limit": 3})
    assert _pairs(got) == [(1, 2.0), (3, 1.5)]
    # by id: point 3's sparse vector {1: 0.5, 2: 3.0}; 3 itself left out; 4 -> 3.0, 1 -> 0.5
    assert _pairs(client.query("hy", 3, using="s")) == [(4, 3.0), (1, 0.5)]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"query": SQ, "using": "d"}, 422, "is dense"),
        ({"query": SQ}, 422, "is dense"),
        ({"query": [1.0, 0.0], "using": "s"}, 422, "is sparse"),
        ({"query": {"indices": [1, 1], "values": [1.0, 2.0]}, "using": "s"}, 422, ""),
        ({"query": {"indices": [1], "values": [1.0, 2.0]}, "using": "s"}, 422, ""),
        ({"query": {"indices": [1], "values": [math.inf]}, "using": "s"}, 422, ""),
        ({"query": 5, "using": "s"}, 400, "has no vector 's'"),
        ({"query": {"text": "x"}, "using": "s"}, 422, "has no encoder"),
        ({"query": DQ, "using": "d", "prefetch": [{"query": SQ, "using": "t"}]}, 400, "'t'"),
    ],
)
def test_bad_sparse_queries_get_a_4xx(client: NestorClient, body: dict[str, Any], status: int, says: str) -> None:
    with pytest.raises(ApiError) as err:
        client.query("hy", body.pop("query"), **body)
    assert err.value.status == status, err.value
    assert says in str(err.value)


TEXTS = ["django rest framework jwt auth", "green apple pie", "apple jam recipes", "jwt tokens for flask", "plum tart"]


def test_the_hybrid_text_shorthand_fuses_dense_and_bm25(tmp_path: Path) -> None:
    with running(tmp_path / "data") as c:
        c.create_collection(
            "t",
            dim=64,
            encoder={"name": "hash", "config": {"dim": 64}},
            sparse_vectors={"bm25": {"modifier": "idf", "encoder": {"name": "bm25"}}},
        )
        c.upsert("t", [{"id": i, "text": t} for i, t in enumerate(TEXTS)])
        dense = [p.id for p in c.query("t", {"text": "apple jwt"}, using="", limit=HYBRID_DEPTH).points]
        sparse = c.query("t", {"text": "apple jwt"}, using="bm25", limit=HYBRID_DEPTH)
        assert {p.id for p in sparse.points} == {0, 1, 2, 3} and len(dense) == 5
        want: dict[int, float] = {}
        for lst in (dense, [p.id for p in sparse.points]):
            for pos, pid in enumerate(lst):
                want[pid] = want.get(pid, 0.0) + 1 / (pos + HYBRID_RRF_K)
        got = c.query("t", {"text": "apple jwt"}, limit=5)
        assert {p.id: p.score for p in got.points} == pytest.approx(want)
        assert [p.id for p in got.points] == sorted(want, key=lambda pid: -want[pid])
        assert got.stages.kind == "fusion" and got.stages.strategy == "rrf"
        assert [(s.using, s.limit) for s in got.stages.stages] == [("", HYBRID_DEPTH), ("bm25", HYBRID_DEPTH)]
        dl = [(p.id, p.score) for p in c.query("t", {"text": "apple jwt"}, using="", limit=HYBRID_DEPTH).points]
        sl = [(p.id, p.score) for p in sparse.points]
        got = c.query("t", {"text": "apple jwt", "fusion": "dbsf"}, limit=3, filter=None)
        assert {p.id: p.score for p in got.points} == pytest.approx(dict(dbsf([dl, sl])[:3]), rel=1e-5)
        # the filter reaches both searches
        flt = {"must": [{"has_id": [1, 3, 4]}]}
        assert {p.id for p in c.query("t", {"text": "apple jwt"}, filter=flt).points} == {1, 3, 4}
        with pytest.raises(ApiError) as err:
            c.query("t", {"text": "apple", "fusion": "rrf"}, using="bm25")
        assert err.value.status == 400 and "hybrid shorthand" in str(err.value)


def test_text_without_using_searches_the_only_text_vector(tmp_path: Path) -> None:
    with running(tmp_path / "data") as c:
        c.create_collection(
            "s", vectors={"d": {"dim": 2}}, sparse_vectors={"bm25": {"modifier": "idf", "encoder": {"name": "bm25"}}}
        )
        c.upsert("s", [{"id": i, "vector": {"d": [1.0, 0.0]}, "text": t} for i, t in enumerate(TEXTS)])
        got = c.query("s", {"text": "apple"})
        assert {p.id for p in got.points} == {1, 2} and got.stages.using == "bm25"


def test_async_client_hybrid_text_and_sparse_prefetch(tmp_path: Path) -> None:
    import asyncio

    import httpx

    from nestor_client import AsyncNestorClient, SparseVector
    from server.app import create_app
    from server.settings import Settings

    app = create_app(Settings(data_dir=tmp_path / "data"))  # type: ignore[call-arg]

    async def run() -> tuple[Any, Any, Any]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://nestor") as http:
                c = AsyncNestorClient(http_client=http)
                await c.create_collection(
                    "t",
                    dim=64,
                    encoder={"name": "hash", "config": {"dim": 64}},
                    sparse_vectors={"bm25": {"modifier": "idf", "encoder": {"name": "bm25"}}, "s": {}},
                )
                await c.upsert("t", [{"id": i, "text": t} for i, t in enumerate(TEXTS)])
                hybrid = await c.query("t", {"text": "apple jwt"}, limit=3)
                dense = await c.query("t", {"text": "apple jwt"}, using="", limit=HYBRID_DEPTH)
                sparse = await c.query("t", {"text": "apple jwt"}, using="bm25", limit=HYBRID_DEPTH)
                await c.upsert(
                    "t", [{"id": 9, "vector": {"": [1.0] * 64, "s": SparseVector(indices=[3], values=[2.0])}}]
                )
                by_sparse = await c.query("t", SparseVector(indices=[3], values=[1.5]), using="s")
                return hybrid, [dense, sparse], by_sparse

    hybrid, lists, by_sparse = asyncio.run(run())
    want: dict[int, float] = {}
    for res in lists:
        for pos, p in enumerate(res.points):
            want[p.id] = want.get(p.id, 0.0) + 1 / (pos + HYBRID_RRF_K)
    best = sorted(want, key=lambda pid: -want[pid])[:3]
    assert [p.id for p in hybrid.points] == best and hybrid.stages.kind == "fusion"
    assert [(p.id, p.score) for p in by_sparse.points] == [(9, 3.0)]
