"""`is_tenant` on keyword payload indexes over REST: the schema's object form, in info, at creation, on restart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nestor_client import NestorClient

N = 120


def _load(c: NestorClient) -> None:
    c.create_collection("t", dim=4)
    pays = [{"tenant": f"t{i % 6}", "cat": i % 4} for i in range(N)]
    c.upsert("t", ids=list(range(N)), vectors=np.ones((N, 4), np.float32), payloads=pays)


def _tenancy(c: NestorClient) -> dict[str, tuple[str, bool]]:
    return {k: (v.data_type, v.is_tenant) for k, v in c.get_collection("t").payload_schema.items()}


def test_is_tenant_in_the_schema_object_and_in_info(server: Callable[..., Any]) -> None:
    with server() as c:
        _load(c)
        http = c._http
        r = http.put("/collections/t/index", json={"field": "tenant", "schema": {"type": "keyword", "is_tenant": True}})
        assert r.status_code == 200 and r.json()["result"]["created"] is True
        assert c.create_payload_index("t", "cat", {"type": "integer"})  # the object form without is_tenant
        assert _tenancy(c) == {"tenant": ("keyword", True), "cat": ("integer", False)}
        assert c.get_collection("t").config.payload_schema["cat"] == "integer"  # stored in its plain form
        assert c.count("t", {"must": [{"key": "tenant", "match": {"value": "t2"}}]}) == N // 6
        # the same again changes nothing; dropping is_tenant is a change, recorded without a rebuild
        assert not c.create_payload_index("t", "tenant", "keyword", is_tenant=True)
        assert c.create_payload_index("t", "tenant", "keyword")
        assert _tenancy(c)["tenant"] == ("keyword", False)
        assert c.get_collection("t").payload_schema["tenant"].state == "ready"
        assert c.create_payload_index("t", "tenant", {"type": "keyword", "is_tenant": True})
        assert c.create_payload_index("t", "cat", {"type": "integer", "value_graphs": True})  # no rebuild
        assert c.get_collection("t").payload_schema["cat"].value_graphs
        assert c.create_payload_index("t", "cat", "integer")
        assert not c.get_collection("t").payload_schema["cat"].value_graphs
    with server() as c:  # persisted in collection.json
        assert _tenancy(c) == {"tenant": ("keyword", True), "cat": ("integer", False)}
        assert c.get_collection("t").payload_schema["tenant"].points == N


def test_bad_tenant_schemas_are_422_and_change_nothing(client: NestorClient) -> None:
    _load(client)
    client.create_payload_index("t", "tenant", "keyword", is_tenant=True)
    before = client.get_collection("t")
    http = client._http
    for schema in (
        {"type": "integer", "is_tenant": True},  # only keyword indexes hold tenants
        {"type": "float", "value_graphs": True},  # only keyword and integer values get graphs
        {"type": "text", "value_graphs": True},
        {"type": "keyword", "is_tenant": "yes please"},
        {"type": "keyword", "is_tenant": True, "extra": 1},
        {"is_tenant": True},
        {"type": "geo"},
    ):
        r = http.put("/collections/t/index", json={"field": "cat", "schema": schema})
        assert r.status_code == 422, schema
        r = http.put("/collections/u", json={"dim": 4, "payload_schema": {"cat": schema}})
        assert r.status_code == 422, schema
    after = client.get_collection("t")
    assert after.config.payload_schema == before.config.payload_schema
    assert _tenancy(client) == {"tenant": ("keyword", True)}
    assert [c.name for c in client.list_collections()] == ["t"]


def test_payload_schema_at_creation_takes_the_object_form(client: NestorClient) -> None:
    body = {"dim": 4, "payload_schema": {"tenant": {"type": "keyword", "is_tenant": True}, "cat": "integer"}}
    assert client._http.put("/collections/t", json=body).status_code == 200
    client.upsert("t", ids=[1, 2], vectors=np.ones((2, 4), np.float32), payloads=[{"tenant": "a"}, {"tenant": "b"}])
    assert _tenancy(client) == {"tenant": ("keyword", True), "cat": ("integer", False)}
    assert client.get_collection("t").payload_schema["tenant"].points == 2
