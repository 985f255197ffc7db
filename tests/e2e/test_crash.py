"""kill -9 during a stream of upserts and deletes: acknowledged writes survive, batches are atomic.

After the restart every live point must come back with its payload and its vector bit for bit, and an
exact search must rank the live points exactly as numpy does (tests/e2e/oracle.py)."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from nestor_client import NestorClient, NestorError
from tests.e2e.oracle import F32, check_exact_search, check_vectors
from tests.e2e.serverproc import ServerProcess

pytestmark = pytest.mark.e2e

BATCH = 40
DIM = 16


def _writer(
    url: str,
    stop: threading.Event,
    acked: list[int],
    acked_deletes: list[int],
    inflight: list[list[int]],
    sent: dict[int, F32],
) -> None:
    rng = np.random.default_rng(1)
    with NestorClient(url, timeout=5.0) as c:
        b = 0
        while not stop.is_set():
            ids = list(range(b * BATCH, (b + 1) * BATCH))
            inflight.append(ids)
            vectors = rng.standard_normal((BATCH, DIM)).astype(np.float32)
            sent.update(zip(ids, vectors, strict=True))  # every id is written once: its one vector
            try:
                c.upsert(
                    "c",
                    ids=ids,
                    vectors=vectors,
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
        c.create_collection("c", dim=DIM, metric="dot", index={"type": "hnsw", "m": 8, "ef_construction": 32})
    stop = threading.Event()
    acked: list[int] = []
    deleted: list[int] = []
    inflight: list[list[int]] = []
    sent: dict[int, F32] = {}
    t = threading.Thread(target=_writer, args=(server.url, stop, acked, deleted, inflight, sent))
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
            live = set(want)
            for ids in inflight:  # the write in flight at the kill is all applied or not at all
                present = [int(r.id) for r in c.get("c", ids)]  # type: ignore[arg-type]
                assert len(present) in (0, len(ids))
                live.update(present)
            assert c.count("c") == len(live)
            truth = {i: sent[i] for i in live}
            problems = check_vectors(c, "c", truth)  # bit for bit, the in-flight batch's too if it landed
            assert problems == [], problems[:10]
            # an exact search over everything ranks the live points as numpy does over what was acknowledged
            query = np.random.default_rng(round_).standard_normal(DIM).astype(np.float32)
            problems = check_exact_search(c, "c", truth, query, limit=min(len(truth), 10_000))
            assert problems == [], problems[:10]
    finally:
        server.stop()
