"""`modifier: idf` on a sharded collection, through REST: the shards' document frequencies are summed
before a search (`cluster/idf.py`), so BM25 text queries, sparse queries, a filtered one and a hybrid
fusion return the hits and scores of one collection holding the same points, also after deletes and
overwrites move the frequencies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.settings import Settings

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::FutureWarning")

WORDS = "django flask rest api jwt auth token async http client server orm sql test mock".split()


@pytest.fixture
def http(tmp_path: Path, ray_local: Any) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", ray_address="local", probe_sample_size=0)
    with TestClient(create_app(settings)) as c:
        yield c


def _ok(r: Any) -> Any:
    assert r.status_code == 200, r.text
    return r.json()["result"]


def _hits(http: TestClient, name: str, body: dict[str, Any]) -> list[tuple[Any, float]]:
    got = _ok(http.post(f"/collections/{name}/points/query", json={**body, "with_payload": False}))
    return [(p["id"], round(p["score"], 4)) for p in got["points"]]


def test_sharded_idf_scores_as_one_collection(http: TestClient) -> None:
    rng = np.random.default_rng(5)
    # the skew matters: shard-local frequencies of a rare word differ a lot from the global ones
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 8)), p=_zipf(len(WORDS)))) for _ in range(120)]
    points: list[dict[str, Any]] = [{"id": i, "text": t, "payload": {"g": i % 3}} for i, t in enumerate(texts)]
    for i in range(60):  # a hand-made sparse vector on half of them (its own N: the points that have it)
        points[i]["vector"] = {"s": {"indices": [i % 5, 10 + i % 11], "values": [1.0, 0.5]}}
    config = {
        "vectors": {
            "d": {
                "dim": 16,
                "metric": "dot",
                "index": {"type": "flat"},
                "encoder": {"name": "hash", "config": {"dim": 16}},
            }
        },
        "sparse_vectors": {
            "bm25": {"modifier": "idf", "encoder": {"name": "bm25"}},
            "s": {"modifier": "idf"},
        },
    }
    for name, shards in (("one", 1), ("many", 3)):
        r = http.put(f"/collections/{name}", json={**config, "shards": shards})
        assert r.status_code == 200, r.text
        _ok(http.put(f"/collections/{name}/points?wait=true", json={"points": points}))
    queries: list[dict[str, Any]] = [
        {"query": {"text": "jwt token"}, "using": "bm25", "limit": 10},
        {"query": {"text": "mock sql orm"}, "using": "bm25", "limit": 8, "offset": 3},
        {"query": {"text": "django async"}, "using": "bm25", "limit": 10, "filter": {"must": [_g(1)]}},
        {"query": {"indices": [2, 13, 20], "values": [1.0, 1.0, 2.0]}, "using": "s", "limit": 12},
        {
            "prefetch": [
                {"query": {"text": "rest client"}, "using": "bm25", "limit": 20},
                {"query": {"text": "rest client"}, "using": "d", "limit": 20},
            ],
            "query": {"fusion": "dbsf"},
            "limit": 10,
        },
    ]

    def same() -> None:
        for body in queries:
            one, many = _hits(http, "one", body), _hits(http, "many", body)
            assert _canon(many) == _canon(one) and len(one) >= 3, body

    same()
    # deletes and overwrites change N and the frequencies on some shards only
    for name in ("one", "many"):
        _ok(http.post(f"/collections/{name}/points/delete?wait=true", json={"ids": list(range(0, 120, 4))}))
        over = [{"id": i, "text": "jwt jwt token flask", "payload": {"g": 1}} for i in range(1, 30, 3)]
        _ok(http.put(f"/collections/{name}/points?wait=true", json={"points": over}))
    same()
    # without the summed frequencies a shard weighs rare words by its own counts: the scores would differ
    q = {"query": {"text": "mock"}, "using": "bm25", "limit": 5}
    assert _canon(_hits(http, "many", q)) == _canon(_hits(http, "one", q))


def test_a_bad_sparse_query_on_a_sharded_idf_vector_is_a_422(http: TestClient) -> None:
    config = {"vectors": {"d": {"dim": 2}}, "sparse_vectors": {"s": {"modifier": "idf"}}, "shards": 2}
    assert http.put("/collections/x", json=config).status_code == 200
    r = http.post("/collections/x/points/query", json={"query": {"indices": [1, 1], "values": [1, 2]}, "using": "s"})
    assert r.status_code == 422 and "more than once" in r.text


def _g(v: int) -> dict[str, Any]:
    return {"key": "g", "match": {"value": v}}


def _zipf(n: int) -> Any:
    w = 1.0 / np.arange(1, n + 1)
    return w / w.sum()


def _canon(hits: list[tuple[Any, float]]) -> tuple[list[float], list[tuple[float, Any]]]:
    """Every score in order, and the ids by score: equal scores may come in either order, and where a tie
    is cut by the page's ends, either member (so the first and last scores' ids are left out)."""
    scores = [s for _, s in hits]
    ends = {scores[0], scores[-1]} if scores else set()
    return scores, sorted((-s, pid) for pid, s in hits if s not in ends)
