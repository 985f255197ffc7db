"""The `nestor` commands against a real server: ingest with a progress bar, search, collections, jobs, the demo."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nestor_client import NestorClient
from tests.e2e.serverproc import ServerProcess, nestor_command

pytestmark = pytest.mark.e2e


def nestor(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*nestor_command(), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("cli") / "data").start()
    yield proc
    proc.stop()


def test_ingest_search_collections_jobs(server: ServerProcess, tmp_path: Path) -> None:
    with NestorClient(server.url) as c:
        c.create_collection("docs", dim=64, encoder={"name": "hash", "config": {"dim": 64}}, index={"type": "flat"})
    src = tmp_path / "docs.jsonl"
    texts = ["parse yaml configuration files", "plot charts with python", "fast vector search in rust"]
    src.write_text("".join(json.dumps({"id": i, "body": f"{texts[i % 3]} {i}"}) + "\n" for i in range(600)))
    done = nestor("ingest", str(src), "--collection", "docs", "--text-field", "body", "--url", server.url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "succeeded: 600 rows read, 600 upserted" in done.stderr
    assert "rows" in done.stderr  # the progress bar

    found = nestor("search", "docs", "yaml files", "--limit", "1", "--url", server.url, cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert "parse yaml configuration files" in found.stdout and found.stdout.startswith("  1  0.")
    plain = nestor("search", "docs", "yaml files", "--hybrid", "--limit", "1", "--url", server.url, cwd=tmp_path)
    assert plain.returncode == 0 and "parse yaml configuration files" in plain.stdout
    assert "not hybrid" in plain.stderr  # no bm25 vector here: the text searched the dense one

    listed = nestor("collections", "--url", server.url, cwd=tmp_path)
    assert "docs" in listed.stdout and "600" in listed.stdout
    jobs = nestor("jobs", "--url", server.url, cwd=tmp_path)
    assert "succeeded" in jobs.stdout

    missing = nestor("ingest", str(src), "--collection", "nope", "--url", server.url, cwd=tmp_path)
    assert missing.returncode == 1 and "collection_not_found" in missing.stderr


def test_serve_demo_loads_once_and_answers_text_searches(tmp_path: Path) -> None:
    args = ["--demo", "--demo-rows", "300", "--demo-encoder", "hash"]
    server = ServerProcess(tmp_path / "data", args=args).start()
    try:
        with NestorClient(server.url) as c:
            deadline = time.monotonic() + 60
            while 'collection "demo" holds 300' not in server.log.read_text():  # the loader's last words
                assert time.monotonic() < deadline, server.log.read_text()[-2000:]
                time.sleep(0.1)
            assert c.count("demo") == 300
            demo_file = Path(__file__).parents[2] / "server/demo_data/pypi_summaries.jsonl"
            first = json.loads(demo_file.read_text().splitlines()[0])
            assert c.search_text("demo", first["text"], limit=1, params={"exact": True})[0].id == first["id"]
            stored = c.get("demo", [first["id"]], with_vector=["bm25"])[0].vector["bm25"]  # type: ignore[index]
            assert len(stored.indices) > 0  # the ingest job filled the bm25 vector from the text too
            found = nestor("search", "demo", "--hybrid", first["text"], "--url", server.url, cwd=tmp_path)
            assert found.returncode == 0, found.stderr
            assert found.stdout.split()[2] == str(first["id"]) and "hybrid, rrf of dense" in found.stderr
    finally:
        server.stop()
    server = ServerProcess(tmp_path / "data", args=args).start()  # a second start loads nothing again
    try:
        with NestorClient(server.url) as c:
            time.sleep(1.0)
            assert len(c.list_jobs()) == 1 and c.count("demo") == 300
    finally:
        server.stop()
