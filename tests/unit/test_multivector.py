"""The multi-vector collection in-process: write atomicity across the token and vector files, recovery
from torn writes, and the persisted encoder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from index.catalog import Catalog
from index.collection import Collection
from index.contract import Query
from index.multivector import MultiVectorField
from index.tokens import TokenFiles
from nestor_client.models import CollectionConfig
from tests.synth_tokens import clustered_token_sets

DIM = 16
CONFIG = {
    "dim": DIM,
    "metric": "dot",
    "multivector": {"type": "muvera", "k_sim": 3, "d_proj": 8, "r_reps": 4, "seed": 5, "token_dtype": "int8"},
    "index": {"type": "hnsw", "m": 8},
}


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    cat = Catalog(tmp_path)
    yield cat
    cat.close()


def reopen(cat: Catalog) -> Catalog:
    cat.close()
    fresh = Catalog(cat.data_dir)
    fresh.open_all()
    return fresh


def mv(cat: Catalog, name: str = "m") -> Collection:
    coll = cat.get(name)
    assert isinstance(coll, Collection)
    return coll


def mvf(coll: Collection) -> MultiVectorField:
    """The collection's one (default) vector: a multivector field."""
    f = coll.fields[""]
    assert isinstance(f, MultiVectorField)
    return f


def fdes(coll: Collection) -> Any:
    fde = mvf(coll).fde
    assert fde is not None
    return fde.vectors.view()


def top(coll: Collection, q: Any, k: int = 5) -> list[tuple[Any, float]]:
    return [(h.id, h.score) for h in coll.search([Query(vector=q, limit=k)])[0].hits]


def test_a_failed_commit_leaves_no_tokens_behind(catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    docs, queries = clustered_token_sets(40, 2, DIM, seed=1)
    catalog.create("m", CollectionConfig.model_validate(CONFIG))
    coll = mv(catalog)
    coll.upsert(list(range(20)), docs[:20])
    tokens = mvf(coll).tokens.n_tokens

    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(coll.points, "upsert", fail)
    with pytest.raises(OSError):
        coll.upsert(list(range(20, 40)), docs[20:])
    assert (coll.count, mvf(coll).tokens.n_docs, mvf(coll).tokens.n_tokens) == (20, 20, tokens)
    monkeypatch.undo()
    coll.upsert(list(range(20, 40)), docs[20:])  # the same labels again, now committed
    assert coll.count == 40 and mvf(coll).tokens.n_docs == 40
    assert top(coll, docs[33])[0][0] == 33


def test_torn_token_rows_are_dropped_on_restart(catalog: Catalog) -> None:
    docs, queries = clustered_token_sets(30, 3, DIM, seed=2)
    catalog.create("m", CollectionConfig.model_validate(CONFIG))
    mv(catalog).upsert(list(range(30)), docs)
    before = [top(mv(catalog), q) for q in queries]
    directory = mv(catalog).dir
    catalog.close()
    extra = TokenFiles(directory, DIM, "int8", 30)  # a crash after the token fsync, before the commit
    extra.append(np.ones((7, DIM), np.float32), np.array([3, 4], np.int64))
    extra.close()
    cat = Catalog(catalog.data_dir)
    cat.open_all()
    try:
        coll = mv(cat)
        assert coll.count == 30 and mvf(coll).tokens.n_docs == 30
        assert [top(coll, q) for q in queries] == before
        coll.upsert(["new"], [docs[0]])
        assert mvf(coll).tokens.n_docs == 31 and {h for h, _ in top(coll, docs[0], 2)} == {0, "new"}
    finally:
        cat.close()


def test_the_encoder_is_stored_and_checked(catalog: Catalog) -> None:
    docs, _ = clustered_token_sets(10, 1, DIM, seed=3)
    catalog.create("m", CollectionConfig.model_validate(CONFIG))
    coll = mv(catalog)
    coll.upsert(list(range(10)), docs)
    assert mvf(coll).encoder is not None
    offsets = np.cumsum([0] + [len(d) for d in docs])
    fde = mvf(coll).encoder.encode_documents(np.concatenate(docs), offsets)
    np.testing.assert_array_equal(fdes(coll)[:10], fde)
    stored = json.loads((coll.dir / "muvera" / "meta.json").read_text())
    assert (stored["k_sim"], stored["d_proj"], stored["r_reps"], stored["seed"]) == (3, 8, 4, 5)
    assert (coll.dir / "muvera" / "simhash.npy").exists()  # the drawn matrices, not just the seed

    cat = reopen(catalog)
    try:
        again = mv(cat)
        assert mvf(again).encoder is not None
        np.testing.assert_array_equal(mvf(again).encoder.encode_documents(np.concatenate(docs), offsets), fde)
        np.testing.assert_array_equal(fdes(again)[:10], fde)
        directory = again.dir
    finally:
        cat.close()
    config = json.loads((directory / "collection.json").read_text())
    config["multivector"]["seed"] = 6  # the stored matrices no longer match the config
    (directory / "collection.json").write_text(json.dumps(config))
    cat = Catalog(catalog.data_dir)
    cat.open_all()
    assert cat.names() == []  # left out (and logged), not opened with other encodings
    cat.close()


def test_maxsim_collections_keep_no_index(catalog: Catalog) -> None:
    docs, queries = clustered_token_sets(50, 1, DIM, seed=4)
    mvc = {"type": "maxsim", "token_dtype": "float32"}
    cfg = CollectionConfig.model_validate({"dim": DIM, "metric": "dot", "multivector": mvc})
    catalog.create("o", cfg)
    coll = mv(catalog, "o")
    assert coll.config.index.type == "flat" and mvf(coll).encoder is None
    coll.upsert(list(range(50)), docs, [{"k": i % 2} for i in range(50)])
    q = queries[0]
    full = np.array([float(np.max(q @ d.T, axis=1).sum()) for d in docs])
    got = top(coll, q, 50)
    assert [i for i, _ in got[:10]] == np.argsort(-full, kind="stable")[:10].tolist()
    assert [sc for _, sc in got] == pytest.approx(np.sort(full)[::-1].tolist(), abs=1e-4)
    assert coll.delete([int(np.argmax(full))]).count == 1
    assert top(coll, q, 1)[0][0] == int(np.argsort(-full)[1])
    assert coll.info().index.type == "maxsim"
