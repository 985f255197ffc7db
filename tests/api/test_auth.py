"""API keys and roles: the 401/403 matrix over every route of the app, enumerated from `app.routes`,
for unscoped keys (one per role) and scoped keys (in scope with read or write access, with and without a
payload filter, and out of scope)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import RouteContext, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Mount

from nestor_client import NestorClient
from nestor_client.errors import Forbidden, Unauthorized
from server.app import create_app
from server.auth import PUBLIC_PATHS, KeyRing, Role, hash_key, route_role
from server.settings import Settings

KEYS = {Role.read: "key-read-0123456789", Role.write: "key-write-0123456789", Role.admin: "key-admin-0123456789"}
ENTRIES = ",".join(f"{role.name}:{hash_key(key)}" for role, key in KEYS.items())
TENANT_A = {"must": [{"key": "tenant", "match": {"value": "a"}}]}
# Scoped keys, by kind: r/w in-scope read/write, rf/wf the same under a payload filter, out: another collection.
SCOPED: dict[str, tuple[str, dict[str, Any]]] = {
    "r": ("key-scoped-r-0123456789", {"collections": {"auth-matrix": "read"}}),
    "w": ("key-scoped-w-0123456789", {"collections": {"auth-matrix": "write", "other": "read"}}),
    "rf": ("key-scoped-rf-0123456789", {"collections": {"auth-matrix": "read"}, "filter": {"auth-matrix": TENANT_A}}),
    "wf": ("key-scoped-wf-0123456789", {"collections": {"auth-matrix": "write"}, "filter": {"auth-matrix": TENANT_A}}),
    "out": ("key-scoped-out-0123456789", {"collections": {"other": "write"}}),
}
C = "/collections/{name}"
# Which scoped kinds each route lets through (an explicit table, not derived from the routes' own metadata;
# a route missing here fails the test). Out-of-scope keys only list collections (and see none of them).
SCOPED_ALLOWED: dict[tuple[str, str], set[str]] = {
    ("GET", "/collections"): {"r", "w", "rf", "wf", "out"},
    ("PUT", C): set(),
    ("GET", C): {"r", "w"},  # collection info counts every point: not under a filter
    ("DELETE", C): set(),
    ("PUT", f"{C}/index"): set(),
    ("DELETE", f"{C}/index/{{field_name}}"): set(),
    ("POST", f"{C}/optimize"): set(),  # compaction: admin only
    ("PUT", f"{C}/points"): {"w"},  # an upsert cannot be held to a filter
    ("POST", f"{C}/points/delete"): {"w", "wf"},
    ("POST", f"{C}/points/get"): {"r", "w", "rf", "wf"},
    ("POST", f"{C}/points/count"): {"r", "w", "rf", "wf"},
    ("POST", f"{C}/points/scroll"): {"r", "w", "rf", "wf"},
    ("POST", f"{C}/points/search"): {"r", "w", "rf", "wf"},
    ("POST", f"{C}/points/search/batch"): {"r", "w", "rf", "wf"},
    ("POST", f"{C}/points/search/matrix"): {"r", "w", "rf", "wf"},  # the scope filter on every row
    ("POST", f"{C}/points/query"): {"r", "w", "rf", "wf"},  # the scope filter reaches every leaf
    ("POST", f"{C}/queries/sample"): {"w"},
    ("POST", "/jobs/ingest"): set(),
    ("POST", "/jobs/ingest/upload"): set(),
    ("GET", "/jobs"): set(),
    ("GET", "/jobs/{job_id}"): set(),
    ("POST", "/jobs/{job_id}/cancel"): set(),
    ("DELETE", "/jobs/{job_id}"): set(),
    ("POST", f"{C}/snapshots"): set(),
    ("GET", f"{C}/snapshots"): set(),
    ("GET", f"{C}/snapshots/{{snapshot}}"): set(),
    ("DELETE", f"{C}/snapshots/{{snapshot}}"): set(),
    ("POST", f"{C}/snapshots/restore"): set(),
    ("POST", f"{C}/snapshots/upload"): set(),
    ("GET", "/metrics"): set(),  # every collection's series
    # the Qdrant surface (server/qdrant), mounted at /qdrant: the same rules as the native routes
    ("GET", "/qdrant/collections"): {"r", "w", "rf", "wf", "out"},
    ("GET", "/qdrant/aliases"): {"r", "w", "rf", "wf", "out"},
    ("POST", "/qdrant/collections/aliases"): set(),
    ("GET", f"/qdrant{C}"): {"r", "w"},
    ("GET", f"/qdrant{C}/exists"): {"r", "w"},
    ("GET", f"/qdrant{C}/aliases"): {"r", "w"},
    ("PUT", f"/qdrant{C}"): set(),
    ("PATCH", f"/qdrant{C}"): set(),
    ("DELETE", f"/qdrant{C}"): set(),
    ("PUT", f"/qdrant{C}/index"): set(),
    ("DELETE", f"/qdrant{C}/index/{{field_name}}"): set(),
    ("PUT", f"/qdrant{C}/points"): {"w"},
    ("POST", f"/qdrant{C}/points"): {"r", "w", "rf", "wf"},
    ("GET", f"/qdrant{C}/points/{{point}}"): {"r", "w", "rf", "wf"},
    ("POST", f"/qdrant{C}/points/delete"): {"w", "wf"},
    ("POST", f"/qdrant{C}/points/scroll"): {"r", "w", "rf", "wf"},
    ("POST", f"/qdrant{C}/points/count"): {"r", "w", "rf", "wf"},
    ("POST", f"/qdrant{C}/points/payload"): {"w"},
    ("PUT", f"/qdrant{C}/points/payload"): {"w"},
    ("POST", f"/qdrant{C}/points/payload/delete"): {"w"},
    ("POST", f"/qdrant{C}/points/payload/clear"): {"w"},
    ("PUT", f"/qdrant{C}/points/vectors"): {"w"},
    ("POST", f"/qdrant{C}/points/vectors/delete"): {"w"},
    ("POST", f"/qdrant{C}/points/batch"): {"w"},
    ("POST", f"/qdrant{C}/points/query"): {"r", "w", "rf", "wf"},
    ("POST", f"/qdrant{C}/points/query/batch"): {"r", "w", "rf", "wf"},
    ("POST", f"/qdrant{C}/points/query/groups"): {"r", "w", "rf", "wf"},
    ("POST", f"/qdrant{C}/points/search"): {"r", "w", "rf", "wf"},
    ("POST", f"/qdrant{C}/points/search/batch"): {"r", "w", "rf", "wf"},
    ("POST", f"/qdrant{C}/points/recommend"): {"r", "w", "rf", "wf"},
    ("POST", f"/qdrant{C}/points/recommend/batch"): {"r", "w", "rf", "wf"},
    ("POST", f"/qdrant{C}/snapshots"): set(),
    ("GET", f"/qdrant{C}/snapshots"): set(),
    ("GET", f"/qdrant{C}/snapshots/{{snapshot}}"): set(),
    ("DELETE", f"/qdrant{C}/snapshots/{{snapshot}}"): set(),
    ("PUT", f"/qdrant{C}/snapshots/recover"): set(),
}
PARAMS = {
    "name": "auth-matrix",
    "snapshot": "no-such-snapshot",
    "job_id": "no-such-job",
    "field_name": "no-such-field",
    "point": "1",
}


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(data_dir=tmp_path / "data", index_save_idle_seconds=0.2, **overrides)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, TestClient]]:
    tmp = tmp_path_factory.mktemp("auth")
    keys_file = tmp / "keys"  # scoped keys are JSON lines; a role:sha256 line may sit beside them
    keys_file.write_text(
        "# scoped keys\n" + "".join(json.dumps({"sha256": hash_key(k), **e}) + "\n" for k, e in SCOPED.values())
    )
    app = create_app(_settings(tmp, api_keys=ENTRIES, api_keys_file=keys_file))
    # Server errors come back as responses: the matrix only asserts that auth answered as it should.
    with TestClient(app, raise_server_exceptions=False) as http:
        yield app, http


def _operations(app: FastAPI) -> list[tuple[str, str, RouteContext]]:
    """Every (method, concrete path, route) the app serves, included routers flattened."""
    return [(m, p, r) for m, p, _, r in _templated(app)]


def _templated(app: FastAPI) -> list[tuple[str, str, str, RouteContext]]:
    """Every (method, concrete path, path template, route) the app serves."""
    ops = []
    for route, template in _flattened(app.routes, ""):
        path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: PARAMS[m.group(1)], template)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            ops.append((method, path, template, route))
    return ops


def _flattened(routes: list[Any], prefix: str) -> list[tuple[RouteContext, str]]:
    """Every route with its full path template; a mounted app (the Qdrant surface) contributes its own."""
    out = []
    for route in iter_route_contexts(routes):
        if isinstance(route.route, Mount) and isinstance(route.route.app, FastAPI):
            out += _flattened(route.route.app.routes, prefix + route.route.path)
            continue
        if route.path is None or route.methods is None:  # another mount or a websocket would need an entry
            raise AssertionError(f"unexpected route {route!r}")
        out.append((route, prefix + route.path))
    return out


def _call(http: TestClient, method: str, path: str, headers: dict[str, str]) -> int:
    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
    r = http.request(method, path, content=body, headers={"content-type": "application/json", **headers})
    return r.status_code


def test_every_route_declares_a_role_or_is_public(secured: tuple[FastAPI, TestClient]) -> None:
    app, _ = secured
    undeclared = [f"{m} {p}" for m, p, route in _operations(app) if p not in PUBLIC_PATHS and route_role(route) is None]
    assert undeclared == [], "routes with neither require(role) nor a public path"


def test_401_403_matrix_over_every_route(secured: tuple[FastAPI, TestClient]) -> None:
    app, http = secured
    ops = _operations(app)
    assert len(ops) >= 20
    checked = 0
    for method, path, route in ops:
        what = f"{method} {path}"
        if path in PUBLIC_PATHS:
            assert _call(http, method, path, {}) not in (401, 403), what
            continue
        need = route_role(route)
        assert need is not None, what
        assert _call(http, method, path, {}) == 401, f"{what} without a key"
        assert _call(http, method, path, {"api-key": "not-a-key"}) == 401, f"{what} with a wrong key"
        assert _call(http, method, path, {"authorization": "Bearer not-a-key"}) == 401, what
        for role, key in KEYS.items():
            header = {"api-key": key} if role is Role.write else {"authorization": f"Bearer {key}"}
            status = _call(http, method, path, header)
            if role < need:
                assert status == 403, f"{what} with a {role.name} key: {status}"
            else:
                assert status not in (401, 403), f"{what} with a {role.name} key: {status}"
        checked += 1
    assert checked >= 15


def test_scoped_key_matrix_over_every_route(secured: tuple[FastAPI, TestClient]) -> None:
    """In-scope read, in-scope write, filtered read and write, out of scope: 403 exactly where the table says."""
    app, http = secured
    ops = [op for op in _templated(app) if op[1] not in PUBLIC_PATHS]
    served = {(m, t) for m, _, t, _ in ops}
    assert served == set(SCOPED_ALLOWED), "a route is missing from SCOPED_ALLOWED (or the table names a gone one)"
    for method, path, template, _ in ops:
        allowed = SCOPED_ALLOWED[(method, template)]
        for kind, (key, _) in SCOPED.items():
            status = _call(http, method, path, {"authorization": f"Bearer {key}"})
            what = f"{method} {path} with a scoped {kind} key: {status}"
            if kind in allowed:
                assert status not in (401, 403), what
            else:
                assert status == 403, what
    # The same key on a collection outside its scope is 403 on every collection route (named or not).
    key = SCOPED["w"][0]
    for method, path, template, _ in ops:
        if "{name}" in template:
            outside = path.replace("/collections/auth-matrix", "/collections/elsewhere")
            status = _call(http, method, outside, {"api-key": key})
            assert status == 403, f"{method} {outside} out of scope: {status}"


def test_roles_match_the_issue(secured: tuple[FastAPI, TestClient]) -> None:
    app, _ = secured
    roles = {(m, p): route_role(r) for m, p, r in _operations(app)}
    c = "/collections/auth-matrix"
    assert roles[("POST", f"{c}/points/search")] is Role.read
    assert roles[("POST", f"{c}/points/get")] is Role.read
    assert roles[("POST", f"{c}/points/count")] is Role.read
    assert roles[("GET", c)] is Role.read
    assert roles[("PUT", f"{c}/points")] is Role.write
    assert roles[("POST", f"{c}/points/delete")] is Role.write
    assert roles[("GET", "/jobs")] is Role.write
    assert roles[("PUT", c)] is Role.admin
    assert roles[("DELETE", c)] is Role.admin
    assert roles[("POST", f"{c}/snapshots")] is Role.admin
    assert roles[("PUT", f"{c}/index")] is Role.admin
    assert roles[("DELETE", f"{c}/index/no-such-field")] is Role.admin
    assert roles[("POST", f"{c}/optimize")] is Role.admin


def test_unauthenticated_body_is_not_read(secured: tuple[FastAPI, TestClient]) -> None:
    _, http = secured
    # Announced as far over max_body_bytes and not valid JSON: the gate answers 401 before either matters.
    r = http.put("/collections/x/points", content=b"not json", headers={"content-type": "application/json"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["error"]["type"] == "unauthorized"


def test_clients_send_the_key(secured: tuple[FastAPI, TestClient]) -> None:
    _, http = secured
    with pytest.raises(Unauthorized):
        NestorClient(http_client=http).list_collections()  # type: ignore[arg-type]
    reader = NestorClient(http_client=http, api_key=KEYS[Role.read])  # type: ignore[arg-type]
    assert reader.list_collections() == []
    with pytest.raises(Forbidden, match="needs the admin role"):
        reader.create_collection("nope", dim=4)
    admin = NestorClient(http_client=http, api_key=KEYS[Role.admin])  # type: ignore[arg-type]
    admin.create_collection("keyed", dim=4)
    assert [c.name for c in reader.list_collections()] == ["keyed"]
    admin.delete_collection("keyed")


def test_auth_off_is_admin_for_everyone_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="nestor.server"):
        with TestClient(create_app(_settings(tmp_path))) as http:
            c = NestorClient(http_client=http)  # type: ignore[arg-type]
            c.create_collection("open", dim=4)
            assert [s.name for s in c.list_collections()] == ["open"]
    assert any("auth is OFF" in r.getMessage() for r in caplog.records)
    # Keys configured but auth forced off: still open (local debugging), and still announced.
    with TestClient(create_app(_settings(tmp_path, api_keys=ENTRIES, auth="off"))) as http:
        assert http.get("/collections").status_code == 200


def test_keys_file_and_bad_entries(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"# operators\nadmin:{hash_key('from-file')}\n\nread:sha256:{hash_key('r')}  # dashboards\n")
    with TestClient(create_app(_settings(tmp_path, api_keys_file=keys))) as http:
        assert http.get("/collections", headers={"api-key": "from-file"}).status_code == 200
        assert http.get("/collections", headers={"api-key": "r"}).status_code == 200
        assert http.get("/collections", headers={"api-key": "nope"}).status_code == 401
        assert http.get("/healthz").status_code == 200  # probes need no key
        assert http.get("/readyz").status_code == 200
    with pytest.raises(ValueError, match="not the key itself"):
        KeyRing.parse(["admin:plaintext-key"])
    with pytest.raises(ValueError, match="role one of"):
        KeyRing.parse([f"root:{hash_key('x')}"])
    with pytest.raises(ValueError, match="no API keys"):
        KeyRing.parse([], mode="on")
    assert not KeyRing.parse([]).enabled
