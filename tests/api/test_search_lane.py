"""The single-search lane (server/lane.py) answers exactly as the full stack does, errors included.

Each request below is sent twice to one app: through the lane, and with the lane switched off (every
request through the full FastAPI stack). Status, body and the metrics they leave must be the same."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from server.app import create_app
from server.lane import NestorApp
from server.settings import Settings

KEY = "nst_lane-test-key"
AUTH = {"api-key": KEY}
LIMIT = 4096


class _Counted:
    def __init__(self, app: ASGIApp) -> None:
        self.app, self.calls = app, 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NestorApp, TestClient, _Counted]]:
    tmp = tmp_path_factory.mktemp("lane")
    entry = f"admin:{hashlib.sha256(KEY.encode()).hexdigest()}"
    settings = Settings(data_dir=tmp / "data", api_keys=entry, max_body_bytes=LIMIT)  # type: ignore[call-arg]
    app = create_app(settings)
    assert app.search_lane is not None
    lane = app.search_lane = _Counted(app.search_lane)
    with TestClient(app) as http:
        r = http.put("/collections/c", json={"dim": 3, "metric": "dot", "index": {"type": "flat"}}, headers=AUTH)
        assert r.status_code in (200, 201), r.text
        points = [
            {"id": 1, "vector": [1, 0, 0], "payload": {"k": 1}},
            {"id": 2, "vector": [0.5, 1, 0], "payload": {"k": 2}},
        ]
        r = http.put("/collections/c/points?wait=true", json={"points": points}, headers=AUTH)
        assert r.status_code == 200, r.text
        yield app, http, lane


CASES: list[tuple[str, dict[str, str], Any]] = [
    ("ok", AUTH, {"vector": [1, 0, 0], "limit": 2}),
    ("filtered", AUTH, {"vector": [1, 0, 0], "filter": {"must": [{"key": "k", "match": {"value": 2}}]}}),
    ("wrong dimension", AUTH, {"vector": [1, 0]}),
    ("bad filter", AUTH, {"vector": [1, 0, 0], "filter": {"must": [{"key": "k", "nonsense": 1}]}}),
    ("bad field", AUTH, {"vector": [1, 0, 0], "limit": -1}),
    ("bad JSON", AUTH, b"{not json"),
    ("NaN", AUTH, b'{"vector": [NaN, 0, 0]}'),
    ("too large", AUTH, {"vector": [1, 0, 0], "pad": "x" * LIMIT}),
    ("streamed too large", AUTH, iter([b"{" + b" " * (LIMIT + 10)])),
    ("no key", {}, {"vector": [1, 0, 0]}),
    ("wrong key", {"api-key": "nst_wrong"}, {"vector": [1, 0, 0]}),
    ("unknown collection", AUTH, {"vector": [1, 0, 0]}),
]


def _post(http: TestClient, case: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
    path = "/collections/nope/points/search" if case == "unknown collection" else "/collections/c/points/search"
    if isinstance(body, dict):
        r = http.post(path, json=body, headers=headers)
    else:
        content = body if isinstance(body, bytes) else iter(list(body))
        r = http.post(path, content=content, headers={**headers, "content-type": "application/json"})
    out = r.json()
    if isinstance(out, dict):
        out.pop("time", None)  # the only field that differs between two answers
    return r.status_code, out


@pytest.mark.parametrize(("case", "headers", "body"), CASES, ids=[c[0] for c in CASES])
def test_the_lane_answers_as_the_full_stack(
    served: tuple[NestorApp, TestClient, _Counted], case: str, headers: dict[str, str], body: Any
) -> None:
    app, http, lane = served
    if not isinstance(body, (dict, bytes)):
        body = list(body)  # a streamed body, sent twice
    app.search_lane = lane
    before = lane.calls
    via_lane = _post(http, case, headers, body)
    assert lane.calls == before + 1  # it did go down the lane
    app.search_lane = None
    via_stack = _post(http, case, headers, body)
    assert lane.calls == before + 1
    assert via_lane == via_stack
    if case == "ok":
        assert via_lane[0] == 200 and [h["id"] for h in via_lane[1]["result"]] == [1, 2]
    app.search_lane = lane


def test_the_lane_counts_the_same_metrics(served: tuple[NestorApp, TestClient, _Counted]) -> None:
    app, http, lane = served
    counts: list[dict[str, float]] = []
    for on in (lane, None):
        app.search_lane = on
        before = _totals(http)
        _post(http, "ok", AUTH, {"vector": [1, 0, 0]})
        _post(http, "wrong dimension", AUTH, {"vector": [1, 0]})
        after = _totals(http)
        counts.append({k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)})
    app.search_lane = lane
    assert counts[0] == counts[1] and len(counts[0]) == 2  # one 200 and one 400 series, on the route template


def _totals(http: TestClient) -> dict[str, float]:
    text = http.get("/metrics", headers=AUTH).text
    out = {}
    for line in text.splitlines():
        if line.startswith("nestor_requests_total{") and 'route="/collections/{name}/points/search"' in line:
            labels, value = line.rsplit(" ", 1)
            out[labels] = float(value)
    return out


def test_other_requests_take_the_full_stack(served: tuple[NestorApp, TestClient, _Counted]) -> None:
    app, http, lane = served
    app.search_lane = lane
    before = lane.calls
    http.post("/collections/c/points/search/batch", json={"searches": [{"vector": [1, 0, 0]}]}, headers=AUTH)
    r = http.post("/collections/c/points/search/", json={"vector": [1, 0, 0]}, headers=AUTH, follow_redirects=False)
    assert r.status_code == 307  # the router's redirect, whose target then takes the lane
    http.get("/collections/c/points/search", headers=AUTH)
    assert lane.calls == before
