"""Saved indexes: written atomically with a checksummed manifest, and rebuilt from the store when damaged.

An index is derived data. On open, a saved index whose files do not match the manifest's checksums,
or whose manifest comes from a newer format, is not loaded: the vector starts a new index and the
indexer refills it from `vectors.f32`, so every point is found again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from index.collection import Collection
from index.contract import Query
from index.dense import DenseField
from index.manifest import FORMAT_VERSION, read_manifest, write_index
from tests.unit.index.conftest import Engine, rows, wait_indexed

N, DIM = 120, 8
CONFIG: dict[str, Any] = {
    "vectors": {
        "text": {"dim": DIM, "metric": "cosine", "index": {"type": "hnsw"}},
        "image": {"dim": 4, "metric": "l2", "index": {"type": "flat"}},
    }
}
REBUILD = "cannot load its index, rebuilding from the store"


def _saved(engine: Engine) -> tuple[Path, np.ndarray]:
    """A collection with a saved index for "text", closed; returns its index directory and the vectors."""
    coll = engine.create("m", CONFIG)
    data = rows(np.random.default_rng(0), N, DIM)
    coll.upsert(list(range(N)), {"text": data, "image": rows(np.random.default_rng(1), N, 4)})
    coll.delete([0, 1])
    wait_indexed(coll)
    coll.save_indexes()
    engine.catalog.close()
    index_dir = coll.dir / "vectors" / "text" / "index"
    assert read_manifest(index_dir) is not None
    return index_dir, data


def _text(coll: Collection) -> DenseField:
    f = coll.fields["text"]
    assert isinstance(f, DenseField)
    return f


def _finds_everything(coll: Collection, data: np.ndarray) -> None:
    wait_indexed(coll)
    assert _text(coll).state.index is not None and _text(coll).state.index.count == N - 2
    for i in range(2, N):
        res = coll.search([Query(data[i], limit=1, using="text", with_payload=False)])[0]
        assert res.strategy == "hnsw" and [h.id for h in res.hits] == [i]
    everything = coll.search([Query(data[0], limit=N, using="text")])[0].hits
    assert sorted(h.id for h in everything) == list(range(2, N))  # the deleted two stay deleted


def test_an_intact_index_is_loaded_not_rebuilt(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    index_dir, data = _saved(engine)
    with caplog.at_level(logging.ERROR, logger="nestor.collection"):
        engine.restart()
    coll = engine.get("m")
    assert REBUILD not in caplog.text
    st = _text(coll).state
    assert st.upto == N and st.index is not None and st.index.count == N - 2  # deletes stay deleted
    assert _text(coll).last_optimized is not None
    _finds_everything(coll, data)


def _flip_a_byte(index_dir: Path) -> None:
    target = max((p for p in index_dir.iterdir() if p.name != "manifest.json"), key=lambda p: p.stat().st_size)
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    target.write_bytes(bytes(raw))


def _newer_format(index_dir: Path) -> None:
    path = index_dir / "manifest.json"
    man = json.loads(path.read_text())
    man["format_version"] = FORMAT_VERSION + 1
    path.write_text(json.dumps(man))


def _lose_a_file(index_dir: Path) -> None:
    (index_dir / "meta.json").unlink()


def _garble_the_manifest(index_dir: Path) -> None:
    (index_dir / "manifest.json").write_text('{"format_version": 2, "labels_')


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_flip_a_byte, "checksum mismatch"),
        (_newer_format, "newer than this Nestor"),
        (_lose_a_file, "No such file"),
        (_garble_the_manifest, "Unterminated string"),
    ],
    ids=["checksum", "newer-format", "missing-file", "bad-manifest"],
)
def test_a_damaged_index_is_rebuilt_from_the_store(
    engine: Engine, caplog: pytest.LogCaptureFixture, damage: Any, message: str
) -> None:
    index_dir, data = _saved(engine)
    damage(index_dir)
    with pytest.raises((ValueError, OSError), match=message):  # what the loader trips on
        read_manifest(index_dir)
    with caplog.at_level(logging.ERROR, logger="nestor.collection"):
        engine.restart()
    coll = engine.get("m")
    assert engine.catalog.names() == ["m"] and coll.count == N - 2
    assert REBUILD in caplog.text and "'text'" in caplog.text
    assert _text(coll).last_optimized is None  # nothing was loaded
    _finds_everything(coll, data)
    coll.save_indexes()  # and the rebuilt index saves over the damaged one
    man = read_manifest(index_dir)
    assert man is not None and man.format_version == FORMAT_VERSION and man.labels_upto == N


def _writer(files: dict[str, bytes], fail_after: int | None = None) -> Any:
    def save(directory: Path) -> None:
        directory.mkdir(parents=True)
        for i, (name, data) in enumerate(files.items()):
            if fail_after is not None and i == fail_after:
                raise OSError("disk full")
            (directory / name).write_bytes(data)

    return save


def test_write_index_is_atomic_and_checksummed(tmp_path: Path) -> None:
    target = tmp_path / "index"
    man = write_index(target, _writer({"a.bin": b"one", "b.bin": b"two" * 100}), labels_upto=5, seq=9)
    assert (man.labels_upto, man.seq, man.format_version) == (5, 9, FORMAT_VERSION)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]  # no .staging, no .old
    assert read_manifest(target) == man
    # a save that fails midway leaves the old index whole
    with pytest.raises(OSError, match="disk full"):
        write_index(target, _writer({"a.bin": b"NEW", "b.bin": b"NEW"}, fail_after=1), labels_upto=7, seq=10)
    assert (target / "a.bin").read_bytes() == b"one"
    assert read_manifest(target) == man
    # the next save clears the leftover staging directory and replaces the index
    man2 = write_index(target, _writer({"c.bin": b"three"}), labels_upto=8, seq=11)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]
    assert sorted(p.name for p in target.iterdir()) == ["c.bin", "manifest.json"]
    assert read_manifest(target) == man2 and man2.labels_upto == 8
    recorded = json.loads((target / "manifest.json").read_text())["files"]
    assert set(recorded) == {"c.bin"}
    (target / "c.bin").write_bytes(b"threE")
    with pytest.raises(ValueError, match="checksum mismatch"):
        read_manifest(target)


def test_no_manifest_means_no_saved_index(tmp_path: Path) -> None:
    assert read_manifest(tmp_path / "index") is None
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "graph.bin").write_bytes(b"x")
    assert read_manifest(tmp_path / "index") is None
