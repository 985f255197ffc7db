"""kill -9 in the middle of an ingest job: after a restart the job resumes and ends with exactly the source's ids."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from nestor_client import JobState, NestorClient
from tests.e2e.serverproc import ServerProcess

pytestmark = pytest.mark.e2e

N = 60_000
HASH = {"name": "hash", "config": {"dim": 32}}


def _source(path: Path) -> list[str]:
    ids = [f"doc-{i}" for i in range(N)]
    with open(path, "w") as fh:
        for i, pid in enumerate(ids):
            fh.write(json.dumps({"id": pid, "text": f"row {i} of the crash test, word{i % 97} word{i % 13}"}) + "\n")
    return ids


def test_kill9_mid_job_resumes_with_exactly_the_source_ids(tmp_path: Path) -> None:
    ids = _source(tmp_path / "src.jsonl")
    data = tmp_path / "data"
    server = ServerProcess(data, env={"NESTOR_INGEST_ROOTS": str(tmp_path)}).start()
    with NestorClient(server.url) as c:
        c.create_collection("docs", dim=32, encoder=HASH, index={"type": "flat"})
        job = c.ingest("docs", tmp_path / "src.jsonl", batch_size=500)
        deadline = time.monotonic() + 60
        while (done := c.get_job(job.id).done) < 5_000:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    server.kill9()
    assert done < N, "the job finished before the kill; the test proves nothing"

    server = ServerProcess(data, env={"NESTOR_INGEST_ROOTS": str(tmp_path)}).start()
    try:
        with NestorClient(server.url) as c:
            final = c.wait_job(job.id, poll=0.05, timeout=120)
            assert final.state is JobState.succeeded, final.error
            assert (final.done, final.total, final.upserted, final.failed) == (N, N, N, 0)
            assert c.count("docs") == N
            found = [r.id for s in range(0, N, 10_000) for r in c.get("docs", ids[s : s + 10_000], with_payload=False)]
            assert sorted(found) == sorted(ids)  # every source id, and (with the count) nothing else
            last = N - 1
            assert c.get("docs", [ids[last]])[0].payload == {
                "text": f"row {last} of the crash test, word{last % 97} word{last % 13}"
            }
    finally:
        server.stop()
