"""Queries through qdrant-client: nearest by vector and by id, `using`, filters, payload and vector
selectors, score thresholds, limit and offset, batches, recommend; the older search and recommend
routes; what is refused (prefetch, fusion and sparse vectors: tests/qdrant/test_hybrid.py)."""

from __future__ import annotations

import asyncio
import math

import httpx
import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as m
from qdrant_client.http.exceptions import UnexpectedResponse

from tests.e2e.serverproc import ServerProcess
from tests.qdrant.conftest import ADMIN, connect_async

pytestmark = pytest.mark.e2e

N, DIM = 60, 8
RNG = np.random.default_rng(7)
VECS = RNG.standard_normal((N, DIM)).astype(np.float32)


def _cosine_order(q: np.ndarray, ids: list[int] | None = None) -> list[int]:
    ids = list(range(N)) if ids is None else ids
    x = VECS[ids] / np.linalg.norm(VECS[ids], axis=1, keepdims=True)
    s = x @ (q / np.linalg.norm(q))
    return [ids[i] for i in np.argsort(-s, kind="stable")]


@pytest.fixture(scope="module")
def coll(client: QdrantClient) -> str:
    client.create_collection(
        "q",
        vectors_config={
            "dense": m.VectorParams(size=DIM, distance=m.Distance.COSINE, hnsw_config=m.HnswConfigDiff(m=0)),
            "l2": m.VectorParams(size=2, distance=m.Distance.EUCLID),
        },
    )
    client.upsert(
        "q",
        [
            m.PointStruct(
                id=i,
                vector={"dense": VECS[i].tolist(), "l2": [float(i), 0.0]},
                payload={"i": i, "group": "even" if i % 2 == 0 else "odd", "meta": {"a": i, "b": -i}},
            )
            for i in range(N)
        ],
    )
    return "q"


def test_nearest_by_vector_matches_exact_order(client: QdrantClient, coll: str) -> None:
    q = RNG.standard_normal(DIM).astype(np.float32)
    res = client.query_points(coll, query=q.tolist(), using="dense", limit=5).points
    assert [p.id for p in res] == _cosine_order(q)[:5]
    assert all(p.version == 0 and p.vector is None for p in res)
    assert res[0].payload is not None and set(res[0].payload) == {"i", "group", "meta"}  # client default: payload
    expect = float(VECS[res[0].id] @ q / np.linalg.norm(VECS[res[0].id]) / np.linalg.norm(q))
    assert math.isclose(res[0].score, expect, rel_tol=1e-4)
    # the nearest query object says the same
    again = client.query_points(coll, query=m.NearestQuery(nearest=q.tolist()), using="dense", limit=5).points
    assert [p.id for p in again] == [p.id for p in res]


def test_filter_offset_limit_and_selectors(client: QdrantClient, coll: str) -> None:
    q = RNG.standard_normal(DIM).astype(np.float32)
    even = [i for i in range(N) if i % 2 == 0]
    flt = m.Filter(must=[m.FieldCondition(key="group", match=m.MatchValue(value="even"))])
    res = client.query_points(
        coll, query=q.tolist(), using="dense", query_filter=flt, limit=4, offset=2, with_payload=["i", "meta.a"]
    ).points
    assert [p.id for p in res] == _cosine_order(q, even)[2:6]
    assert res[0].payload == {"i": res[0].id, "meta": {"a": res[0].id}}
    res = client.query_points(
        coll,
        query=q.tolist(),
        using="dense",
        limit=1,
        with_payload=m.PayloadSelectorExclude(exclude=["meta"]),
        with_vectors=["l2"],
    ).points
    assert res[0].payload is not None and set(res[0].payload) == {"i", "group"}
    assert res[0].vector == {"l2": [float(res[0].id), 0.0]}
    res = client.query_points(coll, query=q.tolist(), using="dense", limit=1, with_payload=False).points
    assert res[0].payload is None


def test_euclid_scores_are_distances_and_threshold_bounds_them(client: QdrantClient, coll: str) -> None:
    res = client.query_points(coll, query=[10.2, 0.0], using="l2", limit=3).points
    assert [p.id for p in res] == [10, 11, 9]
    assert [round(p.score, 4) for p in res] == [0.2, 0.8, 1.2]
    within = client.query_points(coll, query=[10.2, 0.0], using="l2", limit=10, score_threshold=1.0).points
    assert [p.id for p in within] == [10, 11]


def test_cosine_score_threshold(client: QdrantClient, coll: str) -> None:
    q = VECS[3]
    res = client.query_points(coll, query=q.tolist(), using="dense", limit=N, score_threshold=0.5).points
    assert res and all(p.score >= 0.5 for p in res)
    assert res[0].id == 3
    everything = client.query_points(coll, query=q.tolist(), using="dense", limit=N).points
    assert len(res) == sum(p.score >= 0.5 for p in everything) < N


def test_query_by_point_id_leaves_the_point_out(client: QdrantClient, coll: str) -> None:
    res = client.query_points(coll, query=4, using="dense", limit=3).points
    assert [p.id for p in res] == [i for i in _cosine_order(VECS[4]) if i != 4][:3]
    with pytest.raises(UnexpectedResponse) as exc:
        client.query_points(coll, query=12345, using="dense")
    assert exc.value.status_code == 404


def test_recommend_average_vector(client: QdrantClient, coll: str) -> None:
    pos, neg = [1, 2], [3]
    unit = VECS / np.linalg.norm(VECS, axis=1, keepdims=True)  # a cosine collection keeps unit vectors, as Qdrant's
    mean = unit[pos].mean(axis=0)
    target = mean + (mean - unit[neg].mean(axis=0))
    res = client.query_points(
        coll, query=m.RecommendQuery(recommend=m.RecommendInput(positive=pos, negative=neg)), using="dense", limit=4
    ).points
    assert [p.id for p in res] == [i for i in _cosine_order(target) if i not in (1, 2, 3)][:4]


def test_no_query_lists_points_in_id_order(client: QdrantClient, coll: str) -> None:
    flt = m.Filter(must=[m.FieldCondition(key="group", match=m.MatchValue(value="odd"))])
    res = client.query_points(coll, query_filter=flt, limit=3, offset=1).points
    assert [p.id for p in res] == [3, 5, 7] and all(p.score == 0 for p in res)


def test_query_batch(client: QdrantClient, coll: str) -> None:
    qs = RNG.standard_normal((3, DIM)).astype(np.float32)
    out = client.query_batch_points(
        coll, [m.QueryRequest(query=q.tolist(), using="dense", limit=2, with_payload=True) for q in qs]
    )
    assert [[p.id for p in r.points] for r in out] == [_cosine_order(q)[:2] for q in qs]


def test_wrong_vector_name_and_dimension(client: QdrantClient, coll: str) -> None:
    with pytest.raises(UnexpectedResponse) as exc:
        client.query_points(coll, query=[1.0, 2.0], using="nope")
    assert exc.value.status_code == 400 and "nope" in exc.value.structured()["status"]["error"]
    with pytest.raises(UnexpectedResponse) as exc:
        client.query_points(coll, query=[1.0, 2.0], using="dense")
    assert exc.value.status_code == 400 and "dim" in exc.value.structured()["status"]["error"]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"query": m.FusionQuery(fusion=m.Fusion.RRF)}, "fusion needs prefetch"),
        ({"query": m.SparseVector(indices=[1], values=[1.0]), "using": "dense"}, "sparse"),
        ({"query": m.OrderByQuery(order_by="i")}, "order_by"),
    ],
)
def test_bad_and_unsupported_queries_are_refused(
    client: QdrantClient, coll: str, kwargs: dict[str, object], needle: str
) -> None:
    with pytest.raises(UnexpectedResponse) as exc:
        client.query_points(coll, **kwargs)  # type: ignore[arg-type]
    assert exc.value.status_code == 400
    assert needle in exc.value.structured()["status"]["error"]


def test_older_search_and_recommend_routes(server: ServerProcess, coll: str) -> None:
    q = RNG.standard_normal(DIM).astype(np.float32)
    url = f"{server.url}/qdrant/collections/{coll}/points"
    h = {"api-key": ADMIN}
    r = httpx.post(f"{url}/search", json={"vector": {"name": "dense", "vector": q.tolist()}, "limit": 3}, headers=h)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert [p["id"] for p in r.json()["result"]] == _cosine_order(q)[:3]
    r = httpx.post(
        f"{url}/search/batch",
        json={"searches": [{"vector": {"name": "l2", "vector": [5.1, 0]}, "limit": 1, "with_payload": True}]},
        headers=h,
    )
    assert r.json()["result"][0][0]["id"] == 5 and r.json()["result"][0][0]["payload"]["i"] == 5
    r = httpx.post(f"{url}/recommend", json={"positive": [8], "using": "dense", "limit": 2}, headers=h)
    assert [p["id"] for p in r.json()["result"]] == [i for i in _cosine_order(VECS[8]) if i != 8][:2]
    r = httpx.post(
        f"{url}/recommend/batch",
        json={
            "searches": [
                {"positive": [8], "using": "dense", "limit": 2},
                {"positive": [9], "using": "dense", "limit": 1},
            ]
        },
        headers=h,
    )
    assert [[p["id"] for p in res] for res in r.json()["result"]] == [
        [i for i in _cosine_order(VECS[8]) if i != 8][:2],
        [i for i in _cosine_order(VECS[9]) if i != 9][:1],
    ]


def test_async_query(server: ServerProcess, coll: str) -> None:
    q = RNG.standard_normal(DIM).astype(np.float32)

    async def run() -> None:
        c = connect_async(server)
        try:
            res = await c.query_points(coll, query=q.tolist(), using="dense", limit=3)
            assert [p.id for p in res.points] == _cosine_order(q)[:3]
            batch = await c.query_batch_points(coll, [m.QueryRequest(query=q.tolist(), using="dense", limit=1)])
            assert batch[0].points[0].id == res.points[0].id
        finally:
            await c.close()

    asyncio.run(run())


def test_multivector_collection(client: QdrantClient) -> None:
    client.create_collection(
        "mv",
        vectors_config=m.VectorParams(
            size=4,
            distance=m.Distance.COSINE,
            multivector_config=m.MultiVectorConfig(comparator=m.MultiVectorComparator.MAX_SIM),
        ),
    )
    docs = {i: RNG.standard_normal((3, 4)).astype(np.float32) for i in range(6)}
    client.upsert("mv", [m.PointStruct(id=i, vector=d.tolist()) for i, d in docs.items()])
    q = docs[2][:2] + 0.01
    res = client.query_points("mv", query=q.tolist(), limit=3).points

    def maxsim(d: np.ndarray) -> float:
        dn = d / np.linalg.norm(d, axis=1, keepdims=True)
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        return float((qn @ dn.T).max(axis=1).sum())

    assert res[0].id == 2
    assert res[0].score == pytest.approx(maxsim(docs[2]), rel=1e-3)
    got = client.retrieve("mv", [2], with_vectors=True)[0].vector
    assert isinstance(got, list) and len(got) == 3 and len(got[0]) == 4


def test_error_shapes_of_the_query_route(server: ServerProcess, coll: str) -> None:
    url = f"{server.url}/qdrant/collections/{coll}"
    h = {"api-key": ADMIN}
    r = httpx.post(f"{url}/points/query", json={"query": [0.0] * DIM, "using": "dense", "limit": 0}, headers=h)
    assert r.status_code == 422 and r.json()["status"]["error"].startswith("Validation error in JSON body")
    r = httpx.post(f"{url}/points/query", content=b"{", headers={**h, "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["status"]["error"].startswith("Format error in JSON body")
    r = httpx.post(f"{url}/points/query", json={"query": "x" * 3, "using": "dense"}, headers=h)
    assert r.status_code == 400 and "UUID" in r.json()["status"]["error"]
    r = httpx.post(f"{url}/facet", json={"key": "group"}, headers=h)  # not served: Qdrant's shape all the same
    assert r.status_code == 404 and set(r.json()) == {"status", "time"}
    r = httpx.post(f"{server.url}/qdrant/collections/absent/points/query", json={"query": [1.0]}, headers=h)
    assert r.status_code == 404 and r.json()["status"]["error"] == "Not found: Collection `absent` doesn't exist!"


def test_query_groups(client: QdrantClient, coll: str) -> None:
    q = RNG.standard_normal(DIM).astype(np.float32)
    order = _cosine_order(q)
    res = client.query_points_groups(coll, group_by="group", query=q.tolist(), using="dense", limit=2, group_size=3)
    by_id = {g.id: [int(h.id) for h in g.hits] for g in res.groups}
    assert set(by_id) == {"even", "odd"}
    assert by_id["even"] == [i for i in order if i % 2 == 0][:3]
    assert by_id["odd"] == [i for i in order if i % 2 == 1][:3]
    assert [g.id for g in res.groups][0] == ("even" if order[0] % 2 == 0 else "odd")  # best group first
    # by an integer key, one point per group: the groups never fill, so it searches again for more (and
    # stops when the collection is exhausted)
    res = client.query_points_groups(coll, group_by="i", query=q.tolist(), using="dense", limit=10, group_size=3)
    assert [g.id for g in res.groups] == order[:10] and all(len(g.hits) == 1 for g in res.groups)
    with pytest.raises(UnexpectedResponse) as exc:
        client.query_points_groups(coll, group_by="i", using="dense")
    assert exc.value.status_code == 400
