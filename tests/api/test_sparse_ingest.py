"""Ingest jobs with sparse vectors: given in `sparse_fields` (JSON Lines and Parquet), embedded from the
row's text by bm25 (also into a sparse-only collection); bad sparse rows reported by line and skipped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nestor_client import InvalidSource, JobState, NestorClient, SparseVector


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _sv(i: int) -> dict[str, Any]:
    return {"indices": [i % 7, 100 + i], "values": [1.0, float(i)]}


def test_given_sparse_fields_with_dense_vectors(client: NestorClient, tmp_path: Path) -> None:
    client.create_collection(
        "v", vectors={"d": {"dim": 2, "metric": "dot", "index": {"type": "flat"}}}, sparse_vectors={"s": {}}
    )
    rows: list[dict[str, Any]] = [{"id": i, "vector": [1.0, i], "sv": _sv(i), "g": i} for i in range(40)]
    rows[3]["sv"] = {"indices": [1, 1], "values": [1.0, 2.0]}  # line 4: an index twice
    rows[5]["sv"] = {"indices": [1], "values": [1.0, 2.0]}  # line 6: lengths differ
    rows[7]["sv"] = [1, 2]  # line 8: not {indices, values}
    rows[9]["sv"] = None  # line 10: no sparse vector, the point still goes in
    del rows[11]["sv"]  # line 12: neither
    job = client.ingest("v", _jsonl(tmp_path / "a.jsonl", rows), sparse_fields={"s": "sv"})
    final = client.wait_job(job.id, poll=0.02, timeout=60)
    assert final.state is JobState.succeeded, final.error
    assert (final.upserted, final.failed) == (37, 3)
    assert [e.line for e in final.errors] == [4, 6, 8]
    assert "more than once" in final.errors[0].reason
    got = {p.id: p for p in client.get("v", [2, 9, 11], with_vector=True)}
    assert got[2].vector == {"d": [1.0, 2.0], "s": SparseVector(indices=[2, 102], values=[1.0, 2.0])}
    assert got[2].payload == {"g": 2}  # the sparse field is not payload
    assert got[9].vector == {"d": [1.0, 9.0]} and got[11].vector == {"d": [1.0, 11.0]}
    res = client.search("v", {"indices": [120], "values": [1.0]}, using="s")
    assert [(h.id, h.score) for h in res] == [(20, 20.0)]


def test_text_into_a_sparse_only_bm25_collection(client: NestorClient, tmp_path: Path) -> None:
    bm25 = {"modifier": "idf", "encoder": {"name": "bm25", "config": {"avg_len": 4}}}
    client.create_collection("kw", sparse_vectors={"bm25": bm25, "extra": {}})
    rows: list[dict[str, Any]] = [{"id": i, "text": f"document {i} about topic{i % 4}"} for i in range(30)]
    rows[0]["feat"] = {"indices": [5], "values": [2.0]}
    rows[2]["text"] = 42  # line 3: not a string
    path = _jsonl(tmp_path / "t.jsonl", rows)
    # without sparse_fields, text_field defaults to "text" (the bm25 encoder); with them, a text is asked for
    assert client.ingest("kw", path, strict=True).source.text_field == "text"
    job = client.ingest("kw", path, sparse_fields={"extra": "feat"}, text_field="text")
    final = client.wait_job(job.id, poll=0.02, timeout=60)
    assert final.state is JobState.succeeded, final.error
    assert (final.upserted, final.failed) == (29, 1) and final.errors[0].line == 3
    first = [j for j in client.list_jobs() if j.id != job.id][0]
    first = client.wait_job(first.id, poll=0.02, timeout=60)  # strict: stopped in its first batch, at line 3
    assert first.state is JobState.failed and first.upserted == 0 and first.failed == 1
    r = client._http.post(  # type: ignore[attr-defined]
        "/collections/kw/points/search", json={"text": "topic1", "using": "bm25", "limit": 30}
    )
    assert sorted(h["id"] for h in r.json()["result"]) == [i for i in range(30) if i % 4 == 1]
    got = client.get("kw", [0, 1], with_vector=True)
    assert set(got[0].vector or {}) == {"bm25", "extra"} and set(got[1].vector or {}) == {"bm25"}
    assert got[0].payload == {"text": rows[0]["text"]}


def test_parquet_struct_column_into_a_sparse_only_collection(client: NestorClient, tmp_path: Path) -> None:
    client.create_collection("so", sparse_vectors={"s": {}})
    table = pa.table({"pid": list(range(20)), "sv": [_sv(i) for i in range(20)], "tag": ["x"] * 20})
    pq.write_table(table, tmp_path / "s.parquet", row_group_size=7)
    job = client.ingest("so", tmp_path / "s.parquet", id_field="pid", sparse_fields={"s": "sv"}, batch_size=5)
    final = client.wait_job(job.id, poll=0.02, timeout=60)
    assert final.state is JobState.succeeded and final.upserted == 20, final.error
    assert client.get("so", [13])[0].payload == {"tag": "x"}
    res = client.search("so", {"indices": [113], "values": [1.0]}, using="s")
    assert [(h.id, h.score) for h in res] == [(13, 13.0)]


@pytest.mark.parametrize(
    ("config", "options", "needle"),
    [
        ({"sparse_vectors": {"s": {}}}, {"sparse_fields": {"nope": "sv"}}, "not a sparse vector"),
        ({"sparse_vectors": {"s": {}}}, {"vector_field": "vector"}, "only sparse vectors"),
        ({"dim": 2, "sparse_vectors": {"s": {}}}, {"sparse_fields": {"d": "sv"}}, "not a sparse vector"),
        ({"sparse_vectors": {"s": {}}}, {"format": "npy"}, "only sparse vectors"),
    ],
)
def test_bad_sparse_jobs_are_refused(
    client: NestorClient, tmp_path: Path, config: dict[str, Any], options: dict[str, Any], needle: str
) -> None:
    client.create_collection("c", **config)
    with pytest.raises(InvalidSource, match=needle):
        client.ingest("c", _jsonl(tmp_path / "x.jsonl", [{"id": 1, "sv": _sv(1)}]), **options)
    assert client.list_jobs() == []


def test_a_sharded_collection_refuses_sparse_ingest(tmp_path: Path) -> None:
    """Ray Data's ingest fills the dense vector only: sparse fields, or text for a bm25 vector, are refused
    when the job is submitted, not dropped silently."""
    from types import SimpleNamespace

    from nestor_client.models import CollectionConfig, IngestSource
    from server.ingest.errors import InvalidSource as Refused
    from server.ingest.roots import IngestRoots
    from server.ingest.spec import resolve_source

    bm25 = {"encoder": {"name": "bm25"}}
    dense = {"dim": 2, "encoder": {"name": "hash", "config": {"dim": 2}}}
    config = CollectionConfig.model_validate({**dense, "shards": 2, "sparse_vectors": {"s": {}, "b": bm25}})
    coll = SimpleNamespace(
        name="c", config=config, distributed=True, vector_config=lambda _: ("", config.vector_fields()[""])
    )
    path = _jsonl(tmp_path / "x.jsonl", [{"id": 1, "vector": [1.0, 2.0]}])
    roots = IngestRoots([tmp_path])
    spec = IngestSource(path=str(path), vector_field="vector")
    assert resolve_source(spec, coll, roots).vector_field == "vector"  # type: ignore[arg-type]
    for spec in (IngestSource(path=str(path), sparse_fields={"s": "sv"}), IngestSource(path=str(path), text_field="t")):
        with pytest.raises(Refused, match="sharded"):
            resolve_source(spec, coll, roots)  # type: ignore[arg-type]
