"""The `nestor` commands that talk to a running server through the Python client.

    nestor ingest FILE --collection NAME [--text-field F --id-field F --batch-size N ...]
    nestor search NAME "some text" [--limit N --filter JSON]
    nestor collections [NAME]
    nestor jobs [ID] [--cancel]

Each takes `--url` (or NESTOR_URL). Server errors print as one line, with exit code 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from nestor_client import IngestFormat, JobState, NestorClient, NestorError
from nestor_client._base import IngestOptions
from server.progress import follow_job, summary

__all__ = ["add_client_commands", "default_api_key", "default_url"]


def default_url() -> str:
    return os.environ.get("NESTOR_URL", "http://127.0.0.1:6333")


def default_api_key() -> str | None:
    return os.environ.get("NESTOR_API_KEY") or None


def _client(args: argparse.Namespace, timeout: float = 60.0) -> NestorClient:
    return NestorClient(args.url, api_key=args.api_key, timeout=timeout)


def _ingest(args: argparse.Namespace) -> int:
    options: IngestOptions = {
        "id_field": None if args.row_ids else args.id_field,
        "batch_size": args.batch_size,
        "strict": args.strict,
        "defer_indexing": args.defer_indexing,
    }
    if args.format:
        options["format"] = args.format
    if args.text_field:
        options["text_field"] = args.text_field
    if args.vector_field:
        options["vector_field"] = args.vector_field
    if args.payload_fields is not None:
        options["payload_fields"] = [f for f in args.payload_fields.split(",") if f]
    with _client(args) as client:
        if args.server_path:
            job = client.ingest(args.collection, str(Path(args.file).resolve()), **options)
        else:
            options.setdefault("format", _format_of(args.file))
            job = client.ingest_file(args.collection, args.file, **options)
        print(f"job {job.id} started: {args.file} -> collection {args.collection!r}", file=sys.stderr)
        if args.detach:
            print(job.id)
            return 0
        final = follow_job(client, job)
    print(summary(final), file=sys.stderr)
    return 0 if final.state is JobState.succeeded else 1


def _format_of(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        return IngestFormat.npy.value
    if suffix in (".parquet", ".pq"):
        return IngestFormat.parquet.value
    return IngestFormat.jsonl.value


def _hybrid(args: argparse.Namespace) -> int:
    """A `text` query with no `using`: the dense vector and the bm25 one searched, then fused."""
    flt = json.loads(args.filter) if args.filter else None
    text: dict[str, Any] = {"text": args.query} | ({"fusion": args.fusion} if args.fusion else {})
    with _client(args) as client:
        res = client.query(args.collection, text, limit=args.limit, filter=flt)
    if args.json:
        print(json.dumps([p.model_dump(mode="json") for p in res.points], indent=2))
        return 0
    _print_hits(res.points)
    st = res.stages
    if st.kind == "fusion":
        parts = ", ".join(f"{s.using or 'dense'} {s.strategy} {s.time_ms:.1f} ms" for s in st.stages)
        how = f"hybrid, {st.strategy} of {parts}"
    else:  # no sparse vector with an encoder here: the text searched the one vector that has one
        how = f"not hybrid: the collection has one text vector ({st.using or 'dense'}), strategy {st.strategy}"
    print(f"({len(res.points)} hits, {how})", file=sys.stderr)
    return 0


def _print_hits(hits: Any) -> None:
    width = shutil.get_terminal_size((100, 20)).columns
    for rank, h in enumerate(hits, 1):
        payload: Any = h.payload or {}
        shown = payload.get("text") if isinstance(payload.get("text"), str) else json.dumps(payload)
        line = f"{rank:>3}  {h.score:.4f}  {h.id!s:<10}  {shown}"
        print(line if len(line) <= width else line[: width - 1] + "…")


def _search(args: argparse.Namespace) -> int:
    if args.hybrid:
        return _hybrid(args)
    flt = json.loads(args.filter) if args.filter else None
    with _client(args) as client:
        if args.vector:
            hits = client.search(args.collection, json.loads(args.query), limit=args.limit, filter=flt)
        else:
            hits = client.search_text(args.collection, args.query, limit=args.limit, filter=flt)
    if args.json:
        print(json.dumps([h.model_dump(mode="json") for h in hits], indent=2))
        return 0
    _print_hits(hits)
    print(f"({len(hits)} hits, strategy {hits.strategy}, {hits.time * 1000:.1f} ms)", file=sys.stderr)
    return 0


def _collections(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.name:
            print(json.dumps(client.get_collection(args.name).model_dump(mode="json"), indent=2))
            return 0
        items = client.list_collections()
    if not items:
        print("no collections", file=sys.stderr)
    for c in items:
        print(f"{c.name:<32} {c.count:>12,}")
    return 0


def _jobs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.id and args.cancel:
            print(summary(client.cancel_job(args.id)))
        elif args.id:
            print(json.dumps(client.get_job(args.id).model_dump(mode="json"), indent=2))
        else:
            for j in client.list_jobs():
                total = f"{j.total:,}" if j.total is not None else "?"
                print(f"{j.id}  {j.state.value:<9}  {j.collection:<20}  {j.done:>12,}/{total:<12} bad {j.failed:,}")
    return 0


def _guarded(fn: Any) -> Any:
    """Server errors as one line on stderr and exit code 1, not a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            rc: int = fn(args)
            return rc
        except NestorError as exc:
            print(f"nestor: {exc}", file=sys.stderr)
            return 1

    return run


def add_client_commands(sub: Any) -> None:
    url = argparse.ArgumentParser(add_help=False)
    url.add_argument("--url", default=default_url(), help="server URL (NESTOR_URL, default http://127.0.0.1:6333)")
    url.add_argument(
        "--api-key", default=default_api_key(), help="API key, when the server has auth on (NESTOR_API_KEY)"
    )

    p = sub.add_parser("ingest", parents=[url], help="load a file into a collection with a server-side job")
    p.add_argument("file", help="JSON Lines, Parquet or .npy file")
    p.add_argument("--collection", "-c", required=True)
    p.add_argument("--format", choices=[f.value for f in IngestFormat], help="default: from the extension")
    p.add_argument("--text-field", help="field holding the text (default: 'text' if the collection has an encoder)")
    p.add_argument("--vector-field", help="field holding the vector (default: 'vector' without an encoder)")
    p.add_argument("--id-field", default="id", help="field holding the id (default: id)")
    p.add_argument("--row-ids", action="store_true", help="number the rows from 0 instead of reading ids")
    p.add_argument("--payload-fields", help="comma-separated payload fields (default: every other field)")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--strict", action="store_true", help="stop at the first bad row")
    p.add_argument("--defer-indexing", action="store_true", help="index once at the end (bulk loads)")
    p.add_argument("--server-path", action="store_true", help="the server reads FILE itself instead of an upload")
    p.add_argument("--detach", action="store_true", help="print the job id and return at once")
    p.set_defaults(func=_guarded(_ingest))

    p = sub.add_parser("search", parents=[url], help="search a collection by text (or --vector JSON)")
    p.add_argument("collection")
    p.add_argument("query", help="the text to search for, or a JSON list with --vector")
    p.add_argument("--limit", "-k", type=int, default=10)
    p.add_argument("--filter", help='a filter as JSON, e.g. \'{"must": [{"key": "lang", "match": {"value": "en"}}]}\'')
    p.add_argument("--vector", action="store_true", help="QUERY is a vector (JSON list), not text")
    p.add_argument(
        "--hybrid", action="store_true", help="search the dense and the bm25 vectors by the text, and fuse them"
    )
    p.add_argument("--fusion", choices=["rrf", "dbsf"], help="with --hybrid: how to fuse (default rrf)")
    p.add_argument("--json", action="store_true", help="print the hits as JSON")
    p.set_defaults(func=_guarded(_search))

    p = sub.add_parser("collections", parents=[url], help="list collections, or show one")
    p.add_argument("name", nargs="?")
    p.set_defaults(func=_guarded(_collections))

    p = sub.add_parser("jobs", parents=[url], help="list ingest jobs, show one, or cancel one")
    p.add_argument("id", nargs="?")
    p.add_argument("--cancel", action="store_true")
    p.set_defaults(func=_guarded(_jobs))
