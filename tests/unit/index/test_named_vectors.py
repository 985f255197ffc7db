"""Named vectors in-process: a collection with a dense HNSW vector, a flat L2 vector and MUVERA tokens.

Points omit some vectors. Every search is checked against a numpy oracle over exactly the points
that have the vector searched; gets return the vectors asked for (and only those a point has);
overwrites, deletes and restarts keep every field in step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from index.catalog import Catalog
from index.collection import Collection
from index.contract import Query
from index.errors import DimensionMismatch, InvalidRequest, InvalidVector
from index.multivector import MultiVectorField
from nestor_client.models import CollectionConfig, SearchParams
from tests.unit.index.conftest import (
    F32,
    Engine,
    ids_scores,
    maxsim,
    rows,
    top_cosine,
    top_l2,
    top_maxsim,
    unit,
    wait_indexed,
)

CONFIG: dict[str, Any] = {
    "vectors": {
        "text": {"dim": 8, "metric": "cosine", "index": {"type": "hnsw"}},
        "image": {"dim": 4, "metric": "l2", "index": {"type": "flat"}},
        "tokens": {
            "dim": 6,
            "metric": "cosine",
            "multivector": {
                "type": "muvera",
                "k_sim": 2,
                "d_proj": 4,
                "r_reps": 4,
                "token_dtype": "float32",
                "oversampling": 3,
                "exact_below": 0,  # 40 small documents: this checks MUVERA's candidates, not the exact scan
            },
            "index": {"type": "hnsw"},  # the default FDE index (IVF-PQ) trains only at 256 documents
        },
    }
}
NAMES = ("image", "text", "tokens")
EXACT = SearchParams(exact=True)
Model = dict[str, dict[Any, F32]]


def _fill(coll: Collection, seed: int = 0) -> Model:
    """40 points, each omitting some vector (by id mod 5), then 10 with no tokens, given as matrices."""
    rng = np.random.default_rng(seed)
    ids: list[Any] = [*range(30), *(f"s{i}" for i in range(10))]
    model: Model = {name: {} for name in NAMES}
    given: dict[str, list[F32 | None]] = {name: [] for name in NAMES}
    for i, pid in enumerate(ids):
        vecs = {
            "text": rows(rng, 1, 8)[0],
            "image": rows(rng, 1, 4)[0],
            "tokens": rows(rng, int(rng.integers(2, 6)), 6),
        }
        skip = {1: "text", 2: "image", 3: "tokens", 4: "text"}.get(i % 5)
        for name, v in vecs.items():
            keep = name != skip and not (i == 9 and name != "image")  # point 9: only an image
            given[name].append(v if keep else None)
            if keep:
                model[name][pid] = v
    payloads = [{"i": i} for i in range(len(ids))]
    coll.upsert(ids, given, payloads)  # type: ignore[arg-type]
    more = list(range(100, 110))
    text, image = rows(rng, 10, 8), rows(rng, 10, 4)
    coll.upsert(more, {"text": text, "image": image})  # matrices, and no tokens at all
    for j, pid in enumerate(more):
        model["text"][pid], model["image"][pid] = text[j], image[j]
    return model


@pytest.fixture
def filled(engine: Engine) -> tuple[Collection, Model]:
    coll = engine.create("named", CONFIG)
    model = _fill(coll)
    wait_indexed(coll)
    return coll, model


def _oracle(name: str, model: Model, q: F32, k: int) -> list[tuple[Any, float]]:
    if name == "text":
        return top_cosine(model["text"], q, k)
    if name == "image":
        return top_l2(model["image"], q, k)
    return top_maxsim(model["tokens"], q, k)


def _query(rng: np.random.Generator, name: str) -> F32:
    """A random query for a vector: one row, or three token rows for "tokens"."""
    if name == "tokens":
        return rows(rng, 3, 6)
    return rows(rng, 1, {"text": 8, "image": 4}[name])[0]


@pytest.mark.parametrize("name", NAMES)
def test_each_vector_answers_exactly(filled: tuple[Collection, Model], name: str) -> None:
    coll, model = filled
    rng = np.random.default_rng(7)
    for _ in range(5):
        q = _query(rng, name)
        want_ids, want_scores = zip(*_oracle(name, model, q, 6), strict=True)
        got = coll.search([Query(q, limit=6, using=name, params=EXACT if name == "tokens" else None)])[0]
        ids, scores = ids_scores(got.hits)
        assert ids == list(want_ids), got.strategy
        np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)
        assert got.strategy == {"text": "hnsw", "image": "exact", "tokens": "maxsim"}[name]


def test_muvera_candidates_are_reranked_by_exact_maxsim(filled: tuple[Collection, Model]) -> None:
    """Without `exact`, MUVERA picks oversampling * limit candidates; their scores are exact MaxSim."""
    coll, model = filled
    docs = model["tokens"]
    for pid in list(docs)[:8]:
        got = coll.search([Query(docs[pid], limit=3, using="tokens")])[0]
        assert got.strategy == "muvera"
        assert got.hits[0].id == pid  # a document's own tokens are its best match
        for h in got.hits:
            assert h.score == pytest.approx(maxsim(docs[pid], docs[h.id]), rel=1e-5)
        assert [h.score for h in got.hits] == sorted((h.score for h in got.hits), reverse=True)


def test_a_point_missing_a_vector_is_found_only_by_the_others(filled: tuple[Collection, Model]) -> None:
    coll, model = filled
    rng = np.random.default_rng(1)
    for name in NAMES:
        hits = coll.search([Query(_query(rng, name), limit=100, using=name, with_payload=False)])[0].hits
        assert sorted(map(str, (h.id for h in hits))) == sorted(map(str, model[name]))
    assert 1 not in model["text"] and 1 in model["image"] and 1 in model["tokens"]
    assert set(model["image"]) - set(model["text"]) - set(model["tokens"]) >= {9}


def test_get_returns_the_vectors_asked_for_that_a_point_has(filled: tuple[Collection, Model]) -> None:
    coll, model = filled
    ids: list[Any] = [*range(30), *(f"s{i}" for i in range(10)), *range(100, 110)]
    hits = coll.get(ids, with_vector=True)
    assert [h.id for h in hits] == ids
    for h in hits:
        assert h.vectors is not None
        assert set(h.vectors) == {n for n in NAMES if h.id in model[n]}
        if "image" in h.vectors:  # l2: stored as given, bit for bit
            assert np.asarray(h.vectors["image"], np.float32).tobytes() == model["image"][h.id].tobytes()
        if "text" in h.vectors:  # cosine: stored normalised
            np.testing.assert_allclose(h.vectors["text"], unit(model["text"][h.id]), atol=1e-6)
        if "tokens" in h.vectors:
            np.testing.assert_allclose(h.vectors["tokens"], unit(model["tokens"][h.id]), atol=1e-6)
    only = coll.get([0, 1, 2, 3], with_vector=["image"])
    assert [sorted(h.vectors or {}) for h in only] == [["image"], ["image"], [], ["image"]]
    assert only[0].payload == {"i": 0}
    bare = coll.get([0, 2], with_vector=False, with_payload=False)
    assert [(h.vectors, h.payload) for h in bare] == [(None, None), (None, None)]
    with pytest.raises(InvalidRequest, match="audio"):
        coll.get([0], with_vector=["image", "audio"])


def test_overwrite_replaces_every_vector(filled: tuple[Collection, Model]) -> None:
    coll, model = filled
    count = coll.count
    label = coll.label_of(0)
    v = np.array([9.0, 9.0, 9.0, 9.0], np.float32)
    coll.upsert([0], {"image": [v]}, [{"new": True}])  # point 0 had all three vectors
    assert coll.count == count
    assert coll.label_of(0) != label
    (h,) = coll.get([0], with_vector=True)
    assert h.vectors == {"image": v.tolist()} and h.payload == {"new": True}
    for name in ("text", "tokens"):
        q = model[name][0]
        found = {x.id for x in coll.search([Query(q, limit=100, using=name, params=EXACT)])[0].hits}
        assert 0 not in found and len(found) == len(model[name]) - 1
    top = coll.search([Query(v, limit=1, using="image")])[0].hits[0]
    assert (top.id, top.score) == (0, 0.0)


def test_delete_removes_a_point_from_every_vector(filled: tuple[Collection, Model]) -> None:
    coll, model = filled
    count = coll.count
    gone = [0, "s3", 9]
    assert coll.delete(gone).count == 3
    assert coll.count == count - 3 and coll.get(gone) == []
    for name in NAMES:
        for pid in gone:
            if pid in model[name]:
                q = model[name][pid]
                hits = coll.search([Query(q, limit=100, using=name, params=EXACT)])[0].hits
                assert pid not in {h.id for h in hits}
                assert len(hits) == len([p for p in model[name] if p not in gone])


def _everything(coll: Collection, model: Model) -> tuple[Any, ...]:
    ids: list[Any] = [*range(30), *(f"s{i}" for i in range(10)), *range(100, 110)]
    got = [(h.id, h.payload, h.vectors) for h in coll.get(ids, with_vector=True)]
    rng = np.random.default_rng(11)
    found = []
    for name in NAMES:
        for params in (None, EXACT):
            res = coll.search([Query(_query(rng, name), limit=8, using=name, params=params)])[0]
            found.append((res.strategy, ids_scores(res.hits)))
    return coll.count, coll.seq, got, found


def test_restart_keeps_everything_bit_for_bit(engine: Engine, filled: tuple[Collection, Model]) -> None:
    coll, model = filled
    coll.upsert([2], {"text": [model["text"][2] * 2], "tokens": [model["tokens"][2]]})  # overwrite: no image now
    coll.delete(["s4"])
    before = _everything(coll, model)
    engine.restart()
    coll = engine.get("named")
    # the indexes saved at close were loaded, not rebuilt (background saves are off in these tests)
    assert [f.name for f in coll.dense_fields() if f.last_optimized is not None] == ["text", "tokens"]
    assert _everything(coll, model) == before
    # and it keeps taking writes in step
    coll.upsert([200], {"tokens": [model["tokens"][0]]})
    engine.restart()
    coll = engine.get("named")
    (h,) = coll.get([200], with_vector=True)
    assert h.vectors is not None and set(h.vectors) == {"tokens"}
    assert coll.count == before[0] + 1


def _state(coll: Collection) -> tuple[Any, ...]:
    stores = []
    for f in coll.fields.values():
        if isinstance(f, MultiVectorField):
            stores.append((f.tokens.n_docs, f.tokens.n_tokens, f.fde.vectors.rows if f.fde else None))
        else:
            stores.append(f.vectors.rows)
    return coll.count, coll.seq, coll.labels.n, dict(coll.labels.label_of), stores


def test_a_bad_batch_changes_nothing(filled: tuple[Collection, Model]) -> None:
    coll, model = filled
    before = _state(coll)
    v8, v4 = np.ones((1, 8), np.float32), np.ones((1, 4), np.float32)
    with pytest.raises(InvalidVector, match="'audio'"):
        coll.upsert([500], {"text": v8, "audio": v4})
    with pytest.raises(DimensionMismatch, match="'image'"):
        coll.upsert([500], {"text": v8, "image": np.ones((1, 5), np.float32)})
    with pytest.raises(InvalidVector, match="'tokens'"):  # the last field checked: the others passed
        coll.upsert([500], {"text": v8, "image": v4, "tokens": [np.full((2, 6), np.nan, np.float32)]})
    with pytest.raises(InvalidVector):
        coll.upsert([500, 501], {"text": v8})  # one vector for two ids
    assert _state(coll) == before
    assert coll.get([500]) == []
    with pytest.raises(InvalidRequest, match="'audio'"):
        coll.search([Query(v4[0], using="audio")])


def test_a_search_that_names_no_vector_is_refused(filled: tuple[Collection, Model]) -> None:
    coll, _ = filled
    for call in (
        lambda: coll.search([Query(np.ones(8, np.float32))]),
        lambda: coll.vector_config(None),
        lambda: coll.upsert([1000], np.ones((1, 8), np.float32)),
    ):
        with pytest.raises(InvalidRequest) as err:
            call()
        assert all(repr(n) in str(err.value) for n in NAMES), str(err.value)
    assert coll.get([1000]) == []
    assert coll.vector_config("image")[1].dim == 4


def test_a_query_naming_no_vector_searches_the_only_one(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    try:
        coll, _ = cat.create("one", CollectionConfig.model_validate({"vectors": {"text": {"dim": 3}}}))
        coll.upsert([1, 2], np.array([[1, 0, 0], [0, 1, 0]], np.float32))  # a bare matrix: the only vector
        assert coll.search([Query(np.array([0, 1, 0], np.float32), limit=1)])[0].hits[0].id == 2
    finally:
        cat.close()
