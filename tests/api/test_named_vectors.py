"""Named vectors through REST: create, upsert with some vectors missing, search each name, get the
vectors asked for, restart, snapshot and restore; bad requests get a 4xx and change nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nestor_client import NestorClient
from nestor_client.errors import ApiError
from tests.api.conftest import running, wait_indexed

VECTORS = {
    "text": {"dim": 8, "metric": "cosine", "index": {"type": "hnsw", "m": 8, "ef": 64}},
    "image": {"dim": 4, "metric": "l2", "index": {"type": "flat"}},
    "tokens": {"dim": 4, "metric": "dot", "multivector": {"type": "maxsim", "token_dtype": "float32"}},
}
N = 60


def _data(seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    text = rng.normal(size=(N, 8)).astype(np.float32)
    image = rng.normal(size=(N, 4)).astype(np.float32)
    tokens = [rng.normal(size=(int(rng.integers(1, 4)), 4)).astype(np.float32) for _ in range(N)]
    # every third point has no image, every fifth no tokens
    has_image = np.arange(N) % 3 != 0
    has_tokens = np.arange(N) % 5 != 0
    return {"text": text, "image": image, "tokens": tokens, "has_image": has_image, "has_tokens": has_tokens}


def _points(d: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for i in range(N):
        vec: dict[str, Any] = {"text": d["text"][i].tolist()}
        if d["has_image"][i]:
            vec["image"] = d["image"][i].tolist()
        if d["has_tokens"][i]:
            vec["tokens"] = d["tokens"][i].tolist()
        out.append({"id": i, "vector": vec, "payload": {"i": i}})
    return out


def _load(c: NestorClient, name: str = "mm") -> dict[str, Any]:
    c.create_collection(name, vectors=VECTORS)
    d = _data()
    assert c.upsert(name, points=_points(d)).upserted == N
    return d


def _exact_cosine(x: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    return [int(i) for i in np.argsort(-(xn @ (q / np.linalg.norm(q))), kind="stable")[:k]]


def _check_searches(c: NestorClient, d: dict[str, Any], name: str = "mm") -> None:
    rng = np.random.default_rng(9)
    q_text = rng.normal(size=8).astype(np.float32)
    got = [h.id for h in c.search(name, q_text, using="text", limit=5, params={"exact": True})]
    assert got == _exact_cosine(d["text"], q_text, 5)
    q_img = rng.normal(size=4).astype(np.float32)
    hits = c.search(name, q_img, using="image", limit=N)
    ids = [h.id for h in hits]
    have = np.flatnonzero(d["has_image"])
    dist = np.linalg.norm(d["image"][have] - q_img, axis=1)
    assert ids == [int(have[i]) for i in np.argsort(dist, kind="stable")]  # points without an image never show
    assert [h.score for h in hits] == pytest.approx(np.sort(dist).tolist(), rel=1e-5)
    q_tok = rng.normal(size=(2, 4)).astype(np.float32)
    hits = c.search(name, multivector=q_tok, using="tokens", limit=N)
    have = np.flatnonzero(d["has_tokens"])
    maxsim = np.array([float(np.max(q_tok @ d["tokens"][i].T, axis=1).sum()) for i in have])
    assert [h.id for h in hits] == [int(have[i]) for i in np.argsort(-maxsim, kind="stable")]


def test_create_upsert_with_missing_vectors_and_search_each(client: NestorClient) -> None:
    d = _load(client)
    info = client.get_collection("mm")
    assert info.config.vectors is not None and set(info.config.vectors) == set(VECTORS)
    assert set(info.vectors) == set(VECTORS)
    assert info.vectors["image"].index.indexed == int(d["has_image"].sum())
    assert info.vectors["tokens"].index.indexed == int(d["has_tokens"].sum())
    assert info.count == N
    _check_searches(client, d)
    wait_indexed(client, "mm")
    ann = [h.id for h in client.search("mm", d["text"][7], using="text", limit=1)]
    assert ann == [7]


def test_get_returns_the_vectors_asked_for(client: NestorClient) -> None:
    d = _load(client)
    recs = {r.id: r for r in client.get("mm", [0, 1, 3], with_vector=["image", "tokens"])}
    assert set(recs) == {0, 1, 3}
    assert isinstance(recs[1].vector, dict) and set(recs[1].vector) == {"image", "tokens"}
    np.testing.assert_array_equal(np.asarray(recs[1].vector["image"], np.float32), d["image"][1])
    np.testing.assert_array_equal(np.asarray(recs[1].vector["tokens"], np.float32), d["tokens"][1])
    assert isinstance(recs[0].vector, dict) and set(recs[0].vector) == set()  # 0 has neither an image nor tokens
    assert isinstance(recs[3].vector, dict) and set(recs[3].vector) == {"tokens"}  # 3 has no image
    everything = client.get("mm", [1], with_vector=True)[0].vector
    assert isinstance(everything, dict) and set(everything) == {"text", "image", "tokens"}
    text = np.asarray(everything["text"], np.float32)
    np.testing.assert_allclose(text, d["text"][1] / np.linalg.norm(d["text"][1]), rtol=1e-6)  # cosine: normalised
    hit = client.search("mm", d["image"][4], using="image", limit=1, with_vector=["image"])[0]
    assert hit.id == 4 and isinstance(hit.vector, dict) and set(hit.vector) == {"image"}


def test_overwrite_replaces_every_vector(client: NestorClient) -> None:
    d = _load(client)
    client.upsert("mm", points=[{"id": 1, "vector": {"text": d["text"][2].tolist()}}])  # no image, no tokens now
    rec = client.get("mm", [1], with_vector=True)[0]
    assert isinstance(rec.vector, dict) and set(rec.vector) == {"text"}
    assert 1 not in [h.id for h in client.search("mm", d["image"][1], using="image", limit=N)]
    assert client.delete("mm", ids=[2]).deleted == 1
    for using, q in (("text", d["text"][2]), ("image", d["image"][2])):
        assert 2 not in [h.id for h in client.search("mm", q, using=using, limit=N, params={"exact": True})]


def test_bad_requests_are_4xx_and_change_nothing(client: NestorClient) -> None:
    d = _load(client)
    before = client.get_collection("mm").seq
    bad: list[Callable[[], object]] = [
        lambda: client.upsert("mm", points=[{"id": 100, "vector": {"nope": [1.0, 2.0]}}]),
        lambda: client.upsert("mm", points=[{"id": 100, "vector": {"image": [1.0, 2.0]}}]),  # wrong dim
        lambda: client.upsert("mm", points=[{"id": 100, "vector": {"tokens": [[1.0, 2.0]]}}]),  # token dim 2, not 4
        lambda: client.upsert("mm", points=[{"id": 100, "vector": [0.0] * 8}]),  # no default vector to fill
        lambda: client.upsert(  # one bad point spoils its whole batch
            "mm",
            points=[
                {"id": 100, "vector": {"text": [1.0] * 8}},
                {"id": 101, "vector": {"text": [float("nan")] * 8}},
            ],
        ),
        lambda: client.search("mm", d["text"][0]),  # which vector? there is no default
        lambda: client.search("mm", d["text"][0], using="nope"),
        lambda: client.search("mm", d["text"][0], using="tokens"),  # a multivector needs token vectors
        lambda: client.get("mm", [1], with_vector=["nope"]),
    ]
    for call in bad:
        with pytest.raises(ApiError) as err:
            call()
        assert 400 <= err.value.status < 500, err.value
    info = client.get_collection("mm")
    assert (info.count, info.seq) == (N, before)
    _check_searches(client, d)
    with pytest.raises(ApiError) as err:  # top-level settings beside named vectors
        client.create_collection("mixed", dim=8, vectors=VECTORS)
    assert err.value.status == 422


def test_named_vectors_survive_restart_and_snapshot_restore(tmp_path: Path) -> None:
    with running(tmp_path / "data") as c:
        d = _load(c)
        c.upsert("mm", points=[{"id": "late", "vector": {"image": [0.5, 0.5, 0.5, 0.5]}}])  # image only
        wait_indexed(c, "mm")
        snap = c.create_snapshot("mm")
    with running(tmp_path / "data") as c:
        assert c.get_collection("mm").count == N + 1
        _check_searches_with_late(c, d)
        info = c.restore_snapshot("copy", snap.name, source="mm")
        assert info.count == N + 1 and set(info.vectors) == set(VECTORS)
        _check_searches_with_late(c, d, "copy")
        got = c.get("copy", [5, "late"], with_vector=True)
        by_id = {r.id: r.vector for r in got}
        assert isinstance(by_id[5], dict) and set(by_id[5]) == {"text", "image"}  # 5 has no tokens
        np.testing.assert_array_equal(np.asarray(by_id[5]["image"], np.float32), d["image"][5])
        assert isinstance(by_id["late"], dict) and set(by_id["late"]) == {"image"}


def _check_searches_with_late(c: NestorClient, d: dict[str, Any], name: str = "mm") -> None:
    hits = c.search(name, [0.5, 0.5, 0.5, 0.5], using="image", limit=1)
    assert hits[0].id == "late"
    text_ids = [h.id for h in c.search(name, d["text"][3], using="text", limit=N + 1, params={"exact": True})]
    assert "late" not in text_ids and len(text_ids) == N


def test_text_fills_every_vector_with_an_encoder(client: NestorClient) -> None:
    client.create_collection(
        "t",
        vectors={
            "hashed": {"dim": 32, "encoder": {"name": "hash", "config": {"dim": 32}}},
            "raw": {"dim": 3, "metric": "l2", "index": {"type": "flat"}},
        },
    )
    client.upsert(
        "t",
        points=[
            {"id": 1, "text": "red apples and pears", "vector": {"raw": [1.0, 0.0, 0.0]}},
            {"id": 2, "text": "fast cars on roads"},
        ],
    )
    assert [h.id for h in client.search_text("t", "apples and pears", using="hashed", limit=1)] == [1]
    assert [h.id for h in client.search("t", [1.0, 0.0, 0.0], using="raw", limit=5)] == [1]  # 2 has no raw vector
    with pytest.raises(ApiError) as err:
        client.search_text("t", "apples", using="raw")
    assert err.value.status == 422


def test_the_unnamed_form_answers_as_before(client: NestorClient) -> None:
    client.create_collection("plain", dim=4, metric="l2", index={"type": "flat"})
    client.upsert("plain", points=[{"id": 1, "vector": [1.0, 2.0, 3.0, 4.0]}])
    rec = client.get("plain", [1], with_vector=True)[0]
    assert rec.vector == [1.0, 2.0, 3.0, 4.0]
    hit = client.search("plain", [1.0, 2.0, 3.0, 4.0], limit=1, with_vector=True)[0]
    assert hit.vector == [1.0, 2.0, 3.0, 4.0] and hit.score == pytest.approx(0.0)
    assert client.search("plain", [1.0, 2.0, 3.0, 4.0], using="", limit=1)[0].id == 1
    info = client.get_collection("plain")
    assert set(info.vectors) == {""} and info.config.vectors is None and info.config.dim == 4


def test_a_muvera_field_beside_a_dense_one(client: NestorClient) -> None:
    """MUVERA is a field now: its FDE index lives under vectors/<name>/, built by the same indexer."""
    muvera = {"type": "muvera", "k_sim": 2, "d_proj": 4, "r_reps": 4, "token_dtype": "float32", "oversampling": 4}
    muvera["exact_below"] = 0  # 300 small documents: exact would be cheaper, and this checks MUVERA's path
    client.create_collection(
        "mv",
        vectors={
            "dense": {"dim": 8, "index": {"type": "hnsw", "m": 8}},
            "colbert": {"dim": 8, "metric": "dot", "multivector": muvera, "index": {"type": "hnsw", "m": 8}},
        },
    )
    rng = np.random.default_rng(21)
    docs = [rng.normal(size=(int(rng.integers(2, 6)), 8)).astype(np.float32) for _ in range(300)]
    dense = rng.normal(size=(300, 8)).astype(np.float32)
    points = [{"id": i, "vector": {"dense": dense[i].tolist(), "colbert": docs[i].tolist()}} for i in range(300)]
    client.upsert("mv", points=points)
    deadline = time.monotonic() + 60
    while True:
        info = client.get_collection("mv")
        col = info.vectors["colbert"].index
        if col.state == "ready" and col.pending == 0 and col.indexed == 300:
            break
        assert time.monotonic() < deadline, col
        time.sleep(0.05)
    assert col.get("multivector")["fde_dim"] == 4 * 4 * 4  # r_reps * 2**k_sim * d_proj
    hits = client.search("mv", multivector=docs[17], using="colbert", limit=3)
    assert hits.strategy == "muvera" and hits[0].id == 17
    assert client.search("mv", dense[17], using="dense", limit=1)[0].id == 17
