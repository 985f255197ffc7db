"""Compaction through REST: live and dead bytes in GET /collections/{name}, POST .../optimize, bad input."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from nestor_client import CollectionNotFound, NestorClient
from tests.api.conftest import running


def _load(client: NestorClient, n: int = 600, dim: int = 8) -> np.ndarray:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(n, dim)).astype(np.float32)
    client.create_collection("c", dim=dim, metric="l2", index={"type": "hnsw", "m": 8})
    client.upsert("c", [{"id": i, "vector": vecs[i].tolist(), "payload": {"i": i}} for i in range(n)])
    return vecs


def test_usage_and_optimize_through_rest(tmp_path: Path) -> None:
    with running(tmp_path / "data", optimizer_interval=0) as client:
        vecs = _load(client)
        client.upsert("c", [{"id": i, "vector": (vecs[i] + 1).tolist(), "payload": {"i": -i}} for i in range(200)])
        client.delete("c", list(range(500, 600)))
        info = client.get_collection("c")
        usage = info.usage
        assert usage is not None and usage.labels == 800 and usage.dead_labels == 300
        assert usage.vectors[""]["rows"].disk_dead == 300 * 32 and usage.dead_fraction > 0
        assert info.optimizer is not None and info.optimizer.state == "idle" and info.optimizer.threshold == 0.2

        out = client.optimize("c", wait=True)
        assert out["status"] == "completed" and out["started"] is True
        assert out["last"]["points"] == 500 and out["last"]["labels_before"] == 800

        info = client.get_collection("c")
        assert info.count == 500 and info.usage is not None
        assert info.usage.labels == 500 and info.usage.dead_labels == 0
        assert info.usage.vectors[""]["rows"].disk_dead == 0
        got = client.get("c", [0, 199, 200, 499, 500], with_vector=True)
        by_id = {p.id: p for p in got}
        assert sorted(by_id) == [0, 199, 200, 499]
        assert by_id[0].payload == {"i": 0} and by_id[200].payload == {"i": 200}
        assert np.asarray(by_id[199].vector, np.float32).tobytes() == (vecs[199] + 1).tobytes()
        hits = client.search("c", vecs[300].tolist(), limit=1)
        assert hits[0].id == 300

    with running(tmp_path / "data", optimizer_interval=0) as client:  # and after a restart
        assert client.get_collection("c").count == 500


def test_optimize_bad_input(client: NestorClient) -> None:
    with pytest.raises(CollectionNotFound):
        client.optimize("nope")
    _load(client, n=20)
    http: httpx.Client = client._http  # type: ignore[attr-defined]
    r = http.post("/collections/c/optimize", params={"wait": "maybe"})
    assert r.status_code == 422
    r = http.post("/collections/nope/optimize")
    assert r.status_code == 404
    assert client.get_collection("c").count == 20  # nothing changed
    started = client.optimize("c")
    assert started["status"] == "acknowledged"


def test_disk_watermark_refuses_writes_before_anything_is_written(tmp_path: Path) -> None:
    with running(tmp_path / "data", optimizer_interval=0) as client:
        _load(client, n=50)
        client.delete("c", [0, 1])
    with running(tmp_path / "data", optimizer_interval=0, disk_min_free_bytes=1 << 60) as client:
        http: httpx.Client = client._http  # type: ignore[attr-defined]
        r = http.put("/collections/c/points", json={"points": [{"id": 99, "vector": [0.5] * 8}]})
        assert r.status_code == 507 and r.json()["error"]["type"] == "insufficient_storage"
        assert "NESTOR_DISK_MIN_FREE_BYTES" in r.json()["error"]["message"]
        info = client.get_collection("c")
        assert info.count == 48 and info.seq == 2 and info.usage is not None and info.usage.labels == 50
        assert client.delete("c", [2]).deleted == 1  # deletes make room: always allowed
        out = client.optimize("c", wait=True)  # no room for a second copy: the compaction does not start
        assert out["last"] is None and "NESTOR_DISK_MIN_FREE_BYTES" in (out["last_error"] or "")
        assert client.get_collection("c").usage.labels == 50  # type: ignore[union-attr]
