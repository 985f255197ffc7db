"""kill -9 during a stream of upserts, overwrites and deletes on a collection with payload indexes.

The collection indexes `tenant` (keyword) and `cat` (integer); every payload also carries unindexed
copies (`tenant_u`, `cat_u`). One client writes batches of new points, overwrites acknowledged ones with
another tenant and category (so postings must move), and deletes some, until the server is killed.
After the restart:
- every acknowledged point is there with its payload and, bit for bit, its vector; every acknowledged
  delete stays deleted; the write in flight at the kill is applied whole or not at all;
- for every tenant and category, the indexed count equals the count of the unindexed twin filter and
  the count of the points read back; exact filtered searches through the index, through the twin and
  by a client-side oracle over the points read back return the same ids.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nestor_client import NestorClient, NestorError
from nestor_client.errors import NestorTransportError
from tests.e2e.serverproc import ServerProcess

pytestmark = pytest.mark.e2e

DIM = 16
BATCH = 30
TENANTS = [f"t{i}" for i in range(6)]
CATS = list(range(8))
ABSENT = None


@dataclass
class Log:
    """What the client knows: id -> (vector bytes, payload) acknowledged, or ABSENT once deleted."""

    state: dict[int, tuple[bytes, dict[str, Any]] | None] = field(default_factory=dict)
    # the operation the kill left unanswered: its ids, their states before, after, and whether it is a batch
    unanswered: tuple[list[int], dict[int, Any], dict[int, Any]] | None = None
    errors: list[str] = field(default_factory=list)


def _payload(r: random.Random, version: int) -> dict[str, Any]:
    t, c = r.choice(TENANTS), r.choice(CATS)
    return {"tenant": t, "cat": c, "tenant_u": t, "cat_u": c, "v": version}


def _writer(url: str, log: Log, stop: threading.Event, seed: int) -> None:
    r = random.Random(seed)
    rng = np.random.default_rng(seed)
    next_id, version = 0, 0
    with NestorClient(url, timeout=10.0) as c:
        while not stop.is_set():
            version += 1
            live = [i for i, s in log.state.items() if s is not ABSENT]
            if live and r.random() < 0.25:
                ids = r.sample(live, min(len(live), 8))
                before = {i: log.state[i] for i in ids}
                after: dict[int, Any] = dict.fromkeys(ids, ABSENT)
                call = functools.partial(c.delete, "c", ids=ids)
            else:
                fresh = list(range(next_id, next_id + BATCH))
                next_id += BATCH
                over = r.sample(live, min(len(live), BATCH // 3)) if live else []
                ids = fresh + over  # new points and overwrites in one batch
                vecs = rng.standard_normal((len(ids), DIM)).astype(np.float32)
                pays = [_payload(r, version) for _ in ids]
                before = {i: log.state.get(i, ABSENT) for i in ids}
                after = {i: (vecs[k].tobytes(), pays[k]) for k, i in enumerate(ids)}
                call = functools.partial(c.upsert, "c", ids=ids, vectors=vecs, payloads=pays)
            try:
                call()
            except NestorError as e:
                log.unanswered = (ids, before, after)  # no answer: applied whole or not at all
                if not isinstance(e, NestorTransportError):  # an error answer, not the kill
                    log.errors.append(repr(e))
                return
            log.state.update(after)


def _read_all(c: NestorClient, ids: list[int]) -> dict[int, tuple[bytes, dict[str, Any]]]:
    out = {}
    for s in range(0, len(ids), 2000):
        for rec in c.get("c", ids[s : s + 2000], with_payload=True, with_vector=True):
            assert isinstance(rec.vector, list) and rec.payload is not None
            out[int(rec.id)] = (np.asarray(rec.vector, np.float32).tobytes(), rec.payload)
    return out


def _wait_ready(c: NestorClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        schema = c.get_collection("c").payload_schema
        if set(schema) == {"tenant", "cat"} and all(v.state == "ready" for v in schema.values()):
            return
        assert time.monotonic() < deadline, schema
        time.sleep(0.05)


def _oracle_top(points: dict[int, tuple[bytes, dict[str, Any]]], q: np.ndarray, key: str, v: Any, k: int) -> list[int]:
    ids = [i for i, (_, p) in points.items() if p[key] == v]
    if not ids:
        return []
    mat = np.stack([np.frombuffer(points[i][0], np.float32) for i in ids]).astype(np.float64)
    d = np.linalg.norm(mat - q.astype(np.float64), axis=1)
    return [ids[j] for j in np.argsort(d, kind="stable")[:k]]


@pytest.mark.parametrize("round_", range(2))
def test_kill9_keeps_the_payload_indexes_equal_to_the_store(tmp_path: Path, round_: int) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data).start()
    with NestorClient(server.url) as c:
        c.create_collection("c", dim=DIM, metric="l2", index={"type": "hnsw", "m": 8, "ef_construction": 32})
        assert c.create_payload_index("c", "tenant", "keyword")
        assert c.create_payload_index("c", "cat", "integer")
    log = Log()
    stop = threading.Event()
    t = threading.Thread(target=_writer, args=(server.url, log, stop, round_))
    t.start()
    time.sleep(random.Random(round_).uniform(1.0, 2.0))
    server.kill9()
    stop.set()
    t.join(timeout=30)
    assert not t.is_alive() and log.errors == []
    acked_present = sum(1 for s in log.state.values() if s is not ABSENT)
    assert acked_present > 100 and ABSENT in log.state.values(), "the writer should have made progress first"

    server = ServerProcess(data).start()
    try:
        with NestorClient(server.url) as c:
            _wait_ready(c)
            touched = sorted(set(log.state) | set(log.unanswered[0] if log.unanswered else []))
            points = _read_all(c, touched)
            assert c.count("c") == len(points)

            # every acknowledged write, bit for bit; the unanswered one whole or not at all
            ambiguous = set(log.unanswered[0]) if log.unanswered else set()
            for i, want in log.state.items():
                if i not in ambiguous:
                    assert points.get(i) == want, f"point {i}: {points.get(i)} after the restart, {want} acknowledged"
            if log.unanswered:
                ids, before, after = log.unanswered
                got = {i: points.get(i) for i in ids}
                assert got in (before, after), "the write in flight at the kill was half applied"

            # the indexes answer what the store holds
            rng = np.random.default_rng(round_)
            for key, values in (("tenant", TENANTS), ("cat", CATS)):
                for v in values:
                    indexed = {"must": [{"key": key, "match": {"value": v}}]}
                    twin = {"must": [{"key": f"{key}_u", "match": {"value": v}}]}
                    n = sum(1 for _, p in points.values() if p[key] == v)
                    assert c.count("c", indexed) == c.count("c", twin) == n, (key, v)
                    q = rng.standard_normal(DIM).astype(np.float32)
                    top = _oracle_top(points, q, key, v, 20)
                    exact = {"exact": True}
                    r1 = c.search("c", q, limit=20, filter=indexed, params=exact, with_payload=False)
                    r2 = c.search("c", q, limit=20, filter=twin, params=exact, with_payload=False)
                    assert "payload_scan" not in r1.strategy and r2.strategy.endswith("+payload_scan")
                    assert [h.id for h in r1] == [h.id for h in r2] == top, (key, v)
    finally:
        server.stop()
