"""The collections fuzz cases aim at: a tiny one, and a realistic one that half the cases hit.

`fuzz` has one unnamed 4-dimensional vector and no data. `fuzz384` looks like a real deployment:
named vectors (the default `""` of dimension 384 with HNSW, and a 64-dimensional `title`), payload
indexes on a few keys, and some points, so searches, filters, scrolls and counts reach real code.
Generated vectors have random lengths; `fit_vectors` resizes them to the target's dimensions, so a
positive case gets past the dimension check and into the engine. `fit_body` also settles the rules the
schema cannot state (exactly one of `vector`, `text` or `multivector`; of `points` or `batch`; of `ids` or
`filter`; of `vectors` or `texts`), and turns ids that are neither integers nor UUIDs into seeded ids, so
that a schema-valid case is also a valid request most of the time instead of a 422 at the first check.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nestor_client.models import CollectionConfig

__all__ = ["DIMS", "REAL", "SMALL", "SMALL_DIM", "ensure_snapshot", "ensure_targets", "fit_body", "fit_vectors"]

SMALL = "fuzz"
REAL = "fuzz384"
DIMS = {"": 384, "title": 64}  # REAL's vectors
SMALL_DIM = 4
SEED_POINTS = 64
CONFIGS = {
    SMALL: CollectionConfig(dim=SMALL_DIM),
    REAL: CollectionConfig.model_validate(
        {
            "vectors": {
                "": {"dim": DIMS[""], "metric": "cosine", "index": {"type": "hnsw", "m": 16}},
                "title": {"dim": DIMS["title"], "metric": "dot"},
            },
            "payload_schema": {"lang": "keyword", "year": "integer", "price": "float", "tags": "keyword"},
        }
    ),
}


def ensure_targets(app: Any) -> None:
    """(Re)create both targets, as a case may have deleted one; seed the realistic one with points."""
    catalog = getattr(app.state, "catalog", None)
    if catalog is None:
        return
    names = set(catalog.names())
    for name, config in CONFIGS.items():
        if name in names:
            continue
        coll, _ = catalog.create(name, config)
        if name == REAL:
            rng = np.random.default_rng(0)
            vectors = {f: rng.standard_normal((SEED_POINTS, d)).astype(np.float32) for f, d in DIMS.items()}
            payloads: list[dict[str, Any] | None] = [
                {"lang": ["en", "de", "fr"][i % 3], "year": 1990 + i % 30, "price": i / 4, "tags": [f"t{i % 5}"]}
                for i in range(SEED_POINTS)
            ]
            coll.upsert(list(range(SEED_POINTS)), vectors, payloads)


def ensure_snapshot(app: Any) -> str | None:
    """The name of a snapshot of the realistic target (taken when there is none), for cases on a snapshot."""
    catalog = getattr(app.state, "catalog", None)
    if catalog is None or REAL not in set(catalog.names()):
        return None
    store = getattr(app.state, "snapshots", None)
    if store is None:
        from index.snapshots import SnapshotStore  # as server/api/snapshots.py builds it on first use

        store = app.state.snapshots = SnapshotStore(catalog.data_dir)
    listed = store.list(REAL)
    return listed[-1].name if listed else store.create(catalog.get(REAL)).name


def _vector(dim: int, salt: int) -> list[float]:
    return [((j * 7919 + salt * 104729) % 211) / 211 - 0.5 for j in range(dim)]


def _numbers(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)


def fit_vectors(body: Any, default_dim: int = DIMS[""]) -> Any:
    """`body` with every `vector` (a list, or `{name: list}`) and `vectors` (a list of them) resized."""
    if isinstance(body, list):
        return [fit_vectors(x, default_dim) for x in body]
    if not isinstance(body, dict):
        return body
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key == "vector" and _numbers(value):
            out[key] = _vector(default_dim, len(value))
        elif key == "vector" and isinstance(value, dict):
            out[key] = {n: _vector(DIMS[n], len(v)) if n in DIMS and _numbers(v) else v for n, v in value.items()}
        elif key == "vectors" and isinstance(value, list) and all(_numbers(v) for v in value):
            out[key] = [_vector(default_dim, len(v)) for v in value]
        else:
            out[key] = fit_vectors(value, default_dim)
    return out


# Keys of which a request takes exactly one, the one kept first. The realistic target has no encoder and
# no multivector field, so `text`, `texts` and `multivector` become vectors.
_ONE_OF = [("vector", "multivector", "text"), ("points", "batch"), ("ids", "filter"), ("vectors", "texts")]
# Where the schema leaves out a key that the request needs one of: the route, and the path to the dicts.
_NEEDS: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "/collections/{name}/points/search": [("vector", ())],
    "/collections/{name}/points/search/batch": [("vector", ("searches", "*"))],
    "/collections/{name}/points": [("points", ()), ("vector", ("points", "*"))],
    "/collections/{name}/points/delete": [("ids", ())],
    "/collections/{name}/queries/sample": [("vectors", ())],
}
_LIMITS = {"limit": 100, "offset": 100}  # past max_search_limit a search is refused (422) at once


def _fit_id(pid: Any, salt: int) -> Any:
    if isinstance(pid, int) and not isinstance(pid, bool) and pid >= 0:
        return pid % (2 * SEED_POINTS)  # half of them seeded points
    return salt % (2 * SEED_POINTS)


def _filler(key: str, dim: int) -> Any:
    if key == "vector":
        return _vector(dim, 1)
    if key == "vectors":
        return [_vector(dim, i) for i in range(2)]
    if key == "points":
        return [{"id": SEED_POINTS + 1, "vector": _vector(dim, 3), "payload": {"lang": "en"}}]
    return [1]  # ids


def _settle(d: dict[str, Any], dim: int, needs: set[str]) -> dict[str, Any]:
    for group in _ONE_OF:
        present = [k for k in group if d.get(k) is not None]  # an explicit null counts as left out
        if not present and group[0] not in needs:
            continue
        keep = present[0] if present else group[0]
        if not present or (group[0] in ("vector", "vectors") and keep != group[0]):
            keep = group[0]
            d[keep] = _filler(keep, dim)
        for k in group:
            if k != keep:
                d.pop(k, None)
    if isinstance(d.get("ids"), list):
        d["ids"] = [_fit_id(pid, i) for i, pid in enumerate(d["ids"])]
    for key, cap in _LIMITS.items():
        if isinstance(d.get(key), int) and not isinstance(d[key], bool) and d[key] > cap:
            d[key] %= cap + 1
    return d


def _walk(body: Any, dim: int, needs: dict[tuple[str, ...], set[str]], at: tuple[str, ...]) -> Any:
    if isinstance(body, list):
        return [_walk(x, dim, needs, (*at, "*")) for x in body]
    if not isinstance(body, dict):
        return body
    out = {k: _walk(v, dim, needs, (*at, k)) for k, v in body.items()}
    return _settle(out, dim, needs.get(at, set()))


def fit_body(body: Any, route: str, default_dim: int = DIMS[""]) -> Any:
    """`fit_vectors(body)`, and the one-of rules, ids and limits above settled, for a case of `route`."""
    needs: dict[tuple[str, ...], set[str]] = {}
    for key, where in _NEEDS.get(route, []):
        needs.setdefault(where, set()).add(key)
    if body is None and () in needs:
        body = {}
    out = _walk(fit_vectors(body, default_dim), default_dim, needs, ())
    if route.endswith("/points/query") and isinstance(out, dict) and out.get("query") is None:
        out["query"] = _vector(default_dim, 2)  # the schema leaves it optional; without a prefetch it is not
    return out
