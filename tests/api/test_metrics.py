"""`GET /metrics` (Prometheus text) and the per-collection `stats` of `GET /collections/{name}`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from server.app import create_app
from server.settings import Settings
from server.telemetry import Series, Telemetry

DIM = 8
SEARCH = "/collections/{name}/points/search"


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path / "data",
        index_save_idle_seconds=0.2,
        probe_interval_seconds=0.05,
        stats_bucket_seconds=1.0,
        stats_window_seconds=30.0,
        ingest_roots=[tmp_path],
    )
    with TestClient(create_app(settings)) as client:
        yield client


def _ok(resp: Any) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()["result"]


def _setup(http: TestClient) -> np.ndarray:
    vecs = np.random.default_rng(0).standard_normal((300, DIM)).astype(np.float32)
    for name, index in (("flat", {"type": "flat"}), ("graph", {"type": "hnsw", "m": 8, "ef_construction": 32})):
        _ok(http.put(f"/collections/{name}", json={"dim": DIM, "index": index}))
        points = [{"id": i, "vector": vecs[i].tolist(), "payload": {"i": i}} for i in range(len(vecs))]
        _ok(http.put(f"/collections/{name}/points", json={"points": points}))
    return vecs


def _metrics(http: TestClient) -> dict[str, Any]:
    resp = http.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(resp.text)}


def _sample(families: dict[str, Any], family: str, sample: str, **labels: str) -> float:
    found = [
        s.value
        for s in families[family].samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (sample, labels, found)
    return float(found[0])


def test_metrics_carry_the_per_collection_series(http: TestClient, tmp_path: Path) -> None:
    vecs = _setup(http)
    for v in vecs[:7]:
        _ok(http.post("/collections/flat/points/search", json={"vector": v.tolist(), "limit": 5}))
    batch = {"searches": [{"vector": v.tolist()} for v in vecs[:3]]}
    _ok(http.post("/collections/flat/points/search/batch", json=batch))
    assert http.post("/collections/nope/points/search", json={"vector": vecs[0].tolist()}).status_code == 404
    src = tmp_path / "rows.npy"
    np.save(src, vecs[:50])
    resp = http.post("/jobs/ingest", json={"collection": "graph", "source": {"path": str(src)}})
    assert resp.status_code == 202, resp.text
    job = resp.json()["result"]
    deadline = time.monotonic() + 30
    while _ok(http.get(f"/jobs/{job['id']}"))["state"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.02)

    fam = _metrics(http)
    common = {"route": SEARCH, "method": "POST", "collection": "flat"}
    assert _sample(fam, "nestor_requests", "nestor_requests_total", status="200", **common) == 7
    assert _sample(fam, "nestor_request_duration_seconds", "nestor_request_duration_seconds_count", **common) == 7
    # an unknown collection's name is not turned into a label
    assert _sample(fam, "nestor_requests", "nestor_requests_total", route=SEARCH, collection="", status="404") == 1
    assert not any(s.labels.get("collection") == "nope" for f in fam.values() for s in f.samples)
    assert _sample(fam, "nestor_search_queries", "nestor_search_queries_total", collection="flat") == 10
    assert _sample(fam, "nestor_upserted_points", "nestor_upserted_points_total", collection="graph") == 300
    assert _sample(fam, "nestor_ingest_rows", "nestor_ingest_rows_total", collection="graph") == 50
    assert _sample(fam, "nestor_jobs", "nestor_jobs", state="succeeded") == 1
    assert _sample(fam, "nestor_jobs", "nestor_jobs", state="running") == 0
    for name in ("flat", "graph"):
        info = _ok(http.get(f"/collections/{name}"))
        assert _sample(fam, "nestor_points", "nestor_points", collection=name) == info["count"]
        for component, sizes in info["memory"].items():
            for where in ("ram", "disk"):
                labels = {"collection": name, "component": component, "where": where}
                got = _sample(fam, "nestor_memory_bytes", "nestor_memory_bytes", **labels)
                if where == "ram":  # index files may be rewritten in between
                    assert got == sizes[where]


def test_live_recall_gauge(http: TestClient) -> None:
    vecs = _setup(http)
    _ok(http.post("/collections/flat/points/search", json={"vector": vecs[1].tolist()}))
    deadline = time.monotonic() + 30
    while _ok(http.get("/collections/flat"))["stats"]["recall"]["latest"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    fam = _metrics(http)
    assert _sample(fam, "nestor_live_recall", "nestor_live_recall", collection="flat", k="10") == 1.0
    assert not [s for s in fam["nestor_live_recall"].samples if s.labels["collection"] == "graph"]  # no queries yet


def test_collection_stats(http: TestClient) -> None:
    vecs = _setup(http)
    for v in vecs[:20]:
        _ok(http.post("/collections/graph/points/search", json={"vector": v.tolist()}))
    stats = _ok(http.get("/collections/graph"))["stats"]
    assert set(stats) == {"window_seconds", "bucket_seconds", "search", "upsert", "recall", "plans"}
    search, upsert = stats["search"], stats["upsert"]
    assert (search["requests"], search["items"], search["errors"]) == (20, 20, 0)
    assert (upsert["requests"], upsert["items"]) == (1, 300)
    assert search["rate"] > 0 and upsert["rate"] > 0
    assert 0 < search["p50"] <= search["p95"] <= search["p99"] < 5
    series = search["series"]
    assert len(series["t"]) == 30 and sum(series["items"]) == 20
    assert series["t"] == sorted(series["t"]) and series["t"][-1] <= time.time()
    assert stats["recall"]["k"] == 10 and stats["recall"]["sample"] == 16


def test_percentiles_are_close() -> None:
    s = Series(bucket_seconds=10, buckets=6, now=1000.0)
    latencies = np.random.default_rng(1).lognormal(mean=-7, sigma=1, size=5000)
    for x in latencies:
        s.request(float(x), False, 1000.0)
    snap = s.snapshot(1005.0, 60)
    for q in (50, 95, 99):
        true = float(np.percentile(latencies, q))
        assert abs(snap[f"p{q}"] - true) / true < 0.08, (q, snap[f"p{q}"], true)


def test_old_buckets_leave_the_window() -> None:
    s = Series(bucket_seconds=10, buckets=6, now=0.0)
    s.request(0.01, False, 5.0)
    s.items(3, 5.0)
    s.request(0.02, True, 15.0)
    snap = s.snapshot(20.0, 60)
    assert (snap["requests"], snap["items"], snap["errors"]) == (2, 3, 1)
    assert snap["p50"] == pytest.approx(0.01, rel=0.08)
    later = s.snapshot(65.0, 60)  # six buckets back from t=65 start at t=10: the one at t=5 is gone
    assert (later["requests"], later["items"], later["errors"]) == (1, 0, 1)
    assert later["p50"] is None
    assert len(later["series"]["t"]) == 6


def test_forget_drops_deleted_collections() -> None:
    t = Telemetry(bucket_seconds=1, window_seconds=10)
    t.request("a", "search", 0.001)
    t.items("b", "upsert", 5)
    t.forget({"a"})
    assert t.stats("a")["search"]["requests"] == 1
    assert t.stats("b")["upsert"]["items"] == 0


def test_the_dashboard_page_is_one_self_contained_document(http: TestClient) -> None:
    resp = http.get("/dashboard")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    page = resp.text
    assert "<script>" in page and "<style>" in page and "inline:" not in page
    # nothing to fetch: no external script, stylesheet or URL (it must work offline)
    assert "<script src" not in page and 'rel="stylesheet"' not in page
    assert "http://" not in page and "https://" not in page
    assert http.get("/dashboard/", follow_redirects=False).headers["location"] == "/dashboard"
