"""Sparse vectors and the Query API's prefetch and fusion through qdrant-client (sync and async): a collection
with `sparse_vectors` (plain and `modifier: idf`), sparse upserts (list and batch forms) and queries, dense
and sparse prefetches fused by RRF (Qdrant's k = 2, and `rrf.k`) and DBSF against hand-computed fusions,
dense rescoring over a sparse prefetch, and bad pipelines refused with Qdrant's error shape."""

from __future__ import annotations

import asyncio
import math

import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as m
from qdrant_client.http.exceptions import UnexpectedResponse

from index.fusion import dbsf
from tests.e2e.serverproc import ServerProcess
from tests.qdrant.conftest import connect_async

pytestmark = pytest.mark.e2e

# dense "dense" (dot product, no graph: exact); sparse "plain" (dot product) and "idf" (modifier idf)
DENSE = {1: [1.0, 0.0], 2: [0.0, 1.0], 3: [0.5, 0.9], 4: [-1.0, 0.0], 5: [0.8, 0.6]}
PLAIN = {1: ([1, 7], [1.0, 2.0]), 2: ([7], [3.0]), 3: ([1, 2], [0.5, 3.0]), 4: ([2], [1.0])}
IDF = {1: ([5], [1.0]), 2: ([5, 6], [2.0, 1.0]), 3: ([6, 9], [1.0, 1.0])}
DQ = [1.0, 0.5]  # dense: 5: 1.1, 1: 1.0, 3: 0.95, 2: 0.5, 4: -1.0
SQ = m.SparseVector(indices=[7, 2], values=[1.0, 0.5])  # plain: 2: 3.0, 1: 2.0, 3: 1.5, 4: 0.5


def _vectors(pid: int) -> dict[str, object]:
    out: dict[str, object] = {"dense": DENSE[pid]}
    if pid in PLAIN:
        out["plain"] = m.SparseVector(indices=PLAIN[pid][0], values=PLAIN[pid][1])
    if pid in IDF:
        out["idf"] = m.SparseVector(indices=IDF[pid][0], values=IDF[pid][1])
    return out


@pytest.fixture(scope="module")
def coll(client: QdrantClient) -> str:
    client.create_collection(
        "hy",
        vectors_config={"dense": m.VectorParams(size=2, distance=m.Distance.DOT, hnsw_config=m.HnswConfigDiff(m=0))},
        sparse_vectors_config={
            "plain": m.SparseVectorParams(),
            "idf": m.SparseVectorParams(modifier=m.Modifier.IDF, index=m.SparseIndexParams(on_disk=False)),
        },
    )
    client.upsert("hy", [m.PointStruct(id=pid, vector=_vectors(pid), payload={"g": pid % 2}) for pid in (1, 2, 3)])
    client.upsert(  # the columnar batch form, a point without a sparse vector among them
        "hy",
        m.Batch(
            ids=[4, 5],
            vectors={"dense": [DENSE[4], DENSE[5]]},  # type: ignore[dict-item]
            payloads=[{"g": 0}, {"g": 1}],
        ),
    )
    client.update_vectors("hy", [m.PointVectors(id=4, vector={"plain": m.SparseVector(indices=[2], values=[1.0])})])
    return "hy"


def _pairs(points: list[m.ScoredPoint]) -> list[tuple[object, float]]:
    return [(p.id, pytest.approx(p.score, rel=1e-5)) for p in points]


def test_sparse_config_upsert_retrieve_and_query(client: QdrantClient, coll: str) -> None:
    info = client.get_collection(coll)
    sparse = info.config.params.sparse_vectors
    assert sparse is not None and set(sparse) == {"plain", "idf"} and sparse["idf"].modifier == m.Modifier.IDF
    rec = client.retrieve(coll, [3, 5], with_vectors=True)
    assert rec[0].vector["plain"] == m.SparseVector(indices=[1, 2], values=[0.5, 3.0])  # type: ignore[index]
    assert rec[0].vector["dense"] == pytest.approx(DENSE[3])  # type: ignore[index]
    assert set(rec[1].vector) == {"dense"}  # type: ignore[arg-type]
    client.set_payload(coll, {"g": 0, "tag": 1}, points=[2])  # a payload write keeps the sparse vectors
    rec = client.retrieve(coll, [2], with_vectors=True)
    assert rec[0].payload == {"g": 0, "tag": 1} and rec[0].vector["plain"].indices == [7]  # type: ignore[index, union-attr]
    got = client.query_points(coll, query=SQ, using="plain", limit=10).points
    assert _pairs(got) == [(2, 3.0), (1, 2.0), (3, 1.5), (4, 0.5)]
    got = client.query_points(coll, query=m.NearestQuery(nearest=SQ), using="plain", limit=2, with_vectors=["plain"])
    assert got.points[0].vector == {"plain": m.SparseVector(indices=[7], values=[3.0])}


def test_the_idf_modifier(client: QdrantClient, coll: str) -> None:
    # N = 3 points have "idf"; df(5) = 2, df(6) = 2, df(9) = 1; idf = ln((N - df + 0.5) / (df + 0.5) + 1)
    def idf(df: int, n: int = 3) -> float:
        return math.log((n - df + 0.5) / (df + 0.5) + 1)

    q = m.SparseVector(indices=[5, 9], values=[1.0, 1.0])
    got = client.query_points(coll, query=q, using="idf").points
    assert _pairs(got) == [(3, idf(1)), (2, 2 * idf(2)), (1, idf(2))]


def test_prefetch_and_fusion_against_hand_computed_fusions(client: QdrantClient, coll: str) -> None:
    pre = [m.Prefetch(query=DQ, using="dense", limit=4), m.Prefetch(query=SQ, using="plain", limit=4)]
    dense, sparse = [5, 1, 3, 2], [2, 1, 3, 4]
    assert [p.id for p in client.query_points(coll, query=DQ, using="dense", limit=4).points] == dense

    def rrf(k: int) -> dict[int, float]:
        acc: dict[int, float] = {}
        for lst in (dense, sparse):
            for pos, pid in enumerate(lst):
                acc[pid] = acc.get(pid, 0.0) + 1 / (pos + k)
        return acc

    got = client.query_points(coll, prefetch=pre, query=m.FusionQuery(fusion=m.Fusion.RRF), limit=10).points
    assert {p.id: p.score for p in got} == pytest.approx(rrf(2)) and [p.id for p in got][:2] == [2, 1]
    got = client.query_points(coll, prefetch=pre, query=m.RrfQuery(rrf=m.Rrf(k=60)), limit=10).points
    assert {p.id: p.score for p in got} == pytest.approx(rrf(60))
    dl = [(5, 1.1), (1, 1.0), (3, 0.95), (2, 0.5)]
    sl = [(2, 3.0), (1, 2.0), (3, 1.5), (4, 0.5)]
    got = client.query_points(coll, prefetch=pre, query=m.FusionQuery(fusion=m.Fusion.DBSF), limit=10).points
    assert {p.id: p.score for p in got} == pytest.approx(dict(dbsf([dl, sl])), rel=1e-5)
    # filters at the root reach every prefetch; payloads come with the fused points
    flt = m.Filter(must=[m.FieldCondition(key="g", match=m.MatchValue(value=1))])
    got = client.query_points(
        coll, prefetch=pre, query=m.FusionQuery(fusion=m.Fusion.RRF), query_filter=flt, with_payload=True
    ).points
    assert {p.id for p in got} == {1, 3, 5} and all(p.payload == {"g": 1} for p in got)
    # a batch mixes pipeline and plain queries
    batch = client.query_batch_points(
        coll,
        [
            m.QueryRequest(prefetch=pre, query=m.FusionQuery(fusion=m.Fusion.RRF), limit=3),
            m.QueryRequest(query=SQ, using="plain", limit=1),
            m.QueryRequest(query=DQ, using="dense", limit=1),
        ],
    )
    assert [[p.id for p in r.points] for r in batch] == [[2, 1, 5], [2], [5]]


def test_dense_rescore_over_a_sparse_prefetch(client: QdrantClient, coll: str) -> None:
    got = client.query_points(coll, prefetch=m.Prefetch(query=SQ, using="plain", limit=2), query=DQ, using="dense")
    assert _pairs(got.points) == [(1, 1.0), (2, 0.5)]


def test_async_client_fuses_the_same(server: ServerProcess, client: QdrantClient, coll: str) -> None:
    pre = [m.Prefetch(query=DQ, using="dense", limit=4), m.Prefetch(query=SQ, using="plain", limit=4)]
    want = client.query_points(coll, prefetch=pre, query=m.FusionQuery(fusion=m.Fusion.DBSF)).points

    async def run() -> list[m.ScoredPoint]:
        ac = connect_async(server)
        try:
            await ac.upsert(coll, [m.PointStruct(id=9, vector={"dense": [0.0, -1.0], "plain": SQ})])
            await ac.delete(coll, m.PointIdsList(points=[9]))
            res = await ac.query_points(coll, prefetch=pre, query=m.FusionQuery(fusion=m.Fusion.DBSF))
            return res.points
        finally:
            await ac.close()

    got = asyncio.run(run())
    assert [(p.id, p.score) for p in got] == [(p.id, p.score) for p in want] and len(got) == 5


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"query": m.FusionQuery(fusion=m.Fusion.RRF)}, "fusion needs prefetch"),
        ({"query": SQ, "using": "dense"}, "dense"),
        ({"query": DQ, "using": "plain"}, "sparse"),
        ({"query": m.SparseVector(indices=[1, 1], values=[1.0, 2.0]), "using": "plain"}, "more than once"),
        ({"prefetch": [m.Prefetch(query=SQ, using="nope")], "query": m.FusionQuery(fusion=m.Fusion.RRF)}, "nope"),
        ({"prefetch": [m.Prefetch(query=m.OrderByQuery(order_by="g"))], "query": DQ, "using": "dense"}, "order_by"),
    ],
)
def test_bad_pipelines_are_refused(client: QdrantClient, coll: str, kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(UnexpectedResponse) as exc:
        client.query_points(coll, **kwargs)  # type: ignore[arg-type]
    assert exc.value.status_code == 400
    assert needle in exc.value.structured()["status"]["error"]


def test_groups_over_a_pipeline_are_refused(client: QdrantClient, coll: str) -> None:
    with pytest.raises(UnexpectedResponse) as exc:
        client.query_points_groups(coll, group_by="g", query=SQ, using="plain")
    assert exc.value.status_code == 400 and "query_points_groups" in exc.value.structured()["status"]["error"]


def test_bad_sparse_points_are_refused_and_write_nothing(client: QdrantClient, coll: str) -> None:
    bad = m.PointStruct(id=7, vector={"dense": [1.0, 1.0], "plain": m.SparseVector(indices=[3, 3], values=[1, 2])})
    with pytest.raises(UnexpectedResponse) as exc:
        client.upsert(coll, [m.PointStruct(id=6, vector={"dense": [1.0, 1.0]}), bad])
    assert exc.value.status_code == 400
    assert client.retrieve(coll, [6, 7]) == []


def test_the_older_search_route_takes_a_named_sparse_vector(server: ServerProcess, coll: str) -> None:
    import httpx

    from tests.qdrant.conftest import ADMIN

    body = {"vector": {"name": "plain", "vector": {"indices": [7, 2], "values": [1.0, 0.5]}}, "limit": 2}
    r = httpx.post(f"{server.url}/qdrant/collections/{coll}/points/search", json=body, headers={"api-key": ADMIN})
    assert r.status_code == 200, r.text
    assert [(p["id"], p["score"]) for p in r.json()["result"]] == [(2, 3.0), (1, 2.0)]


def test_a_sparse_only_collection(client: QdrantClient) -> None:
    """No dense vector at all (`vectors_config={}`): create, info, upsert (points and the batch form),
    retrieve, scroll, query and a fusion of two sparse vectors; a dense vector is refused."""
    client.create_collection(
        "sponly",
        vectors_config={},
        sparse_vectors_config={"plain": m.SparseVectorParams(), "idf": m.SparseVectorParams(modifier=m.Modifier.IDF)},
    )
    info = client.get_collection("sponly")
    assert info.config.params.vectors == {} and set(info.config.params.sparse_vectors or {}) == {"plain", "idf"}
    client.upsert(
        "sponly",
        [
            m.PointStruct(id=pid, vector={"plain": m.SparseVector(indices=PLAIN[pid][0], values=PLAIN[pid][1])})
            for pid in (1, 2, 3, 4)
        ],
    )
    client.upsert(
        "sponly",
        m.Batch(
            ids=[1, 2, 3],
            vectors={"idf": [m.SparseVector(indices=IDF[p][0], values=IDF[p][1]) for p in (1, 2, 3)]},  # type: ignore[dict-item]
        ),
    )  # the batch form replaces the points' vectors: 1-3 now have "idf" only
    assert client.get_collection("sponly").points_count == 4
    rec = client.retrieve("sponly", [2, 4], with_vectors=True)
    assert rec[0].vector == {"idf": m.SparseVector(indices=[5, 6], values=[2.0, 1.0])}
    assert rec[1].vector == {"plain": m.SparseVector(indices=[2], values=[1.0])}
    assert [p.id for p in client.scroll("sponly", limit=10)[0]] == [1, 2, 3, 4]
    assert _pairs(client.query_points("sponly", query=SQ, using="plain").points) == [(4, 0.5)]
    q = m.SparseVector(indices=[5, 2], values=[1.0, 1.0])
    pre = [m.Prefetch(query=q, using="plain", limit=3), m.Prefetch(query=q, using="idf", limit=3)]
    got = client.query_points("sponly", prefetch=pre, query=m.FusionQuery(fusion=m.Fusion.RRF)).points
    # plain: [4]; idf: [2, 1] (2 has twice 1's weight on index 5); RRF with Qdrant's k = 2
    assert {p.id: p.score for p in got} == pytest.approx({4: 1 / 2, 2: 1 / 2, 1: 1 / 3})
    with pytest.raises(UnexpectedResponse) as exc:
        client.upsert("sponly", [m.PointStruct(id=9, vector=[1.0, 2.0])])
    assert exc.value.status_code == 400
    with pytest.raises(UnexpectedResponse) as exc:
        client.query_points("sponly", query=[1.0, 2.0])
    assert exc.value.status_code == 400
    assert client.get_collection("sponly").points_count == 4
