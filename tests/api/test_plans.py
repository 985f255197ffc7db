"""Search plan counters: `stats.plans` of `GET /collections/{name}` and `nestor_search_plans_total`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from nestor_client.models import Filter
from server.app import create_app
from server.monitor import unindexed_keys
from server.settings import Settings
from server.telemetry import MAX_STRATEGIES, OTHER, PlanCounts, plan_label

DIM = 8
N = 300
CAT = {"must": [{"key": "cat", "match": {"value": 1}}]}  # indexed, 100 points
TAG = {"must": [{"key": "tag", "match": {"any": ["t1", "t2", "t3"]}}]}  # not indexed, 90 points
# 100 points: cat 1, and (tag t2, or no `gone` key, which no point has)
BOTH = {"must": [CAT, {"should": [{"key": "tag", "match": {"value": "t2"}}, {"is_empty": {"key": "gone"}}]}]}


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    # A filter matching more points than the walk's beam (ef 64) walks the graph (never ACORN), fewer run exactly.
    settings = Settings(
        data_dir=tmp_path / "data", index_save_idle_seconds=0.2, exact_filter_threshold=10, filter_walk_fraction=0.0
    )
    with TestClient(create_app(settings)) as client:
        yield client


def _ok(resp: Any) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()


def _setup(http: TestClient) -> np.ndarray:
    vecs = np.random.default_rng(3).standard_normal((N, DIM)).astype(np.float32)
    for name, index in (("flat", {"type": "flat"}), ("graph", {"type": "hnsw", "m": 8, "ef_construction": 64})):
        _ok(http.put(f"/collections/{name}", json={"dim": DIM, "index": index}))
        points = [
            {"id": i, "vector": vecs[i].tolist(), "payload": {"cat": i % 3, "tag": f"t{i % 10}"}} for i in range(N)
        ]
        _ok(http.put(f"/collections/{name}/points", json={"points": points}))
        _ok(http.put(f"/collections/{name}/index", json={"field": "cat", "schema": "integer"}))
    deadline = time.monotonic() + 60
    while True:
        idx = _ok(http.get("/collections/graph"))["result"]["index"]
        if idx["state"] == "ready" and not idx["pending"]:
            return vecs
        assert time.monotonic() < deadline, idx
        time.sleep(0.05)


def _search(http: TestClient, name: str, v: np.ndarray, flt: dict[str, Any] | None = None) -> str:
    strategy: str = _ok(http.post(f"/collections/{name}/points/search", json={"vector": v.tolist(), "filter": flt}))[
        "strategy"
    ]
    return strategy


def _plans(http: TestClient, name: str) -> dict[str, Any]:
    plans: dict[str, Any] = _ok(http.get(f"/collections/{name}"))["result"]["stats"]["plans"]
    return plans


def _counts(plans: dict[str, Any]) -> dict[str, int]:
    return {row["strategy"]: row["count"] for row in plans["strategies"]}


def _prometheus(http: TestClient) -> dict[tuple[str, str], float]:
    resp = http.get("/metrics")
    assert resp.status_code == 200
    fams = {f.name: f for f in text_string_to_metric_families(resp.text)}
    return {
        (s.labels["collection"], s.labels["strategy"]): s.value
        for s in fams["nestor_search_plans"].samples
        if s.name == "nestor_search_plans_total"
    }


def test_searches_are_counted_by_the_plan_that_ran(http: TestClient) -> None:
    vecs = _setup(http)
    assert _plans(http, "graph")["total"] == 0 and _prometheus(http) == {}
    # The planner's names may change; what counts is that each kind of search got one plan, and
    # every one of them was counted under the name its response carried.
    plain = {_search(http, "graph", v) for v in vecs[:5]}
    indexed = {_search(http, "graph", v, CAT) for v in vecs[5:8]}
    scanned = {_search(http, "graph", v, TAG) for v in vecs[8:10]} | {_search(http, "graph", vecs[10], BOTH)}
    batch = {"searches": [{"vector": vecs[i].tolist(), "filter": f} for i, f in ((11, None), (12, None), (13, TAG))]}
    b0, b1, b2 = _ok(http.post("/collections/graph/points/search/batch", json=batch))["strategy"]
    plain |= {b0, b1}
    scanned |= {b2}
    assert len(plain) == len(indexed) == len(scanned) == 1, (plain, indexed, scanned)
    (p,), (i,), (s,) = plain, indexed, scanned
    assert p == "hnsw" and i.startswith("hnsw_") and s == i + "+payload_scan"
    flat_filtered = _search(http, "flat", vecs[0], CAT)
    flat_plain = {_search(http, "flat", v) for v in vecs[1:4]}
    assert flat_plain == {"exact"} and flat_filtered == "exact_filtered"
    # requests that fail count nowhere
    assert http.post("/collections/graph/points/search", json={"vector": [1.0]}).status_code == 422
    assert http.post("/collections/nope/points/search", json={"vector": vecs[0].tolist()}).status_code == 404

    plans = _plans(http, "graph")
    assert _counts(plans) == {p: 7, s: 4, i: 3}
    assert plans["total"] == 14
    assert [r["strategy"] for r in plans["strategies"]] == [p, s, i]  # most frequent first
    assert [r["share"] for r in plans["strategies"]] == pytest.approx([7 / 14, 4 / 14, 3 / 14])
    assert [r["payload_scan"] for r in plans["strategies"]] == [False, True, False]
    assert plans["since"] <= time.time()
    # `tag` was scanned in four searches (the batch's too), `gone` in one; `cat` has an index
    assert plans["scanned_keys"] == [{"key": "tag", "searches": 4}, {"key": "gone", "searches": 1}]
    assert _counts(_plans(http, "flat")) == {"exact": 3, "exact_filtered": 1}
    assert _plans(http, "flat")["scanned_keys"] == []
    assert _prometheus(http) == {
        ("flat", "exact"): 3,
        ("flat", "exact_filtered"): 1,
        ("graph", p): 7,
        ("graph", i): 3,
        ("graph", s): 4,
    }

    # once `tag` has an index the same filter is answered from it
    _ok(http.put("/collections/graph/index", json={"field": "tag", "schema": "keyword"}))
    assert _search(http, "graph", vecs[0], TAG) == i
    assert _counts(_plans(http, "graph"))[i] == 4
    assert _plans(http, "graph")["scanned_keys"][0] == {"key": "tag", "searches": 4}


def test_strategy_labels_are_bounded() -> None:
    assert plan_label("hnsw_acorn") == "hnsw_acorn"
    assert plan_label("int8_hnsw_filtered+payload_scan") == "int8_hnsw_filtered+payload_scan"
    assert plan_label("partial:hnsw+hnsw_filtered:missing_shards=0,3") == "partial:hnsw+hnsw_filtered"
    assert plan_label('HNSW "x"\n{}') == "hnsw_x"
    assert plan_label("") == plan_label("///") == "unknown"
    assert len(plan_label("x" * 500)) == 64

    plans = PlanCounts()
    plans.record("c", [f"s{i}" for i in range(MAX_STRATEGIES)])
    plans.record("c", ["s0", "new1", "new2", "s1:extra=9"])
    counts = plans.counts()["c"]
    assert len(counts) == MAX_STRATEGIES + 1
    assert counts[OTHER] == 2 and counts["s0"] == 2 and counts["s1"] == 2
    plans.record("d", ["hnsw"], ["k"] * 3)
    assert plans.stats("d")["scanned_keys"] == [{"key": "k", "searches": 3}]
    plans.forget({"d"})
    assert plans.counts() == {"d": {"hnsw": 1}}
    assert plans.stats("c") == {**plans.stats("c"), "total": 0, "strategies": [], "scanned_keys": []}


def test_unindexed_keys_walks_the_whole_filter() -> None:
    flt = Filter.model_validate(
        {
            "must": [{"key": "a", "match": {"value": 1}}, {"has_id": [1]}],
            "should": [{"must_not": [{"is_null": {"key": "b"}}, {"key": "a", "range": {"gt": 1}}]}],
            "must_not": [{"is_empty": {"key": "c"}}],
        }
    )
    assert unindexed_keys(flt, {}) == ["a", "b", "c"]
    assert unindexed_keys(flt, {"a": "keyword", "c": "integer"}) == ["b"]
    # a `nested` condition names the array it searches (its inner keys are relative to the array's objects)
    nested = SimpleNamespace(nested=SimpleNamespace(key="items", filter=flt))
    assert unindexed_keys(SimpleNamespace(must=[nested], should=None, must_not=None), {"a": "keyword"}) == ["items"]
