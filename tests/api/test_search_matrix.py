"""Matrix search (`POST .../points/search/matrix`, `NestorClient.search_matrix`): one float32 buffer of queries,
columns of ids and scores back. It must answer exactly what `search_batch` answers for the same plain
searches, in both wire formats, on a graph and on IVF-PQ; bad bodies get a 4xx; a scoped key's filter holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import msgpack
import numpy as np
import pytest

from nestor_client import NestorClient
from nestor_client.errors import CollectionNotFound, DimensionMismatch, InvalidVector, LimitExceeded, PayloadTooLarge
from server.auth import hash_key
from tests.api.conftest import running, wait_indexed
from tests.synth import manifold

N, DIM, NQ = 1500, 16, 12


@pytest.fixture(params=["json", "msgpack"])
def client(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[NestorClient]:
    with running(tmp_path / "data", wire=request.param, max_search_batch=20, max_search_limit=50) as c:
        yield c


def _load(c: NestorClient, name: str, metric: str, index: dict[str, object]) -> np.ndarray:
    base = manifold(N + NQ, DIM, seed=7, normalize=False)
    c.create_collection(name, dim=DIM, metric=metric, index=index)
    c.upload(name, ids=list(range(N)), vectors=base[:N], payloads=[{"t": i % 3} for i in range(N)])
    wait_indexed(c, name)
    return base[N:]


@pytest.mark.parametrize(
    ("metric", "index", "strategy"),
    [
        ("cosine", {"type": "hnsw"}, "hnsw"),
        ("l2", {"type": "ivf_pq", "nlist": 8, "train_threshold": 1000}, "ivf_pq"),
    ],
)
def test_matrix_answers_what_the_batch_answers(
    client: NestorClient, metric: str, index: dict[str, object], strategy: str
) -> None:
    qs = _load(client, "m", metric, index)
    params = {"ef": 40} if strategy == "hnsw" else {"nprobe": 4, "oversampling": 8}
    got = client.search_matrix("m", qs, limit=7, params=params)
    want = client.search_batch("m", [{"vector": q, "limit": 7, "params": params, "with_payload": False} for q in qs])
    assert len(got) == NQ and got.strategy == strategy
    assert got.ids == [[h.id for h in r] for r in want]
    assert all(len(row) == 7 for row in got.ids)
    np.testing.assert_allclose(np.array(got.scores), [[h.score for h in r] for r in want], rtol=1e-5, atol=1e-6)


def test_bad_bodies_get_a_4xx_and_change_nothing(client: NestorClient) -> None:
    qs = _load(client, "m", "dot", {"type": "hnsw"})
    with pytest.raises(DimensionMismatch):
        client.search_matrix("m", qs[:, :-1])  # rows of 15 floats: not whole rows of 16
    with pytest.raises(LimitExceeded):
        client.search_matrix("m", qs, limit=51)
    with pytest.raises(PayloadTooLarge):
        client.search_matrix("m", np.concatenate([qs, qs]))  # 24 searches, max_search_batch 20
    with pytest.raises(CollectionNotFound):
        client.search_matrix("nope", qs)
    with pytest.raises(ValueError, match="matrix"):
        client.search_matrix("m", qs[0])  # one vector is not a matrix: refused before sending
    assert client.get_collection("m").count == N


def test_undecodable_vectors_are_invalid(tmp_path: Path) -> None:
    with running(tmp_path / "data", wire="json") as c:
        _load(c, "m", "dot", {"type": "hnsw"})
        http = c._http  # type: ignore[attr-defined]
        r = http.post("/collections/m/points/search/matrix", json={"vectors": "not base64!", "limit": 3})
        assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_vector"
        body = msgpack.packb({"vectors": b"\x00" * 6, "limit": 3}, use_bin_type=True)
        r = http.post(
            "/collections/m/points/search/matrix", content=body, headers={"content-type": "application/msgpack"}
        )
        assert r.status_code == 422 and r.json()["error"]["type"] == "dimension_mismatch"
        r = http.post("/collections/m/points/search/matrix", json={"vectors": "", "limit": 3})
        assert r.status_code == 422 and r.json()["error"]["type"] == "dimension_mismatch"
        nan = np.full((2, DIM), np.nan, np.float32)
        with pytest.raises(InvalidVector):
            c.search_matrix("m", nan)


def test_a_scoped_keys_filter_holds_on_every_row(tmp_path: Path) -> None:
    admin, reader = "key-admin-matrix-0123456789", "key-scoped-matrix-0123456789"
    keys = tmp_path / "keys"
    scope = {"collections": {"m": "read"}, "filter": {"m": {"must": [{"key": "t", "match": {"value": 1}}]}}}
    keys.write_text(json.dumps({"sha256": hash_key(reader), **scope}) + "\n")
    with running(tmp_path / "data", api_keys=f"admin:{hash_key(admin)}", api_keys_file=keys) as c:
        c._http.headers["authorization"] = f"Bearer {admin}"  # type: ignore[attr-defined]
        qs = _load(c, "m", "dot", {"type": "hnsw"})
        c._http.headers["authorization"] = f"Bearer {reader}"  # type: ignore[attr-defined]
        got = c.search_matrix("m", qs, limit=5)
        assert all(len(row) == 5 and all(i % 3 == 1 for i in row) for row in got.ids)  # only t == 1
        want = c.search_batch("m", [{"vector": q, "limit": 5, "with_payload": False} for q in qs])
        assert got.ids == [[h.id for h in r] for r in want]
