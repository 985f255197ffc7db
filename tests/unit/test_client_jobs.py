"""The clients' text and job methods on the wire, sync and async, against a mock transport."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from nestor_client import AsyncNestorClient, JobConflict, JobState, NestorClient

BASE = "http://nestor.test"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def job(state: str = "queued", done: int = 0) -> dict[str, Any]:
    return {
        "id": "j1",
        "state": state,
        "collection": "docs",
        "source": {"path": "/srv/a.jsonl", "format": "jsonl", "text_field": "text"},
        "batch_size": 1000,
        "done": done,
        "total": 10,
        "created_at": time.time(),
    }


class Server:
    """Answers like the jobs API; the job advances one step per GET."""

    def __init__(self) -> None:
        self.seen: list[httpx.Request] = []
        self.uploaded = b""
        self.polls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        path = request.url.path
        if path == "/jobs/ingest/upload":
            self.uploaded = request.read()
            return self.ok(job(), 202)
        if path == "/jobs/ingest":
            return self.ok(job(), 202)
        if path == "/jobs":
            return self.ok({"jobs": [job()]})
        if path == "/jobs/j1/cancel":
            return httpx.Response(409, json={"error": {"type": "job_conflict", "message": "already succeeded"}})
        if path == "/jobs/j1":
            self.polls += 1
            return self.ok(job("succeeded" if self.polls >= 3 else "running", min(self.polls * 4, 10)))
        if path.endswith("/points/search"):
            return self.ok([{"id": 1, "score": 0.9}], strategy="hnsw")
        return httpx.Response(404, json={"error": {"type": "not_found", "message": path}})

    @staticmethod
    def ok(result: Any, status: int = 200, **extra: Any) -> httpx.Response:
        content = orjson.dumps({"result": result, "time": 0.001, **extra})
        return httpx.Response(status, content=content, headers={"content-type": "application/json"})


def test_sync_jobs_and_text(tmp_path: Path) -> None:
    srv = Server()
    client = NestorClient(http_client=httpx.Client(transport=httpx.MockTransport(srv), base_url=BASE))
    started = client.ingest("docs", "/srv/a.jsonl", text_field="text", id_field=None, defer_indexing=True)
    assert started.state is JobState.queued
    sent = orjson.loads(srv.seen[-1].content)
    assert sent["source"]["id_field"] is None and sent["defer_indexing"] is True  # null is sent, not dropped

    src = tmp_path / "a.jsonl"
    src.write_bytes(b'{"id": 1, "text": "x"}\n' * 1000)
    client.ingest_file("docs", src, text_field="text", payload_fields=["lang"], strict=True)
    req = srv.seen[-1]
    assert srv.uploaded == src.read_bytes() and req.headers["content-length"] == str(src.stat().st_size)
    assert dict(req.url.params) == {
        "collection": "docs",
        "format": "jsonl",
        "id_field": "id",
        "batch_size": "1000",
        "strict": "true",
        "defer_indexing": "false",
        "text_field": "text",
        "payload_fields": "lang",
    }

    seen: list[int] = []
    final = client.wait_job("j1", poll=0.001, on_progress=lambda j: seen.append(j.done))
    assert final.state is JobState.succeeded and seen == [4, 8, 10]
    assert [j.id for j in client.list_jobs()] == ["j1"]
    with pytest.raises(JobConflict):
        client.cancel_job("j1")
    hits = client.search_text("docs", "hello", limit=3)
    assert hits[0].id == 1 and orjson.loads(srv.seen[-1].content)["text"] == "hello"


@pytest.mark.anyio
async def test_async_jobs_and_text(tmp_path: Path) -> None:
    srv = Server()
    http = httpx.AsyncClient(transport=httpx.MockTransport(srv), base_url=BASE)
    async with AsyncNestorClient(http_client=http) as client:
        src = tmp_path / "a.jsonl"
        src.write_bytes(b"x" * (3 << 20))  # three read chunks
        await client.ingest_file("docs", src)
        assert srv.uploaded == src.read_bytes()
        await client.ingest("docs", src, batch_size=10)
        assert orjson.loads(srv.seen[-1].content)["batch_size"] == 10
        final = await client.wait_job("j1", poll=0.001)
        assert final.done == 10
        with pytest.raises(TimeoutError):
            srv.polls = -1000
            await client.wait_job("j1", poll=0.001, timeout=0.01)
        assert (await client.search_text("docs", "hi"))[0].score == 0.9
