"""Ingest jobs through the API: sources, bad rows, strict mode, uploads, cancel, resume, deferred indexing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nestor_client import (
    CollectionNotFound,
    DimensionMismatch,
    InvalidSource,
    JobConflict,
    JobInfo,
    JobNotFound,
    JobState,
    NestorClient,
    NoEncoder,
)
from tests.api.conftest import wait_indexed

HASH = {"name": "hash", "config": {"dim": 32}}
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau".split()


def _text(i: int) -> str:
    return " ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 7)) + f" n{i}"


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    with open(path, "w") as fh:
        for r in rows:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def _wait(client: NestorClient, job: JobInfo, timeout: float = 60) -> JobInfo:
    return client.wait_job(job.id, poll=0.02, timeout=timeout)


def test_a_20k_row_text_job_loads_every_row(client: NestorClient, tmp_path: Path) -> None:
    client.create_collection("docs", dim=32, encoder=HASH)
    n = 20_000
    path = _write_jsonl(tmp_path / "docs.jsonl", [{"id": f"doc-{i}", "text": _text(i), "i": i} for i in range(n)])
    job = client.ingest("docs", path)
    assert job.state in (JobState.queued, JobState.running) and job.source.text_field == "text"
    final = _wait(client, job)
    assert final.state is JobState.succeeded, final.error
    assert (final.done, final.total, final.upserted, final.failed) == (n, n, n, 0)
    assert final.rate is not None and final.rate > 0 and final.finished_at is not None
    assert client.count("docs") == n
    got = client.get("docs", ["doc-0", f"doc-{n - 1}"])
    assert [r.payload for r in got] == [{"text": _text(0), "i": 0}, {"text": _text(n - 1), "i": n - 1}]
    # the 32-dim hash gives doc-11475 exactly doc-1234's vector (same words, and n1234 and n11475 share a
    # feature): the row is found among the hits that tie for the top score, in whichever order the scan ties
    hits = client.search_text("docs", _text(1234), limit=3, params={"exact": True})
    assert "doc-1234" in {h.id for h in hits if h.score == hits[0].score} and hits[0].score > hits[2].score
    assert [j.id for j in client.list_jobs()] == [job.id]


def test_bad_rows_are_reported_by_line_and_skipped(client: NestorClient, tmp_path: Path) -> None:
    client.create_collection("docs", dim=32, encoder=HASH)
    rows = [
        {"id": 1, "text": "good"},
        '{"id": 2, "text": ',
        {"id": 3},
        "",
        {"id": 5, "text": " "},
        {"id": 6, "text": "fine", "lang": "en"},
    ]
    final = _wait(client, client.ingest("docs", _write_jsonl(tmp_path / "a.jsonl", rows), batch_size=2))
    assert final.state is JobState.succeeded
    assert [(e.line, e.reason.split(":")[0]) for e in final.errors] == [
        (2, "invalid JSON"),
        (3, "missing field 'text'"),
        (5, "cannot embed the text"),
    ]
    assert (final.done, final.total, final.upserted, final.failed) == (6, 6, 2, 3)
    assert sorted(r.id for r in client.get("docs", [1, 2, 3, 5, 6])) == [1, 6]


def test_strict_mode_stops_at_the_first_bad_row(client: NestorClient, tmp_path: Path) -> None:
    client.create_collection("v", dim=3, metric="l2", index={"type": "flat"})
    rows = [{"id": i, "vector": [i, 0, 1]} for i in range(5)] + [{"id": 5, "vector": [1, 2]}]
    rows += [{"id": i, "vector": [i, 0, 1]} for i in range(6, 10)]
    final = _wait(client, client.ingest("v", _write_jsonl(tmp_path / "v.jsonl", rows), batch_size=2, strict=True))
    assert final.state is JobState.failed
    assert final.error is not None and final.error.startswith("line 6: expected a vector of dimension 3")
    assert client.count("v") == 4  # the batches before the bad one are committed, nothing after
    assert final.done == 4


def test_vector_sources_parquet_and_npy(client: NestorClient, tmp_path: Path) -> None:
    client.create_collection("v", dim=8, index={"type": "hnsw", "m": 8, "ef_construction": 32})
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((1500, 8)).astype(np.float32)
    table = pa.table(
        {"pid": [f"p{i}" for i in range(1500)], "emb": vecs.tolist(), "shard": [i % 3 for i in range(1500)]}
    )
    pq.write_table(table, tmp_path / "v.parquet", row_group_size=400)
    job = client.ingest("v", tmp_path / "v.parquet", id_field="pid", vector_field="emb", batch_size=256)
    assert _wait(client, job).state is JobState.succeeded
    assert client.count("v") == 1500
    assert client.get("v", ["p1499"])[0].payload == {"shard": 1499 % 3}
    assert client.search("v", vecs[77], limit=1)[0].id == "p77"

    np.save(tmp_path / "m.npy", vecs.astype(np.float16))
    np.save(tmp_path / "ids.npy", np.arange(10_000, 11_500))
    _write_jsonl(tmp_path / "pay.jsonl", [{"row": i} for i in range(1500)])
    job = client.ingest(
        "v", tmp_path / "m.npy", ids_path=str(tmp_path / "ids.npy"), payload_path=str(tmp_path / "pay.jsonl")
    )
    final = _wait(client, job)
    assert final.state is JobState.succeeded and final.upserted == 1500
    assert client.count("v") == 3000
    assert client.get("v", [11_499])[0].payload == {"row": 1499}
    assert client.search("v", vecs[5], limit=2, params={"exact": True})[0].score == pytest.approx(1.0, abs=1e-3)


def test_submit_checks_the_request(client: NestorClient, tmp_path: Path) -> None:
    client.create_collection("v", dim=8)
    np.save(tmp_path / "m.npy", np.ones((3, 4), np.float32))
    with pytest.raises(DimensionMismatch, match="dimension 4"):
        client.ingest("v", tmp_path / "m.npy")
    with pytest.raises(InvalidSource, match="not a file"):
        client.ingest("v", tmp_path / "missing.jsonl")
    _write_jsonl(tmp_path / "a.jsonl", [{"id": 1, "text": "x"}])
    with pytest.raises(NoEncoder):
        client.ingest("v", tmp_path / "a.jsonl", text_field="text")
    with pytest.raises(CollectionNotFound):
        client.ingest("nope", tmp_path / "a.jsonl")
    with pytest.raises(JobNotFound):
        client.get_job("0" * 32)
    assert client.list_jobs() == []


def test_upload_raw_body(client: NestorClient, tmp_path: Path) -> None:
    client.create_collection("docs", dim=32, encoder=HASH)
    path = _write_jsonl(tmp_path / "a.jsonl", [{"id": i, "body": _text(i)} for i in range(500)])
    final = _wait(client, client.ingest_file("docs", path, text_field="body", payload_fields=[]))
    assert final.state is JobState.succeeded and client.count("docs") == 500
    assert client.get("docs", [3])[0].payload == {}
    final = _wait(client, client.ingest_file("docs", b'{"text": "from bytes"}\n', id_field=None))
    assert final.state is JobState.succeeded and client.get("docs", [0])[0].payload == {"text": "from bytes"}
    uploads = tmp_path / "data" / "uploads"
    deadline = time.monotonic() + 5  # deleted right after the final state is published
    while list(uploads.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert list(uploads.iterdir()) == []  # an ended job's upload is deleted


def _big_npy(tmp_path: Path, n: int = 200_000) -> Path:
    path = tmp_path / "big.npy"
    np.save(path, np.random.default_rng(1).standard_normal((n, 4)).astype(np.float32))
    return path


def _until(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_cancel_a_queued_and_a_running_job(client: NestorClient, tmp_path: Path) -> None:
    client.create_collection("v", dim=4, index={"type": "flat"})
    big = _big_npy(tmp_path)
    first = client.ingest("v", big, batch_size=100)
    second = client.ingest("v", big, batch_size=100)  # one job at a time: this one waits
    assert client.get_job(second.id).state is JobState.queued
    assert client.cancel_job(second.id).state is JobState.cancelled
    _until(lambda: client.get_job(first.id).done > 0)
    running = client.get_job(first.id)
    assert running.state is JobState.running and running.rate is not None and running.eta is not None
    final = client.cancel_job(first.id)
    assert final.state is JobState.cancelled
    assert final.total is not None and 0 < final.done < final.total
    assert client.count("v") == final.upserted == final.done
    with pytest.raises(JobConflict):
        client.cancel_job(first.id)


def test_a_job_resumes_after_a_restart(server: Callable[..., Any], tmp_path: Path) -> None:
    big = _big_npy(tmp_path, 100_000)
    with server() as c:
        c.create_collection("v", dim=4, index={"type": "flat"})
        job = c.ingest("v", big, batch_size=200)
        _until(lambda: c.get_job(job.id).done >= 10_000)
    # the shutdown left it running at its last checkpoint; the next start picks it up
    with server() as c:
        final = _wait(c, c.get_job(job.id))
        assert final.state is JobState.succeeded
        assert (final.done, final.upserted) == (100_000, 100_000)
        assert c.count("v") == 100_000


def test_defer_indexing_pauses_the_indexer_until_the_job_ends(client: NestorClient, tmp_path: Path) -> None:
    client.create_collection("v", dim=4, index={"type": "hnsw", "m": 8, "ef_construction": 32})
    big = _big_npy(tmp_path, 20_000)
    job = client.ingest("v", big, batch_size=200, defer_indexing=True)  # 100 commits: seen mid-way
    _until(lambda: client.get_job(job.id).done >= 2_000 or client.get_job(job.id).state is JobState.succeeded)
    info = client.get_collection("v").index
    # read while the job still ran (not an `if` that a fast job would skip, leaving nothing checked)
    assert client.get_job(job.id).state is JobState.running
    assert info["state"] == "paused" and info["indexed"] == 0
    assert _wait(client, job).state is JobState.succeeded
    idx = wait_indexed(client, "v")
    assert idx["indexed"] == 20_000
