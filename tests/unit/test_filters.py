"""Payload filters: SQL compilation against SQLite, the Python reference, and their agreement."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from index.errors import InvalidFilter
from index.filters import check_filter, compile_filter, compile_matcher, json_path, matches
from nestor_client.models import (
    Condition,
    FieldCondition,
    Filter,
    HasIdCondition,
    IsEmptyCondition,
    IsNullCondition,
    KeyRef,
    MatchAny,
    MatchExcept,
    MatchValue,
    Range,
)

PointIdT = int | str
Rows = list[tuple[PointIdT, dict[str, Any] | None]]

SCHEMA = "CREATE TABLE points(pid TEXT PRIMARY KEY, label INTEGER NOT NULL UNIQUE, payload TEXT, seq INTEGER NOT NULL)"


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(":memory:")) as c:
        c.execute(SCHEMA)
        yield c


def load(conn: sqlite3.Connection, rows: Rows) -> None:
    conn.execute("DELETE FROM points")
    conn.executemany(
        "INSERT INTO points VALUES (?, ?, ?, ?)",
        [
            # Non-ASCII keys must be stored unescaped: SQLite compares raw object labels.
            (json.dumps(pid), i, None if p is None else json.dumps(p, ensure_ascii=False), i)
            for i, (pid, p) in enumerate(rows)
        ],
    )


def sql_ids(conn: sqlite3.Connection, f: Filter) -> set[PointIdT]:
    sql, params = compile_filter(f)
    return {json.loads(r[0]) for r in conn.execute(f"SELECT pid FROM points WHERE {sql}", params)}


def py_ids(rows: Rows, f: Filter) -> set[PointIdT]:
    return {pid for pid, p in rows if matches(f, pid, p)}


def F(spec: dict[str, Any]) -> Filter:
    return Filter.model_validate(spec)


def field(key: str, **clause: Any) -> dict[str, Any]:
    return {"key": key, **clause}


ROWS: Rows = [
    (1, {"city": "London", "n": 3, "tags": ["a", "b"], "flag": True, "nested": {"x": 1}}),
    (2, {"city": "Berlin", "n": 3.0, "tags": [], "flag": False, "nested": {"x": [1, 2]}}),
    ("s", {"city": ["London", "Paris"], "n": 1, "tags": ["c", None], "flag": 1}),
    (3, {"city": None, "n": "3", "tags": "a", "nested": [{"x": 1}]}),
    (4, None),
    (5, {"city": {"name": "London"}, "n": True, "tags": [["a"]], "flag": [True]}),
    ("7", {"n": [1.5, "x", 10], "tags": [None]}),
    (7, {"n": -2, "tags": ["a", "a"]}),
]

CASES: list[tuple[str, dict[str, Any], set[PointIdT]]] = [
    ("empty filter", {}, {1, 2, "s", 3, 4, 5, "7", 7}),
    ("empty lists", {"must": [], "should": [], "must_not": []}, {1, 2, "s", 3, 4, 5, "7", 7}),
    ("value str", {"must": [field("city", match={"value": "London"})]}, {1, "s"}),
    ("value str in array", {"must": [field("tags", match={"value": "a"})]}, {1, 3, 7}),
    ("value int matches int and float", {"must": [field("n", match={"value": 3})]}, {1, 2}),
    ("value int in array", {"must": [field("n", match={"value": 10})]}, {"7"}),
    ("value int never bool", {"must": [field("flag", match={"value": 1})]}, {"s"}),
    ("value true never 1", {"must": [field("flag", match={"value": True})]}, {1, 5}),
    ("value false", {"must": [field("flag", match={"value": False})]}, {2}),
    ("value str never number", {"must": [field("n", match={"value": "3"})]}, {3}),
    ("nested key", {"must": [field("nested.x", match={"value": 1})]}, {1, 2}),
    ("any", {"must": [field("city", match={"any": ["Paris", "Berlin"]})]}, {2, "s"}),
    ("any mixed types", {"must": [field("n", match={"any": ["3", 1]})]}, {3, "s"}),
    ("any array elements", {"must": [field("tags", match={"any": ["b", "c"]})]}, {1, "s"}),
    ("except scalar", {"must": [field("city", match={"except": ["London"]})]}, {2, "s", 5}),
    ("except array any element", {"must": [field("tags", match={"except": ["a"]})]}, {1, "s", 5}),
    ("except numbers", {"must": [field("n", match={"except": [3, 1]})]}, {3, 5, "7", 7}),
    ("except bool always", {"must": [field("flag", match={"except": [1]})]}, {1, 2, 5}),
    ("range", {"must": [field("n", range={"gte": 1, "lt": 3})]}, {"s", "7"}),
    ("range excludes bools and strs", {"must": [field("n", range={"gt": -10})]}, {1, 2, "s", "7", 7}),
    ("range array", {"must": [field("n", range={"gt": 5})]}, {"7"}),
    ("range inf", {"must": [field("n", range={"lt": float("inf")})]}, {1, 2, "s", "7", 7}),
    ("has_id int and str", {"must": [{"has_id": [7, "s"]}]}, {7, "s"}),
    ("has_id str 7 is not 7", {"must": [{"has_id": ["7"]}]}, {"7"}),
    ("is_empty: [] and no payload", {"must": [{"is_empty": {"key": "tags"}}]}, {2, 4}),
    ("is_empty missing/null", {"must": [{"is_empty": {"key": "city"}}]}, {3, 4, "7", 7}),
    ("is_null", {"must": [{"is_null": {"key": "city"}}]}, {3}),
    ("is_null not [null]", {"must": [{"is_null": {"key": "tags"}}]}, set()),
    (
        "nested through array is missing",
        {"must": [{"is_empty": {"key": "nested.x"}}]},
        {"s", 3, 4, 5, "7", 7},
    ),
    (
        "should",
        {"should": [field("city", match={"value": "Berlin"}), {"has_id": [7]}]},
        {2, 7},
    ),
    ("must_not", {"must_not": [field("tags", match={"value": "a"}), {"has_id": [4]}]}, {2, "s", 5, "7"}),
    (
        "must_not missing key keeps the row",
        {"must_not": [field("flag", match={"value": True})]},
        {2, "s", 3, 4, "7", 7},
    ),
    (
        "nested filter",
        {
            "must": [
                {"should": [field("n", match={"value": 3}), field("n", range={"lt": 0})]},
                {"must_not": [{"has_id": [2]}]},
            ]
        },
        {1, 7},
    ),
    (
        "all clauses",
        {
            "must": [field("tags", match={"any": ["a", "c"]})],
            "should": [{"has_id": [1, 3]}, {"is_null": {"key": "city"}}],
            "must_not": [field("flag", match={"value": True})],
        },
        {3},
    ),
]


@pytest.mark.parametrize(("spec", "expected"), [(s, e) for _, s, e in CASES], ids=[n for n, _, _ in CASES])
def test_clauses(conn: sqlite3.Connection, spec: dict[str, Any], expected: set[PointIdT]) -> None:
    load(conn, ROWS)
    f = F(spec)
    assert sql_ids(conn, f) == expected
    assert py_ids(ROWS, f) == expected


def test_except_missing_and_null_do_not_match(conn: sqlite3.Connection) -> None:
    rows: Rows = [(1, {}), (2, {"k": None}), (3, None), (4, {"k": []}), (5, {"k": [None]}), (6, {"k": {}})]
    load(conn, rows)
    f = F({"must": [field("k", match={"except": ["x"]})]})
    assert sql_ids(conn, f) == py_ids(rows, f) == {6}


def test_sql_is_parameterised_and_injection_safe(conn: sqlite3.Connection) -> None:
    key = "it's'); DROP TABLE points; --"
    rows: Rows = [(1, {key: "x'y"}), (2, {key: "z"})]
    load(conn, rows)
    f = F({"must": [field(key, match={"value": "x'y"})]})
    sql, params = compile_filter(f)
    assert key not in sql and "x'y" not in sql
    assert json_path(key) in params
    assert sql_ids(conn, f) == py_ids(rows, f) == {1}
    assert conn.execute("SELECT count(*) FROM points").fetchone() == (2,)


def test_json_path_quoting() -> None:
    assert json_path("a.b") == '$."a"."b"'
    assert json_path("x y.é") == '$."x y"."é"'


def test_unicode_and_odd_keys(conn: sqlite3.Connection) -> None:
    rows: Rows = [(1, {"é": {"x y": 1, "$": 2}}), (2, {"é": {"x y": 2}})]
    load(conn, rows)
    for f, want in [
        (F({"must": [field("é.x y", match={"value": 1})]}), {1}),
        (F({"must": [field("é.$", range={"gte": 2})]}), {1}),
    ]:
        assert sql_ids(conn, f) == py_ids(rows, f) == want


def test_big_integers_behave_as_floats(conn: sqlite3.Connection) -> None:
    # SQLite reads integers past int64 as reals; the reference does the same.
    rows: Rows = [(1, {"n": 2**63 + 1}), (2, {"n": 2**63 - 1}), (3, {"n": [2**64]})]
    load(conn, rows)
    for spec in [
        {"must": [field("n", range={"gt": 2.0**63})]},
        {"must": [field("n", range={"gte": 2.0**63})]},
        {"must": [field("n", match={"value": 2**63 - 1})]},
        {"must": [field("n", match={"except": [2**63 - 1]})]},
    ]:
        f = F(spec)
        assert sql_ids(conn, f) == py_ids(rows, f)


def test_nul_in_payload_strings_agree(conn: sqlite3.Connection) -> None:
    rows: Rows = [(1, {"s": "x\x00y"}), (2, {"s": ["x\x00y"]}), (3, {"s": "x"})]
    load(conn, rows)
    for spec in [
        {"must": [field("s", match={"value": "x"})]},
        {"must": [field("s", match={"any": ["x", "y"]})]},
        {"must": [field("s", match={"except": ["x"]})]},
    ]:
        f = F(spec)
        assert sql_ids(conn, f) == py_ids(rows, f)


def test_compile_matcher_reuse() -> None:
    m = compile_matcher(F({"must": [field("tags", match={"value": "a"})]}))
    assert [pid for pid, p in ROWS if m(pid, p)] == [1, 3, 7]


# ---------------------------------------------------------------------------------------------
# Malformed filters


BAD_KEYS = ['a"b', "a\\b", "a[0]", "a]", "a..b", ".a", "a.", "a\nb", "a\x00b", "a\x7f", "a\ud800"]


def _all_paths(f: Filter) -> list[Any]:
    return [
        lambda: compile_filter(f),
        lambda: matches(f, 1, {"a": 1}),
        lambda: compile_matcher(f),
        lambda: check_filter(f),
    ]


@pytest.mark.parametrize("key", BAD_KEYS)
@pytest.mark.parametrize("kind", ["match", "range", "is_empty", "is_null"])
def test_invalid_keys(key: str, kind: str) -> None:
    # model_construct: some of these (lone surrogates) pydantic already refuses; check ours too.
    cond: Condition
    if kind == "match":
        cond = FieldCondition.model_construct(key=key, match=MatchValue(value="x"), range=None)
    elif kind == "range":
        cond = FieldCondition.model_construct(key=key, match=None, range=Range(gt=1))
    elif kind == "is_empty":
        cond = IsEmptyCondition(is_empty=KeyRef.model_construct(key=key))
    else:
        cond = IsNullCondition(is_null=KeyRef.model_construct(key=key))
    f = Filter.model_construct(should=[Filter.model_construct(must_not=[cond])])
    for call in _all_paths(f):
        with pytest.raises(InvalidFilter, match="key"):
            call()


@pytest.mark.parametrize(
    ("cond", "message"),
    [
        (FieldCondition(key="a", match=MatchValue(value=2**63)), "64 bits"),
        (FieldCondition(key="a", match=MatchAny(any=[1, -(2**63) - 1])), "64 bits"),
        (FieldCondition(key="a", match=MatchExcept(**{"except": ["ok", 2**70]})), "64 bits"),
        (FieldCondition(key="a", match=MatchValue(value="x\x00")), "NUL"),
        (FieldCondition(key="a", match=MatchAny(any=["\udc80"])), "surrogate"),
        (FieldCondition(key="a", range=Range(gte=float("nan"))), "NaN"),
        (FieldCondition.model_construct(key="a", match=None, range=None), "exactly one"),
        (FieldCondition.model_construct(key="a", match=MatchAny.model_construct(any=[])), "at least one"),
        (HasIdCondition.model_construct(has_id=[]), "at least one id"),
    ],
)
def test_invalid_values(cond: Condition, message: str) -> None:
    f = Filter.model_construct(must=[cond])
    for call in _all_paths(f):
        with pytest.raises(InvalidFilter, match=message):
            call()


def test_invalid_filter_is_unprocessable() -> None:
    with pytest.raises(InvalidFilter) as err:
        compile_filter(F({"must": [field('"', match={"value": 1})]}))
    assert err.value.status == 422 and err.value.type == "invalid_filter"


# ---------------------------------------------------------------------------------------------
# Limits


def nested(depth: int) -> Filter:
    f = Filter(must=[HasIdCondition(has_id=[1])])
    for _ in range(depth - 1):
        f = Filter(must=[f])
    return f


def test_depth_limit() -> None:
    check_filter(nested(8))
    with pytest.raises(InvalidFilter, match="max_depth=8"):
        check_filter(nested(9))
    check_filter(nested(9), max_depth=9)
    with pytest.raises(InvalidFilter, match="max_depth=2"):
        check_filter(nested(3), max_depth=2)


def test_condition_limit() -> None:
    leaf = HasIdCondition(has_id=[1])
    check_filter(Filter(must=[leaf] * 200, should=[leaf] * 56))
    with pytest.raises(InvalidFilter, match="max_conditions=256"):
        check_filter(Filter(must=[leaf] * 200, should=[leaf] * 56, must_not=[leaf]))
    # Nested filters count as conditions, and so do their contents.
    inner = Filter(must=[leaf] * 3)
    check_filter(Filter(must=[inner, inner]), max_conditions=8)
    with pytest.raises(InvalidFilter, match="max_conditions=7"):
        check_filter(Filter(must=[inner, inner]), max_conditions=7)


def test_limits_at_maximum_still_compile(conn: sqlite3.Connection) -> None:
    load(conn, ROWS)
    leaf = FieldCondition(key="n", range=Range(gt=0, lt=100))
    wide = Filter(must=[leaf] * 128, should=[leaf] * 128)
    check_filter(wide)
    deep = nested(8)
    for f in (wide, deep):
        assert sql_ids(conn, f) == py_ids(ROWS, f)


# ---------------------------------------------------------------------------------------------
# Property: SQL and the reference agree on random payloads and filters
#
# Filter values are drawn partly from the values in the rows, so that conditions hit some rows
# and miss others; drawn blindly, almost every filter matches all rows or none.

KEYS = ["a", "b", "c", "c.d", "é"]
INTS = [0, 1, 3, -1, 2**63 - 1, -(2**63)]

filter_str = st.sampled_from(["", "a", "b", "3"]) | st.text(max_size=3).filter(lambda s: "\x00" not in s)
filter_int = st.sampled_from(INTS) | st.integers(-4, 4)
common = st.sampled_from([None, True, False, 1, 3, 3.0, 0.5, "a", "b", "3"])
exotic = (
    st.sampled_from([2**63, 2**64, -(2**63) - 1, 0.0, -0.0, -1.5, 1e300, "a\x00b"])
    | st.floats(allow_nan=False, allow_infinity=False)
    | filter_str
    | filter_int
)
scalar = common | common | exotic
value = scalar | st.lists(
    scalar | st.lists(scalar, max_size=2) | st.dictionaries(st.sampled_from(["a", "d"]), scalar, max_size=2),
    max_size=4,
)
obj = st.dictionaries(st.sampled_from(["d", "a"]), value, max_size=2)
payload_dict = st.dictionaries(st.sampled_from(["a", "b", "c", "é"]), value | obj, min_size=1, max_size=4)
payload = st.none() | payload_dict | payload_dict
point_id = st.integers(0, 8) | st.sampled_from(["a", "7", "é", "x y"])


def key_values(rows: Rows) -> list[tuple[str, Any]]:
    """(key, value) for every filter key and every scalar found there, array elements included."""
    missing = object()
    out: list[tuple[str, Any]] = []
    for _, p in rows:
        for k in KEYS:
            v: Any = p
            for seg in k.split("."):
                v = v.get(seg, missing) if isinstance(v, dict) else missing
            for e in v if isinstance(v, list) else [v]:
                if e is not missing and not isinstance(e, dict | list):
                    out.append((k, e))
    return out


def is_atom(v: Any) -> bool:
    """A valid match.any / match.except entry."""
    if isinstance(v, str):
        return "\x00" not in v
    return type(v) is int and -(2**63) <= v < 2**63


def one_of_or(options: list[Any], fallback: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.sampled_from(options) | fallback if options else fallback


def filter_strategy(rows: Rows) -> st.SearchStrategy[Filter]:
    kvs = key_values(rows)
    atom = filter_str | filter_int
    key = st.sampled_from(KEYS)
    bound = st.floats(allow_nan=False) | st.sampled_from([0.5, 2**62, float("inf")])

    # Blind conditions explore; conditions built from a value the rows hold hit some of them.
    blind_match = (
        st.builds(MatchValue, value=atom | st.booleans())
        | st.builds(MatchAny, any=st.lists(atom, min_size=1, max_size=3))
        | st.lists(atom, min_size=1, max_size=3).map(lambda v: MatchExcept(**{"except": v}))
    )
    blind_range = st.dictionaries(st.sampled_from(["gt", "gte", "lt", "lte"]), bound, min_size=1, max_size=2).map(
        lambda b: Range(**b)
    )
    ids = st.lists(one_of_or([pid for pid, _ in rows], point_id), min_size=1, max_size=3)
    null_key = one_of_or([k for k, v in kvs if v is None], key)
    leaves: list[st.SearchStrategy[Condition]] = [
        st.builds(FieldCondition, key=key, match=blind_match),
        st.builds(FieldCondition, key=key, range=blind_range),
        st.builds(HasIdCondition, has_id=ids),
        st.builds(IsEmptyCondition, is_empty=st.builds(KeyRef, key=key)),
        st.builds(IsNullCondition, is_null=st.builds(KeyRef, key=null_key)),
    ]
    values = [(k, v) for k, v in kvs if is_atom(v) or isinstance(v, bool)]
    if values:
        leaves.append(st.sampled_from(values).map(lambda kv: FieldCondition(key=kv[0], match=MatchValue(value=kv[1]))))
    atoms = [(k, v) for k, v in kvs if is_atom(v)]
    if atoms:
        listed = st.tuples(st.sampled_from(atoms), st.lists(atom, max_size=2))
        leaves.append(listed.map(lambda t: FieldCondition(key=t[0][0], match=MatchAny(any=[t[0][1], *t[1]]))))
        leaves.append(
            listed.map(lambda t: FieldCondition(key=t[0][0], match=MatchExcept(**{"except": [t[0][1], *t[1]]})))
        )
    nums = [(k, float(v)) for k, v in kvs if type(v) in (int, float)]
    if nums:
        op = st.sampled_from(["gt", "gte", "lt", "lte"])
        leaves.append(
            st.tuples(st.sampled_from(nums), op, op, st.none() | bound).map(
                lambda t: FieldCondition(key=t[0][0], range=Range(**{t[2]: t[3], t[1]: t[0][1]}))
            )
        )
    # The top filter has at least one clause: the empty filter is covered by the unit tests.
    top = filter_of(st.recursive(st.one_of(leaves), filter_of, max_leaves=6))
    return top.filter(lambda f: bool(f.must or f.should or f.must_not))


def filter_of(children: st.SearchStrategy[Condition]) -> st.SearchStrategy[Filter]:
    # Short clauses: long random conjunctions almost never match anything, which tests little.
    clause: st.SearchStrategy[list[Condition] | None] = (
        st.none() | st.lists(children, min_size=1, max_size=2) | st.just([])
    )
    return st.builds(Filter, must=clause, should=clause, must_not=clause)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Rows, Filter]:
    ids = draw(st.lists(point_id, unique_by=json.dumps, min_size=3, max_size=8))
    rows: Rows = [(pid, draw(payload)) for pid in ids]
    return rows, draw(filter_strategy(rows))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_sql_agrees_with_reference(case: tuple[Rows, Filter]) -> None:
    rows, f = case
    check_filter(f)
    with closing(sqlite3.connect(":memory:")) as c:
        c.execute(SCHEMA)
        load(c, rows)
        assert sql_ids(c, f) == py_ids(rows, f)


segment = st.text(
    alphabet=st.characters(exclude_categories=("Cs", "Cc"), exclude_characters='"\\[].'),
    min_size=1,
    max_size=4,
)


@settings(max_examples=100, deadline=None)
@given(segs=st.lists(segment, min_size=1, max_size=3), v=filter_str | filter_int, other=scalar)
def test_any_valid_key_addresses_its_value(segs: list[str], v: str | int, other: Any) -> None:
    p: Any = v
    for s in reversed(segs):
        p = {s: p}
    rows: Rows = [(1, p), (2, {segs[0]: other})]
    f = Filter(must=[FieldCondition(key=".".join(segs), match=MatchValue(value=v))])
    with closing(sqlite3.connect(":memory:")) as c:
        c.execute(SCHEMA)
        load(c, rows)
        got = sql_ids(c, f)
    assert got == py_ids(rows, f)
    assert 1 in got
