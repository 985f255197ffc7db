"""Every request limit has a setting, and breaking it is a 413 or 422 whose message names the limit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from nestor_client.errors import ApiError
from server.app import create_app
from server.settings import Settings
from tests.api.conftest import running

LIMITS = {
    "max_body_bytes": 1024,
    "max_batch_points": 5,
    "max_search_limit": 20,
    "max_search_batch": 3,
    "max_filter_depth": 2,
    "max_filter_conditions": 4,
    "max_dim": 64,
    "max_payload_bytes": 200,
    "max_upload_bytes": 2048,
    "max_snapshot_upload_bytes": 2048,
}


def _refused(fn: object, status: int, *names: str) -> ApiError:
    with pytest.raises(ApiError) as err:
        fn()  # type: ignore[operator]
    assert err.value.status == status, err.value
    assert any(n in str(err.value) for n in names), err.value
    return err.value


def test_each_limit_is_enforced_and_named(tmp_path: Path) -> None:
    with running(tmp_path / "data", **LIMITS) as c:  # type: ignore[arg-type]
        c.create_collection("c", dim=4, index={"type": "flat"})
        v = np.ones((1, 4), np.float32)

        # dimension of a new collection
        e = _refused(lambda: c.create_collection("big", dim=65), 422, "max_dim 64")
        assert e.type == "limit_exceeded"
        c.create_collection("ok", dim=64)

        # points per request
        _refused(lambda: c.upsert("c", ids=list(range(6)), vectors=np.ones((6, 4), np.float32)), 413,
                 "max_batch_points 5")  # fmt: skip
        _refused(lambda: c.delete("c", ids=list(range(6))), 413, "max_batch_points")
        _refused(lambda: c.get("c", list(range(6))), 413, "max_batch_points")

        # payload of one point (as JSON)
        e = _refused(lambda: c.upsert("c", ids=[1], vectors=v, payloads=[{"t": "x" * 300}]), 413,
                     "max_payload_bytes 200")  # fmt: skip
        assert e.type == "payload_too_large"
        _refused(lambda: c.upsert("c", points=[{"id": 1, "vector": [1, 0, 0, 0], "payload": {"t": "x" * 300}}]), 413,
                 "max_payload_bytes")  # fmt: skip
        c.upsert("c", ids=[1], vectors=v, payloads=[{"t": "x" * 100}])

        # body size
        points = [{"id": i, "vector": [1.0] * 4, "payload": {"p": "y" * 190}} for i in range(5)]
        _refused(lambda: c.upsert("c", points=points), 413, "max_body_bytes 1024")

        # search limit and batch size
        e = _refused(lambda: c.search("c", v[0], limit=21), 422, "max_search_limit 20")
        assert e.type == "limit_exceeded"
        _refused(lambda: c.search("c", v[0], limit=15, offset=6), 422, "max_search_limit")
        _refused(lambda: c.search_batch("c", [{"vector": [1, 0, 0, 0]}] * 4), 413, "max_search_batch 3")

        # filter depth and size
        deep = {"must": [{"must": [{"must": [{"key": "a", "match": {"value": 1}}]}]}]}
        _refused(lambda: c.search("c", v[0], filter=deep), 422, "max_depth=2")
        _refused(lambda: c.count("c", filter=deep), 422, "max_depth")
        wide = {"should": [{"key": "a", "match": {"value": i}} for i in range(5)]}
        _refused(lambda: c.search("c", v[0], filter=wide), 422, "max_conditions=4")
        _refused(lambda: c.delete("c", filter=wide), 422, "max_conditions")


def test_upload_limits_are_their_own(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", **LIMITS)  # type: ignore[arg-type]
    with TestClient(create_app(settings)) as http:
        http.put("/collections/c", json={"dim": 4})
        r = http.post("/collections/c/snapshots/upload", content=b"x" * 4096)
        assert r.status_code == 413 and "max_snapshot_upload_bytes 2048" in r.json()["error"]["message"]
        r = http.post("/jobs/ingest/upload?collection=c", content=b"x" * 4096)
        assert r.status_code == 413 and "max_upload_bytes 2048" in r.json()["error"]["message"]
        # over max_body_bytes but under its own limit: refused as a snapshot, not by size
        r = http.post("/collections/c/snapshots/upload", content=b"x" * 1500)
        assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_snapshot"
        # a streamed body (no Content-Length) is cut off at the limit too
        r = http.post("/collections/c/points/search", content=iter([b"{" + b" " * 9000]))
        assert r.status_code == 413 and "max_body_bytes 1024" in r.json()["error"]["message"]
