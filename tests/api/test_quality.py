"""`quality: {"recall_target": ...}` over REST: validated, calibrated, reported in the collection info, and kept
by the live recall probe (which raises the knobs when its measure falls below the target)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from index import quality
from index.catalog import Catalog
from index.collection import Collection
from index.contract import CollectionOptions, Query
from nestor_client.models import CollectionConfig, SearchParams
from server.app import create_app
from server.probe import ProbeOptions, RecallProbe
from server.settings import Settings

DIM = 24
HNSW = {"type": "hnsw", "m": 4, "ef_construction": 16, "ef": 10}  # ef 10 finds about 2/3 of the neighbours


def clustered(n: int, seed: int) -> np.ndarray:
    centres = np.random.default_rng(99).standard_normal((40, DIM)).astype(np.float32)
    rng = np.random.default_rng(seed)
    return (centres[rng.integers(0, 40, n)] + rng.standard_normal((n, DIM))).astype(np.float32)


BASE, HELD = clustered(3000, 1), clustered(100, 2)
EVAL = clustered(400, 3)  # held-out queries that measure the recall a target promises


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", probe_interval_seconds=0.05, probe_sample_size=32)
    with TestClient(create_app(settings)) as client:
        yield client


def _ok(resp: Any) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()["result"]


def _quality(http: TestClient, name: str, ready: Any, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        q: dict[str, Any] = _ok(http.get(f"/collections/{name}"))["index"]["quality"]
        if ready(q):
            return q
        assert time.monotonic() < deadline, q
        time.sleep(0.05)


@pytest.mark.parametrize(
    "config",
    [
        {"dim": DIM, "quality": {"recall_target": 1.0}},
        {"dim": DIM, "quality": {"recall_target": 0}},
        {"dim": DIM, "quality": {"recall_target": 1.5}},
        {"dim": DIM, "quality": {"recall_target": "high"}},
        {"dim": DIM, "quality": {}},
        {"dim": DIM, "quality": {"recall_target": 0.9, "ef": 64}},
        {"dim": DIM, "quality": {"recall_target": 0.9, "max_ef": 4}},
        {"dim": DIM, "quality": 0.95},
        {"vectors": {"a": {"dim": DIM}}, "quality": {"recall_target": 0.9}},
        {"dim": DIM, "multivector": {"type": "maxsim"}, "quality": {"recall_target": 0.9}},
    ],
)
def test_a_bad_quality_is_a_422_and_creates_nothing(http: TestClient, config: dict[str, Any]) -> None:
    resp = http.put("/collections/bad", json=config)
    assert resp.status_code == 422, resp.text
    assert http.get("/collections/bad").status_code == 404


def test_a_target_is_met_over_rest_and_the_info_reports_it(http: TestClient) -> None:
    config = {"vectors": {"text": {"dim": DIM, "metric": "l2", "index": HNSW, "quality": {"recall_target": 0.95}}}}
    _ok(http.put("/collections/q", json=config))
    # one batch: calibration runs once the index has caught up, and again only when the points double
    points = [{"id": i, "vector": {"text": v.tolist()}} for i, v in enumerate(BASE)]
    _ok(http.put("/collections/q/points", json={"points": points}))
    deadline = time.monotonic() + 60
    while (q := _ok(http.get("/collections/q"))["vectors"]["text"]["index"]["quality"])["points"] < len(BASE):
        assert time.monotonic() < deadline, q
        time.sleep(0.05)
    assert q["recall_target"] == 0.95 and q["state"] == "met" and q["params"]["ef"] > 10, q
    assert q["calibration"]["low"] >= 0.95 and "Wilson" in q["interval"]
    per_query = []
    for v in EVAL:
        body = {"vector": v.tolist(), "using": "text", "limit": 10, "with_payload": False}
        ann = _ok(http.post("/collections/q/points/search", json=body))
        exact = _ok(http.post("/collections/q/points/search", json={**body, "params": {"exact": True}}))
        per_query.append(len({h["id"] for h in ann} & {h["id"] for h in exact}) / 10)
    # calibration claims recall >= 0.95 at 95 % confidence, so its true recall sits just above the target, and a
    # measure on 400 queries scatters about it (standard error ~0.004): the claim fails when these queries refute
    # it, i.e. when even the upper end of their one-sided 95 % interval is below the target (ef 10 gives ~0.67)
    mean, se = float(np.mean(per_query)), float(np.std(per_query, ddof=1)) / np.sqrt(len(per_query))
    assert mean + 1.645 * se >= 0.95, (mean, se, q)
    # the probe reran some of those searches: its measure shows up beside calibration's
    live = _quality(http, "q", lambda q: q["live"] is not None)["live"]
    assert live["source"] == "recall probe" and live["total"] >= 10 and live["low"] <= live["recall"]


def test_a_probe_below_the_target_raises_the_knobs(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path, CollectionOptions(save_idle_seconds=3600, save_max_seconds=3600))
    try:
        config = {"dim": DIM, "metric": "l2", "index": HNSW, "quality": {"recall_target": 0.95}}
        coll, _ = catalog.create("c", CollectionConfig.model_validate(config))
        assert isinstance(coll, Collection)
        coll.upsert(list(range(len(BASE))), BASE)
        t = coll.fields[""].tuning
        assert t is not None
        deadline = time.monotonic() + 60
        while t.calibration is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        t.params = SearchParams(ef=10)  # as if the queries had drifted from what calibration saw
        probe = RecallProbe(ProbeOptions(sample=64))
        probe.remember("c", [Query(v, limit=10) for v in HELD])
        recall = probe.probe("c", coll, force=True)
        assert recall is not None and recall < 0.9
        assert t.params.ef is not None and t.params.ef > 10 and t.state == "below_target" and t.adjustments == 1
        assert t.live is not None and t.live.high < 0.95 and t.live.queries == 64
        # the probe also measures the rung below the knobs in force, on the same 64 queries (what it passes on
        # is checked, not the window: the indexer may recalibrate meanwhile, as the probe's searches grow the
        # sample of recent queries)
        seen: list[tuple[Any, ...]] = []
        asked: list[SearchParams | None] = []
        observe, below = coll.observe_recall, coll.recall_probe_below

        def observing(*args: Any) -> None:
            seen.append(args)
            observe(*args)

        def asking(using: str | None) -> SearchParams | None:
            asked.append(below(using))
            return asked[-1]

        coll.observe_recall, coll.recall_probe_below = observing, asking  # type: ignore[method-assign]
        probe.probe("c", coll, force=True)
        ((using, found, neighbours, queries, lower),) = seen
        assert (using, neighbours, queries) == (None, 640, 64) and lower is not None
        params, found_below, of_below = lower
        assert asked == [params] and params.ef in quality.EF_LADDER and of_below == 640 and found_below > 0
    finally:
        catalog.close()
