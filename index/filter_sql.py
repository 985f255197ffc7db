"""Payload filters compiled to one SQLite boolean over a row's `pid` and `payload` columns.

The expression always yields 0 or 1 (never NULL, so ``NOT`` is safe) and binds every value as a ``?``
parameter. Scalars are read with ``json_type``/``json_extract`` (one cached parse per row); ``json_each``
runs only when the value is an array. Lists are bound as one JSON parameter, so their length does not hit
SQLite's variable limit. A ``nested`` filter runs over ``json_each`` of its array: the same compiler, with
the array element (``nK.value``) in place of ``payload`` as the document its keys are read from.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from index.errors import InvalidFilter
from index.filter_check import check_value, count_bounds, datetime_bounds, json_path, list_values, range_bounds
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

__all__ = ["compile_filter", "no_text_index"]

SQL = tuple[str, list[object]]


@dataclass(frozen=True, slots=True)
class _Doc:
    """The JSON document keys are read from: the row's payload, or an element of a nested array."""

    expr: str = "payload"
    depth: int = 0

    @property
    def x(self) -> str:  # the value at a path; only read in a CASE branch that has already checked its JSON type
        return f"json_extract({self.expr}, ?)"


def no_text_index(c: FieldCondition) -> InvalidFilter:
    return InvalidFilter(f"match.text needs a text payload index on {c.key!r}")


def _case(
    doc: _Doc, path: str, scalar: Sequence[tuple[str, str, Sequence[object]]], elem: str, elem_params: Sequence[object]
) -> SQL:
    """CASE on the JSON type at `path`: per-type scalar tests, EXISTS over elements for arrays."""
    sql = [f"CASE json_type({doc.expr}, ?)"]
    params: list[object] = [path]
    for jtype, expr, p in scalar:
        sql.append(f" WHEN '{jtype}' THEN {expr}")
        params.extend(p)
    # json_each over the extracted array text, not the whole payload: the payload parse is cached.
    sql.append(f" WHEN 'array' THEN EXISTS(SELECT 1 FROM json_each({doc.x}) WHERE {elem}) ELSE 0 END")
    params.append(path)
    params.extend(elem_params)
    return "".join(sql), params


def _in_list(values: Sequence[str | int]) -> str:
    return json.dumps(values, ensure_ascii=False)


def _values_count_sql(doc: _Doc, c: FieldCondition) -> SQL:
    assert c.values_count is not None
    path = json_path(c.key)
    bounds = count_bounds(c.values_count)
    n = (
        f"CASE IFNULL(json_type({doc.expr}, ?), 'null') WHEN 'null' THEN 0 "
        f"WHEN 'array' THEN json_array_length({doc.expr}, ?) ELSE 1 END"
    )
    test = " AND ".join(f"n {op} ?" for op, _ in bounds)
    return f"(SELECT {test} FROM (SELECT {n} AS n))", [*(b for _, b in bounds), path, path]


def _field_sql(doc: _Doc, c: FieldCondition) -> SQL:
    if c.values_count is not None:
        return _values_count_sql(doc, c)
    path = json_path(c.key)
    x = doc.x
    m = c.match
    if isinstance(m, MatchText):
        raise no_text_index(c)
    if isinstance(m, MatchValue):
        v = m.value
        check_value(v)
        if isinstance(v, bool):
            jt = "true" if v else "false"
            return _case(doc, path, [(jt, "1", [])], f"type = '{jt}'", [])
        if isinstance(v, str):
            return _case(doc, path, [("text", f"{x} = ?", [path, v])], "type = 'text' AND value = ?", [v])
        num = [(t, f"{x} = ?", [path, v]) for t in ("integer", "real")]
        return _case(doc, path, num, "type IN ('integer', 'real') AND value = ?", [v])
    if isinstance(m, MatchAny):
        values = list_values(m)
        lst = _in_list(values)
        types = (["text"] if any(isinstance(v, str) for v in values) else []) + (
            ["integer", "real"] if any(isinstance(v, int) for v in values) else []
        )
        # Mixed lists are safe: no affinity applies, so text '3' never equals integer 3.
        member = "IN (SELECT value FROM json_each(?))"
        scalar = [(t, f"{x} {member}", [path, lst]) for t in types]
        quoted = ", ".join(f"'{t}'" for t in types)
        return _case(doc, path, scalar, f"type IN ({quoted}) AND value {member}", [lst])
    if isinstance(m, MatchExcept):
        lst = _in_list(list_values(m))
        member = "IN (SELECT value FROM json_each(?))"
        scalar = [(t, f"{x} NOT {member}", [path, lst]) for t in ("text", "integer", "real")]
        scalar += [(t, "1", []) for t in ("true", "false", "object")]
        elem = f"type <> 'null' AND NOT (type IN ('text', 'integer', 'real') AND value {member})"
        return _case(doc, path, scalar, elem, [lst])
    if c.range is None:
        raise InvalidFilter("a field condition needs exactly one of match, range or values_count")
    dt = datetime_bounds(c.range)
    if dt is not None:  # strings compared as instants, through the same parser as a datetime index
        expr = " AND ".join(f"nestor_datetime({x}) {op} ?" for op, _ in dt)
        elem_dt = " AND ".join(["type = 'text'"] + [f"nestor_datetime(value) {op} ?" for op, _ in dt])
        return _case(doc, path, [("text", expr, [v for _, b in dt for v in (path, b)])], elem_dt, [b for _, b in dt])
    bounds = range_bounds(c.range)
    scalar_expr = " AND ".join(f"{x} {op} ?" for op, _ in bounds)
    scalar_params: list[object] = [v for _, b in bounds for v in (path, b)]
    elem = " AND ".join(["type IN ('integer', 'real')"] + [f"value {op} ?" for op, _ in bounds])
    numeric = [(t, scalar_expr, scalar_params) for t in ("integer", "real")]
    return _case(doc, path, numeric, elem, [b for _, b in bounds])


def _nested_sql(doc: _Doc, c: NestedCondition) -> SQL:
    """Some object of the array at the key satisfies the whole inner filter (keys relative to the object)."""
    path = json_path(c.nested.key)
    alias = f"n{doc.depth + 1}"
    inner, params = _filter_sql(_Doc(f"{alias}.value", doc.depth + 1), c.nested.filter)
    sql = (
        f"CASE json_type({doc.expr}, ?) WHEN 'array' THEN EXISTS(SELECT 1 FROM json_each({doc.expr}, ?) AS {alias} "
        f"WHERE {alias}.type = 'object' AND ({inner})) ELSE 0 END"
    )
    return sql, [path, path, *params]


def _condition_sql(doc: _Doc, c: Condition) -> SQL:
    if isinstance(c, Filter):
        return _filter_sql(doc, c)
    if isinstance(c, FieldCondition):
        return _field_sql(doc, c)
    if isinstance(c, NestedCondition):
        return _nested_sql(doc, c)
    if isinstance(c, HasIdCondition):
        if not c.has_id:
            raise InvalidFilter("has_id needs at least one id")
        if doc.depth:
            raise InvalidFilter("has_id is not allowed inside a nested filter: put it beside the nested")
        # pid holds json.dumps(id); match it against the same encoding.
        return "pid IN (SELECT value FROM json_each(?))", [json.dumps([json.dumps(i) for i in c.has_id])]
    if isinstance(c, IsEmptyCondition):
        path = json_path(c.is_empty.key)
        sql = (
            f"CASE IFNULL(json_type({doc.expr}, ?), 'null') WHEN 'null' THEN 1 "
            f"WHEN 'array' THEN json_array_length({doc.expr}, ?) = 0 ELSE 0 END"
        )
        return sql, [path, path]
    return f"json_type({doc.expr}, ?) IS 'null'", [json_path(c.is_null.key)]


def _join(parts: list[SQL], op: str) -> SQL:
    sql = f" {op} ".join(f"({s})" for s, _ in parts)
    return sql, [p for _, ps in parts for p in ps]


def _filter_sql(doc: _Doc, f: Filter) -> SQL:
    clauses: list[SQL] = []
    if f.must:
        clauses.append(_join([_condition_sql(doc, c) for c in f.must], "AND"))
    if f.should:
        clauses.append(_join([_condition_sql(doc, c) for c in f.should], "OR"))
    if f.must_not:
        sql, params = _join([_condition_sql(doc, c) for c in f.must_not], "OR")
        clauses.append((f"NOT ({sql})", params))
    if not clauses:
        return "1", []
    return _join(clauses, "AND")


def compile_filter(f: Filter) -> SQL:
    """A SQL boolean over the row's `pid` and `payload` columns, and its `?` parameters.

    Validates keys and values (InvalidFilter) but not the size limits: call `check_filter` first.
    """
    return _filter_sql(_Doc(), f)
