"""Payload indexes over REST: create (Qdrant's body and the short one), use, report, drop, restart, bad input."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nestor_client import NestorClient
from nestor_client.errors import ApiError

N = 300


def _load(c: NestorClient, name: str = "p") -> np.ndarray:
    c.create_collection(name, dim=8)
    vecs = np.random.default_rng(0).standard_normal((N, 8)).astype(np.float32)
    pays = [
        {
            "tenant": f"t{i % 30}",
            "cat": i % 10,
            "meta": {"year": 2000 + i % 25},
            "tags": ["x", "y"] if i % 2 else [],
            "at": f"2024-01-{1 + i % 28:02d}T00:00:00Z",
            "body": "red fox" if i % 3 == 0 else "blue whale",
        }
        for i in range(N)
    ]
    c.upsert(name, ids=list(range(N)), vectors=vecs, payloads=pays)
    return vecs


FILTERS: list[dict[str, Any]] = [
    {"must": [{"key": "tenant", "match": {"value": "t7"}}]},
    {"must": [{"key": "cat", "match": {"value": 3}}]},
    {"must": [{"key": "meta.year", "range": {"gte": 2012}}]},
    {"must": [{"key": "tenant", "match": {"any": ["t1", "t2", "t3"]}}], "must_not": [{"is_empty": {"key": "tags"}}]},
]


def _raw(c: NestorClient) -> Any:
    return c._http  # the TestClient underneath, for bodies the client does not build


def test_indexes_answer_filters_and_survive_restart(server: Callable[..., Any], tmp_path: Path) -> None:
    with server() as c:
        vecs = _load(c)
        before = [(c.count("p", f), [h.id for h in c.search("p", vecs[0], limit=5, filter=f)]) for f in FILTERS]
        assert all(r.strategy.endswith("+payload_scan") for f in FILTERS for r in [c.search("p", vecs[0], filter=f)])
        assert c.create_payload_index("p", "tenant", "keyword")
        assert not c.create_payload_index("p", "tenant", "keyword")  # already there
        r = _raw(c).put("/collections/p/index", json={"field": "cat", "schema": "integer"})  # the short form
        assert r.status_code == 200 and r.json()["result"] == {"status": "completed", "created": True}
        for key, schema in (("meta.year", "integer"), ("tags", "keyword"), ("at", "datetime"), ("body", "text")):
            assert c.create_payload_index("p", key, schema)
        after = [(c.count("p", f), [h.id for h in c.search("p", vecs[0], limit=5, filter=f)]) for f in FILTERS]
        assert after == before
        for f in FILTERS:
            assert "payload_scan" not in c.search("p", vecs[0], filter=f).strategy
        text = {"must": [{"key": "body", "match": {"text": "FOX"}}]}
        assert c.count("p", text) == N // 3
        at = {"must": [{"key": "at", "range": {"gte": "2024-01-15T00:00:00Z", "lt": "2024-01-16T00:00:00+00:00"}}]}
        assert c.count("p", at) == sum(1 for i in range(N) if 1 + i % 28 == 15)
        info = c.get_collection("p")
        schema = info.payload_schema
        assert {k: v.data_type for k, v in schema.items()} == {
            "tenant": "keyword",
            "cat": "integer",
            "meta.year": "integer",
            "tags": "keyword",
            "at": "datetime",
            "body": "text",
        }
        assert schema["tenant"].points == N and schema["tags"].points == N // 2
        assert all(v.state == "ready" and v.ram > 0 for v in schema.values())
        assert info.config.payload_schema["tenant"] == "keyword"
        assert info.memory["payload_index"].ram == sum(v.ram for v in schema.values())
        # deletes by an indexed filter, then the same PUT of the original config is still idempotent
        assert c.delete("p", filter={"must": [{"key": "cat", "match": {"value": 9}}]}).deleted == N // 10
        c.create_collection("p", dim=8)
    saved = json.loads((tmp_path / "data" / "collections" / "p" / "collection.json").read_text())
    assert saved["payload_schema"]["meta.year"] == "integer"
    with server() as c:
        assert c.count("p") == N - N // 10
        assert c.get_collection("p").payload_schema["cat"].points == N - N // 10
        assert c.count("p", FILTERS[1]) == before[1][0]
        assert "payload_scan" not in c.search("p", vecs[0], filter=FILTERS[0]).strategy
        assert c.delete_payload_index("p", "tenant") and not c.delete_payload_index("p", "tenant")
        assert c.search("p", vecs[0], filter=FILTERS[0]).strategy.endswith("+payload_scan")
        assert "tenant" not in c.get_collection("p").payload_schema
    with server() as c:
        assert "tenant" not in c.get_collection("p").config.payload_schema


def test_bad_input_is_4xx_and_changes_nothing(client: NestorClient) -> None:
    _load(client)
    client.create_payload_index("p", "cat", "integer")
    client.create_payload_index("p", "at", "datetime")
    http = _raw(client)
    info = client.get_collection("p")
    bad_puts = [
        {"field_name": "x", "field_schema": "geo"},  # unknown schema type
        {"field_name": "", "field_schema": "keyword"},
        {"field_name": "a..b", "field_schema": "keyword"},
        {"field_schema": "keyword"},
    ]
    for body in bad_puts:
        assert http.put("/collections/p/index", json=body).status_code == 422, body
    assert http.put("/collections/nope/index", json={"field": "a", "schema": "keyword"}).status_code == 404
    bad_filters = [
        {"must": [{"key": "cat", "match": {"value": "3"}}]},  # a string for an integer index
        {"must": [{"key": "at", "range": {"gte": "next tuesday"}}]},  # not RFC 3339
        {"must": [{"key": "tenant", "match": {"text": "t7"}}]},  # no text index
        {"must": [{"key": "tenant", "range": {"gte": "2024-01-01", "lt": "whenever"}}]},  # unindexed, not a date
    ]
    for f in bad_filters:
        calls: list[Callable[[], object]] = [
            functools.partial(client.count, "p", f),
            functools.partial(client.search, "p", np.ones(8, np.float32), filter=f),
            functools.partial(client.delete, "p", filter=f),
        ]
        for call in calls:
            with pytest.raises(ApiError) as err:
                call()
            assert err.value.status == 422, f
    after = client.get_collection("p")
    assert after.count == N and after.seq == info.seq
    assert after.config.payload_schema == info.config.payload_schema


def test_payload_schema_at_creation(client: NestorClient) -> None:
    r = _raw(client).put("/collections/c", json={"dim": 4, "payload_schema": {"k": "keyword", "n": "float"}})
    assert r.status_code == 200
    client.upsert("c", ids=[1, 2], vectors=np.ones((2, 4), np.float32), payloads=[{"k": "a", "n": 0.5}, {"k": "b"}])
    info = client.get_collection("c").payload_schema
    assert info["k"].points == 2 and info["n"].points == 1
    assert client.count("c", {"must": [{"key": "n", "range": {"lt": 1}}]}) == 1
    bad = _raw(client).put("/collections/d", json={"dim": 4, "payload_schema": {"k": "nope"}})
    assert bad.status_code == 422


def test_a_background_build_answers_the_same_meanwhile(client: NestorClient) -> None:
    vecs = _load(client)
    body = {"field": "tenant", "schema": "keyword"}
    r = _raw(client).put("/collections/p/index", params={"wait": "false"}, json=body)
    assert r.status_code == 200 and r.json()["result"] == {"status": "acknowledged", "created": True}
    assert client.count("p", FILTERS[0]) == N // 30  # scanned or indexed, the same answer
    deadline = time.monotonic() + 30
    while client.get_collection("p").payload_schema["tenant"].state != "ready":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert client.get_collection("p").payload_schema["tenant"].points == N
    assert "payload_scan" not in client.search("p", vecs[0], filter=FILTERS[0]).strategy
