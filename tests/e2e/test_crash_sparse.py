"""kill -9 during a stream of upserts (with sparse vectors) and deletes: every acknowledged sparse vector
survives bit for bit, the batch in flight is all there or not at all, and after the restart a sparse
search with `modifier: idf` ranks the live points as a Python oracle does (df and N rebuilt from disk)."""

from __future__ import annotations

import math
import random
import threading
import time
from pathlib import Path

import pytest

from nestor_client import NestorClient, NestorError
from tests.e2e.serverproc import ServerProcess

pytestmark = pytest.mark.e2e

BATCH = 40


def _sparse(i: int) -> dict[str, list[float]]:
    return {"indices": [i % 23, 100 + i % 5], "values": [float(1 + i % 3), 2.0]}


def _writer(url: str, stop: threading.Event, acked: list[int], deleted: list[int], inflight: list[list[int]]) -> None:
    with NestorClient(url, timeout=5.0) as c:
        b = 0
        while not stop.is_set():
            ids = list(range(b * BATCH, (b + 1) * BATCH))
            inflight.append(ids)
            points = [{"id": i, "vector": {"d": [1.0, float(i)], "s": _sparse(i)}} for i in ids]
            try:
                c.upsert("c", points=points)
            except NestorError:
                return
            inflight.pop()
            acked.append(b)
            if b % 3 == 2:
                victims = [(b - 1) * BATCH + k for k in (0, 7)]
                try:
                    c.delete("c", ids=victims)
                except NestorError:
                    inflight.append(victims)
                    return
                deleted.extend(victims)
            b += 1


@pytest.mark.parametrize("round_", range(2))
def test_kill9_keeps_every_acknowledged_sparse_vector(tmp_path: Path, round_: int) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data).start()
    with NestorClient(server.url) as c:
        c.create_collection(
            "c", vectors={"d": {"dim": 2, "index": {"type": "flat"}}}, sparse_vectors={"s": {"modifier": "idf"}}
        )
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
            skip = set(deleted) | {i for ids in inflight for i in ids}
            want = [i for b in acked for i in range(b * BATCH, (b + 1) * BATCH) if i not in skip]
            got = {  # in pages: a fast writer acknowledges more than one request may ask for
                r.id: r.vector["s"]  # type: ignore[index]
                for s in range(0, len(want), 5000)
                for r in c.get("c", want[s : s + 5000], with_vector=["s"])
            }
            assert len(got) == len(want), f"lost {len(want) - len(got)} acknowledged points"
            for i, v in got.items():
                exp = _sparse(int(i))
                assert (v.indices, v.values) == (exp["indices"], exp["values"])
            assert c.get("c", sorted(set(deleted))) == []
            live = set(want)
            for ids in inflight:
                present = [int(r.id) for r in c.get("c", ids)]  # type: ignore[arg-type]
                assert len(present) in (0, len(ids))
                live.update(present)
            assert c.count("c") == len(live)
            # the oracle: idf from the live points, dot products, ties to the earlier write (lower id here)
            q = {3: 1.0, 102: 1.0}
            df = {t: sum(1 for i in live if t in _sparse(i)["indices"]) for t in q}
            idf = {t: math.log((len(live) - df[t] + 0.5) / (df[t] + 0.5) + 1) for t in q}
            scored = []
            for i in live:
                s = _sparse(i)
                w = dict(zip(s["indices"], s["values"], strict=True))
                if any(t in w for t in q):
                    scored.append((-sum(idf[t] * w.get(t, 0.0) for t in q), i))
            scored.sort()
            res = c.search("c", {"indices": list(q), "values": list(q.values())}, using="s", limit=20)
            assert [p.score for p in res.points] == pytest.approx([-s for s, _ in scored[:20]], rel=1e-5)
            assert {p.id for p in res.points} <= {i for _, i in scored}
    finally:
        server.stop()
