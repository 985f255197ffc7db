"""The label map (ids to never-reused labels) and the SQLite store of record, including its migration.

A store written before named vectors has no `vmask` column; opening it adds the column (every old
point then has every vector), once, without touching the rows.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from index.contract import Query
from index.labels import LabelMap, grow_bools
from index.storage import PointStore, decode_pid, encode_pid
from tests.unit.index.conftest import Engine, rows


def test_a_label_map_mirrors_its_rows() -> None:
    m = LabelMap(5, [("a", 0), (7, 3)])
    assert m.n == 5 and m.count == 2
    assert m.ids == ["a", None, None, 7, None]
    assert m.label_of == {"a": 0, 7: 3}
    assert m.live_labels(5).tolist() == [0, 3]


def test_assign_gives_fresh_labels_and_returns_the_old_ones() -> None:
    m = LabelMap(0, [])
    assert m.assign(["a", "b", 1], 0).tolist() == []
    m.n = 3
    old = m.assign(["b", "c"], 3)  # b is overwritten: label 1 dies, 3 is born
    m.n = 5
    assert old.tolist() == [1]
    assert m.label_of == {"a": 0, "b": 3, 1: 2, "c": 4}
    assert m.ids == ["a", None, 1, "b", "c"]
    assert m.live_labels(5).tolist() == [0, 2, 3, 4] and m.count == 4


def test_forget_kills_labels_and_their_ids() -> None:
    m = LabelMap(3, [("a", 0), ("b", 1), ("c", 2)])
    m.forget([1, 2])
    assert m.count == 1 and m.label_of == {"a": 0} and m.ids == ["a", None, None]
    assert m.live_labels(3).tolist() == [0]
    m.forget([1])  # again: nothing left to forget
    assert m.count == 1


def test_int_and_str_ids_are_different_points() -> None:
    m = LabelMap(0, [])
    m.assign([7, "7"], 0)
    assert m.label_of == {7: 0, "7": 1}
    assert encode_pid(7) == "7" and encode_pid("7") == '"7"'
    for pid in (7, "7", "x", 0, "", -3):
        assert decode_pid(encode_pid(pid)) == pid


def test_the_alive_mask_grows_past_its_first_capacity() -> None:
    m = LabelMap(0, [])
    m.assign(list(range(3000)), 0)
    assert len(m.alive) >= 3000 and m.alive[:3000].all() and m.count == 3000
    a = np.zeros(4, bool)
    assert grow_bools(a, 4) is a
    grown = grow_bools(a, 5)
    assert len(grown) == 8 and not grown.any()


_OLD_SCHEMA = """
CREATE TABLE points (pid TEXT PRIMARY KEY, label INTEGER NOT NULL UNIQUE, payload TEXT, seq INTEGER NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO points VALUES ('1', 0, '{"a": 1}', 1), ('"x"', 2, NULL, 2);
INSERT INTO meta VALUES ('seq', 2), ('next_label', 3);
"""


def _columns(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [r[1] for r in conn.execute("PRAGMA table_info(points)")]


def test_an_old_store_gets_the_vmask_column_on_open(tmp_path: Path) -> None:
    path = tmp_path / "points.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(_OLD_SCHEMA)
    conn.close()
    assert "vmask" not in _columns(path)
    store = PointStore(path)
    try:
        assert _columns(path) == ["pid", "label", "payload", "seq", "vmask"]
        assert sorted(store.all_labels()) == [('"x"', 2, None), ("1", 0, None)]  # every vector, as before
        assert store.meta() == {"seq": 2, "next_label": 3, "deaths_from": 2}  # the deaths log starts here
        store.upsert([("2", 3, None, 0b10)], seq=3, next_label=4)
    finally:
        store.close()
    store = PointStore(path)  # the migration runs once
    try:
        assert sorted(store.all_labels()) == [('"x"', 2, None), ("1", 0, None), ("2", 3, 2)]
        assert store.payloads([0, 2]) == {0: '{"a": 1}', 2: None}
    finally:
        store.close()


def test_a_collection_over_an_old_store_opens_and_writes(engine: Engine) -> None:
    """A single-vector collection whose store predates `vmask`: every point keeps its vector."""
    coll = engine.create("old", {"dim": 8, "metric": "l2", "index": {"type": "flat"}})
    data = rows(np.random.default_rng(0), 20, 8)
    coll.upsert(list(range(20)), data, [{"i": i} for i in range(20)])
    engine.catalog.close()
    with sqlite3.connect(coll.dir / "points.sqlite") as conn:
        conn.execute("ALTER TABLE points DROP COLUMN vmask")
    assert "vmask" not in _columns(coll.dir / "points.sqlite")
    engine.restart()
    coll = engine.get("old")
    assert "vmask" in _columns(coll.dir / "points.sqlite")
    assert coll.count == 20
    for i in (0, 13):
        hit = coll.search([Query(data[i], limit=1)])[0].hits[0]
        assert (hit.id, hit.score, hit.payload) == (i, 0.0, {"i": i})
    coll.upsert([20], data[:1] + 1)
    engine.restart()
    assert engine.get("old").count == 21


def test_a_store_refuses_a_label_used_twice(tmp_path: Path) -> None:
    store = PointStore(tmp_path / "points.sqlite")
    try:
        store.upsert([("1", 0, None, None)], seq=1, next_label=1)
        with pytest.raises(sqlite3.IntegrityError):
            store.upsert([("2", 0, None, None)], seq=2, next_label=2)
        assert store.meta() == {"seq": 1, "next_label": 1, "deaths_from": 0}  # the failed batch rolled back whole
        assert store.all_labels() == [("1", 0, None)]
    finally:
        store.close()
