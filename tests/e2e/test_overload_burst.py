"""A burst of writers far past `NESTOR_MAX_PENDING_WRITES` against a real `nestor serve`: every answer is
200 or 503 `overloaded` with Retry-After, every 200 is stored, and every refused write changed nothing."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from nestor_client import NestorClient
from tests.e2e.serverproc import ServerProcess

pytestmark = pytest.mark.e2e

WRITERS = 24
BATCHES = 8
BATCH = 50


def test_a_write_burst_gets_only_200_or_503_and_refusals_change_nothing(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", env={"NESTOR_MAX_PENDING_WRITES": "3"}).start()
    try:
        with NestorClient(server.url) as c:
            c.create_collection("c", dim=8, metric="dot")
        accepted: list[int] = []
        refused: list[int] = []
        other: list[str] = []
        lock = threading.Lock()

        def writer(w: int) -> None:
            rng = np.random.default_rng(w)
            with httpx.Client(base_url=server.url, timeout=60) as http:
                for b in range(BATCHES):
                    first = (w * BATCHES + b) * BATCH
                    vecs = rng.standard_normal((BATCH, 8)).tolist()
                    points = [{"id": first + i, "vector": v} for i, v in enumerate(vecs)]
                    r = http.put("/collections/c/points", json={"points": points})
                    with lock:
                        if r.status_code == 200:
                            accepted.append(first)
                        elif (
                            r.status_code == 503
                            and r.headers.get("retry-after") == "1"
                            and r.json()["error"]["type"] == "overloaded"
                        ):
                            refused.append(first)
                        else:
                            other.append(f"{r.status_code} {r.text[:200]}")

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert other == []
        assert accepted and refused, (len(accepted), len(refused))  # the burst was past the limit, and not all lost
        with NestorClient(server.url) as c:
            assert c.count("c") == len(accepted) * BATCH
            got = {int(r.id) for r in c.get("c", [f + i for f in accepted + refused for i in (0, BATCH - 1)])}  # type: ignore[arg-type]
            assert got == {f + i for f in accepted for i in (0, BATCH - 1)}
    finally:
        server.stop()
