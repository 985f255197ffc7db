"""Filter validation and the value helpers both evaluators share (`index/filters.py` states the semantics).

Keys: 1 to 256 characters of non-empty dot-separated segments; a segment may not contain ``"``, ``\\``,
``[``, ``]``, control characters or lone surrogates (they could not be quoted into a SQLite JSON path).
Strings may not contain NUL or lone surrogates; integers must fit in int64; range bounds are numbers
(or, on a datetime index, RFC 3339 strings), never NaN. `check_filter` also enforces the size limits.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from index.errors import InvalidFilter
from nestor_client.models import (
    FieldCondition,
    Filter,
    HasIdCondition,
    IsEmptyCondition,
    MatchAny,
    MatchExcept,
    MatchText,
    MatchValue,
    NestedCondition,
    Range,
    ValuesCount,
)

__all__ = [
    "datetime_bounds",
    "parse_datetime",
    "MISSING",
    "check_filter",
    "check_str",
    "check_value",
    "count_bounds",
    "json_path",
    "list_values",
    "lookup",
    "number",
    "number_bound",
    "range_bounds",
    "split_key",
    "stored_text",
    "values_count",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_BAD_KEY_CHARS = frozenset('"\\[]')
MISSING: Any = object()  # what `lookup` returns for a missing key


def _sqlite_cuts_nul() -> bool:
    # Older SQLite truncates JSON strings at an escaped NUL; mirror it only where it happens.
    with closing(sqlite3.connect(":memory:")) as conn:
        row = conn.execute("SELECT json_extract(?, '$[0]') = 'x'", ['["x\\u0000y"]']).fetchone()
    return bool(row[0])


_CUT_NUL = _sqlite_cuts_nul()


# ---------------------------------------------------------------------------------------------
# Keys and values


def _bad_char(ch: str) -> bool:
    code = ord(ch)
    return ch in _BAD_KEY_CHARS or code < 0x20 or code == 0x7F or 0xD800 <= code <= 0xDFFF


@lru_cache(maxsize=4096)
def split_key(key: str) -> tuple[str, ...]:
    """The segments of a dotted key; InvalidFilter for a malformed one."""
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
    return "$" + "".join(f'."{s}"' for s in split_key(key))


def check_str(s: str) -> None:
    if "\x00" in s:
        raise InvalidFilter("filter strings must not contain NUL")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidFilter("filter strings must be valid unicode (no lone surrogates)") from None


def check_value(v: str | int | bool) -> None:
    if isinstance(v, str):
        check_str(v)
    elif not isinstance(v, bool) and not INT64_MIN <= v <= INT64_MAX:
        raise InvalidFilter(f"filter integer {v} does not fit in 64 bits")


def list_values(m: MatchAny | MatchExcept) -> list[str | int]:
    values = m.any if isinstance(m, MatchAny) else m.except_
    if not values:
        raise InvalidFilter("match.any / match.except need at least one value")
    for v in values:
        check_value(v)
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


def parse_datetime(s: str) -> float | None:
    """RFC 3339 (or ISO 8601) to epoch seconds; a naive time is UTC. None when it does not parse."""
    try:
        dt = datetime.fromisoformat(s.strip())
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    except (ValueError, OverflowError):  # OverflowError: an offset past year 1 or 9999
        return None


def datetime_bounds(r: Range) -> list[tuple[str, float]] | None:
    """The bounds of a datetime range (its bounds are strings that are not numbers) as (SQL operator, epoch
    seconds); None for a numeric range. A datetime range matches strings that parse as datetimes."""
    raw = [(op, b) for op, b in ((">", r.gt), (">=", r.gte), ("<", r.lt), ("<=", r.lte)) if b is not None]
    if not any(isinstance(b, str) and _not_number(b) for _, b in raw):
        return None
    out = []
    for op, b in raw:
        t = parse_datetime(b) if isinstance(b, str) else None
        if t is None:
            raise InvalidFilter(f"range bound {b!r} is not an RFC 3339 datetime (the range's other bounds are)")
        out.append((op, t))
    return out


def _not_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return True
    return False


def range_bounds(r: Range) -> list[tuple[str, float]]:
    """The bounds of a range as (SQL operator, number)."""
    raw = ((">", r.gt), (">=", r.gte), ("<", r.lt), ("<=", r.lte))
    out = [(op, number_bound(b)) for op, b in raw if b is not None]
    if not out:
        raise InvalidFilter("range needs at least one of gt, gte, lt, lte")
    if any(math.isnan(b) for _, b in out):
        raise InvalidFilter("range bounds must not be NaN")
    return out


def count_bounds(vc: ValuesCount) -> list[tuple[str, int]]:
    """The bounds of a `values_count` as (SQL operator, count)."""
    raw = ((">", vc.gt), (">=", vc.gte), ("<", vc.lt), ("<=", vc.lte))
    out = [(op, b) for op, b in raw if b is not None]
    if not out:
        raise InvalidFilter("values_count needs at least one of gt, gte, lt, lte")
    for _, b in out:
        if isinstance(b, bool) or not isinstance(b, int) or not 0 <= b <= INT64_MAX:
            raise InvalidFilter(f"values_count bounds are non-negative integers, not {b!r}")
    return out


# ---------------------------------------------------------------------------------------------
# Payload values as SQLite reads them


def stored_text(v: str) -> str:
    """A payload string as SQLite reads it (cut at a NUL where the linked SQLite does)."""
    return v.partition("\x00")[0] if _CUT_NUL else v


def lookup(payload: Mapping[str, Any] | None, segments: tuple[str, ...]) -> Any:
    """The value at `segments` (objects only are walked), or `MISSING`."""
    cur: Any = payload
    for s in segments:
        if not isinstance(cur, Mapping) or s not in cur:
            return MISSING
        cur = cur[s]
    return cur


def number(v: Any) -> int | float | None:
    """The numeric value as SQLite sees it, or None for non-numbers (booleans included)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if INT64_MIN <= v <= INT64_MAX else float(v)
    if isinstance(v, float):
        return v
    return None


def values_count(v: Any) -> int:
    """How many values `values_count` sees: an array its length, `null` or a missing key 0, else 1."""
    if v is MISSING or v is None:
        return 0
    return len(v) if isinstance(v, list) else 1


# ---------------------------------------------------------------------------------------------
# The whole filter


def _check_field(c: FieldCondition) -> None:
    split_key(c.key)
    if [c.match, c.range, c.values_count].count(None) != 2:
        raise InvalidFilter("a field condition needs exactly one of match, range or values_count")
    if isinstance(c.match, MatchValue):
        check_value(c.match.value)
    elif isinstance(c.match, MatchAny | MatchExcept):
        list_values(c.match)
    elif isinstance(c.match, MatchText):
        check_str(c.match.text)
    if c.range is not None:  # string bounds are checked where the key's index is known (datetimes)
        raw = (c.range.gt, c.range.gte, c.range.lt, c.range.lte)
        if any(isinstance(b, float) and math.isnan(b) for b in raw):
            raise InvalidFilter("range bounds must not be NaN")
    if c.values_count is not None:
        count_bounds(c.values_count)


def check_filter(f: Filter, *, max_depth: int = 8, max_conditions: int = 256) -> None:
    """Validate keys and values and enforce the size limits; raise InvalidFilter naming the problem.

    A `nested` filter counts as one level deeper, and its conditions count like any other; `has_id` inside
    a `nested` filter is InvalidFilter (ids belong to points, not to array elements: put it beside)."""
    count = 0
    # Iterative so that a hostile nesting depth cannot exhaust the Python stack.
    stack: list[tuple[Filter, int, bool]] = [(f, 1, False)]
    while stack:
        node, depth, in_nested = stack.pop()
        if depth > max_depth:
            raise InvalidFilter(f"filter is nested deeper than max_depth={max_depth}")
        for clause in (node.must, node.should, node.must_not):
            for c in clause or ():
                count += 1
                if count > max_conditions:
                    raise InvalidFilter(f"filter has more than max_conditions={max_conditions} conditions")
                if isinstance(c, Filter):
                    stack.append((c, depth + 1, in_nested))
                elif isinstance(c, NestedCondition):
                    split_key(c.nested.key)
                    stack.append((c.nested.filter, depth + 1, True))
                elif isinstance(c, FieldCondition):
                    _check_field(c)
                elif isinstance(c, HasIdCondition):
                    if not c.has_id:
                        raise InvalidFilter("has_id needs at least one id")
                    if in_nested:
                        raise InvalidFilter("has_id is not allowed inside a nested filter: put it beside the nested")
                elif isinstance(c, IsEmptyCondition):
                    split_key(c.is_empty.key)
                else:
                    split_key(c.is_null.key)
