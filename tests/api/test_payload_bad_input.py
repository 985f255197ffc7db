"""Bad input against payload indexes over REST: each a 4xx that says what is wrong, and nothing changes.

`test_payload_index.py` covers the statuses of the common cases; this adds what it leaves out: the
messages (they name the key and what it takes), a range on a keyword index and the other type
mismatches through every filtered call, unknown schema types in each body form, and the whole
collection info (count, seq, config and the per-field `payload_schema` with points and RAM) unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from nestor_client import NestorClient
from nestor_client.errors import ApiError

N = 120


@pytest.fixture
def loaded(client: NestorClient) -> NestorClient:
    client.create_collection("b", dim=4)
    vecs = np.random.default_rng(1).standard_normal((N, 4)).astype(np.float32)
    pays = [
        {
            "tenant": f"t{i % 4}",
            "cat": i % 5,
            "score": i / N,
            "ok": i % 2 == 0,
            "at": f"2024-02-{1 + i % 28:02d}T08:00:00Z",
        }
        for i in range(N)
    ]
    client.upsert("b", ids=list(range(N)), vectors=vecs, payloads=pays)
    for key, schema in (
        ("tenant", "keyword"),
        ("cat", "integer"),
        ("score", "float"),
        ("ok", "bool"),
        ("at", "datetime"),
    ):
        assert client.create_payload_index("b", key, schema)
    return client


def _snapshot(c: NestorClient) -> tuple[Any, ...]:
    info = c.get_collection("b")
    schema = {k: (v.data_type, v.state, v.points, v.ram) for k, v in info.payload_schema.items()}
    return info.count, info.seq, dict(info.config.payload_schema), schema


# (filter, words the message must contain: the key, and what the key takes or what is wrong)
BAD_FILTERS: list[tuple[dict[str, Any], list[str]]] = [
    ({"must": [{"key": "cat", "match": {"value": "3"}}]}, ["cat", "integer"]),
    ({"must": [{"key": "cat", "match": {"any": [1, "two"]}}]}, ["cat", "integer"]),
    ({"must": [{"key": "tenant", "range": {"gte": 1}}]}, ["tenant", "range"]),
    ({"must": [{"key": "tenant", "match": {"value": 7}}]}, ["tenant", "string"]),
    ({"must": [{"key": "ok", "match": {"value": "yes"}}]}, ["ok", "bool"]),
    ({"must": [{"key": "score", "match": {"value": 1}}]}, ["score", "range"]),
    ({"should": [{"must_not": [{"key": "cat", "match": {"value": "deep"}}]}]}, ["cat", "integer"]),
    ({"must": [{"key": "at", "range": {"gte": "2024-13-45T99:00:00Z"}}]}, ["at", "RFC 3339"]),
    ({"must": [{"key": "at", "range": {"lt": "last tuesday"}}]}, ["at", "RFC 3339"]),
]


@pytest.mark.parametrize(("flt", "words"), BAD_FILTERS, ids=[str(i) for i in range(len(BAD_FILTERS))])
def test_a_filter_that_does_not_fit_the_index_is_a_clear_422(
    loaded: NestorClient, flt: dict[str, Any], words: list[str]
) -> None:
    c = loaded
    before = _snapshot(c)
    calls: dict[str, Callable[[], object]] = {
        "count": lambda: c.count("b", flt),
        "search": lambda: c.search("b", np.ones(4, np.float32), filter=flt),
        "search exact": lambda: c.search("b", np.ones(4, np.float32), filter=flt, params={"exact": True}),
        "delete": lambda: c.delete("b", filter=flt),
        "scroll": lambda: c.scroll("b", filter=flt),
    }
    for what, call in calls.items():
        with pytest.raises(ApiError) as err:
            call()
        assert err.value.status == 422, (what, err.value)
        text = err.value.message.lower()
        assert all(w.lower() in text for w in words), (what, err.value.message)
    assert _snapshot(c) == before


BAD_PUTS: list[dict[str, Any]] = [
    {"field": "x", "schema": "geo"},
    {"field_name": "x", "field_schema": "geo"},
    {"field_name": "x", "field_schema": {"type": "vector"}},
    {"field_name": "x", "field_schema": "KEYWORD "},
    {"field_name": "x", "field_schema": 3},
    {"field_name": "cat", "field_schema": "nope"},  # an indexed key: its index stays as it is
]
TYPES = ["keyword", "integer", "float", "bool", "datetime", "uuid", "text"]


@pytest.mark.parametrize("body", BAD_PUTS, ids=[str(i) for i in range(len(BAD_PUTS))])
def test_an_unknown_schema_type_is_a_clear_422(loaded: NestorClient, body: dict[str, Any]) -> None:
    c = loaded
    before = _snapshot(c)
    http: Any = c._http  # the TestClient underneath, for bodies the client does not build
    r = http.put("/collections/b/index", json=body)
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert "schema" in message and all(f"'{t}'" in message for t in TYPES), message  # it lists what is allowed
    assert _snapshot(c) == before
    assert c.count("b", {"must": [{"key": "cat", "match": {"value": 3}}]}) == N // 5
    assert (
        "payload_scan"
        not in c.search("b", np.ones(4, np.float32), filter={"must": [{"key": "cat", "match": {"value": 3}}]}).strategy
    )
