"""A real `nestor serve` process, driven over the network by the client."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nestor_client import CollectionNotFound, NestorClient
from tests.e2e.serverproc import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("wire", ["json", "msgpack"])
def test_serve_end_to_end(tmp_path: Path, wire: str) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        with NestorClient(server.url, wire=wire) as c:  # type: ignore[arg-type]
            assert c.health() and c.ready()
            c.create_collection("docs", dim=8, index={"type": "hnsw"})
            rng = np.random.default_rng(0)
            vecs = rng.standard_normal((500, 8)).astype(np.float32)
            assert (
                c.upload(
                    "docs", ids=list(range(500)), vectors=vecs, payloads=[{"i": i} for i in range(500)], batch_size=128
                )
                == 500
            )
            hits = c.search("docs", vecs[42], limit=3)
            assert hits[0].id == 42 and hits[0].payload == {"i": 42}
            with pytest.raises(CollectionNotFound):
                c.search("nope", vecs[0])
        spec = __import__("httpx").get(server.url + "/openapi.json").json()
        assert "/collections/{name}/points/search" in spec["paths"]
    finally:
        server.stop()
    # graceful stop persisted the index: a restart serves the same answer
    server = ServerProcess(tmp_path / "data").start()
    try:
        with NestorClient(server.url) as c:
            assert c.count("docs") == 500
            assert c.get_collection("docs").index["pending"] == 0
            assert c.search("docs", vecs[42], limit=1)[0].id == 42
    finally:
        server.stop()
