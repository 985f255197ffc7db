"""Writes through the Qdrant surface are Nestor writes: acknowledged ones survive `kill -9`, including the
read-modify-write ones (payload and vector updates)."""

from __future__ import annotations

from pathlib import Path

import pytest
from qdrant_client import models as m

from tests.e2e.serverproc import ServerProcess
from tests.qdrant.conftest import ADMIN, KEYS, compat_checks_done, connect

pytestmark = pytest.mark.e2e


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    env = {"NESTOR_API_KEYS": KEYS}
    server = ServerProcess(tmp_path / "data", env=env).start()
    try:
        c = connect(server, ADMIN)
        c.create_collection(
            "dur",
            vectors_config={
                "a": m.VectorParams(size=2, distance=m.Distance.DOT),
                "b": m.VectorParams(size=2, distance=m.Distance.DOT),
            },
        )
        c.upsert("dur", [m.PointStruct(id=i, vector={"a": [1, i], "b": [i, 1]}, payload={"i": i}) for i in range(5)])
        c.set_payload("dur", {"s": "x"}, points=[1])
        c.delete_vectors("dur", ["b"], m.PointIdsList(points=[2]))
        c.update_vectors("dur", [m.PointVectors(id=3, vector={"a": [7, 7]})])
        c.delete("dur", m.PointIdsList(points=[4]))
        c.close()
        compat_checks_done()  # under load the client's version check can still be running: not what is tested
        server.kill9()
        server.start()
        c = connect(server, ADMIN)
        got = {r.id: r for r in c.retrieve("dur", [0, 1, 2, 3, 4], with_vectors=True)}
        assert sorted(got) == [0, 1, 2, 3]
        assert got[1].payload == {"i": 1, "s": "x"}
        assert got[2].vector == {"a": [1.0, 2.0]}
        assert got[3].vector == {"a": [7.0, 7.0], "b": [3.0, 1.0]}
        c.close()
    finally:
        compat_checks_done()
        server.stop()
