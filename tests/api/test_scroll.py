"""Scroll over REST: every matching point exactly once, in id order (integers, then strings), page by page.

With and without a filter, with the filter answered by the payload indexes or by SQL, across deletes
and overwrites between pages, from both clients; and bad input, which is a 4xx that changes nothing.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import httpx
import numpy as np
import pytest

from nestor_client import AsyncNestorClient, NestorClient
from nestor_client.errors import ApiError
from server.app import create_app
from server.settings import Settings
from tests.api.conftest import wait_indexed

N = 500


def _order(pid: Any) -> tuple[int, Any]:
    return (0, pid) if isinstance(pid, int) else (1, pid)


def _load(c: NestorClient, rng: random.Random) -> dict[Any, dict[str, Any]]:
    """Integer ids in random order with gaps, and UUID strings; payloads with an indexed and an unindexed key."""
    ints = rng.sample(range(10 * N), N - 60)
    strs = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(60)]
    ids: list[Any] = ints + strs
    rng.shuffle(ids)
    pays = [{"cat": rng.randint(0, 4), "free": rng.randint(0, 9), "name": f"p{i}"} for i in range(N)]
    c.create_collection("s", dim=4)
    vecs = np.random.default_rng(0).standard_normal((N, 4)).astype(np.float32)
    for lo in range(0, N, 128):  # several batches: labels follow upsert order, not id order
        c.upsert("s", ids=ids[lo : lo + 128], vectors=vecs[lo : lo + 128], payloads=pays[lo : lo + 128])
    c.create_payload_index("s", "cat", "integer")
    return dict(zip(ids, pays, strict=True))


def _scroll(c: NestorClient, f: dict[str, Any] | None, page: int, **kw: Any) -> list[Any]:
    out: list[Any] = []
    offset: Any = None
    pages = 0
    while True:
        points, nxt = c.scroll("s", f, limit=page, offset=offset, **kw)
        assert len(points) <= page
        if nxt is not None:
            assert len(points) == page and _order(nxt) > _order(points[-1].id)
        out += points
        offset, pages = nxt, pages + 1
        if nxt is None:
            return out


FILTERS: list[dict[str, Any] | None] = [
    None,
    {"must": [{"key": "cat", "match": {"value": 2}}]},  # indexed
    {"must": [{"key": "free", "range": {"gte": 7}}]},  # unindexed (SQL over each chunk)
    {"must": [{"key": "cat", "match": {"any": [0, 1]}}], "must_not": [{"key": "free", "match": {"value": 3}}]},
    {"must": [{"key": "free", "match": {"value": 99}}]},  # matches nothing
]


def _want(points: dict[Any, dict[str, Any]], f: dict[str, Any] | None) -> list[Any]:
    def ok(p: dict[str, Any]) -> bool:
        if f is None:
            return True
        if f == FILTERS[1]:
            return bool(p["cat"] == 2)
        if f == FILTERS[2]:
            return bool(p["free"] >= 7)
        if f == FILTERS[3]:
            return p["cat"] in (0, 1) and p["free"] != 3
        return False

    return sorted((pid for pid, p in points.items() if ok(p)), key=_order)


@pytest.mark.parametrize("page", [1, 7, 100, 1000])
def test_every_matching_point_once_in_id_order(client: NestorClient, page: int) -> None:
    points = _load(client, random.Random(page))
    for f in FILTERS:
        got = _scroll(client, f, page)
        assert [p.id for p in got] == _want(points, f), f
        assert all(p.payload == points[p.id] for p in got)
    assert _want(points, FILTERS[1]) and _want(points, FILTERS[2])  # the filters are not vacuous


def test_offset_is_inclusive_and_need_not_exist(client: NestorClient) -> None:
    points = _load(client, random.Random(1))
    order = _want(points, None)
    ints = [p for p in order if isinstance(p, int)]
    mid = ints[len(ints) // 2]
    got, _ = client.scroll("s", offset=mid, limit=3)
    assert [p.id for p in got] == order[order.index(mid) : order.index(mid) + 3]
    absent = next(i for i in range(mid + 1, 10 * N) if i not in points)
    got, _ = client.scroll("s", offset=absent, limit=2)
    assert [p.id for p in got] == [p for p in order if _order(p) > _order(absent)][:2]
    strs = [p for p in order if isinstance(p, str)]
    got, nxt = client.scroll("s", offset=strs[-1], limit=5)
    assert [p.id for p in got] == [strs[-1]] and nxt is None
    got, nxt = client.scroll("s", offset="~", limit=5)  # after every UUID
    assert got == [] and nxt is None
    last_int_page, nxt = client.scroll("s", offset=ints[-1], limit=2)
    assert [p.id for p in last_int_page] == [ints[-1], strs[0]] and nxt == strs[1]


def test_vectors_and_no_payload(client: NestorClient) -> None:
    _load(client, random.Random(2))
    wait_indexed(client, "s")
    got, _ = client.scroll("s", limit=4, with_payload=False, with_vector=True)
    direct = client.get("s", [p.id for p in got], with_payload=True, with_vector=True)
    assert all(p.payload is None for p in got)
    assert [p.vector for p in got] == [d.vector for d in direct] and all(len(p.vector or []) == 4 for p in got)


def test_pages_across_deletes_and_overwrites(client: NestorClient) -> None:
    """Between pages, points ahead are deleted or change their payload: each point that matched throughout
    comes once; deleted ones never come, and a point that stopped matching before its page is left out."""
    rng = random.Random(3)
    points = _load(client, rng)
    for f in (None, FILTERS[1], FILTERS[2]):
        seen: list[Any] = []
        offset: Any = None
        changed: set[Any] = set()
        while True:
            page, offset = client.scroll("s", f, limit=25, offset=offset)
            seen += [p.id for p in page]
            if offset is None:
                break
            ahead = [p for p in points if _order(p) >= _order(offset) and p not in changed]
            victims = rng.sample(ahead, min(3, len(ahead)))
            client.delete("s", ids=victims[:2])
            for v in victims[:2]:
                del points[v]
            if len(victims) > 2:
                v = victims[2]
                points[v] = {**points[v], "cat": (points[v]["cat"] + 1) % 5, "free": 9 - points[v]["free"]}
                client.upsert("s", ids=[v], vectors=np.ones((1, 4), np.float32), payloads=[points[v]])
            changed.update(victims)
        assert seen == sorted(seen, key=_order) and len(seen) == len(set(seen))
        assert seen == _want(points, f), f  # the state at the end: every change happened ahead of the pages
        assert all(p in points for p in seen)


def test_bad_input_is_4xx_and_changes_nothing(client: NestorClient) -> None:
    _load(client, random.Random(4))
    before = client.get_collection("s")
    http = client._http
    bad: list[dict[str, Any]] = [
        {"offset": 1.5},
        {"offset": True},
        {"offset": [1]},
        {"offset": -1},
        {"offset": ""},
        {"offset": {"id": 1}},
        {"limit": 0},
        {"limit": "10"},
        {"with_payload": "yes"},
        {"with_vector": ["nope"]},  # no such vector
        {"filter": {"must": [{"key": "cat", "match": {"value": "2"}}]}},  # a string for an integer index
        {"filter": {"must": [{"key": "cat", "values_count": {"lt": "x"}}]}},
        {"unknown": 1},
    ]
    for body in bad:
        r = http.post("/collections/s/points/scroll", json=body)
        assert 400 <= r.status_code < 500, (body, r.status_code)
    assert http.post("/collections/nope/points/scroll", json={}).status_code == 404
    r = http.post("/collections/s/points/scroll", json={"limit": 10**9})
    assert 400 <= r.status_code < 500
    with pytest.raises(ApiError):
        client.scroll("s", offset=2.5)  # type: ignore[arg-type]
    after = client.get_collection("s")
    assert after.count == N and after.seq == before.seq
    r = http.post("/collections/s/points/scroll", json={})  # the defaults: 10 points with payloads
    page = r.json()["result"]
    assert r.status_code == 200 and len(page["points"]) == 10 and "payload" in page["points"][0]
    assert page["next_page_offset"] is not None


def test_async_client_scrolls_the_same(tmp_path: Any) -> None:
    settings = Settings(data_dir=tmp_path / "data", index_save_idle_seconds=0.2)  # type: ignore[call-arg]
    app = create_app(settings)

    async def run() -> tuple[list[Any], list[Any]]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://nestor") as http:
                c = AsyncNestorClient(http_client=http)
                await c.create_collection("s", dim=4)
                ids: list[Any] = [5, 3, "b", 1, "a", 4]
                await c.upsert("s", ids=ids, vectors=np.ones((6, 4), np.float32), payloads=[{"i": i} for i in range(6)])
                out: list[Any] = []
                offsets: list[Any] = []
                offset: Any = None
                while True:
                    points, offset = await c.scroll("s", limit=4, offset=offset)
                    out += [p.id for p in points]
                    offsets.append(offset)
                    if offset is None:
                        return out, offsets

    got, offsets = asyncio.run(run())
    assert got == [1, 3, 4, 5, "a", "b"] and offsets == ["a", None]
