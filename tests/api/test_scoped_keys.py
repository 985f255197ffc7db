"""Scoped API keys: a key never sees or changes data outside its scope.

A property test draws a scope (per collection: no access, read or write, and no filter or a filter on the
`tenant` keyword) and a few requests (search, batch search, get, count, scroll, list, upsert, delete), and
checks each answer two ways: against a model of the data kept in Python (which points the scope may see),
and against what an unscoped admin key gets for the same request with the scope's filter ANDed in by hand.
After every write the whole store, read by the admin key, must equal the model: a refused write changed
nothing, and an allowed one changed only points inside the scope.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from server.app import create_app
from server.auth import KeyRing, hash_key
from server.settings import Settings

ADMIN = "key-admin-scoped-tests-0123"
SCOPED_COLLECTIONS = ("a", "b")  # "a" has a keyword index on tenant (the indexed filter path), "b" not (SQL)
ALL = ("a", "b", "c")  # "c" is in no key's scope
TENANTS = ("x", "y", "z")
N = 24  # canonical points 0..23; requests use ids 0..31
IDS = st.integers(0, 31)

Tenant = str | None
# A collection's scope: (access or None, the tenants its filter allows or None for no filter)
ScopeSpec = tuple[str | None, tuple[str, ...] | None]
_SCOPE_CHOICES: list[ScopeSpec] = [(None, None)] + [
    (access, flt) for access in ("read", "write") for flt in (None, ("x",), ("x", "y"))
]
COMBOS: list[tuple[ScopeSpec, ScopeSpec]] = [(a, b) for a in _SCOPE_CHOICES for b in _SCOPE_CHOICES]


def _tenant_filter(tenants: tuple[str, ...]) -> dict[str, Any]:
    match = {"value": tenants[0]} if len(tenants) == 1 else {"any": list(tenants)}
    return {"must": [{"key": "tenant", "match": match}]}


def _entry(i: int, combo: tuple[ScopeSpec, ScopeSpec]) -> dict[str, Any]:
    collections: dict[str, str] = {}
    filters: dict[str, Any] = {}
    for name, (access, flt) in zip(SCOPED_COLLECTIONS, combo, strict=True):
        if access is not None:
            collections[name] = access
            if flt is not None:
                filters[name] = _tenant_filter(flt)
    if not collections:
        collections = {"d": "read"}  # a collection that does not exist: the key reaches no data
    return {"sha256": hash_key(f"scoped-{i}"), "collections": collections, "filter": filters, "name": f"combo {i}"}


def _canonical(i: int) -> tuple[Tenant, list[float]]:
    return ([*TENANTS, None][i % 4], [float(i % 5), float(i // 5), float((i * 7) % 3), 0.5])


def _payload(t: Tenant) -> dict[str, Any]:
    return {"tenant": t} if t is not None else {"other": 1}


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("scoped")
    keys = tmp / "keys"
    lines = [f"admin:{hash_key(ADMIN)}"] + [json.dumps(_entry(i, c)) for i, c in enumerate(COMBOS)]
    keys.write_text("\n".join(lines) + "\n")
    settings_ = Settings(data_dir=tmp / "data", index_save_idle_seconds=0.2, api_keys_file=keys)  # type: ignore[call-arg]
    with TestClient(create_app(settings_)) as client:
        for name in ALL:
            r = client.put(f"/collections/{name}", json={"dim": 4, "metric": "l2"}, headers={"api-key": ADMIN})
            assert r.status_code == 200, r.text
        r = client.put(
            "/collections/a/index", json={"field_name": "tenant", "field_schema": "keyword"}, headers={"api-key": ADMIN}
        )
        assert r.status_code == 200, r.text
        yield client


class World:
    """The data as it should be, and the scope of the key under test. Each example starts from the
    canonical points (rewritten only after an example that changed them)."""

    dirty = True

    def __init__(self, http: TestClient, combo_index: int) -> None:
        self.http = http
        self.key = f"scoped-{combo_index}"
        combo = COMBOS[combo_index]
        self.scope: dict[str, ScopeSpec] = {n: s for n, s in zip(SCOPED_COLLECTIONS, combo, strict=True) if s[0]}
        self.points: dict[str, dict[int, tuple[Tenant, list[float]]]] = {}
        for name in ALL:
            if World.dirty:
                self._admin("POST", f"/collections/{name}/points/delete", {"ids": list(range(N, 32))})
                pts = [{"id": i, "vector": _canonical(i)[1], "payload": _payload(_canonical(i)[0])} for i in range(N)]
                self._admin("PUT", f"/collections/{name}/points", {"points": pts})
            self.points[name] = {i: _canonical(i) for i in range(N)}
        World.dirty = False

    # -- the two views ------------------------------------------------------------------------

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        r = self.http.request(method, path, json=body, headers={"api-key": ADMIN})
        assert r.status_code == 200, f"admin {method} {path}: {r.status_code} {r.text}"
        return r.json()["result"]

    def scoped(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        r = self.http.request(method, path, json=body, headers={"authorization": f"Bearer {self.key}"})
        assert r.status_code in (200, 403), f"{method} {path}: {r.status_code} {r.text}"
        return r.status_code, r.json().get("result")

    # -- the model ------------------------------------------------------------------------------

    def access(self, name: str) -> str | None:
        return self.scope.get(name, (None, None))[0]

    def in_scope(self, name: str, t: Tenant) -> bool:
        access, flt = self.scope.get(name, (None, None))
        return access is not None and (flt is None or t in flt)

    def scope_filter(self, name: str) -> dict[str, Any] | None:
        flt = self.scope.get(name, (None, None))[1]
        return _tenant_filter(flt) if flt is not None else None

    def combined(self, name: str, req: dict[str, Any] | None) -> dict[str, Any] | None:
        scope = self.scope_filter(name)
        if scope is None or req is None:
            return scope or req
        return {"must": [scope, req]}

    def visible(self, name: str, req: ReqFilter) -> list[int]:
        """Ids the key may see in `name` that match the request's filter, ascending."""
        return sorted(i for i, (t, _) in self.points[name].items() if self.in_scope(name, t) and req.matches(t))

    def check_store(self) -> None:
        """The admin key's view of every collection equals the model."""
        for name in ALL:
            got = self._admin(
                "POST", f"/collections/{name}/points/scroll", {"limit": 100, "with_payload": True, "with_vector": True}
            )
            assert got["next_page_offset"] is None
            want = {i: (_payload(t), v) for i, (t, v) in self.points[name].items()}
            have = {p["id"]: (p["payload"], p["vector"]) for p in got["points"]}
            assert have.keys() == want.keys(), f"{name}: ids differ"
            for i, (payload, vec) in want.items():
                assert have[i][0] == payload, f"{name}/{i}: payload"
                assert have[i][1] == pytest.approx(vec), f"{name}/{i}: vector"


class ReqFilter:
    """A request filter on tenant: none, `any` of some tenants, or `must_not any` of them."""

    def __init__(self, kind: str, tenants: tuple[str, ...]) -> None:
        self.kind, self.tenants = kind, tenants

    def matches(self, t: Tenant) -> bool:
        if self.kind == "none":
            return True
        inside = t in self.tenants
        return inside if self.kind == "any" else not inside

    def json(self) -> dict[str, Any] | None:
        if self.kind == "none":
            return None
        cond = {"key": "tenant", "match": {"any": list(self.tenants)}}
        return {"must": [cond]} if self.kind == "any" else {"must_not": [cond]}


REQ_FILTERS = st.builds(
    ReqFilter,
    st.sampled_from(["none", "any", "not"]),
    st.lists(st.sampled_from(TENANTS), min_size=1, max_size=3, unique=True).map(tuple),
)
SOME_REQ_FILTER = st.builds(
    ReqFilter,
    st.sampled_from(["any", "not"]),
    st.lists(st.sampled_from(TENANTS), min_size=1, max_size=3, unique=True).map(tuple),
)
VECTORS = st.lists(st.integers(-4, 4).map(float), min_size=4, max_size=4)


# -- the operations: each returns after checking its answer -------------------------------------------


def op_search(w: World, d: st.DataObject, name: str) -> None:
    req = d.draw(REQ_FILTERS)
    n = d.draw(st.integers(1, 2))
    searches: list[dict[str, Any]] = [
        {
            "vector": d.draw(VECTORS),
            "limit": d.draw(st.integers(1, 30)),
            "filter": req.json(),
            "params": {"exact": True},
        }
        for _ in range(n)
    ]
    path = f"/collections/{name}/points/search" + ("/batch" if n > 1 else "")
    status, got = w.scoped("POST", path, {"searches": searches} if n > 1 else searches[0])
    if w.access(name) is None:
        assert status == 403
        return
    assert status == 200
    results = got if n > 1 else [got]
    allowed = set(w.visible(name, req))
    for s, hits in zip(searches, results, strict=True):
        ids = [h["id"] for h in hits]
        assert set(ids) <= allowed, f"search saw points outside the scope: {set(ids) - allowed}"
        assert len(ids) == min(s["limit"], len(allowed))
        admin = w._admin("POST", f"/collections/{name}/points/search", {**s, "filter": w.combined(name, req.json())})
        assert ids == [h["id"] for h in admin]


def op_get(w: World, d: st.DataObject, name: str) -> None:
    ids = d.draw(st.lists(IDS, max_size=8, unique=True))
    status, got = w.scoped("POST", f"/collections/{name}/points/get", {"ids": ids, "with_payload": True})
    if w.access(name) is None:
        assert status == 403
        return
    assert status == 200
    allowed = set(w.visible(name, ReqFilter("none", ())))
    assert [p["id"] for p in got] == [i for i in ids if i in allowed]
    for p in got:
        assert p["payload"] == _payload(w.points[name][p["id"]][0])


def op_count(w: World, d: st.DataObject, name: str) -> None:
    req = d.draw(REQ_FILTERS)
    status, got = w.scoped("POST", f"/collections/{name}/points/count", {"filter": req.json()})
    if w.access(name) is None:
        assert status == 403
        return
    assert status == 200
    assert got["count"] == len(w.visible(name, req))
    admin = w._admin("POST", f"/collections/{name}/points/count", {"filter": w.combined(name, req.json())})
    assert got["count"] == admin["count"]


def op_scroll(w: World, d: st.DataObject, name: str) -> None:
    req = d.draw(REQ_FILTERS)
    limit = d.draw(st.integers(1, 10))
    offset = d.draw(st.one_of(st.none(), IDS))
    body = {"filter": req.json(), "limit": limit, "offset": offset}
    status, got = w.scoped("POST", f"/collections/{name}/points/scroll", body)
    if w.access(name) is None:
        assert status == 403
        return
    assert status == 200
    rest = [i for i in w.visible(name, req) if offset is None or i >= offset]
    assert [p["id"] for p in got["points"]] == rest[:limit]
    assert got["next_page_offset"] == (rest[limit] if len(rest) > limit else None)
    admin = w._admin("POST", f"/collections/{name}/points/scroll", {**body, "filter": w.combined(name, req.json())})
    assert got == admin


def op_list(w: World, d: st.DataObject, name: str) -> None:
    status, got = w.scoped("GET", "/collections")
    assert status == 200
    have = {c["name"]: c["count"] for c in got["collections"]}
    assert have == {n: len(w.visible(n, ReqFilter("none", ()))) for n in SCOPED_COLLECTIONS if w.access(n)}


def op_upsert(w: World, d: st.DataObject, name: str) -> None:
    ids = d.draw(st.lists(IDS, min_size=1, max_size=5, unique=True))
    new = {i: (d.draw(st.sampled_from([*TENANTS, None])), d.draw(VECTORS)) for i in ids}
    pts = [{"id": i, "vector": v, "payload": _payload(t)} for i, (t, v) in new.items()]
    World.dirty = True  # set before the request: the next example starts clean even if this one fails
    status, _ = w.scoped("PUT", f"/collections/{name}/points", {"points": pts})
    access, flt = w.scope.get(name, (None, None))
    if access == "write" and flt is None:
        assert status == 200
        w.points[name].update(new)
    else:  # read only, out of scope, or a filter an upsert cannot be held to
        assert status == 403
    w.check_store()


def op_delete(w: World, d: st.DataObject, name: str) -> None:
    if d.draw(st.booleans()):
        ids = d.draw(st.lists(IDS, max_size=8, unique=True))
        body: dict[str, Any] = {"ids": ids}
        hit = set(ids)
        req = ReqFilter("none", ())
    else:
        req = d.draw(SOME_REQ_FILTER)
        body = {"filter": req.json()}
        hit = set(w.points[name])
    World.dirty = True
    status, got = w.scoped("POST", f"/collections/{name}/points/delete", body)
    if w.access(name) == "write":
        assert status == 200
        gone = [i for i, (t, _) in w.points[name].items() if i in hit and w.in_scope(name, t) and req.matches(t)]
        assert got["deleted"] == len(gone)
        for i in gone:
            del w.points[name][i]
    else:
        assert status == 403
    w.check_store()


OPS = [op_search, op_get, op_count, op_scroll, op_list, op_upsert, op_delete]


@settings(max_examples=150, deadline=None)
@given(data=st.data(), combo=st.integers(0, len(COMBOS) - 1))
def test_a_scoped_key_never_sees_or_changes_data_outside_its_scope(
    http: TestClient, data: st.DataObject, combo: int
) -> None:
    w = World(http, combo)
    for _ in range(data.draw(st.integers(1, 6), label="requests")):
        op = data.draw(st.sampled_from(OPS), label="op")
        name = data.draw(st.sampled_from(ALL), label="collection")
        op(w, data, name)


# -- the key format -------------------------------------------------------------------------------------


def test_json_entries_and_their_errors(tmp_path: Path) -> None:
    digest = hash_key("k")
    ring = KeyRing.parse([json.dumps({"sha256": digest, "collections": ["docs", "logs"], "role": "write"})])
    grant = ring.hashes[digest]
    assert grant.collections is not None and set(grant.collections) == {"docs", "logs"}
    assert {s.access.name for s in grant.collections.values()} == {"write"}
    with pytest.raises(ValueError, match="cannot be admin"):
        KeyRing.parse([json.dumps({"sha256": digest, "role": "admin", "collections": {"docs": "read"}})])
    with pytest.raises(ValueError, match="role read but write access"):
        KeyRing.parse([json.dumps({"sha256": digest, "role": "read", "collections": {"docs": "write"}})])
    with pytest.raises(ValueError, match="not in its collections"):
        KeyRing.parse([json.dumps({"sha256": digest, "collections": {"docs": "read"}, "filter": {"logs": {}}})])
    with pytest.raises(ValueError, match="not the key itself"):
        KeyRing.parse([json.dumps({"sha256": "plain-key", "collections": {"docs": "read"}})])
    with pytest.raises(ValueError, match="filter for collection 'docs'"):
        bad = {"must": [{"key": "t", "match": {"nope": 1}}]}
        KeyRing.parse([json.dumps({"sha256": digest, "collections": {"docs": "read"}, "filter": {"docs": bad}})])
    with pytest.raises(ValueError, match="collections is empty"):
        KeyRing.parse([json.dumps({"sha256": digest, "collections": {}})])
    # NESTOR_API_KEYS takes a JSON array; a keys file mixes JSON lines, comments and role:sha256 lines.
    env = json.dumps([{"sha256": digest, "collections": {"docs": "read"}}])
    assert KeyRing.from_settings(env, None, "auto").hashes[digest].scoped
    keys = tmp_path / "keys"
    keys.write_text(
        f"# ops\nadmin:{hash_key('a')},read:{hash_key('r')}\n"
        + json.dumps({"sha256": digest, "collections": {"docs": "read"}, "name": "tenant #7"})
        + "\n"
    )
    ring = KeyRing.from_settings("", keys, "auto")
    assert ring.role_of("a") is not None and ring.role_of("r") is not None
    scoped = ring.grant_of("k")
    assert scoped is not None and scoped.scoped and not ring.hashes[hash_key("a")].scoped


def test_the_scope_filter_does_not_count_against_the_request_limits(http: TestClient) -> None:
    """A request filter at max_filter_depth still runs under a filtered scope (the scope adds a level)."""
    combo = COMBOS.index((("read", ("x",)), (None, None)))
    World(http, combo)
    flt: dict[str, Any] = {"must": [{"key": "tenant", "match": {"any": ["x", "y"]}}]}
    for _ in range(Settings().max_filter_depth - 1):
        flt = {"must": [flt]}
    key = {"api-key": f"scoped-{combo}"}
    r = http.post("/collections/a/points/count", json={"filter": flt}, headers=key)
    assert r.status_code == 200, r.text
    assert r.json()["result"]["count"] == N // 4  # tenant x only: the scope still applies
    r = http.post("/collections/a/points/count", json={"filter": {"must": [flt]}}, headers=key)
    assert r.status_code == 422  # one level more is the request's own excess
    r = http.post(
        "/collections/a/points/search", json={"vector": [0, 0, 0, 0], "limit": 30, "filter": flt}, headers=key
    )
    assert r.status_code == 200, r.text
    assert sorted(h["payload"]["tenant"] for h in r.json()["result"]) == ["x"] * (N // 4)
