"""Payload indexes against the pure-Python filter reference (`index.filters.matches`) and the SQL path.

Properties (Hypothesis): over random payloads of mixed types (the index must agree with SQL on values
of other types too: `except`, `is_empty`, arrays), random filters on indexed keys answer exactly what
the reference answers, before and after overwrites and deletes; a filter with an unindexed key is left
to SQL. Then, on a collection: the indexed answer equals the SQL answer after every write, through a
restart, and for a background build racing writes; text and datetime indexes; bad input is a 422 that
changes nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from index.errors import InvalidFilter, NotReady
from index.filters import compile_filter, matches
from index.payload import PayloadIndexes, build_indexes
from index.payload_index import labels_of, parse_datetime, tokenize
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
    MatchText,
    MatchValue,
    PayloadSchemaType,
    Range,
)
from tests.unit.index.conftest import Engine

S = PayloadSchemaType
SCHEMA = {"k": S.keyword, "n": S.integer, "f": S.float, "b": S.bool, "c.d": S.keyword}
Payload = dict[str, Any] | None

# ---------------------------------------------------------------------------------------------
# Random payloads: every key may hold any JSON type, so values of other types are exercised.

STRS = ["a", "b", "c", "é"]
INTS = [0, 1, 3, -2, 2**63 - 1]
scalar = st.sampled_from([None, True, False, 1, 3, 3.0, 0.5, -2, 2**63 - 1, 2**64, 1e300, "a", "b", "c", "é", "3"])
value = scalar | st.lists(scalar | st.lists(scalar, max_size=2) | st.just({"d": "a"}), max_size=3)
payload_dict = st.fixed_dictionaries(
    {},
    optional={
        "k": value,
        "n": value,
        "f": value,
        "b": value,
        "c": st.fixed_dictionaries({}, optional={"d": value}) | value,
        "u": value,
    },
)
payload: st.SearchStrategy[Payload] = st.none() | payload_dict | payload_dict

bound = st.sampled_from([-2.0, 0.0, 0.5, 1.0, 3.0, 2.0**63, float("inf"), float("-inf"), 1e300, -0.5])
ranges = st.dictionaries(st.sampled_from(["gt", "gte", "lt", "lte"]), bound, min_size=1, max_size=2).map(
    lambda b: Range(**b)
)
strs = st.lists(st.sampled_from(STRS), min_size=1, max_size=3)
ints = st.lists(st.sampled_from(INTS), min_size=1, max_size=3)


def _field(key: str, **clause: Any) -> FieldCondition:
    return FieldCondition(key=key, **clause)


def leaves(keys: list[str], n_ids: int) -> st.SearchStrategy[Condition]:
    per_key: dict[str, st.SearchStrategy[Condition]] = {
        "k": st.one_of(
            st.sampled_from(STRS).map(lambda v: _field("k", match=MatchValue(value=v))),
            strs.map(lambda v: _field("k", match=MatchAny(any=v))),
            strs.map(lambda v: _field("k", match=MatchExcept(**{"except": v}))),
        ),
        "c.d": st.sampled_from(STRS).map(lambda v: _field("c.d", match=MatchValue(value=v))),
        "n": st.one_of(
            st.sampled_from(INTS).map(lambda v: _field("n", match=MatchValue(value=v))),
            ints.map(lambda v: _field("n", match=MatchAny(any=v))),
            ints.map(lambda v: _field("n", match=MatchExcept(**{"except": v}))),
            ranges.map(lambda r: _field("n", range=r)),
        ),
        "f": ranges.map(lambda r: _field("f", range=r)),
        "b": st.booleans().map(lambda v: _field("b", match=MatchValue(value=v))),
        "u": st.sampled_from(STRS).map(lambda v: _field("u", match=MatchValue(value=v))),
    }
    key = st.sampled_from(keys)
    return st.one_of(
        *(per_key[k] for k in keys),
        key.map(lambda k: IsEmptyCondition(is_empty=KeyRef(key=k))),
        key.map(lambda k: IsNullCondition(is_null=KeyRef(key=k))),
        st.lists(st.integers(0, n_ids + 2), min_size=1, max_size=3).map(lambda ids: HasIdCondition(has_id=ids)),
    )


def filter_of(children: st.SearchStrategy[Condition]) -> st.SearchStrategy[Filter]:
    clause = st.none() | st.lists(children, min_size=1, max_size=2)
    return st.builds(Filter, must=clause, should=clause, must_not=clause)


def filters(keys: list[str], n_ids: int) -> st.SearchStrategy[Filter]:
    return filter_of(st.recursive(leaves(keys, n_ids), filter_of, max_leaves=5))


def reference(rows: dict[int, tuple[int, Payload]], f: Filter) -> set[int]:
    """Labels of the live rows (label -> (id, payload)) that the pure-Python reference matches."""
    return {label for label, (pid, p) in rows.items() if matches(f, pid, p)}


class Model:
    """PayloadIndexes under writes, next to the rows it should hold: label -> (id, payload)."""

    def __init__(self, payloads: list[Payload]) -> None:
        self.rows = {i: (i, p) for i, p in enumerate(payloads)}
        self.label_of = {i: i for i in range(len(payloads))}
        self.n = len(payloads)
        self.idx = PayloadIndexes(np.arange(self.n, dtype=np.int64))
        built = build_indexes(SCHEMA, ((label, p) for label, (_, p) in self.rows.items()))
        for key, fi in built.items():
            self.idx.install(key, fi)

    def overwrite(self, ids: list[int], payloads: list[Payload]) -> None:
        start, old = self.n, []
        for off, (pid, p) in enumerate(zip(ids, payloads, strict=True)):
            if (prev := self.label_of.get(pid)) is not None:
                old.append(prev)
                del self.rows[prev]
            self.label_of[pid] = start + off
            self.rows[start + off] = (pid, p)
        self.n += len(ids)
        self.idx.upsert(start, payloads, np.asarray(old, np.int64))

    def delete(self, ids: list[int]) -> None:
        dead = [self.label_of.pop(pid) for pid in ids if pid in self.label_of]
        for label in dead:
            del self.rows[label]
        self.idx.delete(np.asarray(dead, np.int64))

    def answer(self, f: Filter) -> set[int] | None:
        if not self.idx.check(f, SCHEMA):
            return None
        got = self.idx.select(f, self.label_of)
        assert got is not None
        return set(labels_of(got).tolist())


INDEXED = ["k", "n", "f", "b", "c.d"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), payloads=st.lists(payload, min_size=3, max_size=10))
def test_indexed_filters_agree_with_the_reference(data: st.DataObject, payloads: list[Payload]) -> None:
    m = Model(payloads)
    for f in data.draw(st.lists(filters(INDEXED, len(payloads)), min_size=1, max_size=4)):
        assert m.answer(f) == reference(m.rows, f), f


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    payloads=st.lists(payload, min_size=3, max_size=8),
    writes=st.lists(
        st.tuples(st.booleans(), st.lists(st.integers(0, 10), min_size=1, max_size=3, unique=True)), max_size=4
    ),
)
def test_overwrites_and_deletes_keep_the_indexes_exact(
    data: st.DataObject, payloads: list[Payload], writes: list[tuple[bool, list[int]]]
) -> None:
    m = Model(payloads)
    f = data.draw(filters(INDEXED, 10))
    for is_delete, ids in writes:
        if is_delete:
            m.delete(ids)
        else:
            m.overwrite(ids, [data.draw(payload) for _ in ids])
        assert m.answer(f) == reference(m.rows, f), f


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), payloads=st.lists(payload, min_size=3, max_size=8))
def test_a_filter_with_an_unindexed_key_is_left_to_sql(data: st.DataObject, payloads: list[Payload]) -> None:
    m = Model(payloads)
    f = data.draw(filters(["k", "n", "u"], len(payloads)))
    keys = {c.key for c in _all_leaves(f) if isinstance(c, FieldCondition)}
    keys |= {c.is_empty.key for c in _all_leaves(f) if isinstance(c, IsEmptyCondition)}
    keys |= {c.is_null.key for c in _all_leaves(f) if isinstance(c, IsNullCondition)}
    got = m.answer(f)
    assert (got is None) == ("u" in keys)
    if got is not None:
        assert got == reference(m.rows, f)


def _all_leaves(f: Filter) -> Iterator[Condition]:
    for clause in (f.must, f.should, f.must_not):
        for c in clause or ():
            yield from _all_leaves(c) if isinstance(c, Filter) else [c]


def test_every_range_bound_on_every_number() -> None:
    """Exhaustive over a pool: the int64 interval arithmetic (floor, ceil, infinities) and float ranges."""
    numbers = [-3, -1, 0, 1, 2, 3, 2**53 + 1, 2**63 - 1, -(2**63), -1.5, -0.0, 0.5, 1.0, 2.5, 1e300, 2**64]
    m = Model([{"n": v, "f": v} for v in numbers] + [{"n": [1, 2.5]}, {"n": "1"}, {"n": True}])
    pool = [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 2.0**53, 2.0**63, float("inf"), float("-inf")]
    for key in ("n", "f"):
        for op in ("gt", "gte", "lt", "lte"):
            for b in pool:
                f = Filter(must=[_field(key, range=Range(**{op: b}))])
                assert m.answer(f) == reference(m.rows, f), f
        for v in (0, 1, 3, 2**53 + 1, 2**63 - 1):
            f = Filter(must=[_field("n", match=MatchValue(value=v))])
            assert m.answer(f) == reference(m.rows, f), f


def test_compaction_drops_dead_entries_and_keeps_answers() -> None:
    m = Model([{"k": "a", "n": i} for i in range(100)])
    f = Filter(must=[_field("k", match=MatchValue(value="a")), _field("n", range=Range(gte=10))])
    for round_ in range(3):
        m.overwrite(list(range(100)), [{"k": "a", "n": i + round_} for i in range(100)])
    m.idx._stale = 10**9  # force the next write to compact
    m.delete([0])
    assert m.idx.fields["k"].entries() == 99 and m.idx.fields["n"].entries() == 99
    assert m.answer(f) == reference(m.rows, f)


# ---------------------------------------------------------------------------------------------
# Text and datetime


def test_text_index_matches_every_word_case_insensitively() -> None:
    rows = {
        0: (0, {"t": "The quick brown Fox"}),
        1: (1, {"t": ["quick", "fox jumps"]}),  # the words of an array's strings count together
        2: (2, {"t": "slow fox"}),
        3: (3, {"t": 7}),
        4: (4, None),
    }
    idx = PayloadIndexes(np.arange(5, dtype=np.int64))
    idx.install("t", build_indexes({"t": S.text}, ((lab, p) for lab, (_, p) in rows.items()))["t"])
    schema = {"t": S.text}

    def text(q: str) -> set[int]:
        f = Filter(must=[_field("t", match=MatchText(text=q))])
        assert idx.check(f, schema)
        got = idx.select(f, {})
        assert got is not None
        return set(labels_of(got).tolist())

    assert text("fox") == {0, 1, 2}
    assert text("QUICK, fox!") == {0, 1}
    assert text("quick slow") == set()
    assert text("cat") == set()
    for bad in (Filter(must=[_field("t", match=MatchText(text="!!"))]), _eq("t", "fox")):
        with pytest.raises(InvalidFilter):
            idx.check(bad, schema)
    assert tokenize("Hello, World_2 é!") == ["hello", "world_2", "é"]


def _eq(key: str, v: Any) -> Filter:
    return Filter(must=[_field(key, match=MatchValue(value=v))])


def test_datetime_ranges_take_rfc3339_bounds() -> None:
    when = ["2024-01-01T00:00:00Z", "2024-06-01T12:00:00+02:00", "2025-01-01", "not a date", 17]
    rows = {i: (i, {"at": w}) for i, w in enumerate(when)} | {5: (5, {"at": [when[0], when[2]]})}
    idx = PayloadIndexes(np.arange(6, dtype=np.int64))
    idx.install("at", build_indexes({"at": S.datetime}, ((lab, p) for lab, (_, p) in rows.items()))["at"])
    schema = {"at": S.datetime}

    def between(**bounds: Any) -> set[int]:
        f = Filter(must=[_field("at", range=Range(**bounds))])
        assert idx.check(f, schema)
        got = idx.select(f, {})
        assert got is not None
        return set(labels_of(got).tolist())

    assert between(gte="2024-03-01T00:00:00Z") == {1, 2, 5}
    assert between(lt="2024-06-01T10:00:00Z") == {0, 5}  # 12:00+02:00 is 10:00Z
    assert between(lte="2024-06-01T10:00:00Z", gt="2024-01-01T00:00:00Z") == {1}
    jan = parse_datetime("2024-01-01T00:00:00Z")
    assert jan is not None and between(gte=jan, lt=jan + 1) == {0, 5}  # numbers are epoch seconds
    for bad in ("yesterday", "2024-13-01"):
        with pytest.raises(InvalidFilter, match="RFC 3339"):
            idx.check(Filter(must=[_field("at", range=Range(gte=bad))]), schema)
    # without a datetime index, SQL compares the strings as instants through the same parser
    compile_filter(Filter(must=[_field("at", range=Range(gte="2024-01-01"))]))
    with pytest.raises(InvalidFilter, match="RFC 3339"):
        compile_filter(Filter(must=[_field("at", range=Range(gte="2024-01-01", lt="soon"))]))


def test_filter_values_must_fit_the_index_type() -> None:
    idx = PayloadIndexes(np.arange(0, dtype=np.int64))
    schema = {"k": S.keyword, "n": S.integer, "f": S.float, "b": S.bool, "id": S.uuid}
    bad = [
        _eq("k", 3),
        Filter(must=[_field("k", range=Range(gt=1))]),
        _eq("n", "3"),
        _eq("n", True),
        Filter(must=[_field("n", match=MatchAny(any=[1, "x"]))]),
        _eq("f", 1),
        _eq("b", "true"),
        Filter(must=[_field("b", match=MatchExcept(**{"except": [1]}))]),
        _eq("id", "not-a-uuid"),
        Filter(must=[_field("k", match=MatchText(text="a"))]),
        Filter(should=[Filter(must_not=[_eq("n", "deep")])]),
    ]
    for f in bad:
        with pytest.raises(InvalidFilter):
            idx.check(f, schema)
    assert not idx.check(_eq("id", "1b4e28ba-2fa1-11d2-883f-0016d3cca427"), schema)  # valid, not built yet
    with pytest.raises(NotReady, match="still being built"):  # SQL cannot answer match.text meanwhile
        idx.check(Filter(must=[_field("t", match=MatchText(text="a"))]), {"t": S.text})


# ---------------------------------------------------------------------------------------------
# On a collection: the indexed answer is the SQL answer, after every write and a restart


def _sql(coll: Any, f: Filter) -> list[int]:
    where, params = compile_filter(f)
    return coll.points.select_labels(where, params).tolist()  # type: ignore[no-any-return]


PROBES = [
    _eq("k", "a"),
    Filter(must=[_field("n", range=Range(gte=2))], must_not=[_eq("k", "b")]),
    Filter(should=[Filter(must=[IsEmptyCondition(is_empty=KeyRef(key="k"))]), _eq("b", True)]),
    Filter(must=[_field("k", match=MatchExcept(**{"except": ["a"]})), HasIdCondition(has_id=[1, 2, 3, 4, 5])]),
]


def _agree(coll: Any) -> None:
    for f in PROBES:
        labels, indexed = coll._match(f)
        assert indexed
        assert labels.tolist() == _sql(coll, f), f
        assert coll.count_where(f) == len(labels)


def _vec(n: int, seed: int = 0) -> Any:
    return np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)


def test_collection_indexes_follow_every_write_and_survive_restart(engine: Engine) -> None:
    coll = engine.create("p", {"dim": 4, "index": {"type": "flat"}, "payload_schema": {"k": "keyword"}})
    rng = np.random.default_rng(3)

    def pay(i: int) -> Payload:
        r = int(rng.integers(6))
        return [None, {"k": "a", "n": i}, {"k": ["b", "a"], "n": 2.5}, {"k": 3, "b": True}, {"k": []}, {"n": i}][r]

    coll.upsert(list(range(40)), _vec(40), [pay(i) for i in range(40)])
    for key, s in (("n", S.integer), ("b", S.bool)):
        assert coll.create_payload_index(key, s)
    assert not coll.create_payload_index("n", S.integer)  # already there
    _agree(coll)
    for step in range(6):
        ids = [int(i) for i in rng.choice(60, 10, replace=False)]
        coll.upsert(ids, _vec(10, step), [pay(i) for i in ids])  # new points and overwrites
        _agree(coll)
        coll.delete([int(i) for i in rng.choice(60, 3, replace=False)])
        _agree(coll)
        coll.delete_where(Filter(must=[_field("n", range=Range(gt=55))]))
        _agree(coll)
    before = [coll.labels_where(f).tolist() for f in PROBES]
    info = coll.info().payload_schema
    assert set(info) == {"k", "n", "b"} and all(i.state == "ready" and i.ram > 0 for i in info.values())
    assert info["b"].points == coll.count_where(Filter(must=[_field("b", match=MatchValue(value=True))]))
    engine.restart()
    coll = engine.get("p")
    assert coll.config.payload_schema == {"k": S.keyword, "n": S.integer, "b": S.bool}
    assert [coll.labels_where(f).tolist() for f in PROBES] == before
    _agree(coll)
    assert coll.delete_payload_index("b") and not coll.delete_payload_index("b")
    assert coll._match(PROBES[2])[1] is False  # "b" is scanned in SQL again
    engine.restart()
    assert engine.get("p").config.payload_schema == {"k": S.keyword, "n": S.integer}


def test_a_background_build_catches_up_with_racing_writes(engine: Engine) -> None:
    coll = engine.create("race", {"dim": 4, "index": {"type": "flat"}})
    coll.upsert(list(range(2000)), _vec(2000), [{"k": "ab"[i % 2], "n": i % 7} for i in range(2000)])
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            ids = [(i * 13 + j) % 2500 for j in range(20)]
            coll.upsert(ids, _vec(20, i), [{"k": "abc"[(i + j) % 3], "n": j} for j in range(20)])
            coll.delete([(i * 7) % 2500])
            i += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for key, s in (("k", S.keyword), ("n", S.integer), ("b", S.bool)):
            coll.create_payload_index(key, s)
    finally:
        stop.set()
        writer.join()
    _agree(coll)


def test_readers_see_whole_batches(engine: Engine) -> None:
    """Each batch flips every point between "a" and "b": a reader counts all of them or none, never a mix."""
    n = 200
    coll = engine.create("atom", {"dim": 4, "index": {"type": "flat"}, "payload_schema": {"k": "keyword"}})
    coll.upsert(list(range(n)), _vec(n), [{"k": "a"}] * n)
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            coll.upsert(list(range(n)), _vec(n, i), [{"k": "ab"[i % 2]}] * n)

    is_a, not_a = _eq("k", "a"), Filter(must_not=[_field("k", match=MatchValue(value="a"))])
    seen: set[int] = set()
    writer = threading.Thread(target=write)
    writer.start()
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline or len(seen) < 2:
            seen.add(coll.count_where(is_a))
            assert coll.count_where(not_a) in (0, n)
            assert len(coll.labels_where(is_a)) in (0, n)
            assert time.monotonic() < deadline + 10
    finally:
        stop.set()
        writer.join()
    assert seen == {0, n}


def test_bad_input_is_refused_and_changes_nothing(engine: Engine) -> None:
    coll = engine.create("bad", {"dim": 4, "payload_schema": {"k": "keyword", "at": "datetime"}})
    coll.upsert([1, 2], _vec(2), [{"k": "a", "at": "2024-01-01T00:00:00Z"}, {"k": "b"}])
    seq = coll.seq
    for f in (
        _eq("k", 1),
        Filter(must=[_field("at", range=Range(gte="soon"))]),
        Filter(must=[_field("other", match=MatchText(text="x"))]),
    ):
        for call in (coll.count_where, coll.labels_where, coll.delete_where):
            with pytest.raises(InvalidFilter):
                call(f)
    with pytest.raises(InvalidFilter):
        coll.create_payload_index("a..b", S.keyword)
    assert coll.seq == seq and coll.count == 2 and set(coll.config.payload_schema) == {"k", "at"}
    assert coll.count_where(Filter(must=[_field("at", range=Range(lt="2024-01-02T00:00:00Z"))])) == 1
