"""Overload by memory: past `max_rss_mb` resident, a write that adds data gets 503 `overloaded` with
Retry-After before anything of it is written; reads and deletes are still served (server/admission.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

import server.admission as admission
from nestor_client import NestorClient
from nestor_client.errors import ServerError
from server.app import create_app
from server.settings import Settings

MIB = 2**20


def _refused(r: Any) -> bool:
    return (
        r.status_code == 503
        and r.headers["retry-after"] == str(admission.RSS_RETRY_AFTER_SECONDS)
        and r.json()["error"]["type"] == "overloaded"
        and "max_rss_mb" in r.json()["error"]["message"]
    )


def test_writes_past_the_memory_limit_get_503_and_change_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rss = [50 * MIB]
    monkeypatch.setattr(admission, "current_rss", lambda: rss[0])

    def resident(mib: int) -> None:
        rss[0] = mib * MIB
        time.sleep(admission._RSS_EVERY * 1.5)  # the gate reads the RSS at most this often

    app = create_app(Settings(data_dir=tmp_path / "data", max_rss_mb=100, ingest_roots=[tmp_path]))
    with TestClient(app) as http:
        c = NestorClient(http_client=http)  # type: ignore[arg-type]
        c.create_collection("c", dim=4, metric="dot")
        c.upsert("c", ids=[1, 2, 3], vectors=np.eye(4, dtype=np.float32)[:3], payloads=[{"k": i} for i in range(3)])
        resident(101)
        point = {"id": 9, "vector": [1.0, 2.0, 3.0, 4.0]}
        assert _refused(http.put("/collections/c/points", json={"points": [point]}))
        assert _refused(http.put("/collections/d", json={"dim": 4}))
        assert _refused(http.put("/qdrant/collections/c/points", json={"points": [point]}))
        (tmp_path / "src.jsonl").write_text('{"id": 9, "vector": [1, 2, 3, 4]}\n')
        assert _refused(
            http.post("/jobs/ingest", json={"collection": "c", "source": {"path": str(tmp_path / "src.jsonl")}})
        )
        with pytest.raises(ServerError) as err:  # the client's view of it
            c.upsert("c", ids=[9], vectors=np.ones((1, 4), np.float32))
        assert err.value.status == 503 and err.value.type == "overloaded"
        # nothing of the refused writes happened
        assert [s.name for s in c.list_collections()] == ["c"]
        assert c.count("c") == 3 and c.get("c", [9]) == []
        assert c.list_jobs() == []
        # reads are served, and deletes (how an operator makes room)
        assert [int(h.id) for h in c.search("c", [1.0, 0.0, 0.0, 0.0], limit=1)] == [1]  # type: ignore[arg-type]
        assert len(c.scroll("c", limit=10)[0]) == 3
        c.delete("c", ids=[3])
        assert c.count("c") == 2
        resident(99)  # below the limit again: writes are accepted
        c.upsert("c", ids=[9], vectors=np.ones((1, 4), np.float32))
        assert c.count("c") == 3


def test_the_limit_reads_the_real_resident_size(server: Callable[..., Any]) -> None:
    """No fake: with a limit below what any Python process holds, every upsert is refused, reads are not."""
    with server() as c:
        c.create_collection("c", dim=4, metric="dot")
        c.upsert("c", ids=[1], vectors=np.ones((1, 4), np.float32))
    with server(max_rss_mb=1) as c:
        with pytest.raises(ServerError) as err:
            c.upsert("c", ids=[2], vectors=np.ones((1, 4), np.float32))
        assert err.value.status == 503 and err.value.type == "overloaded"
        assert c.count("c") == 1 and len(c.get("c", [1])) == 1


def test_current_rss_matches_the_kernel() -> None:
    status = Path("/proc/self/status").read_text()
    vm_rss = int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) * 1024
    assert abs(admission.current_rss() - vm_rss) <= 0.1 * vm_rss
