"""Where cheap searches run (server/dispatch.py): inline when alone, on search threads when others wait."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from nestor_client import AsyncNestorClient
from server.app import create_app
from server.dispatch import SearchDispatch, default_threads
from server.settings import Settings
from tests.synth import exact_topk, split

DIM = 16
N = 600
HNSW = {"type": "hnsw", "m": 16, "ef_construction": 100, "ef": 64}


def test_a_lone_call_runs_on_the_loop_and_concurrent_calls_on_threads() -> None:
    d = SearchDispatch(2)

    async def main() -> tuple[str, list[str]]:
        lone = await d.run(lambda: threading.current_thread().name)
        together = await asyncio.gather(*(d.run(lambda: threading.current_thread().name) for _ in range(8)))
        return lone, list(together)

    try:
        lone, together = asyncio.run(main())
    finally:
        d.close()
    assert lone == "MainThread"
    # The first two of the burst take the two search threads; with both busy, the loop runs the rest itself.
    assert [name.startswith("nestor-search") for name in together] == [True, True] + [False] * 6
    assert together[2:] == ["MainThread"] * 6
    assert (d.inline, d.offloaded, d.waiting, d.running) == (7, 2, 0, 0)


def test_an_error_on_a_search_thread_reaches_its_caller_and_leaves_the_counters_clean() -> None:
    d = SearchDispatch(2)

    def boom() -> int:
        raise ZeroDivisionError("on a worker")

    async def main() -> list[Any]:
        return list(await asyncio.gather(d.run(boom), d.run(lambda: 7), return_exceptions=True))

    try:
        got = asyncio.run(main())
    finally:
        d.close()
    assert isinstance(got[0], ZeroDivisionError) and got[1] == 7
    assert (d.offloaded, d.waiting, d.running) == (2, 0, 0)


@pytest.mark.parametrize(
    ("cores", "processes", "threads"),
    [(2, 1, 2), (8, 1, 8), (2, 2, 0), (2, 3, 0), (4, 2, 2), (8, 4, 2), (6, 4, 0)],
)
def test_the_default_threads_share_the_cores_among_the_processes(
    monkeypatch: pytest.MonkeyPatch, cores: int, processes: int, threads: int
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)))
    assert default_threads(processes) == threads


def test_a_server_of_several_processes_on_as_many_cores_searches_inline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    two = create_app(Settings(data_dir=tmp_path / "a", processes=2))
    one = create_app(Settings(data_dir=tmp_path / "b"))
    pinned = create_app(Settings(data_dir=tmp_path / "c", processes=2, search_threads=3))
    assert (two.state.dispatch.threads, one.state.dispatch.threads, pinned.state.dispatch.threads) == (0, 2, 3)


def test_zero_threads_keeps_every_search_on_the_loop() -> None:
    d = SearchDispatch(0)

    async def main() -> list[str]:
        return list(await asyncio.gather(*(d.run(lambda: threading.current_thread().name) for _ in range(4))))

    assert asyncio.run(main()) == ["MainThread"] * 4
    assert (d.inline, d.offloaded) == (4, 0)


async def _ready(http: httpx.AsyncClient, base: np.ndarray) -> None:
    c = AsyncNestorClient(http_client=http)
    await c.create_collection("c", dim=DIM, metric="cosine", index=HNSW)
    await c.upsert("c", ids=list(range(N)), vectors=base)
    for _ in range(600):
        idx = (await c.get_collection("c")).index
        if idx.get("state") == "ready" and not idx.get("pending"):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"index not ready: {idx}")


@pytest.mark.parametrize("threads", [2, 0])
def test_concurrent_rest_searches_are_all_answered_right(tmp_path: Path, threads: int) -> None:
    """Through the app: 24 searches at once match the same searches one at a time; a lone one stays inline."""
    base, queries = split(N, 24, DIM, seed=5)
    app = create_app(Settings(data_dir=tmp_path / "data", search_threads=threads))  # type: ignore[call-arg]

    async def search(http: httpx.AsyncClient, q: np.ndarray) -> list[int]:
        r = await http.post("/collections/c/points/search", json={"vector": q.tolist(), "limit": 10})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["strategy"] == "hnsw"
        return [h["id"] for h in body["result"]]

    async def run() -> tuple[list[list[int]], list[list[int]], tuple[int, int], tuple[int, int]]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://nestor") as http:
                await _ready(http, base)
                d: SearchDispatch = app.state.dispatch
                alone = [await search(http, q) for q in queries]
                after_alone = (d.inline, d.offloaded)
                together = list(await asyncio.gather(*(search(http, q) for q in queries)))
                return alone, together, after_alone, (d.inline, d.offloaded)

    alone, together, after_alone, after_together = asyncio.run(run())
    assert together == alone
    truth = exact_topk(base, queries, 10)
    hits = sum(len(set(a) & set(t)) for a, t in zip(alone, truth.tolist(), strict=True))
    assert hits / truth.size >= 0.9  # real searches, not an echo
    assert after_alone == (len(queries), 0)  # one at a time: every search inline
    if threads:
        assert after_together[1] - after_alone[1] >= 1  # the burst used the search threads
        assert sum(after_together) == 2 * len(queries)
    else:
        assert after_together == (2 * len(queries), 0)


def test_concurrent_qdrant_queries_are_offloaded_and_answered_right(tmp_path: Path) -> None:
    """The Qdrant surface's query route dispatches the same way as Nestor's own search."""
    base, queries = split(N, 16, DIM, seed=6)
    app = create_app(Settings(data_dir=tmp_path / "data", search_threads=2))  # type: ignore[call-arg]

    async def query(http: httpx.AsyncClient, q: np.ndarray) -> list[int]:
        r = await http.post("/qdrant/collections/c/points/query", json={"query": q.tolist(), "limit": 10})
        assert r.status_code == 200, r.text
        return [p["id"] for p in r.json()["result"]["points"]]

    async def run() -> tuple[list[list[int]], list[list[int]], int, int]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://nestor") as http:
                await _ready(http, base)
                d: SearchDispatch = app.state.dispatch
                alone = [await query(http, q) for q in queries]
                before = d.offloaded
                together = list(await asyncio.gather(*(query(http, q) for q in queries)))
                return alone, together, before, d.offloaded

    alone, together, before, after = asyncio.run(run())
    assert together == alone
    truth = exact_topk(base, queries, 10).tolist()
    assert sum(len(set(a) & set(t)) for a, t in zip(alone, truth, strict=True)) / (10 * len(queries)) >= 0.9
    assert before == 0 and after >= 1
