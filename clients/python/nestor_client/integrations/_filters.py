"""The `filter=` of a framework call, as a Nestor filter over the metadata kept under one payload key.

Two forms are accepted:
- Nestor's own filter (`must`/`should`/`must_not`, a `nestor_client.models.Filter` or its dict), passed
  through unchanged: its keys name payload paths, so metadata keys are written `metadata.<key>`;
- a dict of metadata conditions, `{"genre": "sf", "year": {"$gte": 1990}}`, every entry required:
  a scalar or `None` is an equality (`None`: the key is present and null), a list means any of its
  values, and a dict of operators (`$eq`, `$ne`, `$in`, `$nin`, `$gt`, `$gte`, `$lt`, `$lte`) compares;
  a dict without operators matches a nested object key by key. `$ne` and `$nin` also match points
  without the key.

No framework is imported here, so the translation is tested on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nestor_client.filters import Filter

__all__ = ["metadata_filter"]

_NESTOR_KEYS = frozenset({"must", "should", "must_not"})
_RANGE_OPS = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}
_OPS = frozenset({"$eq", "$ne", "$in", "$nin", *_RANGE_OPS})


def metadata_filter(filter: Filter | Mapping[str, Any] | None, metadata_key: str) -> Any:
    """The Nestor filter for `filter`, or None for no filter. Raises ValueError on a form it cannot map."""
    if filter is None or isinstance(filter, Filter):
        return filter
    if not isinstance(filter, Mapping):
        raise ValueError(f"filter must be a dict or a nestor_client Filter, not {type(filter).__name__}")
    if not filter:
        return None
    if _NESTOR_KEYS.issuperset(filter):
        return dict(filter)  # Nestor's own language: the server validates it
    must: list[dict[str, Any]] = []
    for key, value in filter.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"a metadata filter key must be a non-empty string, not {key!r}")
        must.extend(_conditions(f"{metadata_key}.{key}", value))
    return {"must": must}


def _conditions(path: str, value: Any) -> list[dict[str, Any]]:
    """The conditions, all required, that `path` holds `value` (a scalar, a list, operators or an object)."""
    if isinstance(value, Mapping):
        if value and all(isinstance(k, str) and k.startswith("$") for k in value):
            return [_operator(path, op, arg) for op, arg in value.items()]
        if not value:
            raise ValueError(f"empty condition for {path!r}")
        return [c for k, v in value.items() for c in _conditions(f"{path}.{k}", v)]
    if isinstance(value, list | tuple | set | frozenset):
        return [_any_of(path, list(value))]
    return [_equal(path, value)]


def _operator(path: str, op: str, arg: Any) -> dict[str, Any]:
    if op not in _OPS:
        raise ValueError(f"unknown filter operator {op!r} on {path!r}; known: {', '.join(sorted(_OPS))}")
    if op == "$eq":
        return _equal(path, arg)
    if op == "$ne":
        return {"must_not": [_equal(path, arg)]}
    if op in ("$in", "$nin"):
        if not isinstance(arg, list | tuple | set | frozenset):
            raise ValueError(f"{op} on {path!r} takes a list, not {type(arg).__name__}")
        cond = _any_of(path, list(arg))
        return cond if op == "$in" else {"must_not": [cond]}
    if isinstance(arg, bool) or not isinstance(arg, int | float | str):
        raise ValueError(f"{op} on {path!r} takes a number or an RFC 3339 datetime string, not {arg!r}")
    return {"key": path, "range": {_RANGE_OPS[op]: arg}}


def _equal(path: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {"is_null": {"key": path}}
    if isinstance(value, bool | int | str):
        return {"key": path, "match": {"value": value}}
    if isinstance(value, float):
        # `match` takes strings, integers and booleans; a float is equal when it is within both bounds.
        return {"key": path, "range": {"gte": value, "lte": value}}
    raise ValueError(f"cannot compare {path!r} with a {type(value).__name__}: use a string, number, bool or None")


def _any_of(path: str, values: list[Any]) -> dict[str, Any]:
    if not values:
        raise ValueError(f"an empty list of values for {path!r} matches nothing")
    if all(isinstance(v, int | str) and not isinstance(v, bool) for v in values):
        return {"key": path, "match": {"any": values}}
    return {"should": [_equal(path, v) for v in values]}
