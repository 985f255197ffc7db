"""Qdrant's filter language to Nestor's `Filter`.

Nestor's filters follow Qdrant's, so most of a filter passes through. What differs is rewritten here:
a clause given as one condition instead of a list, `min_should` (rewritten as a `should` over the
`min_count`-subsets of its conditions, up to `MAX_SUBSETS` of them), `is_empty` / `is_null` as flags of
a field condition, and point ids (UUIDs in any of their spellings). Conditions Nestor cannot evaluate
(geo, `has_vector`, phrase, prefix and `text_any` matches) are refused with a message that names them.
"""

from __future__ import annotations

import itertools
from typing import Any

from pydantic import ValidationError

from index.filters import check_filter
from nestor_client.models import Filter
from server.qdrant.ids import point_id
from server.qdrant.wire import QdrantError
from server.settings import Settings

__all__ = ["MAX_SUBSETS", "to_filter"]

MAX_SUBSETS = 64  # min_should over n conditions becomes C(n, min_count) conjunctions
_CLAUSES = ("must", "should", "must_not")
_UNSUPPORTED_FIELD = ("geo_bounding_box", "geo_radius", "geo_polygon")
_UNSUPPORTED_MATCH = ("phrase", "text_any", "prefix", "substring")


def to_filter(raw: Any, settings: Settings) -> Filter | None:
    """A Qdrant filter (JSON) as a checked Nestor filter; None for no filter."""
    if raw is None:
        return None
    try:
        flt = Filter.model_validate(_filter(raw, "filter"))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise QdrantError(f"Format error in JSON body: filter: {where}: {first['msg']}") from None
    check_filter(flt, max_depth=settings.max_filter_depth, max_conditions=settings.max_filter_conditions)
    return flt


def _filter(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise QdrantError(f"Format error in JSON body: {where} must be an object")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _CLAUSES:
            if value is None:
                continue
            items = value if isinstance(value, list) else [value]
            out[key] = [_condition(c, f"{where}.{key}") for c in items]
        elif key == "min_should":
            if value is not None:
                out.setdefault("must", []).append(_min_should(value, where))
        else:
            raise QdrantError(f"Format error in JSON body: {where}: unknown field `{key}`")
    return out


def _min_should(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict) or not isinstance(raw.get("conditions"), list):
        raise QdrantError(f"Format error in JSON body: {where}.min_should needs conditions and min_count")
    conds = [_condition(c, f"{where}.min_should") for c in raw["conditions"]]
    k = raw.get("min_count")
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise QdrantError(f"Format error in JSON body: {where}.min_should.min_count must be a non-negative integer")
    if k == 0:
        return {}  # always true: an empty filter matches every point
    if k > len(conds):
        return {"must_not": [{}]}  # never true
    subsets = list(itertools.islice(itertools.combinations(conds, k), MAX_SUBSETS + 1))
    if len(subsets) > MAX_SUBSETS:
        raise QdrantError(
            f"Bad request: min_should with {len(conds)} conditions and min_count {k} is more than Nestor "
            f"evaluates ({MAX_SUBSETS} combinations); split the filter"
        )
    return {"should": [{"must": list(s)} for s in subsets]}


def _condition(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise QdrantError(f"Format error in JSON body: {where}: a condition must be an object")
    if any(k in raw for k in (*_CLAUSES, "min_should")):
        return _filter(raw, where)
    if "has_id" in raw:
        ids = raw["has_id"]
        if not isinstance(ids, list):
            raise QdrantError(f"Format error in JSON body: {where}.has_id must be a list of ids")
        return {"has_id": [point_id(i) for i in ids]} if ids else {"must_not": [{}]}
    if "nested" in raw:
        nested = raw["nested"]
        if not isinstance(nested, dict) or "key" not in nested:
            raise QdrantError(f"Format error in JSON body: {where}.nested needs key and filter")
        return {"nested": {"key": nested["key"], "filter": _filter(nested.get("filter", {}), f"{where}.nested")}}
    if "has_vector" in raw:
        raise QdrantError("Bad request: the has_vector condition is not supported by Nestor")
    if "key" not in raw and ("is_empty" in raw or "is_null" in raw):  # `{"is_empty": {"key": k}}`
        return raw
    return _field(raw, where)


def _field(raw: dict[str, Any], where: str) -> dict[str, Any]:
    for k in _UNSUPPORTED_FIELD:
        if raw.get(k) is not None:
            raise QdrantError(f"Bad request: {k} conditions are not supported by Nestor (no geo index)")
    out = {k: v for k, v in raw.items() if v is not None}
    key = out.get("key")
    flags = [f for f in ("is_empty", "is_null") if f in out]
    for flag in flags:  # `{"key": k, "is_empty": true}`: the same as `{"is_empty": {"key": k}}`
        value = out.pop(flag)
        cond: dict[str, Any] = {flag: {"key": key}}
        if not value:
            cond = {"must_not": [cond]}
        if len(out) == 1:  # only the key left
            return cond
        return {"must": [cond, _field(out, where)]}
    match = out.get("match")
    if isinstance(match, dict):
        bad = [k for k in _UNSUPPORTED_MATCH if k in match]
        if bad:
            raise QdrantError(f"Bad request: match.{bad[0]} is not supported by Nestor (match.text is)")
    return out
