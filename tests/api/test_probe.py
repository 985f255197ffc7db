"""The live recall probe: about 1 on exact indexes, clearly lower on a starved HNSW, and bounded in cost."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from index.contract import Hit, Query, QueryResult
from nestor_client.models import CollectionConfig, IndexInfo, VectorConfig
from server.app import create_app
from server.probe import ProbeOptions, RecallProbe, recall_at_k, recall_warning
from server.settings import Settings

DIM = 32


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", probe_interval_seconds=0.05, probe_sample_size=32)
    with TestClient(create_app(settings)) as client:
        yield client


def _ok(resp: Any) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()["result"]


def _load(http: TestClient, name: str, index: dict[str, Any], vecs: np.ndarray) -> None:
    _ok(http.put(f"/collections/{name}", json={"dim": DIM, "metric": "l2", "index": index}))
    for i in range(0, len(vecs), 1000):
        points = [{"id": j, "vector": vecs[j].tolist()} for j in range(i, min(i + 1000, len(vecs)))]
        _ok(http.put(f"/collections/{name}/points", json={"points": points}))
    deadline = time.monotonic() + 120
    while True:
        idx = _ok(http.get(f"/collections/{name}"))["index"]
        if idx["state"] == "ready" and not idx.get("pending"):
            return
        assert time.monotonic() < deadline, idx
        time.sleep(0.05)


def _recall(http: TestClient, name: str, sample: int = 1) -> dict[str, Any]:
    """The recall status once a probe of at least `sample` queries has run."""
    deadline = time.monotonic() + 30
    while True:
        recall: dict[str, Any] = _ok(http.get(f"/collections/{name}"))["stats"]["recall"]
        if recall["latest"] is not None and recall["history"]["queries"][-1] >= sample:
            return recall
        assert time.monotonic() < deadline, recall
        time.sleep(0.02)


def test_flat_is_exact_and_a_tiny_ef_is_not(http: TestClient) -> None:
    rng = np.random.default_rng(5)
    vecs = rng.standard_normal((4000, DIM)).astype(np.float32)
    _load(http, "flat", {"type": "flat"}, vecs)
    _load(http, "starved", {"type": "hnsw", "m": 4, "ef_construction": 8, "ef": 1}, vecs)
    _load(http, "healthy", {"type": "hnsw", "m": 16, "ef_construction": 200, "ef": 256}, vecs)
    queries = rng.standard_normal((40, DIM)).astype(np.float32)
    for name in ("flat", "starved", "healthy"):
        # single and batch searches both feed the probe
        for q in queries[:20]:
            _ok(http.post(f"/collections/{name}/points/search", json={"vector": q.tolist(), "limit": 3}))
        batch = {"searches": [{"vector": q.tolist()} for q in queries[20:]]}
        _ok(http.post(f"/collections/{name}/points/search/batch", json=batch))
    flat, starved, healthy = (_recall(http, n, sample=32) for n in ("flat", "starved", "healthy"))
    assert flat["latest"] == pytest.approx(1.0)
    assert flat["warning"] is None and flat["queries_buffered"] == 40
    assert healthy["latest"] >= 0.95 and healthy["warning"] is None
    assert starved["latest"] < 0.8, starved["latest"]
    assert starved["warning"] is not None and "below 0.90" in starved["warning"]


def test_an_unchanged_collection_is_not_probed_again(http: TestClient) -> None:
    vecs = np.random.default_rng(1).standard_normal((500, DIM)).astype(np.float32)
    _load(http, "flat", {"type": "flat"}, vecs)
    _ok(http.post("/collections/flat/points/search", json={"vector": vecs[0].tolist()}))
    first = _recall(http, "flat")
    time.sleep(0.5)  # ten probe intervals
    assert len(_recall(http, "flat")["history"]["t"]) == len(first["history"]["t"]) == 1
    _ok(http.put("/collections/flat/points", json={"points": [{"id": 9999, "vector": vecs[1].tolist()}]}))
    deadline = time.monotonic() + 10
    while len(_recall(http, "flat")["history"]["t"]) < 2:  # a write changes the answer: probed again
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_recall_at_k_counts_ties_as_found() -> None:
    exact = [("a", 0.9), ("b", 0.8), ("c", 0.7)]
    assert recall_at_k([("a", 0.9), ("b", 0.8), ("c", 0.7)], exact, 3, lower_is_better=False) == 1.0
    assert recall_at_k([("a", 0.9), ("x", 0.5), ("y", 0.4)], exact, 3, lower_is_better=False) == pytest.approx(1 / 3)
    assert recall_at_k([("a", 0.9), ("b", 0.8), ("d", 0.7)], exact, 3, lower_is_better=False) == 1.0  # a tie
    assert recall_at_k([("a", 0.1), ("d", 0.2)], [("a", 0.1), ("b", 0.2)], 2, lower_is_better=True) == 1.0
    assert recall_at_k([], [], 10, lower_is_better=False) == 1.0


def test_warnings_flag_low_recall_and_real_drops_not_noise() -> None:
    assert recall_warning([], 10, 0.9) is None
    assert "below 0.90" in (recall_warning([0.99, 0.85], 10, 0.9) or "")
    noisy = [1.0, 0.94, 1.0, 0.96, 0.99, 1.0, 0.95, 0.98, 0.94, 1.0]
    assert recall_warning(noisy, 10, 0.9) is None  # one sample of 16 queries scatters like this
    fell = recall_warning([0.99, 0.98, 0.99, 0.99, 0.93, 0.92, 0.93], 10, 0.9)
    assert fell is not None and "fell from 0.990 to 0.927" in fell


class _SlowCollection:
    """Answers instantly but takes `cost` seconds of wall time per search call; never changes otherwise."""

    config = CollectionConfig(dim=4)

    def __init__(self, cost: float) -> None:
        self.cost = cost
        self.seq = 0
        self.calls = 0

    def info(self) -> Any:
        return SimpleNamespace(index=IndexInfo(type="flat", state="ready", indexed=1, pending=0))

    def vector_config(self, using: str | None) -> tuple[str, VectorConfig]:
        return "", self.config.vector_fields()[""]

    def search(self, queries: list[Query]) -> list[QueryResult]:
        self.calls += 1
        self.seq += 1  # looks changed, so every round probes it
        time.sleep(self.cost)
        return [QueryResult([Hit(1, 1.0)], "exact") for _ in queries]


def test_the_cpu_budget_slows_the_probe_down() -> None:
    probe = RecallProbe(ProbeOptions(interval=0.001, sample=1, cpu_budget=0.1))
    coll = _SlowCollection(cost=0.02)  # a round is two calls: 0.04 s, so at most one round per 0.4 s
    probe.remember("slow", [Query(np.ones(4, dtype=np.float32))])
    probe.start(lambda: {"slow": coll})  # type: ignore[dict-item]
    time.sleep(1.3)
    probe.stop()
    assert 2 <= probe.rounds <= 5, probe.rounds


def test_deleted_collections_are_forgotten() -> None:
    probe = RecallProbe(ProbeOptions(sample=1))
    probe.remember("gone", [Query(np.ones(4, dtype=np.float32))])
    probe.remember("kept", [Query(np.ones(4, dtype=np.float32))])
    coll = _SlowCollection(cost=0)
    probe.run_round(lambda: {"kept": coll})  # type: ignore[dict-item]
    assert probe.status("gone")["queries_buffered"] == 0
    assert probe.status("kept")["latest"] == 1.0


def test_remember_copies_the_vector() -> None:
    probe = RecallProbe(ProbeOptions(sample=1, buffer=2))
    v = np.zeros(4, dtype=np.float32)
    probe.remember("c", [Query(v), Query(v), Query(v)])
    v[:] = 1
    assert probe.status("c")["queries_buffered"] == 2  # the ring keeps the newest `buffer`
    coll = _SlowCollection(cost=0)
    seen: list[np.ndarray] = []
    lock = threading.Lock()

    def search(queries: list[Query]) -> list[QueryResult]:
        with lock:
            seen.extend(q.vector for q in queries)
        return [QueryResult([], "exact") for _ in queries]

    coll.search = search  # type: ignore[method-assign]
    assert probe.probe("c", coll) == 1.0  # type: ignore[arg-type]
    assert len(seen) == 2 and all(not s.any() for s in seen)  # the two buffered queries, as they were
