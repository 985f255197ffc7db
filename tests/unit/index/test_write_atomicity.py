"""A write batch is all or nothing across every field, and the files of record recover from torn writes.

An upsert appends each field's rows (fsynced), then commits in SQLite. A failure at any step must
leave the count, the label map and every field's store (in RAM and on disk) as they were, so a
retry gets the same labels, and a restart reads back exactly what was acknowledged. Bytes past
the committed label count (a crash between the append and the commit) are cut off on open.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from index.collection import Collection
from index.multivector import MultiVectorField
from tests.unit.index.conftest import Engine, rows

CONFIG: dict[str, Any] = {
    "vectors": {  # fields run in name order: image, text, tokens
        "image": {"dim": 4, "metric": "l2", "index": {"type": "flat"}},
        "text": {"dim": 8, "metric": "cosine", "index": {"type": "hnsw"}},
        "tokens": {"dim": 6, "metric": "dot", "multivector": {"type": "maxsim", "token_dtype": "float32"}},
    }
}


def _batch(seed: int, ids: list[Any]) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    n = len(ids)
    return {
        "image": rows(rng, n, 4),
        "text": rows(rng, n, 8),
        "tokens": [rows(rng, 2 + i % 3, 6) for i in range(n)],
    }


def _files(coll: Collection) -> dict[str, int]:
    """Size of every file of record under the collection's vectors/ directory (not the saved indexes)."""
    files = (p.relative_to(coll.dir) for p in (coll.dir / "vectors").rglob("*") if p.is_file())
    return {p.as_posix(): (coll.dir / p).stat().st_size for p in files if "index" not in p.parts}


def _state(coll: Collection) -> dict[str, Any]:
    stores: dict[str, Any] = {}
    for name, f in coll.fields.items():
        if isinstance(f, MultiVectorField):
            stores[name] = (f.tokens.n_docs, f.tokens.n_tokens)
        else:
            stores[name] = f.vectors.rows
    return {
        "count": coll.count,
        "seq": coll.seq,
        "labels": coll.labels.n,
        "label_of": dict(coll.labels.label_of),
        "ids": list(coll.labels.ids),
        "alive": {name: f.alive[: coll.labels.n + 8].tolist() for name, f in coll.fields.items()},
        "stores": stores,
        "files": _files(coll),
    }


def _vectors(coll: Collection, ids: list[Any]) -> list[Any]:
    return [(h.id, h.payload, h.vectors) for h in coll.get(ids, with_vector=True)]


@pytest.fixture
def coll(engine: Engine) -> Collection:
    c = engine.create("atomic", CONFIG)
    c.upsert(list(range(10)), _batch(0, list(range(10))), [{"v": 0}] * 10)
    return c


def _fail_field(name: str) -> Any:
    def fail(coll: Collection, monkeypatch: pytest.MonkeyPatch) -> None:
        def boom(*_: Any) -> None:
            raise OSError(errno.EIO, f"append of {name} failed")

        monkeypatch.setattr(coll.fields[name], "append", boom)

    return fail


def _fail_commit(coll: Collection, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: Any, **__: Any) -> None:
        raise OSError(errno.EIO, "the SQLite commit failed")

    monkeypatch.setattr(coll.points, "upsert", boom)


@pytest.mark.parametrize(
    "fail", [_fail_field("text"), _fail_field("tokens"), _fail_commit], ids=["text", "tokens", "sqlite"]
)
def test_a_failed_batch_leaves_every_field_unchanged(
    engine: Engine, coll: Collection, monkeypatch: pytest.MonkeyPatch, fail: Any
) -> None:
    ids = [5, 10, 11]  # 5 is an overwrite
    before, old = _state(coll), _vectors(coll, list(range(12)))
    start = coll.labels.n
    with monkeypatch.context() as m:
        fail(coll, m)
        with pytest.raises(OSError, match="failed"):
            coll.upsert(ids, _batch(1, ids), [{"v": 1}] * 3)
        assert _state(coll) == before
        assert _vectors(coll, list(range(12))) == old
    batch = _batch(1, ids)
    coll.upsert(ids, batch, [{"v": 1}] * 3)
    assert [coll.label_of(i) for i in ids] == [start, start + 1, start + 2]  # the labels the failed try had
    assert coll.count == 12
    got = {h.id: h.vectors or {} for h in coll.get(ids, with_vector=True)}
    assert [np.asarray(got[i]["image"], np.float32).tobytes() for i in ids] == [r.tobytes() for r in batch["image"]]
    assert [np.asarray(got[i]["tokens"], np.float32).tobytes() for i in ids] == [t.tobytes() for t in batch["tokens"]]
    after = _vectors(coll, list(range(12)))
    engine.restart()
    assert _vectors(engine.get("atomic"), list(range(12))) == after


def _fail_nth_fdatasync(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """The n-th fdatasync from now fails after its bytes were written (EIO): a torn append."""
    real, calls = os.fdatasync, [0]

    def fdatasync(fd: int) -> None:
        calls[0] += 1
        if calls[0] == n:
            raise OSError(errno.EIO, "fdatasync failed")
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)


@pytest.mark.parametrize("nth", [2, 3], ids=["text", "tokens"])
def test_a_field_whose_own_append_fails_midway_is_rolled_back_too(
    engine: Engine, coll: Collection, monkeypatch: pytest.MonkeyPatch, nth: int
) -> None:
    """The field that raised has written (part of) its rows. Unless they are cut off, the next batch's
    rows land after them on disk while RAM holds them at the right labels; a restart then reads the
    failed batch's rows for the next batch's points."""
    before = _state(coll)
    with monkeypatch.context() as m:
        _fail_nth_fdatasync(m, nth)  # 1: image's rows, 2: text's rows, 3: the token codes
        with pytest.raises(OSError, match="fdatasync failed"):
            coll.upsert([10, 11], _batch(1, [10, 11]))
    assert _state(coll) == before
    coll.upsert([10, 11], _batch(2, [10, 11]))  # other vectors
    acknowledged = _vectors(coll, list(range(12)))
    engine.restart()
    assert _vectors(engine.get("atomic"), list(range(12))) == acknowledged


def _pad(path: Path, junk: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(junk)


def test_torn_rows_past_the_committed_labels_are_cut_off_on_open(engine: Engine, coll: Collection) -> None:
    """A crash after a batch's rows were appended but before its commit leaves rows no label owns."""
    want = _vectors(coll, list(range(10)))
    sizes = _files(coll)
    engine.catalog.close()
    vdir = coll.dir / "vectors"
    _pad(vdir / "text" / "vectors.f32", b"\x7f" * (4 * 8 * 3 + 5))  # three rows and a torn one
    _pad(vdir / "image" / "vectors.f32", b"\x01\x02")
    _pad(vdir / "tokens" / "tokens.f32", b"\x7f" * (4 * 6 * 4))
    _pad(vdir / "tokens" / "tokens.ends", np.array([999], "<i8").tobytes())
    engine.restart()
    coll = engine.get("atomic")
    assert _files(coll) == sizes
    assert _vectors(coll, list(range(10))) == want
    new = _batch(3, [10])
    coll.upsert([10], new)  # lands right after the committed rows
    got = _vectors(coll, [10])
    engine.restart()
    coll = engine.get("atomic")
    assert _vectors(coll, [10]) == got
    (h,) = got
    assert np.asarray(h[2]["image"], np.float32).tobytes() == new["image"].tobytes()
    assert np.asarray(h[2]["tokens"], np.float32).tobytes() == new["tokens"][0].tobytes()


def test_committed_rows_missing_from_a_field_refuse_to_open(engine: Engine, coll: Collection) -> None:
    """The opposite damage: fewer rows than committed labels is lost data, not a torn write; the
    collection is left out rather than served with holes."""
    engine.catalog.close()
    path = coll.dir / "vectors" / "text" / "vectors.f32"
    with open(path, "r+b") as fh:
        fh.truncate(4 * 8 * 9)
    engine.restart()
    assert engine.catalog.names() == []
