"""A follower catching up incrementally (index/catchup.py) answers exactly as the primary does.

A primary `Collection` and a `FollowerCatalog` share one data directory in this process. After each kind
of write, the follower's searches (exact, ANN, filtered, sparse), counts, scrolls and gets are compared
with the primary's, and its counters say whether it caught up or loaded the collection whole: plain
writes must catch up; a new config file (a payload index) and a compaction's new store reload."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from index import catchup, storage
from index.collection import Collection
from index.contract import Query, SparseVec
from index.dense import DenseField
from index.follow import FollowerCatalog
from index.readonly import set_read_only
from index.stamp import WriteStamp
from index.storage import PointStore
from nestor_client.models import Filter, PayloadSchemaType, SearchParams
from tests.unit.index.conftest import Engine, rows, until

DIM = 8
CFG = {
    "vectors": {"d": {"dim": DIM, "metric": "cosine"}, "e": {"dim": 4, "metric": "l2", "index": {"type": "flat"}}},
    "sparse_vectors": {"s": {"modifier": "idf"}},
}


@pytest.fixture
def follower(engine: Engine, write_stamp: WriteStamp | None) -> Iterator[FollowerCatalog]:
    cat = FollowerCatalog(engine.data_dir, engine.options, stamp=write_stamp)
    yield cat
    cat.close()
    set_read_only(False)


def _flt(spec: dict[str, Any]) -> Filter:
    return Filter.model_validate(spec)


def _sparse(i: int) -> SparseVec:
    return SparseVec(np.array([i % 7, 10 + i % 3], np.uint32), np.array([1.0, 0.25 + i % 5], np.float32))


def _points(rng: np.random.Generator, ids: list[int], tag: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    vectors = {"d": rows(rng, len(ids), DIM), "e": rng.standard_normal((len(ids), 4)).astype(np.float32)}
    vectors["s"] = [_sparse(i) for i in ids]
    return vectors, [{"k": i % 4, "tag": tag, "t": f"t{i % 3}"} for i in ids]


def _view(coll: Collection, queries: np.ndarray) -> dict[str, Any]:
    """Everything a reader can observe, rounded where float sums may differ in their last bits."""
    exact = SearchParams(exact=True)
    out: dict[str, Any] = {"count": coll.count, "seq": coll.seq}
    flts = [
        None,
        _flt({"must": [{"key": "k", "match": {"value": 1}}]}),
        _flt({"must_not": [{"key": "k", "match": {"value": 0}}]}),  # indexed: the live set itself is compared
        _flt({"must_not": [{"key": "t", "match": {"value": "t0"}}]}),
    ]
    for i, flt in enumerate(flts):
        out[f"count{i}"] = coll.count_where(flt)
        for j, q in enumerate(queries):
            res = coll.search([Query(vector=q, limit=5, filter=flt, params=exact, using="d")])[0]
            out[f"d{i}.{j}"] = [(h.id, round(h.score, 4), h.payload) for h in res.hits]
        e = coll.search([Query(vector=queries[0][:4], limit=5, filter=flt, using="e")])[0]
        out[f"e{i}"] = [(h.id, round(h.score, 4)) for h in e.hits]
        s = coll.search([Query(vector=np.zeros(0, np.float32), using="s", sparse=_sparse(2), limit=5, filter=flt)])[0]
        out[f"s{i}"] = sorted((h.id, round(h.score, 4)) for h in s.hits)
    pages, offset = [], None
    while True:
        hits, offset = coll.scroll(None, limit=7, offset=offset, with_vector=True)
        pages.append([(h.id, h.payload, np.round(h.vectors["d"], 5).tolist() if h.vectors else None) for h in hits])
        if offset is None:
            break
    out["scroll"] = pages
    out["get"] = [(h.id, h.payload) for h in coll.get(list(range(-2, 90)))]
    return out


def _check(primary: Collection, follower: FollowerCatalog, queries: np.ndarray, *, reloaded: bool) -> None:
    before = (follower.reloads, follower.catch_ups)
    assert follower.stale("c")
    follower.sync("c")
    assert not follower.stale("c")
    f = follower.get("c")
    assert f is not primary
    assert _view(f, queries) == _view(primary, queries)
    if reloaded:
        assert follower.reloads == before[0] + 1
    else:
        assert (follower.reloads, follower.catch_ups) == (before[0], before[1] + 1)
    fd = f.fields["d"]
    assert isinstance(fd, DenseField)

    def graph_current() -> bool:  # the new rows in it, the dead ones out (the indexer drops them, not sync)
        st = fd.state
        return st.index is not None and st.upto == f.labels.n and st.index.count == fd.count

    until(graph_current, what="the follower's graph to hold exactly the live points")
    for q in queries[:3]:  # the follower's own graph (not exact) finds a stored vector's point first
        top = primary.search([Query(vector=q, limit=1, using="d", params=SearchParams(exact=True))])[0].hits
        if top and top[0].score > 0.999:
            assert f.search([Query(vector=q, limit=1, using="d")])[0].hits[0].id == top[0].id


@pytest.mark.parametrize("mapped", [True, False], ids=["mapped", "ram"])
def test_follower_catches_up_on_every_kind_of_write(engine: Engine, follower: FollowerCatalog, mapped: bool) -> None:
    # the vectors mapped from the primary's file, or a copy in the follower's RAM (the server's default)
    follower.map_vectors = mapped
    rng = np.random.default_rng(7)
    primary = engine.create("c", CFG)
    primary.create_payload_index("k", PayloadSchemaType.integer)
    vecs, pays = _points(rng, list(range(40)), "a")
    primary.upsert(list(range(40)), vecs, pays)
    queries = np.concatenate([vecs["d"][:3], rows(rng, 3, DIM)])
    follower.sync("c")
    assert follower.reloads == 1
    stores = [f.vectors for f in follower.get("c").dense_fields()]
    assert len(stores) == 2 and [s.on_disk for s in stores] == [mapped, mapped]
    assert _view(follower.get("c"), queries) == _view(primary, queries)

    vecs, pays = _points(rng, list(range(40, 60)), "b")  # new points
    primary.upsert(list(range(40, 60)), vecs, pays)
    queries[3] = vecs["d"][5]
    _check(primary, follower, queries, reloaded=False)

    vecs, pays = _points(rng, list(range(0, 50, 5)), "over")  # overwrites, in two batches before one sync
    primary.upsert(list(range(0, 50, 5)), vecs, pays)
    primary.upsert([1, 2], {"d": vecs["d"][:2]}, [{"k": 1, "t": "t9"}, None])  # vectors omitted: e and s go
    queries[4] = vecs["d"][1]
    _check(primary, follower, queries, reloaded=False)

    primary.delete([3, 4, 41, 999])
    primary.delete_where(_flt({"must": [{"key": "k", "match": {"value": 2}}]}))  # indexed: by labels
    primary.delete_where(
        _flt({"must": [{"key": "t", "match": {"value": "t1"}}, {"key": "tag", "match": {"value": "b"}}]})
    )
    _check(primary, follower, queries, reloaded=False)

    # between two syncs: a point written and deleted (a gap in the labels), one overwritten twice then
    # deleted (the follower's label of it is in no row any more), one deleted then written again
    assert follower.get("c").get([11, 8]) != [] and primary.get([11, 8]) != []
    vecs, pays = _points(rng, [70, 11, 7], "c")
    primary.upsert([70, 11, 7], vecs, pays)
    primary.upsert([11], {"d": vecs["d"][1:2]}, [{"k": 3}])
    primary.delete([70, 11, 8])
    vecs, pays = _points(rng, [8], "d")
    primary.upsert([8], vecs, pays)
    _check(primary, follower, queries, reloaded=False)

    primary.create_payload_index("t", PayloadSchemaType.keyword)  # collection.json replaced: load it whole
    _check(primary, follower, queries, reloaded=True)

    assert primary.optimize()
    primary.optimizer.wait(30)
    assert primary.generation == 1
    _check(primary, follower, queries, reloaded=True)  # a new store (inode): load it whole

    vecs, pays = _points(rng, [80, 9], "e")  # after the compaction, the fresh deaths log serves again
    primary.upsert([80, 9], vecs, pays)
    primary.delete([10])
    _check(primary, follower, queries, reloaded=False)


def test_follower_reloads_when_the_log_does_not_reach_back(engine: Engine, follower: FollowerCatalog) -> None:
    rng = np.random.default_rng(8)
    primary = engine.create("c", {"dim": DIM, "metric": "cosine"})
    vecs = rows(rng, 10, DIM)
    primary.upsert(list(range(10)), vecs)
    follower.sync("c")
    primary.delete([1])
    db = primary.points._writer
    db.execute("UPDATE meta SET value = ? WHERE key = 'deaths_from'", (primary.seq,))  # as a store from before the log
    before = follower.reloads
    follower.sync("c")
    assert follower.reloads == before + 1
    assert follower.get("c").count == 9 and follower.get("c").get([1]) == []


def test_the_store_logs_every_delete_in_its_own_transaction(tmp_path: Path) -> None:
    store = PointStore(tmp_path / "points.sqlite")

    def log() -> list[tuple[int, int, str]]:
        return sorted(store._writer.execute("SELECT seq, label, pid FROM deaths"))

    try:
        store.upsert([(str(i), i, None, None) for i in range(6)], seq=1, next_label=6)
        store.upsert([("1", 6, None, None), ("9", 7, None, None)], seq=2, next_label=8)  # 1 overwritten
        assert log() == []  # the new row names the id: no entry
        assert store.delete(["2", "8"], seq=3) == [2]
        store.delete_where("pid = '3'", [], seq=4)
        store.delete_labels([4, 6], seq=5)
        want = [(3, 2, "2"), (4, 3, "3"), (5, 4, "4"), (5, 6, "1")]
        assert log() == want
        with pytest.raises(sqlite3.IntegrityError):  # label 0 is taken: the batch rolls back whole
            store.upsert([("7", 0, None, None)], seq=6, next_label=9)
        assert log() == want
        assert store.meta()["deaths_from"] == 0
    finally:
        store.close()


def test_the_deaths_log_keeps_its_newest_half_past_the_cap(
    engine: Engine, follower: FollowerCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without compactions the log would grow with every delete: past the cap a delete drops the oldest half
    at a seq boundary, so a follower behind the cut loads whole, and one after it still catches up."""
    monkeypatch.setattr(storage, "_DEATHS_CAP", 8)
    rng = np.random.default_rng(9)
    primary = engine.create("c", CFG)
    vecs, pays = _points(rng, list(range(40)), "a")
    primary.upsert(list(range(40)), vecs, pays)
    follower.sync("c")
    behind = follower.reloads
    for i in range(0, 12, 2):  # six deletes of two points: twelve entries, past the cap of eight
        primary.delete([i, i + 1])
    db = primary.points._writer
    kept = sorted(db.execute("SELECT seq, pid FROM deaths"))
    frm = primary.points.meta()["deaths_from"]
    assert 4 <= len(kept) <= 8 and all(seq > frm for seq, _ in kept), (kept, frm)
    assert [pid for _, pid in kept] == [str(i) for i in range(12 - len(kept), 12)]  # the newest, whole deletes
    follower.sync("c")  # its seq is before the cut: the log cannot say what it missed
    assert follower.reloads == behind + 1 and follower.get("c").count == 28
    primary.delete([20])
    _check(primary, follower, rows(rng, 4, DIM), reloaded=False)  # after the cut: caught up again
    assert follower.get("c").get([0, 11, 20]) == []


def test_follower_catches_up_token_vectors(engine: Engine, follower: FollowerCatalog) -> None:
    rng = np.random.default_rng(9)
    cfg = {
        "vectors": {
            "t": {"dim": 8, "metric": "cosine", "multivector": {"type": "muvera", "token_dtype": "int8", "d_proj": 8}},
            "u": {"dim": 8, "metric": "cosine", "multivector": {"type": "maxsim", "token_dtype": "float16"}},
        }
    }
    primary = engine.create("c", cfg)
    toks = [rows(rng, 1 + i % 4, 8) for i in range(40)]
    primary.upsert(list(range(30)), {"t": toks[:30], "u": toks[:30]})
    follower.sync("c")
    primary.upsert(list(range(25, 40)), {"t": toks[25:], "u": [None] * 5 + toks[30:]})  # overwrites, new, omitted
    primary.delete([1, 2])
    follower.sync("c")
    assert (follower.reloads, follower.catch_ups) == (1, 1)
    f = follower.get("c")
    ids = list(range(45))
    assert [(h.id, h.vectors) for h in f.get(ids, with_vector=True)] == [
        (h.id, h.vectors) for h in primary.get(ids, with_vector=True)
    ]
    for name in ("t", "u"):
        for q in (toks[3], toks[33], toks[27]):
            want = primary.search([Query(vector=q, using=name, limit=4)])[0].hits
            got = f.search([Query(vector=q, using=name, limit=4)])[0].hits
            assert [(h.id, round(h.score, 4)) for h in got] == [(h.id, round(h.score, 4)) for h in want]


def test_a_catch_up_that_fails_loads_whole(
    engine: Engine, follower: FollowerCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(10)
    primary = engine.create("c", {"dim": DIM, "metric": "cosine"})
    vecs = rows(rng, 12, DIM)
    primary.upsert(list(range(10)), vecs[:10])
    follower.sync("c")
    first = follower.get("c")

    def broken(coll: Collection, delta: catchup.Delta) -> np.ndarray:
        coll.labels.n += 1  # half applied, then fails
        raise OSError("a vector file is short")

    monkeypatch.setattr(catchup, "apply", broken)
    primary.upsert([10, 11], vecs[10:])
    follower.sync("c")
    assert follower.reloads == 2 and follower.catch_ups == 0
    assert follower.get("c") is not first and follower.get("c").count == 12


def test_catch_up_can_be_turned_off(engine: Engine, follower: FollowerCatalog) -> None:
    rng = np.random.default_rng(11)
    primary = engine.create("c", {"dim": DIM, "metric": "cosine"})
    vecs = rows(rng, 6, DIM)
    primary.upsert(list(range(4)), vecs[:4])
    follower.sync("c")
    follower.catch_up_enabled = False  # NESTOR_FOLLOWER_CATCH_UP=false
    primary.upsert([4, 5], vecs[4:])
    follower.sync("c")
    assert (follower.reloads, follower.catch_ups) == (2, 0)
    assert follower.get("c").count == 6


def test_catch_up_reads_the_files_it_opened(engine: Engine, follower: FollowerCatalog) -> None:
    """A compaction's swap may put another generation's files at the same paths while a follower catches
    up: the rows come through the files the follower opened, not through their paths."""
    rng = np.random.default_rng(12)
    primary = engine.create("c", {"dim": DIM, "metric": "cosine", "index": {"type": "flat"}})
    vecs = rows(rng, 8, DIM)
    primary.upsert(list(range(4)), vecs[:4])
    follower.sync("c")
    primary.upsert(list(range(4, 8)), vecs[4:])
    path = primary.dir / "vectors.f32"
    aside = path.with_suffix(".aside")
    path.rename(aside)
    path.write_bytes(rows(rng, 8, DIM).tobytes())  # another generation's rows at the path
    try:
        follower.sync("c")
    finally:
        aside.replace(path)
    assert follower.catch_ups == 1
    ids = list(range(8))
    got = [(h.id, h.vectors) for h in follower.get("c").get(ids, with_vector=True)]
    assert got == [(h.id, h.vectors) for h in primary.get(ids, with_vector=True)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_writes_and_syncs_agree(engine: Engine, follower: FollowerCatalog, seed: int) -> None:
    """Random upserts (new ids, overwrites, omitted vectors), deletes and delete_where over a few ids, with
    the follower syncing at random moments: after each sync it holds exactly the primary's points."""
    rng = np.random.default_rng(100 + seed)
    cfg = {"vectors": {"d": {"dim": DIM, "metric": "cosine"}, "e": {"dim": 4, "metric": "dot"}}}
    primary = engine.create("c", cfg)
    primary.create_payload_index("k", PayloadSchemaType.integer)
    ids = list(range(30))
    follower.sync("c")
    for _ in range(40):
        op = rng.integers(4)
        some = sorted({int(x) for x in rng.choice(ids, int(rng.integers(1, 6)))})
        if op <= 1:
            e = [rng.standard_normal(4).astype(np.float32) if rng.random() < 0.7 else None for _ in some]
            primary.upsert(some, {"d": rows(rng, len(some), DIM), "e": e}, [{"k": int(x) % 3} for x in some])
        elif op == 2:
            primary.delete(some)
        else:
            primary.delete_where(_flt({"must": [{"key": "k", "match": {"value": int(rng.integers(3))}}]}))
        if rng.random() < 0.4:
            follower.sync("c")
            f = follower.get("c")
            got = [(h.id, h.payload, h.vectors) for h in f.get(ids, with_vector=True)]
            assert got == [(h.id, h.payload, h.vectors) for h in primary.get(ids, with_vector=True)]
            assert f.count == primary.count and f.count_where(None) == primary.count
            q = Query(vector=rows(rng, 1, DIM)[0], using="d", limit=5, params=SearchParams(exact=True))
            assert [h.id for h in f.search([q])[0].hits] == [h.id for h in primary.search([q])[0].hits]
            k1 = _flt({"must_not": [{"key": "k", "match": {"value": 1}}]})
            assert f.count_where(k1) == primary.count_where(k1)
    assert follower.reloads == 1  # every sync after the first caught up
