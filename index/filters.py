"""Payload filters in Qdrant's shape: compiled to SQLite SQL, and a pure-Python reference.

A filter runs against one stored point: its id and its payload (a JSON object, or none).

Clauses of a ``Filter`` (all present clauses must hold):

- ``must``: every condition is true (an empty or absent list is true).
- ``should``: at least one condition is true; an absent or empty list imposes nothing.
- ``must_not``: no condition is true.
- An empty filter matches every point. A nested ``Filter`` is a condition like any other.

Keys: ``"a.b"`` addresses ``payload["a"]["b"]``. Only objects are walked: if ``a`` is an array or
a scalar, ``a.b`` is missing (no ``a[].b`` flattening). A key is 1 to 256 characters of non-empty
dot-separated segments; a segment may not contain ``"``, ``\\``, ``[``, ``]``, control characters
or lone surrogates (they could not be quoted into a SQLite JSON path). Anything else is
``InvalidFilter``.

Values: JSON types are kept apart. Strings equal strings only; booleans match only JSON
``true``/``false`` (never 1/0); integers match JSON numbers by numeric value, so 3 matches 3 and
3.0 but never ``true``. Integers in filters must fit in int64; strings in filters may not contain
NUL or lone surrogates. Payload integers outside int64 behave as floats (that is how SQLite reads
them).

Field conditions (a missing key never matches any of them). When the value at the key is an
array, the condition holds if ANY element satisfies it (one level only: nested arrays and objects
inside the array are elements, never searched):

- ``match.value``: the value equals the given string, integer or boolean.
- ``match.any``: the value equals one of the listed strings or integers.
- ``match.except`` (Qdrant semantics): a string or number not in the list matches; ``null`` never
  matches; booleans and objects always match. On an array this is "some element is not excluded
  and not null", so ``["a", "b"]`` matches ``except: ["a"]`` and an empty array never matches.
  To require that no element is in the list, use ``must_not`` with ``match.any``.
- ``range``: a number (not a boolean) satisfying every given bound (gt, gte, lt, lte); strings
  and other values never match. Bounds may be infinite, never NaN. A bound may be a numeric string;
  any other string is an RFC 3339 datetime, which only a ``datetime`` payload index reads.
- ``match.text``: full-text, only on a ``text`` payload index (``index/payload_index.py``); here it
  is ``InvalidFilter``.

Other conditions:

- ``has_id``: the point id is in the list; 7 and "7" are different ids.
- ``is_empty``: the key is missing, ``null``, or an empty array (an empty object is not empty).
- ``is_null``: the key is present and its value is ``null`` (``[null]`` is not null).

Limits (``check_filter``): depth counts ``Filter`` objects, the top one is depth 1; the condition
count is every entry of every ``must``/``should``/``must_not`` list at any depth, nested filters
included.

SQL notes: the expression reads the columns ``pid`` (``json.dumps(id)``) and ``payload`` (JSON
text), always yields 0 or 1 (never NULL, so ``NOT`` is safe), and binds every value as a ``?``
parameter. Scalars are read with ``json_type``/``json_extract`` (one cached parse per row);
``json_each`` runs only when the value is an array. Lists are bound as one JSON parameter, so
their length does not hit SQLite's variable limit. Payload keys outside ASCII must be stored
unescaped (``json.dumps(..., ensure_ascii=False)`` or orjson): SQLite compares raw object labels.
SQLite before 3.45 cuts strings decoded from JSON at a ``\\u0000``; ``matches`` does the same when
the linked SQLite does, so both evaluators agree.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from functools import lru_cache
from typing import Any

from index.errors import InvalidFilter
from nestor_client.models import (
    Condition,
    FieldCondition,
    Filter,
    HasIdCondition,
    IsEmptyCondition,
    IsNullCondition,
    MatchAny,
    MatchExcept,
    MatchText,
    MatchValue,
    Range,
)

__all__ = [
    "Matcher",
    "check_filter",
    "compile_filter",
    "compile_matcher",
    "json_path",
    "lookup",
    "matches",
    "number",
    "number_bound",
    "split_key",
    "stored_text",
]

PointIdT = int | str
Payload = Mapping[str, Any] | None
Matcher = Callable[[PointIdT, Payload], bool]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_BAD_KEY_CHARS = frozenset('"\\[]')
_MISSING: Any = object()
MISSING: Any = _MISSING  # what `lookup` returns for a missing key
# The value at a path as SQL; only read in a CASE branch that has already checked its JSON type.
_X = "json_extract(payload, ?)"


def _sqlite_cuts_nul() -> bool:
    # Older SQLite truncates JSON strings at an escaped NUL; mirror it only where it happens.
    with closing(sqlite3.connect(":memory:")) as conn:
        row = conn.execute("SELECT json_extract(?, '$[0]') = 'x'", ['["x\\u0000y"]']).fetchone()
    return bool(row[0])


_CUT_NUL = _sqlite_cuts_nul()


# ---------------------------------------------------------------------------------------------
# Validation


def _bad_char(ch: str) -> bool:
    code = ord(ch)
    return ch in _BAD_KEY_CHARS or code < 0x20 or code == 0x7F or 0xD800 <= code <= 0xDFFF


@lru_cache(maxsize=4096)
def _split_key(key: str) -> tuple[str, ...]:
    if not key:
        raise InvalidFilter("filter key must not be empty")
    segments = tuple(key.split("."))
    if any(not s for s in segments):
        raise InvalidFilter(f"filter key {key!r} has an empty segment")
    if any(_bad_char(ch) for ch in key):
        raise InvalidFilter(f"filter key {key!r} contains a forbidden character (quote, backslash, bracket or control)")
    return segments


def json_path(key: str) -> str:
    """The SQLite JSON path of a dotted key: ``a.b`` -> ``$."a"."b"``. Raises InvalidFilter."""
    return "$" + "".join(f'."{s}"' for s in _split_key(key))


def _check_str(s: str) -> None:
    if "\x00" in s:
        raise InvalidFilter("filter strings must not contain NUL")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidFilter("filter strings must be valid unicode (no lone surrogates)") from None


def _check_value(v: str | int | bool) -> None:
    if isinstance(v, str):
        _check_str(v)
    elif not isinstance(v, bool) and not _INT64_MIN <= v <= _INT64_MAX:
        raise InvalidFilter(f"filter integer {v} does not fit in 64 bits")


def _list_values(m: MatchAny | MatchExcept) -> list[str | int]:
    values = m.any if isinstance(m, MatchAny) else m.except_
    if not values:
        raise InvalidFilter("match.any / match.except need at least one value")
    for v in values:
        _check_value(v)
    return values


def number_bound(b: float | str) -> float:
    """A range bound as a number: a float, or a numeric string. Other strings are RFC 3339 datetimes, which
    only a `datetime` payload index reads (InvalidFilter here)."""
    if isinstance(b, str):
        try:
            return float(b)
        except ValueError:
            raise InvalidFilter(
                f"range bound {b!r} is not a number (datetime bounds need a datetime index on the key)"
            ) from None
    return b


def _bounds(r: Range) -> list[tuple[str, float]]:
    raw = ((">", r.gt), (">=", r.gte), ("<", r.lt), ("<=", r.lte))
    out = [(op, number_bound(b)) for op, b in raw if b is not None]
    if not out:
        raise InvalidFilter("range needs at least one of gt, gte, lt, lte")
    if any(math.isnan(b) for _, b in out):
        raise InvalidFilter("range bounds must not be NaN")
    return out


def _check_leaf(c: FieldCondition | HasIdCondition | IsEmptyCondition | IsNullCondition) -> None:
    if isinstance(c, FieldCondition):
        _split_key(c.key)
        if (c.match is None) == (c.range is None):
            raise InvalidFilter("a field condition needs exactly one of match or range")
        if isinstance(c.match, MatchValue):
            _check_value(c.match.value)
        elif isinstance(c.match, MatchAny | MatchExcept):
            _list_values(c.match)
        elif isinstance(c.match, MatchText):
            _check_str(c.match.text)
        if c.range is not None:  # string bounds are checked where the key's index is known (datetimes)
            raw = (c.range.gt, c.range.gte, c.range.lt, c.range.lte)
            if any(isinstance(b, float) and math.isnan(b) for b in raw):
                raise InvalidFilter("range bounds must not be NaN")
    elif isinstance(c, HasIdCondition):
        if not c.has_id:
            raise InvalidFilter("has_id needs at least one id")
    elif isinstance(c, IsEmptyCondition):
        _split_key(c.is_empty.key)
    else:
        _split_key(c.is_null.key)


def check_filter(f: Filter, *, max_depth: int = 8, max_conditions: int = 256) -> None:
    """Validate keys and values and enforce the size limits; raise InvalidFilter naming the problem."""
    count = 0
    # Iterative so that a hostile nesting depth cannot exhaust the Python stack.
    stack: list[tuple[Filter, int]] = [(f, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise InvalidFilter(f"filter is nested deeper than max_depth={max_depth}")
        for clause in (node.must, node.should, node.must_not):
            for c in clause or ():
                count += 1
                if count > max_conditions:
                    raise InvalidFilter(f"filter has more than max_conditions={max_conditions} conditions")
                if isinstance(c, Filter):
                    stack.append((c, depth + 1))
                else:
                    _check_leaf(c)


# ---------------------------------------------------------------------------------------------
# SQL


def _case(
    path: str, scalar: Sequence[tuple[str, str, Sequence[object]]], elem: str, elem_params: Sequence[object]
) -> tuple[str, list[object]]:
    """CASE on the JSON type at `path`: per-type scalar tests, EXISTS over elements for arrays."""
    sql = ["CASE json_type(payload, ?)"]
    params: list[object] = [path]
    for jtype, expr, p in scalar:
        sql.append(f" WHEN '{jtype}' THEN {expr}")
        params.extend(p)
    # json_each over the extracted array text, not the whole payload: the payload parse is cached.
    sql.append(f" WHEN 'array' THEN EXISTS(SELECT 1 FROM json_each({_X}) WHERE {elem}) ELSE 0 END")
    params.append(path)
    params.extend(elem_params)
    return "".join(sql), params


def _in_list(values: Sequence[str | int]) -> str:
    return json.dumps(values, ensure_ascii=False)


def _no_text_index(c: FieldCondition) -> InvalidFilter:
    return InvalidFilter(f"match.text needs a text payload index on {c.key!r}")


def _field_sql(c: FieldCondition) -> tuple[str, list[object]]:
    path = json_path(c.key)
    m = c.match
    if isinstance(m, MatchText):
        raise _no_text_index(c)
    if isinstance(m, MatchValue):
        v = m.value
        _check_value(v)
        if isinstance(v, bool):
            jt = "true" if v else "false"
            return _case(path, [(jt, "1", [])], f"type = '{jt}'", [])
        if isinstance(v, str):
            return _case(path, [("text", f"{_X} = ?", [path, v])], "type = 'text' AND value = ?", [v])
        num = [(t, f"{_X} = ?", [path, v]) for t in ("integer", "real")]
        return _case(path, num, "type IN ('integer', 'real') AND value = ?", [v])
    if isinstance(m, MatchAny):
        values = _list_values(m)
        lst = _in_list(values)
        types = (["text"] if any(isinstance(v, str) for v in values) else []) + (
            ["integer", "real"] if any(isinstance(v, int) for v in values) else []
        )
        # Mixed lists are safe: no affinity applies, so text '3' never equals integer 3.
        member = "IN (SELECT value FROM json_each(?))"
        scalar = [(t, f"{_X} {member}", [path, lst]) for t in types]
        quoted = ", ".join(f"'{t}'" for t in types)
        return _case(path, scalar, f"type IN ({quoted}) AND value {member}", [lst])
    if isinstance(m, MatchExcept):
        lst = _in_list(_list_values(m))
        member = "IN (SELECT value FROM json_each(?))"
        scalar = [(t, f"{_X} NOT {member}", [path, lst]) for t in ("text", "integer", "real")]
        scalar += [(t, "1", []) for t in ("true", "false", "object")]
        elem = f"type <> 'null' AND NOT (type IN ('text', 'integer', 'real') AND value {member})"
        return _case(path, scalar, elem, [lst])
    if c.range is None:
        raise InvalidFilter("a field condition needs exactly one of match or range")
    bounds = _bounds(c.range)
    scalar_expr = " AND ".join(f"{_X} {op} ?" for op, _ in bounds)
    scalar_params: list[object] = [x for _, b in bounds for x in (path, b)]
    elem = " AND ".join(["type IN ('integer', 'real')"] + [f"value {op} ?" for op, _ in bounds])
    numeric = [(t, scalar_expr, scalar_params) for t in ("integer", "real")]
    return _case(path, numeric, elem, [b for _, b in bounds])


def _condition_sql(c: Condition) -> tuple[str, list[object]]:
    if isinstance(c, Filter):
        return _filter_sql(c)
    if isinstance(c, FieldCondition):
        return _field_sql(c)
    if isinstance(c, HasIdCondition):
        if not c.has_id:
            raise InvalidFilter("has_id needs at least one id")
        # pid holds json.dumps(id); match it against the same encoding.
        return "pid IN (SELECT value FROM json_each(?))", [json.dumps([json.dumps(i) for i in c.has_id])]
    if isinstance(c, IsEmptyCondition):
        path = json_path(c.is_empty.key)
        sql = (
            "CASE IFNULL(json_type(payload, ?), 'null') WHEN 'null' THEN 1 "
            "WHEN 'array' THEN json_array_length(payload, ?) = 0 ELSE 0 END"
        )
        return sql, [path, path]
    return "json_type(payload, ?) IS 'null'", [json_path(c.is_null.key)]


def _join(parts: list[tuple[str, list[object]]], op: str) -> tuple[str, list[object]]:
    sql = f" {op} ".join(f"({s})" for s, _ in parts)
    return sql, [p for _, ps in parts for p in ps]


def _filter_sql(f: Filter) -> tuple[str, list[object]]:
    clauses: list[tuple[str, list[object]]] = []
    if f.must:
        clauses.append(_join([_condition_sql(c) for c in f.must], "AND"))
    if f.should:
        clauses.append(_join([_condition_sql(c) for c in f.should], "OR"))
    if f.must_not:
        sql, params = _join([_condition_sql(c) for c in f.must_not], "OR")
        clauses.append((f"NOT ({sql})", params))
    if not clauses:
        return "1", []
    return _join(clauses, "AND")


def compile_filter(f: Filter) -> tuple[str, list[object]]:
    """A SQL boolean over the row's `pid` and `payload` columns, and its `?` parameters.

    Validates keys and values (InvalidFilter) but not the size limits: call `check_filter` first.
    """
    return _filter_sql(f)


# ---------------------------------------------------------------------------------------------
# Pure-Python reference


def _lookup(payload: Payload, segments: tuple[str, ...]) -> Any:
    cur: Any = payload
    for s in segments:
        if not isinstance(cur, Mapping) or s not in cur:
            return _MISSING
        cur = cur[s]
    return cur


def stored_text(v: str) -> str:
    """A payload string as SQLite reads it (cut at a NUL where the linked SQLite does)."""
    return _text(v)


def split_key(key: str) -> tuple[str, ...]:
    """The segments of a dotted key; InvalidFilter for a malformed one."""
    return _split_key(key)


def lookup(payload: Payload, segments: tuple[str, ...]) -> Any:
    """The value at `segments`, or `MISSING`."""
    return _lookup(payload, segments)


def number(v: Any) -> int | float | None:
    """The numeric value as SQLite sees it, or None for non-numbers (booleans included)."""
    return _number(v)


def _text(v: str) -> str:
    return v.partition("\x00")[0] if _CUT_NUL else v


def _number(v: Any) -> int | float | None:
    """The numeric value as SQLite sees it, or None for non-numbers (booleans included)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if _INT64_MIN <= v <= _INT64_MAX else float(v)
    if isinstance(v, float):
        return v
    return None


_Pred = Callable[[Any], bool]


def _field_pred(c: FieldCondition) -> _Pred:
    m = c.match
    if isinstance(m, MatchText):
        raise _no_text_index(c)
    if isinstance(m, MatchValue):
        target = m.value
        _check_value(target)
        if isinstance(target, bool):
            return lambda e: isinstance(e, bool) and e is target
        if isinstance(target, str):
            return lambda e: isinstance(e, str) and _text(e) == target
        return lambda e: _number(e) == target
    if isinstance(m, MatchAny | MatchExcept):
        values = _list_values(m)
        strs = frozenset(v for v in values if isinstance(v, str))
        # 3.0 in {3} is True in Python, as in SQLite.
        ints = frozenset(v for v in values if isinstance(v, int))

        def listed(e: Any) -> bool:
            if isinstance(e, str):
                return _text(e) in strs
            n = _number(e)
            return n is not None and n in ints

        if isinstance(m, MatchAny):
            return listed

        def not_listed(e: Any) -> bool:
            if e is None:
                return False
            if isinstance(e, str) or _number(e) is not None:
                return not listed(e)
            return True  # booleans, objects, nested arrays

        return not_listed
    if c.range is None:
        raise InvalidFilter("a field condition needs exactly one of match or range")
    bounds = dict(_bounds(c.range))
    gt, gte, lt, lte = bounds.get(">"), bounds.get(">="), bounds.get("<"), bounds.get("<=")

    def in_range(e: Any) -> bool:
        n = _number(e)
        return (
            n is not None
            and (gt is None or n > gt)
            and (gte is None or n >= gte)
            and (lt is None or n < lt)
            and (lte is None or n <= lte)
        )

    return in_range


def _field_matcher(c: FieldCondition) -> Matcher:
    segments = _split_key(c.key)
    pred = _field_pred(c)

    def run(pid: PointIdT, payload: Payload) -> bool:
        v = _lookup(payload, segments)
        if v is _MISSING:
            return False
        if isinstance(v, list):
            return any(pred(e) for e in v)
        return pred(v)

    return run


def _condition_matcher(c: Condition) -> Matcher:
    if isinstance(c, Filter):
        return compile_matcher(c)
    if isinstance(c, FieldCondition):
        return _field_matcher(c)
    if isinstance(c, HasIdCondition):
        if not c.has_id:
            raise InvalidFilter("has_id needs at least one id")
        ids = frozenset(c.has_id)
        # Strict types: 7 and "7" are different ids, and ids are never booleans.
        return lambda pid, payload: pid in ids
    if isinstance(c, IsEmptyCondition):
        segs = _split_key(c.is_empty.key)

        def empty(pid: PointIdT, payload: Payload) -> bool:
            v = _lookup(payload, segs)
            return v is _MISSING or v is None or (isinstance(v, list) and not v)

        return empty
    segs_null = _split_key(c.is_null.key)
    return lambda pid, payload: _lookup(payload, segs_null) is None


def compile_matcher(f: Filter) -> Matcher:
    """Validate once and return `(pid, payload) -> bool`, for evaluating many points in Python."""
    must = [_condition_matcher(c) for c in f.must or ()]
    should = [_condition_matcher(c) for c in f.should or ()]
    must_not = [_condition_matcher(c) for c in f.must_not or ()]

    def run(pid: PointIdT, payload: Payload) -> bool:
        return (
            all(m(pid, payload) for m in must)
            and (not should or any(m(pid, payload) for m in should))
            and not any(m(pid, payload) for m in must_not)
        )

    return run


def matches(f: Filter, pid: PointIdT, payload: Payload) -> bool:
    """The reference evaluator: exactly the semantics of `compile_filter`, in pure Python."""
    return compile_matcher(f)(pid, payload)
