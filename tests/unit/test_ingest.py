"""The ingest pipeline's parts without a server: sources and their cursors, row validation, ordered commits."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import encoders
from nestor_client.models import IngestSource
from server.ingest.batch import Target, prepare
from server.ingest.errors import InvalidSource
from server.ingest.pipeline import run_ordered
from server.ingest.roots import IngestRoots
from server.ingest.sources import Cursor, Fields, Source, count_lines, open_source

TEXT = Fields(id="id", text="text", vector=None, payload=None)
VEC = Fields(id="id", text=None, vector="vector", payload=None)


def _open(spec: IngestSource, fields: Fields) -> Source:
    return open_source(spec, fields, IngestRoots(["/"]))  # confinement has its own tests (test_ingest_roots.py)


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_count_lines_counts_a_last_line_without_newline(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    p.write_bytes(b"a\nb\nc")
    assert count_lines(p) == 3
    p.write_bytes(b"a\nb\n")
    assert count_lines(p) == 2
    p.write_bytes(b"")
    assert count_lines(p) == 0


def test_jsonl_chunks_resume_from_their_cursor(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "a.jsonl", [{"id": i, "text": f"t{i}"} for i in range(10)])
    src = _open(IngestSource(path=str(path)), TEXT)
    chunks = list(src.chunks(Cursor(), 4))
    assert [(c.start, c.n) for c in chunks] == [(0, 4), (4, 4), (8, 2)]
    resumed = list(src.chunks(chunks[0].end, 4))  # a restart after the first commit
    assert [c.decode().ids for c in resumed] == [c.decode().ids for c in chunks[1:]]
    assert chunks[-1].end.byte == path.stat().st_size


def test_parquet_chunks_resume_inside_a_row_group(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    table = pa.table({"id": list(range(1000)), "text": [f"t{i}" for i in range(1000)], "lang": ["en"] * 1000})
    pq.write_table(table, path, row_group_size=300)
    src = _open(IngestSource(path=str(path)), TEXT)
    assert src.count() == 1000
    ids = [i for c in src.chunks(Cursor(row=450), 128) for i in c.decode().ids]
    assert ids == list(range(450, 1000))
    first = next(iter(src.chunks(Cursor(), 10))).decode()
    assert first.payloads is not None and first.payloads[0] == {"text": "t0", "lang": "en"}


def test_parquet_vectors_become_one_matrix(tmp_path: Path) -> None:
    path = tmp_path / "v.parquet"
    vecs = np.arange(20, dtype=np.float32).reshape(5, 4)
    pq.write_table(pa.table({"id": list(range(5)), "vector": vecs.tolist()}), path)
    rows = next(iter(_open(IngestSource(path=str(path)), VEC).chunks(Cursor(), 10))).decode()
    assert isinstance(rows.vectors, np.ndarray)
    np.testing.assert_array_equal(rows.vectors, vecs)


def test_npy_with_ids_and_payloads_reads_by_row(tmp_path: Path) -> None:
    vecs = np.random.default_rng(0).standard_normal((7, 3)).astype(np.float16)
    np.save(tmp_path / "v.npy", vecs)
    np.save(tmp_path / "ids.npy", np.array([f"doc-{i}" for i in range(7)]))
    _jsonl(tmp_path / "p.jsonl", [{"i": i} for i in range(7)])
    spec = IngestSource(
        path=str(tmp_path / "v.npy"), ids_path=str(tmp_path / "ids.npy"), payload_path=str(tmp_path / "p.jsonl")
    )
    src = _open(spec, Fields(id="id", text=None, vector=None, payload=None))
    src.check()
    chunks = list(src.chunks(Cursor(), 3))
    again = list(src.chunks(chunks[1].end, 3))
    assert again[0].decode().ids == ["doc-6"] and again[0].decode().payloads == [{"i": 6}]
    rows = chunks[0].decode()
    assert rows.ids == ["doc-0", "doc-1", "doc-2"]
    np.testing.assert_array_equal(rows.vectors, vecs[:3])


def test_npy_sidecars_must_match_the_matrix(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.ones((4, 3), np.float32))
    np.save(tmp_path / "ids.npy", np.arange(3))
    spec = IngestSource(path=str(tmp_path / "v.npy"), ids_path=str(tmp_path / "ids.npy"))
    with pytest.raises(InvalidSource, match="3 ids for 4 vectors"):
        _open(spec, Fields(id="id", text=None, vector=None, payload=None)).check()
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidSource, match="pickle"):
        _open(IngestSource(path=str(tmp_path / "o.npy")), Fields(None, None, None, None))


def test_unknown_extension_needs_a_format(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("{}\n")
    with pytest.raises(InvalidSource, match="format"):
        _open(IngestSource(path=str(tmp_path / "a.txt")), TEXT)
    with pytest.raises(InvalidSource, match="not a file"):
        _open(IngestSource(path=str(tmp_path / "missing.jsonl")), TEXT)


def test_prepare_reports_bad_rows_by_line_and_keeps_the_good(tmp_path: Path) -> None:
    rows = [
        {"id": 1, "text": "good one"},
        '{"id": 2, "text": ',
        {"id": 3},
        "",
        {"id": 5, "text": "   "},
        {"id": -1, "text": "negative id"},
        "[1, 2]",
        {"id": 8, "text": "good eight", "lang": "en"},
        {"id": 9, "text": 42},
        {"id": True, "text": "bool id"},
        {"id": 1, "text": "good one again"},  # same id later in the batch: the later row wins
    ]
    path = _jsonl(tmp_path / "a.jsonl", rows)
    chunk = next(iter(_open(IngestSource(path=str(path)), TEXT).chunks(Cursor(), 100)))
    encoder = encoders.get_encoder("hash", {"dim": 16})
    out = prepare(chunk, Target(16, True, encoder))
    assert [line for line, _ in out.errors] == [2, 3, 5, 6, 7, 9, 10]
    reasons = dict(out.errors)
    assert "invalid JSON" in reasons[2] and "missing field 'text'" in reasons[3]
    assert "empty" in reasons[5] and "out of range" in reasons[6] and "JSON object" in reasons[7]
    assert out.ids == [8, 1]
    assert out.payloads == [{"text": "good eight", "lang": "en"}, {"text": "good one again"}]
    np.testing.assert_allclose(out.vectors[1], encoder.embed_documents(["good one again"]).dense()[0])


def test_prepare_refuses_what_upsert_would_refuse(tmp_path: Path) -> None:
    rows = [
        {"id": 0, "vector": [1, 0, 0]},
        {"id": 1, "vector": [1, 0]},
        {"id": 2, "vector": [0, 0, 0]},
        {"id": 3, "vector": [1e39, 0, 0]},  # overflows float32 to inf
        {"id": 4, "vector": "abc"},
        {"id": 5, "vector": [1, "x", 0]},
        {"id": 6, "vector": [0, 1, 0], "payload_is": "kept"},
    ]
    path = _jsonl(tmp_path / "v.jsonl", rows)
    chunk = next(iter(_open(IngestSource(path=str(path)), VEC).chunks(Cursor(), 100)))
    out = prepare(chunk, Target(3, True))
    assert [line for line, _ in out.errors] == [2, 3, 4, 5, 6]
    assert "dimension 3" in dict(out.errors)[2] and "zeros" in dict(out.errors)[3]
    assert out.ids == [0, 6] and out.vectors.shape == (2, 3)
    assert out.payloads == [{}, {"payload_is": "kept"}]
    # under l2 a zero vector is a fine vector
    assert 3 not in [line for line, _ in prepare(chunk, Target(3, False)).errors]


def test_run_ordered_commits_in_order_with_a_bounded_window() -> None:
    in_flight = 0
    peak = 0
    lock = threading.Lock()

    def read() -> object:
        nonlocal in_flight, peak
        for i in range(40):
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)
            yield i

    def work(i: int) -> int:
        time.sleep(0.001 * (i % 3))  # finish out of order
        return i

    committed: list[int] = []

    def commit(i: int) -> None:
        nonlocal in_flight
        with lock:
            in_flight -= 1
        committed.append(i)

    assert run_ordered(read(), work, commit, workers=3, depth=4, stopped=lambda: False)
    assert committed == list(range(40))
    assert peak <= 5  # the window plus the chunk being read


def test_run_ordered_stops_and_propagates_errors() -> None:
    committed: list[int] = []
    stop = threading.Event()

    def commit(i: int) -> None:
        committed.append(i)
        if i == 4:
            stop.set()

    assert not run_ordered(iter(range(100)), lambda i: i, commit, workers=2, depth=2, stopped=stop.is_set)
    assert committed == [0, 1, 2, 3, 4]

    def boom(i: int) -> int:
        if i == 3:
            raise ValueError("bad batch")
        return i

    committed.clear()
    with pytest.raises(ValueError, match="bad batch"):
        run_ordered(iter(range(10)), boom, committed.append, workers=2, depth=2, stopped=lambda: False)
    assert committed == [0, 1, 2]


def test_embed_splits_at_max_batch_size_and_keeps_row_order() -> None:
    from server.embedding import embed

    encoder = encoders.get_encoder("hash", {"dim": 16, "max_batch_size": 3})
    texts = ["a much longer text than the others", "b", "", "cc dd", "eee fff ggg", "h", "  ", "iiii"]
    out = embed(encoder, texts)
    assert set(out.errors) == {2, 6}
    for i, t in enumerate(texts):
        if i not in out.errors:
            np.testing.assert_array_equal(out.dense()[i], encoder.embed_documents([t]).dense()[0])
