"""The same REST API and client serve a sharded collection: `nestor serve --ray-address` in-process."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from nestor_client import NestorClient
from nestor_client.errors import ApiError
from server.app import create_app
from server.settings import Settings

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::FutureWarning")


@pytest.fixture
def client(tmp_path: Path, ray_local: Any) -> Iterator[NestorClient]:
    settings = Settings(data_dir=tmp_path / "data", ray_address="local", probe_sample_size=0, ingest_roots=[tmp_path])
    with TestClient(create_app(settings)) as http:
        yield NestorClient(http_client=http)  # type: ignore[arg-type]


def test_sharded_collection_over_rest(client: NestorClient, tmp_path: Path) -> None:
    info = client.create_collection("s", dim=8, metric="dot", index={"type": "flat"}, shards=2, replicas=2)
    assert info.config.shards == 2 and info.config.replicas == 2
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 8)).astype(np.float32)
    res = client.upsert("s", ids=list(range(500)), vectors=x, payloads=[{"g": i % 3} for i in range(500)])
    assert res.upserted == 500
    hits = client.search("s", x[7], limit=3, filter={"must": [{"key": "g", "match": {"value": 1}}]})
    scores = x @ x[7]
    want = [i for i in np.argsort(-scores) if i % 3 == 1][:3]
    assert [h.id for h in hits] == [int(i) for i in want]
    assert client.count("s") == 500
    got = client.get_collection("s")
    assert got.count == 500 and got.cluster is not None
    cl = got.cluster
    assert cl["shards"] == 2 and cl["replicas"] == 2 and cl["nodes"]
    assert all(r["state"] == "live" and r["node"] for row in cl["shard_list"] for r in row["replicas"])
    assert [c.name for c in client.list_collections()] == ["s"]
    with pytest.raises(ApiError, match="sharded"):  # a clear 400, not a 500
        client.create_snapshot("s")

    # bulk ingest through the same /jobs API, run as a Ray Data pipeline
    client.create_collection(
        "t", dim=16, index={"type": "flat"}, encoder={"name": "hash", "config": {"dim": 16}}, shards=2
    )
    src = tmp_path / "t.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": f"doc number {i}"}) + "\n" for i in range(300)) + "{bad\n")
    job = client.wait_job(client.ingest("t", src, batch_size=64).id, timeout=120)
    assert job.state == "succeeded", job
    assert (job.done, job.upserted, job.failed) == (301, 300, 1)
    assert client.count("t") == 300
    assert client.delete_collection("t")


def test_shards_need_a_ray_address(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path / "d"))) as http:
        client = NestorClient(http_client=http)  # type: ignore[arg-type]
        with pytest.raises(ApiError, match="Ray"):
            client.create_collection("s", dim=4, shards=2)


def test_sharded_collection_survives_a_restart(tmp_path: Path, ray_local: Any) -> None:
    settings = Settings(data_dir=tmp_path / "data", ray_address="local", probe_sample_size=0)
    x = np.random.default_rng(1).standard_normal((200, 4)).astype(np.float32)
    with TestClient(create_app(settings)) as http:
        client = NestorClient(http_client=http)  # type: ignore[arg-type]
        client.create_collection("r", dim=4, index={"type": "flat"}, shards=2, replicas=2)
        client.upsert("r", ids=[f"p{i}" for i in range(200)], vectors=x)
        client.delete("r", ids=["p0", "p1"])
        before = [h.id for h in client.search("r", x[5], limit=5)]
    assert (tmp_path / "data" / "collections" / "r" / "placement.json").exists()
    with TestClient(create_app(settings)) as http:  # new actors reopen the replicas' directories
        client = NestorClient(http_client=http)  # type: ignore[arg-type]
        assert client.count("r") == 198
        assert [h.id for h in client.search("r", x[5], limit=5)] == before
        assert client.get_collection("r").cluster["shards"] == 2  # type: ignore[index]


def test_a_shard_down_is_a_503_or_a_flagged_partial_answer(tmp_path: Path, ray_local: Any) -> None:
    settings = Settings(data_dir=tmp_path / "data", ray_address="local", probe_sample_size=0)
    with TestClient(create_app(settings)) as http:
        client = NestorClient(http_client=http)  # type: ignore[arg-type]
        client.create_collection("p", dim=4, metric="dot", index={"type": "flat"}, shards=2)
        client.upsert("p", ids=list(range(100)), vectors=np.eye(4, dtype=np.float32)[np.arange(100) % 4])
        coll = http.app.state.catalog.get("p")  # type: ignore[attr-defined]
        # the kill after the background compiles: Ray 2.60 aborts the process when an actor dies while a
        # compiled graph over it registers its channels (cluster/compiled.py)
        deadline = time.monotonic() + 60
        while coll._compiling and time.monotonic() < deadline:
            time.sleep(0.05)
        victim = coll.shards[1].replicas[0].actor
        ray_local.kill(victim, no_restart=True)
        while time.monotonic() < deadline:  # a kill is asynchronous: wait until the actor stops answering
            try:
                ray_local.get(victim.ping.remote(), timeout=5)
            except Exception:
                break
            time.sleep(0.05)
        body = {"vector": [1.0, 0.0, 0.0, 0.0], "limit": 5}
        r = http.post("/collections/p/points/search", json=body)
        assert r.status_code == 503 and r.json()["error"]["type"] == "shard_unavailable"
        assert "shard 1" in r.json()["error"]["message"]
        r = http.post("/collections/p/points/search?partial=true", json=body)
        assert r.status_code == 200 and r.json()["strategy"].startswith("partial:")
        assert len(r.json()["result"]) == 5
        assert client.get_collection("p").cluster["health"] == "red"  # type: ignore[index]
