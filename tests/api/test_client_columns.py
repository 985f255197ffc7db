"""The Python client's columnar upsert with named vectors: a dense matrix and a sparse column (a SciPy
matrix, CSR arrays or a list with Nones) and `texts` in one atomic `batch`, chunked by `upload`, over JSON
and msgpack; and the helper's refusals before anything is sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from nestor_client import ApiError, NestorClient, SparseVector, sparse_column
from tests.api.conftest import running

CONFIG = {
    "vectors": {"d": {"dim": 2, "index": {"type": "flat"}}},
    "sparse_vectors": {"s": {}, "bm25": {"modifier": "idf", "encoder": {"name": "bm25"}}},
}


@pytest.fixture(params=["json", "msgpack"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NestorClient]:
    with running(tmp_path / "data", wire=request.param) as c:
        c.create_collection("c", **CONFIG)
        yield c


def test_named_columns_with_a_scipy_sparse_matrix_and_texts(client: NestorClient) -> None:
    scipy_sparse = pytest.importorskip("scipy.sparse")  # an optional input type: the client does not need SciPy
    dense = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    sp = scipy_sparse.csr_matrix(np.array([[0, 2.0, 0, 0.5], [0, 0, 0, 0], [3.0, 0, 0, 0]], np.float32))
    res = client.upsert(
        "c",
        ids=[1, 2, 3],
        vectors={"d": dense, "s": sp},
        texts=["jwt auth tokens", None, "async http client"],
        payloads=[{"g": 1}, None, {"g": 3}],
    )
    assert res.upserted == 3
    got = {p.id: p for p in client.get("c", [1, 2, 3], with_vector=True)}
    assert got[1].vector["d"] == [1.0, 0.0] and got[1].payload == {"g": 1}  # type: ignore[index]
    assert got[1].vector["s"] == SparseVector(indices=[1, 3], values=[2.0, 0.5])  # type: ignore[index]
    assert got[2].vector["s"] == SparseVector(indices=[], values=[])  # type: ignore[index]  # an empty row
    assert "bm25" in got[3].vector and "bm25" not in got[2].vector  # type: ignore[operator]  # texts filled bm25
    hits = client.search("c", {"indices": [0, 1], "values": [1.0, 1.0]}, using="s")
    assert [(h.id, h.score) for h in hits] == [(3, 3.0), (1, 2.0)]
    hits = client.query("c", {"text": "async client"}, using="bm25", limit=3).points
    assert [h.id for h in hits] == [3]


def test_upload_chunks_named_columns_and_each_chunk_is_whole(client: NestorClient) -> None:
    n = 25
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(n, 2)).astype(np.float32)
    rows: list[dict[str, list[float] | list[int]] | None] = [
        None if i % 4 == 0 else {"indices": [i % 7, 10 + i], "values": [1.0, float(i)]} for i in range(n)
    ]
    assert client.upload("c", list(range(n)), {"d": dense, "s": rows}, batch_size=10) == n
    assert client.count("c") == n
    got = {p.id: p.vector for p in client.get("c", list(range(n)), with_vector=True)}
    assert all(("s" in got[i]) == (i % 4 != 0) for i in range(n))  # type: ignore[operator]
    assert got[13]["s"] == SparseVector(indices=[6, 23], values=[1.0, 13.0])  # type: ignore[index]
    # CSR arrays through the helper; a bad sparse row is a 422 and none of its batch is written
    ptr, idx, val = [0, 1, 3], [5, 2, 2], [1.0, 1.0, 2.0]
    with pytest.raises(ApiError) as e:
        client.upsert("c", ids=[100, 101], vectors={"s": sparse_column((ptr, idx, val))})
    assert e.value.status == 422 and client.count("c") == n


def test_the_helper_refuses_bad_columns_before_sending() -> None:
    assert sparse_column(([0, 2, 2], [4, 1], [0.5, 1.5])) == [
        {"indices": [4, 1], "values": [0.5, 1.5]},
        {"indices": [], "values": []},
    ]
    with pytest.raises(ValueError, match="indptr"):
        sparse_column(([0, 3], [1, 2], [1.0, 2.0]))
    with pytest.raises(ValueError, match="row 1"):
        sparse_column([{"indices": [1], "values": [1.0]}, [1.0, 2.0]])
    c = NestorClient("http://127.0.0.1:9")  # never reached: the lengths are checked first
    with pytest.raises(ValueError, match="3 ids but 2 sparse vectors 's'"):
        c.upsert("c", ids=[1, 2, 3], vectors={"s": [None, {"indices": [1], "values": [1.0]}]})
    with pytest.raises(ValueError, match="2 ids but 1 texts"):
        c.upsert("c", ids=[1, 2], texts=["x"])
