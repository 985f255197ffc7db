"""kill -9 during a stream of upserts and deletes: acknowledged writes survive, batches are atomic."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from nestor_client import NestorClient, NestorError
from tests.e2e.serverproc import ServerProcess

pytestmark = pytest.mark.e2e

BATCH = 40
DIM = 16


def _writer(
    url: str, stop: threading.Event, acked: list[int], acked_deletes: list[int], inflight: list[list[int]]
) -> None:
    rng = np.random.default_rng(1)
    with NestorClient(url, timeout=5.0) as c:
        b = 0
        while not stop.is_set():
            ids = list(range(b * BATCH, (b + 1) * BATCH))
            inflight.append(ids)
            try:
                c.upsert(
                    "c",
                    ids=ids,
                    vectors=rng.standard_normal((BATCH, DIM)).astype(np.float32),
                    payloads=[{"batch": b, "id": i} for i in ids],
                )
            except NestorError:
                return  # the server died under us: this batch is unacknowledged
            inflight.pop()
            acked.append(b)
            if b % 3 == 2:  # delete a few ids of an acknowledged batch
                victims = [(b - 1) * BATCH + k for k in (0, 7)]
                try:
                    c.delete("c", ids=victims)
                except NestorError:
                    inflight.append(victims)  # an unacknowledged delete may have committed, or not
                    return
                acked_deletes.extend(victims)
            b += 1


@pytest.mark.parametrize("round_", range(3))
def test_kill9_keeps_every_acknowledged_write(tmp_path: Path, round_: int) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data).start()
    with NestorClient(server.url) as c:
        c.create_collection("c", dim=DIM, index={"type": "hnsw", "m": 8, "ef_construction": 32})
    stop = threading.Event()
    acked: list[int] = []
    deleted: list[int] = []
    inflight: list[list[int]] = []
    t = threading.Thread(target=_writer, args=(server.url, stop, acked, deleted, inflight))
    t.start()
    time.sleep(random.Random(round_).uniform(0.8, 2.0))
    server.kill9()
    stop.set()
    t.join(timeout=30)
    assert len(acked) > 3, "the writer should have made progress before the kill"

    server = ServerProcess(data).start()
    try:
        with NestorClient(server.url) as c:
            dead = set(deleted)
            skip = dead | {i for ids in inflight for i in ids}  # and what an unacknowledged write touched
            want = [i for b in acked for i in range(b * BATCH, (b + 1) * BATCH) if i not in skip]
            got = {r.id: r.payload for s in range(0, len(want), 5000) for r in c.get("c", want[s : s + 5000])}
            assert len(got) == len(want), f"lost {len(want) - len(got)} acknowledged points"
            assert all(p == {"batch": i // BATCH, "id": i} for i, p in got.items())
            assert c.get("c", sorted(dead)) == []
            extra = 0
            for ids in inflight:  # the write in flight at the kill is all applied or not at all
                present = len(c.get("c", ids))
                assert present in (0, len(ids))
                extra += present
            total = c.count("c")
            assert total == len(want) + extra
            # the recovered collection still answers searches over everything
            hits = c.search("c", np.ones(DIM, np.float32), limit=min(total, 10_000), params={"exact": True})
            assert len(hits) == min(total, 10_000)
    finally:
        server.stop()
