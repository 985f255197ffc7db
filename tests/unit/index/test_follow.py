"""A follower's view (index/follow.py) of a data directory that a primary catalog writes, in one process.

The follower must never write (rows past the committed count are the primary's write in progress), must
see a state of the store that was committed, and must notice every kind of change before a read."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from index.contract import Query, SparseVec
from index.follow import FollowerCatalog, FollowerCollection, ReadOnlyFollower
from index.readonly import read_only, set_read_only
from index.stamp import WriteStamp
from nestor_client.models import Filter, PayloadSchemaType
from tests.unit.index.conftest import Engine, rows

DIM = 8


@pytest.fixture
def follower(engine: Engine, write_stamp: WriteStamp | None) -> Iterator[FollowerCatalog]:
    cat = FollowerCatalog(engine.data_dir, engine.options, stamp=write_stamp)
    yield cat
    cat.close()
    set_read_only(False)  # the flag is per process; the other tests' catalogs write


def _top(cat: FollowerCatalog, name: str, v: np.ndarray, flt: Filter | None = None) -> list[object]:
    cat.sync(name)
    coll = cat.get(name)
    return [h.id for h in coll.search([Query(vector=v, limit=3, filter=flt)])[0].hits]


def test_follower_sees_each_change_and_writes_nothing(engine: Engine, follower: FollowerCatalog) -> None:
    rng = np.random.default_rng(0)
    coll = engine.create("c", {"dim": DIM, "metric": "cosine"})
    vecs = rows(rng, 30, DIM)
    coll.upsert(list(range(30)), vecs, [{"k": i % 3} for i in range(30)])
    assert read_only()
    assert _top(follower, "c", vecs[4])[0] == 4
    assert not follower.stale("c")

    # a primary's write in progress: rows past the committed count, which the follower must leave alone
    path = engine.data_dir / "collections" / "c" / "vectors.f32"
    with open(path, "ab") as f:
        f.write(rows(rng, 2, DIM).tobytes())
    size = os.path.getsize(path)
    follower._reload("c")
    assert os.path.getsize(path) == size
    assert follower.get("c").count == 30
    coll.fields[""].truncate(30)  # the primary's own undo of its failed write

    new4 = rows(rng, 1, DIM)[0]
    coll.upsert([4], new4[None, :], [{"k": 9}])  # an overwrite
    assert follower.stale("c")
    assert _top(follower, "c", new4)[0] == 4
    assert _top(follower, "c", vecs[4])[0] != 4  # the old vector is gone

    nine = Filter.model_validate({"must": [{"key": "k", "match": {"value": 9}}]})
    assert _top(follower, "c", vecs[0], nine) == [4]
    coll.delete([4])
    assert follower.stale("c")
    assert _top(follower, "c", vecs[0], nine) == []

    coll.create_payload_index("k", PayloadSchemaType.integer)  # collection.json replaced: a new inode
    assert follower.stale("c")
    follower.sync("c")
    assert "k" in follower.get("c").config.payload_schema

    with pytest.raises(ReadOnlyFollower):
        follower.get("c").upsert([1], vecs[:1])
    assert isinstance(follower.get("c"), FollowerCollection)


def test_follower_finds_new_and_deleted_collections(engine: Engine, follower: FollowerCatalog) -> None:
    rng = np.random.default_rng(1)
    follower.open_all()
    assert follower.names() == []
    coll = engine.create("later", {"dim": DIM, "metric": "cosine"})
    v = rows(rng, 1, DIM)
    coll.upsert([1], v)
    assert follower.get("later").count == 1  # a name it does not know is looked up on disk
    engine.catalog.delete("later")
    assert follower.stale("later")
    follower.sync("later")
    assert "later" not in follower.names()


def test_follower_never_creates_or_empties_directories(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "trash" / "x").mkdir(parents=True)
    cat = FollowerCatalog(data)
    try:
        cat.open_all()
        assert (data / "trash" / "x").is_dir()  # the primary's, half deleted: a follower leaves it
        assert not (data / "collections").exists()
    finally:
        cat.close()
        set_read_only(False)


def test_follower_reads_named_and_sparse_vectors(engine: Engine, follower: FollowerCatalog) -> None:
    rng = np.random.default_rng(2)
    cfg = {"vectors": {"d": {"dim": DIM, "metric": "cosine"}}, "sparse_vectors": {"s": {}}}
    coll = engine.create("mixed", cfg)
    dense = rows(rng, 20, DIM)
    sparse = [SparseVec(np.array([i, 100 + i], np.uint32), np.array([1.0, 0.5], np.float32)) for i in range(20)]
    coll.upsert(list(range(20)), {"d": dense, "s": sparse})
    # the primary's sparse write in progress: entries past the committed ones stay on disk
    ends = engine.data_dir / "collections" / "mixed" / "vectors" / "s" / "sparse.ends"
    size = os.path.getsize(ends)
    with open(ends, "ab") as f:
        f.write(np.array([999], np.int64).tobytes())
    follower.sync("mixed")
    assert os.path.getsize(ends) == size + 8
    got = follower.get("mixed")
    assert [h.id for h in got.search([Query(vector=dense[3], using="d", limit=1)])[0].hits] == [3]
    q = Query(vector=np.zeros(0, np.float32), using="s", sparse=sparse[5], limit=1)
    assert [h.id for h in got.search([q])[0].hits] == [5]


def test_follower_trusts_the_write_stamp_until_it_moves(engine: Engine, tmp_path: Path) -> None:
    """With a stamp, the files are checked only when it moved: a write the primary made without bumping
    it (which the primary never does) stays unseen, and the next bump makes the follower look again."""
    path = tmp_path / "write.stamp"
    writer, reader = WriteStamp(path, writer=True), WriteStamp(path)
    cat = FollowerCatalog(engine.data_dir, engine.options, stamp=reader)
    try:
        rng = np.random.default_rng(3)
        coll = engine.create("c", {"dim": DIM, "metric": "cosine"})
        vecs = rows(rng, 5, DIM)
        coll.upsert(list(range(5)), vecs)
        assert cat.get("c").count == 5
        assert not cat.stale("c")  # checked against the files, and found current at the stamp's value
        coll.upsert([9], rows(rng, 1, DIM))  # no stamp installed in this process: nothing bumped
        assert not cat.stale("c")
        writer.bump()
        assert reader.read() == 1
        assert cat.stale("c")
        cat.sync("c")
        assert cat.get("c").count == 6 and not cat.stale("c")
    finally:
        cat.close()
        set_read_only(False)
        writer.close()
        reader.close()


def test_the_write_stamp_counts_on_across_opens(tmp_path: Path) -> None:
    path = tmp_path / "write.stamp"
    first = WriteStamp(path, writer=True)
    reader = WriteStamp(path)
    first.bump()
    first.bump()
    first.close()
    again = WriteStamp(path, writer=True)  # a restarted primary
    again.bump()
    assert reader.read() == 3
    again.close()
    reader.close()
