"""Concurrent searches, gets, upserts and deletes against a real server: no torn reads, no lost
updates, no resurrected deletes, no server errors.

Writers overwrite whole groups of ids in one batch (payload `{"g", "v"}`, every vector of a group
near the group's direction), so a reader can tell a torn batch: a `get` of a group must see one
version for all of its ids, never older than the version acknowledged before the read began. A
search for a group's direction must return hits with ids and whole payloads. A deleter's ids must
stay gone once their delete is acknowledged. At the end each group holds its last acknowledged
version and the count adds up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from nestor_client import NestorClient, NestorError
from tests.e2e.serverproc import ServerProcess

pytestmark = pytest.mark.e2e

DIM = 32
GROUP = 20
GROUPS_PER_WRITER = 10
WRITERS = 2
SECONDS = 6.0


def _directions() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((WRITERS * GROUPS_PER_WRITER, DIM)).astype(np.float32)


def _group_ids(g: int) -> list[int]:
    return list(range(g * GROUP, (g + 1) * GROUP))


@dataclass
class StressResult:
    problems: list[str]  # anything but the known bug below
    empty_payloads: list[str]  # reads that saw a point of an overwritten batch without its payload
    ops: dict[str, int]


@pytest.fixture(scope="module")
def stress(tmp_path_factory: pytest.TempPathFactory) -> StressResult:
    return _stress(tmp_path_factory.mktemp("concurrency"))


def test_concurrent_reads_and_writes_are_consistent(stress: StressResult) -> None:
    assert stress.problems == [], stress.problems[:10]
    ops = stress.ops
    assert ops["upsert"] > 20 and ops["delete"] > 5 and ops["get"] > 20 and ops["search"] > 20, ops


def test_reads_during_overwrites_keep_payloads(stress: StressResult) -> None:
    assert stress.empty_payloads == [], stress.empty_payloads[:5]


def _stress(tmp_path: Path) -> StressResult:
    server = ServerProcess(tmp_path / "data").start()
    empty: list[str] = []
    dirs = _directions()
    acked = [0] * len(dirs)  # group -> last acknowledged version
    acked_lock = threading.Lock()
    deleted: set[int] = set()  # ids whose delete was acknowledged
    problems: list[str] = []
    stop = threading.Event()
    ops = {"upsert": 0, "delete": 0, "get": 0, "search": 0, "count": 0}

    def write_group(c: NestorClient, g: int, v: int, rng: np.random.Generator) -> None:
        vecs = dirs[g] + 0.05 * rng.standard_normal((GROUP, DIM)).astype(np.float32)
        c.upsert("c", ids=_group_ids(g), vectors=vecs, payloads=[{"g": g, "v": v}] * GROUP)

    def guarded(fn: Callable[[NestorClient, int], None], k: int) -> Callable[[], None]:
        def run() -> None:
            with NestorClient(server.url, timeout=30.0) as c:
                try:
                    while not stop.is_set():
                        fn(c, k)
                except NestorError as exc:
                    problems.append(f"{fn.__name__}: {exc}")
                except Exception as exc:  # a malformed answer the client could not parse
                    problems.append(f"{fn.__name__}: {type(exc).__name__}: {exc}")

        return run

    rngs = {k: np.random.default_rng(k) for k in range(200)}  # one stream per worker, across its calls

    def writer(c: NestorClient, w: int) -> None:
        rng = rngs[w]
        g = w * GROUPS_PER_WRITER + int(rng.integers(GROUPS_PER_WRITER))
        v = acked[g] + 1
        write_group(c, g, v, rng)
        with acked_lock:
            acked[g] = v
        ops["upsert"] += 1

    next_victim = [10_000_000]

    def deleter(c: NestorClient, _: int) -> None:
        base = next_victim[0]
        next_victim[0] += 10
        ids = list(range(base, base + 10))
        c.upsert("c", ids=ids, vectors=np.ones((10, DIM), np.float32), payloads=[{"doomed": True}] * 10)
        c.delete("c", ids=ids)
        with acked_lock:
            deleted.update(ids)
        ops["delete"] += 1

    def reader(c: NestorClient, r: int) -> None:
        rng = rngs[100 + r]
        g = int(rng.integers(len(dirs)))
        with acked_lock:
            floor = acked[g]
            gone = sorted(deleted)[-50:]
        recs = c.get("c", _group_ids(g))
        versions: set[int | None] = {rec.payload.get("v") if rec.payload else None for rec in recs}
        if None in versions:
            empty.append(f"get of group {g} during an overwrite: versions {versions}")
            versions.discard(None)
        if len(recs) != GROUP or len(versions) > 1:
            problems.append(f"torn get of group {g}: {len(recs)} points, versions {versions}")
        elif versions and (v := versions.pop()) is not None and v < floor:
            problems.append(f"stale get of group {g}: version {v} after {floor} was acknowledged")
        ops["get"] += 1
        hits = c.search("c", dirs[g], limit=GROUP, with_payload=True)
        for h in hits:
            if h.id is None:
                problems.append(f"search hit without an id {h!r}")
            elif not h.payload:
                empty.append(f"search hit {h.id} during an overwrite has no payload")
        ops["search"] += 1
        if gone and c.get("c", gone):
            problems.append("an acknowledged delete came back")
        if r == 0:
            c.count("c")
            ops["count"] += 1

    try:
        with NestorClient(server.url) as c:
            c.create_collection("c", dim=DIM, index={"type": "hnsw", "m": 8, "ef_construction": 32})
            rng = np.random.default_rng(7)
            for g in range(len(dirs)):
                write_group(c, g, 0, rng)
        threads = [threading.Thread(target=guarded(writer, w)) for w in range(WRITERS)]
        threads += [threading.Thread(target=guarded(deleter, 0))]
        threads += [threading.Thread(target=guarded(reader, r)) for r in range(3)]
        for t in threads:
            t.start()
        time.sleep(SECONDS)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        with NestorClient(server.url) as c:
            for g in range(len(dirs)):
                recs = c.get("c", _group_ids(g))
                assert {r.payload["v"] for r in recs} == {acked[g]}, f"group {g} lost an update"  # type: ignore[index]
            assert c.get("c", sorted(deleted)[:5000]) == []
            assert c.count("c") == len(dirs) * GROUP
    finally:
        stop.set()
        server.stop()
    return StressResult(problems, empty, ops)
