"""A data directory written by main before named vectors (6f35b38) opens unchanged under this version.

`tests/data/legacy_store.tar.gz` holds five collections made by that version (HNSW, flat L2, int8 +
graph, MUVERA, MaxSim), with an overwrite, deletes and saved indexes; `legacy_store.json` holds what
it answered. This version must return the same points (vectors bit for bit), the same exact search
results, load the saved indexes rather than rebuild them, and keep working after new writes and a
restart.
"""

from __future__ import annotations

import base64
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from index.catalog import Catalog
from index.collection import Collection
from index.contract import Query
from nestor_client.models import SearchParams

DATA = Path(__file__).resolve().parents[2] / "data"
EXPECTED: dict[str, Any] = json.loads((DATA / "legacy_store.json").read_text())


def _array(text: str, shape: list[int] | None = None) -> np.ndarray:
    a = np.frombuffer(base64.b64decode(text), dtype="<f4")
    return a.reshape(shape) if shape else a


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    with tarfile.open(DATA / "legacy_store.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "data"


@pytest.fixture
def catalog(data_dir: Path) -> Iterator[Catalog]:
    cat = Catalog(data_dir)
    cat.open_all()
    yield cat
    cat.close()


def _coll(cat: Catalog, name: str) -> Collection:
    coll = cat.get(name)
    assert isinstance(coll, Collection)
    return coll


def test_every_old_collection_opens(catalog: Catalog) -> None:
    assert catalog.names() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_points_and_vectors_are_bit_for_bit_the_same(catalog: Catalog, name: str) -> None:
    coll = _coll(catalog, name)
    want = EXPECTED[name]
    assert coll.count == want["count"]
    got = {str(h.id): h for h in coll.get([0, 3, 7, 5], with_payload=True, with_vector=True)}
    assert set(got) == set(want["points"]) == {"0", "3", "7"}  # 5 was deleted
    for pid, point in want["points"].items():
        h = got[pid]
        assert h.payload == point["payload"]
        assert h.vectors is not None
        stored = np.asarray(h.vectors[""], dtype=np.float32).ravel()
        assert stored.tobytes() == _array(point["vector"]).tobytes()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_exact_search_answers_as_before(catalog: Catalog, name: str) -> None:
    coll = _coll(catalog, name)
    want = EXPECTED[name]
    queries = [_array(q, shape) for q, shape in zip(want["queries"], want["shapes"], strict=True)]
    got = coll.search([Query(q, limit=5, params=SearchParams(exact=True)) for q in queries])
    for res, exact in zip(got, want["exact"], strict=True):
        assert [h.id for h in res.hits] == [pid for pid, _ in exact]
        assert [h.score for h in res.hits] == pytest.approx([sc for _, sc in exact], rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("name", ["dense", "int8", "muvera"])
def test_saved_indexes_load_instead_of_rebuilding(catalog: Catalog, name: str) -> None:
    coll = _coll(catalog, name)
    saved = json.loads((coll.dir / "index" / "manifest.json").read_text())["saved_at"]
    (field,) = coll.dense_fields()
    assert field.last_optimized == saved  # set from the loaded manifest; a rebuild would leave it unset
    info = coll.info()
    assert info.index.state == "ready" and info.index.pending == 0
    assert info.index.indexed == EXPECTED[name]["count"]
    assert info.status == "green"


def test_new_writes_and_a_restart_keep_working(data_dir: Path) -> None:
    cat = Catalog(data_dir)
    cat.open_all()
    coll = _coll(cat, "dense")
    v = np.ones(8, np.float32)
    coll.upsert(["new"], v[None, :], [{"tag": "new"}])
    assert coll.search([Query(v, limit=1)])[0].hits[0].id == "new"
    cat.close()
    cat = Catalog(data_dir)
    cat.open_all()
    try:
        coll = _coll(cat, "dense")
        assert coll.count == EXPECTED["dense"]["count"] + 1
        assert coll.search([Query(v, limit=1)])[0].hits[0].id == "new"
        maxsim = _coll(cat, "maxsim")
        maxsim.upsert(["m"], [np.ones((2, 8), np.float32)], None)
        assert maxsim.search([Query(np.ones((1, 8), np.float32), limit=1)])[0].hits[0].id == "m"
    finally:
        cat.close()
