"""Payload filters in Qdrant's shape: their semantics, and the pure-Python reference evaluator.

The SQL compiler is `index/filter_sql.py`, validation and the shared value helpers `index/filter_check.py`;
this module re-exports both, so `index.filters` stays the one import for filters.

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
  any other string is an RFC 3339 datetime: the range then matches strings that parse as datetimes,
  compared as instants, with or without a ``datetime`` payload index (SQL calls the same parser).
- ``match.text``: full-text, only on a ``text`` payload index (``index/payload_index.py``); here it
  is ``InvalidFilter``.
- ``values_count`` (Qdrant semantics): the number of values at the key satisfies every given bound
  (gt, gte, lt, lte: non-negative integers). An array counts its length (whatever its elements), a
  scalar or an object 1, ``null`` and a missing key 0; so unlike the conditions above, ``lt`` matches
  points without the key.

Other conditions:

- ``has_id``: the point id is in the list; 7 and "7" are different ids.
- ``is_empty``: the key is missing, ``null``, or an empty array (an empty object is not empty).
- ``is_null``: the key is present and its value is ``null`` (``[null]`` is not null).
- ``nested``: ``{"nested": {"key": k, "filter": F}}`` matches when the value at ``k`` is an array and
  some single object in it satisfies the whole of ``F``, whose keys are read from that object (so
  ``must`` conditions must hold on the same element, and ``must_not`` excludes per element). Elements
  that are not objects never match; a value that is not an array never matches. ``has_id`` inside ``F``
  is ``InvalidFilter``. A nested filter is never answered by a payload index: it is a payload scan.

Limits (``check_filter``): depth counts ``Filter`` objects, the top one is depth 1; the condition
count is every entry of every ``must``/``should``/``must_not`` list at any depth, nested filters
included.

SQL notes: payload keys outside ASCII must be stored unescaped (``json.dumps(..., ensure_ascii=False)``
or orjson): SQLite compares raw object labels. SQLite before 3.45 cuts strings decoded from JSON at a
``\\u0000``; ``matches`` does the same when the linked SQLite does, so both evaluators agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from index.errors import InvalidFilter
from index.filter_check import (
    MISSING,
    check_filter,
    check_value,
    count_bounds,
    datetime_bounds,
    json_path,
    list_values,
    lookup,
    number,
    number_bound,
    parse_datetime,
    range_bounds,
    split_key,
    stored_text,
    values_count,
)
from index.filter_sql import compile_filter, no_text_index
from nestor_client.models import (
    Condition,
    FieldCondition,
    Filter,
    HasIdCondition,
    IsEmptyCondition,
    MatchAny,
    MatchExcept,
    MatchText,
    MatchValue,
    NestedCondition,
)

__all__ = [
    "MISSING",
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
    "values_count",
]

PointIdT = int | str
Payload = Mapping[str, Any] | None
Matcher = Callable[[PointIdT, Payload], bool]
_Pred = Callable[[Any], bool]
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


def _field_pred(c: FieldCondition) -> _Pred:
    m = c.match
    if isinstance(m, MatchText):
        raise no_text_index(c)
    if isinstance(m, MatchValue):
        target = m.value
        check_value(target)
        if isinstance(target, bool):
            return lambda e: isinstance(e, bool) and e is target
        if isinstance(target, str):
            return lambda e: isinstance(e, str) and stored_text(e) == target
        return lambda e: number(e) == target
    if isinstance(m, MatchAny | MatchExcept):
        values = list_values(m)
        strs = frozenset(v for v in values if isinstance(v, str))
        # 3.0 in {3} is True in Python, as in SQLite.
        ints = frozenset(v for v in values if isinstance(v, int))

        def listed(e: Any) -> bool:
            if isinstance(e, str):
                return stored_text(e) in strs
            n = number(e)
            return n is not None and n in ints

        if isinstance(m, MatchAny):
            return listed

        def not_listed(e: Any) -> bool:
            if e is None:
                return False
            if isinstance(e, str) or number(e) is not None:
                return not listed(e)
            return True  # booleans, objects, nested arrays

        return not_listed
    if c.range is None:
        raise InvalidFilter("a field condition needs exactly one of match, range or values_count")
    dt = datetime_bounds(c.range)
    if dt is not None:
        instants = [(_OPS[op], b) for op, b in dt]

        def in_period(e: Any) -> bool:
            t = parse_datetime(e) if isinstance(e, str) else None
            return t is not None and all(op(t, b) for op, b in instants)

        return in_period
    bounds = [(_OPS[op], b) for op, b in range_bounds(c.range)]

    def in_range(e: Any) -> bool:
        n = number(e)
        return n is not None and all(op(n, b) for op, b in bounds)

    return in_range


def _field_matcher(c: FieldCondition) -> Matcher:
    segments = split_key(c.key)
    if c.values_count is not None:
        counts = [(_OPS[op], b) for op, b in count_bounds(c.values_count)]

        def count_ok(pid: PointIdT, payload: Payload) -> bool:
            n = values_count(lookup(payload, segments))
            return all(op(n, b) for op, b in counts)

        return count_ok
    pred = _field_pred(c)

    def run(pid: PointIdT, payload: Payload) -> bool:
        v = lookup(payload, segments)
        if v is MISSING:
            return False
        if isinstance(v, list):
            return any(pred(e) for e in v)
        return pred(v)

    return run


def _nested_matcher(c: NestedCondition) -> Matcher:
    segments = split_key(c.nested.key)
    inner = _compile(c.nested.filter, nested=True)

    def some_element(pid: PointIdT, payload: Payload) -> bool:
        v = lookup(payload, segments)
        return isinstance(v, list) and any(isinstance(e, Mapping) and inner(pid, e) for e in v)

    return some_element


def _condition_matcher(c: Condition, nested: bool) -> Matcher:
    if isinstance(c, Filter):
        return _compile(c, nested)
    if isinstance(c, FieldCondition):
        return _field_matcher(c)
    if isinstance(c, NestedCondition):
        return _nested_matcher(c)
    if isinstance(c, HasIdCondition):
        if not c.has_id:
            raise InvalidFilter("has_id needs at least one id")
        if nested:
            raise InvalidFilter("has_id is not allowed inside a nested filter: put it beside the nested")
        ids = frozenset(c.has_id)
        # Strict types: 7 and "7" are different ids, and ids are never booleans.
        return lambda pid, payload: pid in ids
    if isinstance(c, IsEmptyCondition):
        segs = split_key(c.is_empty.key)

        def empty(pid: PointIdT, payload: Payload) -> bool:
            v = lookup(payload, segs)
            return v is MISSING or v is None or (isinstance(v, list) and not v)

        return empty
    segs_null = split_key(c.is_null.key)
    return lambda pid, payload: lookup(payload, segs_null) is None


def _compile(f: Filter, nested: bool) -> Matcher:
    must = [_condition_matcher(c, nested) for c in f.must or ()]
    should = [_condition_matcher(c, nested) for c in f.should or ()]
    must_not = [_condition_matcher(c, nested) for c in f.must_not or ()]

    def run(pid: PointIdT, payload: Payload) -> bool:
        return (
            all(m(pid, payload) for m in must)
            and (not should or any(m(pid, payload) for m in should))
            and not any(m(pid, payload) for m in must_not)
        )

    return run


def compile_matcher(f: Filter) -> Matcher:
    """Validate once and return `(pid, payload) -> bool`, for evaluating many points in Python."""
    return _compile(f, nested=False)


def matches(f: Filter, pid: PointIdT, payload: Payload) -> bool:
    """The reference evaluator: exactly the semantics of `compile_filter`, in pure Python."""
    return compile_matcher(f)(pid, payload)
