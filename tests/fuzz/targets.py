"""The collections fuzz cases aim at: a tiny one, and a realistic one that half the cases hit.

`fuzz` has one unnamed 4-dimensional vector and no data. `fuzz384` looks like a real deployment:
named vectors (the default `""` of dimension 384 with HNSW, and a 64-dimensional `title`), payload
indexes on a few keys, and some points, so searches, filters, scrolls and counts reach real code.
Generated vectors have random lengths; `fit_vectors` resizes them to the target's dimensions, so a
positive case gets past the dimension check and into the engine.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nestor_client.models import CollectionConfig

__all__ = ["REAL", "SMALL", "ensure_targets", "fit_vectors"]

SMALL = "fuzz"
REAL = "fuzz384"
DIMS = {"": 384, "title": 64}  # REAL's vectors
SEED_POINTS = 64
CONFIGS = {
    SMALL: CollectionConfig(dim=4),
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
