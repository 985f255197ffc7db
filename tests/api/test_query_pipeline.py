"""`POST /collections/{name}/points/query` through the client: a search as a one-stage query, RRF and
DBSF over REST against hand-computed fusions, text and id queries, bad pipelines, and the Matryoshka
funnel and MUVERA as prefetch + rescore plans returning the special paths' hits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from index.fusion import dbsf
from nestor_client import ApiError, NestorClient
from nestor_client.query import QueryRequest
from tests.api.conftest import running, wait_indexed
from tests.api.test_compression import wait_trained
from tests.synth import split
from tests.synth_tokens import clustered_token_sets

N = 300


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NestorClient]:
    with running(tmp_path_factory.mktemp("q") / "data", max_query_depth=2, max_query_candidates=2000) as c:
        c.create_collection("nv", vectors={"a": {"dim": 16}, "b": {"dim": 12, "metric": "l2"}})
        rng = np.random.default_rng(7)
        a, b = rng.normal(size=(N, 16)), rng.normal(size=(N, 12))
        pts = [{"id": i, "vector": {"a": a[i].tolist(), "b": b[i].tolist()}, "payload": {"g": i % 4}} for i in range(N)]
        c.upsert("nv", pts)
        yield c


def _pairs(hits: Any) -> list[tuple[Any, float]]:
    return [(h.id, h.score) for h in hits]


def test_a_search_is_a_one_stage_query(client: NestorClient) -> None:
    q = np.random.default_rng(1).normal(size=16).astype(np.float32)
    flt = {"must": [{"key": "g", "match": {"value": 2}}]}
    got = client.query("nv", q, using="a", filter=flt, limit=5, offset=2, score_threshold=-0.2)
    want = client.search("nv", q, using="a", filter=flt, limit=5, offset=2, score_threshold=-0.2)
    assert _pairs(got.points) == _pairs(want) and len(want) > 0
    assert [p.payload for p in got.points] == [h.payload for h in want]
    assert got.stages.kind == "search" and got.stages.strategy == want.strategy and got.stages.using == "a"


def test_rrf_and_dbsf_over_rest_match_hand_computed_fusions(client: NestorClient) -> None:
    rng = np.random.default_rng(2)
    qa, qb = rng.normal(size=16).tolist(), rng.normal(size=12).tolist()
    la = _pairs(client.search("nv", qa, using="a", limit=10))
    lb = _pairs(client.search("nv", qb, using="b", limit=10))
    pre = [{"query": qa, "using": "a", "limit": 10}, {"query": qb, "using": "b", "limit": 10}]

    def rrf(k: int) -> list[tuple[Any, float]]:
        acc: dict[Any, float] = {}
        for lst in (la, lb):
            for pos, (pid, _) in enumerate(lst):
                acc[pid] = acc.get(pid, 0.0) + 1 / (pos + k)
        return sorted(acc.items(), key=lambda kv: -kv[1])

    got = client.query("nv", {"fusion": "rrf"}, prefetch=pre, limit=6, with_payload=False)
    want = rrf(2)[:6]
    assert [p.id for p in got.points] == [pid for pid, _ in want]
    assert [p.score for p in got.points] == pytest.approx([s for _, s in want])
    assert got.stages.kind == "fusion" and got.stages.candidates_in == 20 and got.stages.candidates_out == 6
    assert [s.using for s in got.stages.stages] == ["a", "b"]

    # rrf with its own k, paged, and the threshold on the fused scores
    full = rrf(60)
    t = full[7][1]
    got = client.query("nv", {"rrf": {"k": 60}}, prefetch=pre, limit=20, offset=3, score_threshold=t)
    assert [p.id for p in got.points] == [pid for pid, s in full[3:20] if s >= t]

    got = client.query("nv", {"fusion": "dbsf"}, prefetch=pre, limit=20)
    acc: dict[Any, float] = {}
    for lst, sign in ((la, 1.0), (lb, -1.0)):  # L2 distances: lower is better, negated
        s = sign * np.array([sc for _, sc in lst])
        lo, hi = s.mean() - 3 * s.std(ddof=1), s.mean() + 3 * s.std(ddof=1)
        for (pid, _), v in zip(lst, s, strict=True):
            acc[pid] = acc.get(pid, 0.0) + (v - lo) / (hi - lo)
    want = sorted(acc.items(), key=lambda kv: -kv[1])
    assert [p.id for p in got.points] == [pid for pid, _ in want]
    assert [p.score for p in got.points] == pytest.approx([s for _, s in want], abs=1e-5)


def test_rescore_and_query_by_id(client: NestorClient) -> None:
    # query by id: the stored vector of point 9 on "b", over a prefetch on "a"; point 9 itself left out
    stored = client.get("nv", [9], with_vector=True)[0].vector
    assert isinstance(stored, dict)
    pre = {"query": 9, "using": "a", "limit": 30, "filter": {"must_not": [{"key": "g", "match": {"value": 0}}]}}
    got = client.query("nv", 9, using="b", prefetch=pre, limit=8, with_vector=["b"])
    cand = [h.id for h in client.search("nv", stored["a"], using="a", limit=31, filter=pre["filter"]) if h.id != 9][:30]
    exact = client.search(
        "nv", stored["b"], using="b", limit=8, params={"exact": True}, filter={"must": [{"has_id": cand}]}
    )
    assert _pairs(got.points) == _pairs(exact) and 9 not in [p.id for p in got.points]
    assert all(isinstance(p.vector, dict) and len(p.vector["b"]) == 12 for p in got.points)
    assert got.stages.kind == "rescore" and got.stages.strategy == "exact_filtered"


def test_text_queries_use_the_vectors_encoder(tmp_path: Path) -> None:
    with running(tmp_path / "data") as c:
        c.create_collection("t", dim=64, encoder={"name": "hash", "config": {"dim": 64}})
        words = ["apple pie", "green apple", "pear tart", "plum jam", "apple jam"]
        c.upsert("t", [{"id": i, "text": w} for i, w in enumerate(words)])
        want = c.search_batch("t", [{"text": "apple", "limit": 3}])[0]
        got = c.query("t", {"text": "apple"}, limit=3)
        assert _pairs(got.points) == _pairs(want)
        both = c.query("t", {"fusion": "rrf"}, prefetch=[{"query": {"text": "apple"}}, {"query": {"text": "jam"}}])
        assert {p.id for p in both.points} == set(range(5))


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"query": [0.0] * 16, "using": "c"}, 400, "no vector named 'c'"),
        ({"query": {"fusion": "rrf"}}, 400, "fusion needs prefetch"),
        ({"query": {"fusion": "rrf"}, "prefetch": [{"query": {"fusion": "dbsf"}}]}, 400, "fusion needs prefetch"),
        ({"query": [0.0] * 15, "using": "a"}, 422, "dimension 16"),
        ({"query": [1e39] * 16, "using": "a"}, 422, "NaN or infinity"),
        ({"query": [[0.0] * 16], "using": "a"}, 422, "one vector"),
        (
            {
                "query": [1.0] * 16,
                "using": "a",
                "prefetch": [
                    {
                        "query": [1.0] * 16,
                        "using": "a",
                        "prefetch": [
                            {"query": [1.0] * 16, "using": "a", "prefetch": [{"query": [1.0] * 16, "using": "a"}]}
                        ],
                    }
                ],
            },
            422,
            "maximum depth 2",
        ),
        (
            {"query": {"fusion": "rrf"}, "prefetch": [{"query": [1.0] * 16, "using": "a", "limit": 1500}] * 2},
            422,
            "candidates",
        ),
        ({"query": {"fusion": "mean"}, "prefetch": [{"query": [1.0] * 16, "using": "a"}]}, 422, ""),
        ({"prefetch": [{"query": [1.0] * 16, "using": "a"}] * 2}, 400, "need a fusion"),
        ({"query": 100000, "using": "a"}, 400, "no point with id 100000"),
        ({"query": [1.0] * 16, "using": "a", "limit": 0}, 422, ""),
        ({"query": {"fusion": "rrf"}, "prefetch": [{"query": 3, "using": "a"}], "with_vector": ["c"]}, 400, "['c']"),
    ],
)
def test_bad_pipelines_get_a_4xx(client: NestorClient, body: dict[str, Any], status: int, says: str) -> None:
    with pytest.raises(ApiError) as err:
        client.query("nv", body.pop("query", None), **body)
    assert err.value.status == status
    assert says in str(err.value)


def test_msgpack_and_numpy_queries(tmp_path: Path) -> None:
    with running(tmp_path / "data", wire="msgpack") as c:
        c.create_collection("m", dim=8)
        vecs = np.random.default_rng(3).normal(size=(50, 8)).astype(np.float32)
        c.upload("m", ids=list(range(50)), vectors=vecs)
        got = c.query("m", vecs[4], prefetch=[{"query": vecs[4] + 0.1, "limit": 20}], limit=3, with_vector=True)
        assert got.points[0].id == 4 and got.points[0].vector == pytest.approx(vecs[4] / np.linalg.norm(vecs[4]))


def test_matryoshka_funnel_as_prefetch_and_rescore(tmp_path: Path) -> None:
    base, queries = split(3000, 20, 64, seed=5)
    with running(tmp_path / "data") as c:
        c.create_collection(
            "f",
            dim=64,
            training={"threshold": 3000},
            reduce={"type": "matryoshka", "dim": 16, "rotate": "pca"},
            index={"type": "flat"},
        )
        c.upload("f", ids=list(range(3000)), vectors=base, batch_size=1000)
        wait_trained(c, "f")
        funnel = {"funnel": [{"dim": 16, "limit": 40}, {"dim": 64, "limit": 10}]}
        shortlist = {"rescore": False, "funnel": []}  # the reduced index's own 40 candidates
        for q in queries:
            special = c.search("f", q, limit=10, params=funnel, with_payload=False)
            plan = c.query(
                "f", q, prefetch={"query": q, "limit": 40, "params": shortlist}, limit=10, with_payload=False
            )
            assert [p.id for p in plan.points] == [h.id for h in special]
            assert [p.score for p in plan.points] == pytest.approx([h.score for h in special], abs=1e-5)
        # the pair runs as one search of the vector's own path, 40 candidates (index/pipeline.py, _fused_params)
        assert plan.stages.strategy == "matryoshka_flat (candidates and rescore in one search)"
        assert plan.stages.candidates_in == 40 and plan.stages.stages[0].strategy == "fused into the rescore"


def test_muvera_as_prefetch_and_maxsim_rescore(tmp_path: Path) -> None:
    docs, queries = clustered_token_sets(600, 10, 16, seed=3)
    muvera = {"type": "muvera", "k_sim": 3, "d_proj": 8, "r_reps": 6, "seed": 7, "oversampling": 10, "exact_below": 0}
    with running(tmp_path / "data") as c:
        c.create_collection("mv", dim=16, metric="dot", multivector=muvera, index={"type": "hnsw", "m": 16})
        c.upsert("mv", ids=list(range(600)), multivectors=docs)
        wait_indexed(c, "mv")
        for q in queries:
            special = c.search("mv", multivector=q, limit=10, with_payload=False)
            assert special.strategy == "muvera"
            pre = {"query": q, "limit": 100, "params": {"rescore": False}}  # oversampling 10 x limit 10
            plan = c.query("mv", q, prefetch=pre, limit=10, with_payload=False)
            assert [p.id for p in plan.points] == [h.id for h in special]
            assert [p.score for p in plan.points] == pytest.approx([h.score for h in special], abs=1e-5)
        assert [s.strategy for s in (plan.stages, plan.stages.stages[0])] == [
            "muvera (candidates and rescore in one search)",
            "fused into the rescore",
        ]


def test_a_scoped_key_queries_only_inside_its_scope(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from server.app import create_app
    from server.auth import hash_key
    from server.settings import Settings

    keys = tmp_path / "keys"
    scoped = {"sha256": hash_key("scoped-key-0123456789"), "collections": {"s": "read"}, "name": "tenant x"}
    scoped["filter"] = {"s": {"must": [{"key": "tenant", "match": {"value": "x"}}]}}
    keys.write_text(f"admin:{hash_key('admin-key-0123456789')}\n{json.dumps(scoped)}\n")
    settings = Settings(data_dir=tmp_path / "data", api_keys_file=keys)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as http:
        admin, key = {"api-key": "admin-key-0123456789"}, {"api-key": "scoped-key-0123456789"}
        assert http.put("/collections/s", json={"dim": 4}, headers=admin).status_code == 200
        rng = np.random.default_rng(0)
        pts = [{"id": i, "vector": rng.normal(size=4).tolist(), "payload": {"tenant": "xy"[i % 2]}} for i in range(40)]
        assert http.put("/collections/s/points", json={"points": pts}, headers=admin).status_code == 200
        q = [1.0, 0.0, 0.0, 0.0]
        body = {"prefetch": [{"query": q, "limit": 40}, {"query": 2, "limit": 40}], "query": {"fusion": "rrf"}}
        r = http.post("/collections/s/points/query", json={**body, "limit": 40}, headers=key)
        assert r.status_code == 200, r.text
        got = r.json()["result"]["points"]
        assert len(got) == 20 and all(p["payload"]["tenant"] == "x" for p in got)  # the 20 points of tenant x
        by_id = r.json()["result"]["stages"]["stages"][1]
        assert by_id["candidates_out"] == 19  # the query by point 2 leaves point 2 out
        # point 1 is tenant y: outside the scope, it cannot be queried by, not even to rank others
        r = http.post("/collections/s/points/query", json={"query": 1, "limit": 5}, headers=key)
        assert r.status_code == 400 and "no point with id 1" in r.text
        r = http.post("/collections/s/points/query", json={"query": 1, "limit": 5}, headers=admin)
        assert r.status_code == 200 and len(r.json()["result"]["points"]) == 5


def test_async_client_queries_the_same(tmp_path: Path) -> None:
    import asyncio

    import httpx

    from nestor_client import AsyncNestorClient
    from server.app import create_app
    from server.settings import Settings

    app = create_app(Settings(data_dir=tmp_path / "data"))  # type: ignore[call-arg]
    vecs = np.random.default_rng(4).normal(size=(30, 4)).astype(np.float32)
    pre = [{"query": vecs[0], "limit": 10}, {"query": vecs[1], "limit": 10}]

    async def run() -> tuple[Any, Any]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://nestor") as http:
                c = AsyncNestorClient(http_client=http)
                await c.create_collection("a", dim=4)
                await c.upsert("a", ids=list(range(30)), vectors=vecs)
                fused = await c.query("a", {"fusion": "dbsf"}, prefetch=pre, limit=5)
                firsts = [(await c.search("a", v, limit=10)) for v in vecs[:2]]
                return fused, firsts

    fused, firsts = asyncio.run(run())
    assert fused.stages.kind == "fusion" and len(fused.points) == 5
    want = dbsf([_pairs(r) for r in firsts])[:5]  # index/fusion.py's DBSF is checked by hand in its own tests
    assert _pairs(fused.points) == [(pid, pytest.approx(s)) for pid, s in want]


def test_with_vectors_is_accepted_as_qdrant_spells_it(client: NestorClient) -> None:
    assert QueryRequest.model_validate({"query": 1, "with_vectors": ["a"]}).with_vector == ["a"]
    assert QueryRequest.model_validate({"query": 1, "with_vector": True}).with_vector is True
    got = client.query("nv", 5, using="b", limit=2, with_vector=["a"], with_payload=False)
    assert all(isinstance(p.vector, dict) and set(p.vector) == {"a"} and p.payload is None for p in got.points)
