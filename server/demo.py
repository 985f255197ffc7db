"""The demo: 3,000 PyPI package summaries, embedded by the default encoder into a `demo` collection.

The collection has a dense vector (MiniLM) and a sparse `bm25` vector (the `bm25` encoder, `modifier: idf`);
a text fills both, so `nestor search demo --hybrid "..."` (a `text` query with no `using`) fuses the two.

`nestor serve --demo` runs `load_demo` next to the server; `nestor demo` runs it against any server.
Loading goes through the public API like any user's data: create the collection, upload the file as an
ingest job, follow it with a progress bar. Searches work while it loads (committed rows are searchable
at once). A second start finds the collection full and only prints how to search it.
"""

from __future__ import annotations

import sys
import time
from importlib.resources import files
from typing import TextIO

from nestor_client import EncoderUnavailable, JobState, NestorClient, NestorError, NotFound
from server.progress import follow_job, summary

__all__ = ["DEMO_COLLECTION", "demo_rows", "load_demo"]

DEMO_COLLECTION = "demo"
DEMO_FILE = "pypi_summaries.jsonl"
_MODEL = {"name": "sentence-transformers", "config": {"model": "all-MiniLM-L6-v2"}}
_DIM = 384
# keyword search beside the dense vector; defaults k1 1.2 and avg_len 256 (near-flat length normalisation,
# which ranks these one-line summaries best: benchmarks/HYBRID.md)
_SPARSE = {"bm25": {"modifier": "idf", "encoder": {"name": "bm25"}}}


def demo_rows(limit: int | None = None) -> bytes:
    """The demo file (JSON Lines), or its first `limit` lines."""
    data = (files("server") / "demo_data" / DEMO_FILE).read_bytes()
    if limit is None:
        return data
    return b"".join(data.splitlines(keepends=True)[:limit])


def _wait_ready(client: NestorClient, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if client.ready():
                return
        except NestorError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not become ready")
        time.sleep(0.2)


def _create(client: NestorClient, encoder: str | None, out: TextIO) -> None:
    spec = _MODEL if encoder in (None, "sentence-transformers") else {"name": encoder, "config": {"dim": _DIM}}
    print(f"demo: creating collection {DEMO_COLLECTION!r} with encoder {spec['name']!r} ...", file=out)
    try:
        client.create_collection(DEMO_COLLECTION, dim=_DIM, metric="cosine", encoder=spec, sparse_vectors=_SPARSE)
    except EncoderUnavailable as exc:
        if encoder is not None:
            raise
        print(
            f"demo: {exc.message}\n"
            "demo: falling back to the `hash` encoder (word overlap, not meaning); "
            "./scripts/serve installs the real model",
            file=out,
        )
        client.create_collection(
            DEMO_COLLECTION,
            dim=_DIM,
            metric="cosine",
            encoder={"name": "hash", "config": {"dim": _DIM}},
            sparse_vectors=_SPARSE,
        )


def load_demo(
    url: str,
    *,
    rows: int | None = None,
    encoder: str | None = None,
    out: TextIO = sys.stderr,
    timeout: float = 120,
    api_key: str | None = None,
) -> bool:
    """Make sure the demo collection holds the demo rows, loading them if needed. True when it does."""
    data = demo_rows(rows)
    want = data.count(b"\n")
    with NestorClient(url, api_key=api_key, timeout=timeout) as client:
        _wait_ready(client, timeout)
        try:
            have = client.count(DEMO_COLLECTION)
        except NotFound:
            _create(client, encoder, out)
            have = 0
        if have < want:
            active = [j for j in client.list_jobs() if j.collection == DEMO_COLLECTION and j.state in _ACTIVE]
            if active:  # a load a restart interrupted: it resumes by itself
                job = active[0]
                print(f"demo: resuming the load of {want:,} texts (job {job.id})", file=out)
            else:
                print(f"demo: embedding {want:,} PyPI package summaries (first start only)", file=out)
                job = client.ingest_file(DEMO_COLLECTION, data, format="jsonl", text_field="text", batch_size=256)
            final = follow_job(client, job, out=out)
            if final.state is not JobState.succeeded:
                print(summary(final), file=out)
                return False
        print(_TIPS.format(n=client.count(DEMO_COLLECTION), url=url), file=out)
    return True


_ACTIVE = (JobState.queued, JobState.running)
_TIPS = """demo: collection "demo" holds {n:,} PyPI package summaries. Search it by text:
  nestor search demo "read and write excel files"
  nestor search demo --hybrid "django rest framework jwt"      # dense + BM25, fused
  curl -s {url}/collections/demo/points/search -H 'content-type: application/json' \\
       -d '{{"text": "read and write excel files", "limit": 5}}'
  API docs: {url}/docs"""
