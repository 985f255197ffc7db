"""The `nestor` command.

    nestor serve [--host --port --data-dir --log-level] [--processes N] [--demo] [--ray-address]   run the server
                                                    (--demo: load the demo data; --ray-address: sharded collections)
    nestor demo [--url URL]                                         load the demo data into a running server
    nestor ingest | search | collections | jobs ...                 talk to a running server (server/commands.py)

Imports stay inside the commands, so `nestor --help` answers without loading the engine.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

from server.commands import add_client_commands, default_api_key, default_url

__all__ = ["limit_malloc_arenas", "main"]


def limit_malloc_arenas(arenas: int) -> None:
    """Cap glibc's malloc arenas before any worker thread starts.

    glibc gives each thread that allocates its own arena (up to 8 per core). The threadpool, the
    indexer and the ingest workers each leave freed memory in theirs, so RSS grew with the work
    done: a 100k-row job peaked 1.6x to 2.4x higher than a 10k-row one, against 1.3x to 1.4x with
    two arenas (benchmarks/bench_ingest.py). A no-op off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def _serve(args: argparse.Namespace) -> int:
    from index.runtime import configure_threads

    configure_threads()  # first: server.app imports faiss, and OMP_WAIT_POLICY counts only before that
    import uvicorn

    from server.app import create_app
    from server.settings import Settings

    overrides = {
        k: v
        for k, v in {
            "host": args.host,
            "port": args.port,
            "data_dir": args.data_dir,
            "log_level": args.log_level,
            "ray_address": args.ray_address,
            "processes": args.processes,
        }.items()
        if v is not None
    }
    settings = Settings(**overrides)
    if settings.processes > 1:
        return _serve_processes(settings, overrides, args)
    if settings.malloc_arenas:
        limit_malloc_arenas(settings.malloc_arenas)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(
        f"nestor: serving on http://{settings.host}:{settings.port}  data in {settings.data_dir.resolve()}",
        file=sys.stderr,
    )
    if args.demo:
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        url = f"http://{host}:{settings.port}"
        logging.getLogger("httpx").setLevel(logging.WARNING)  # the loader's polls would bury the progress bar
        threading.Thread(target=_demo_loader, args=(url, args), name="demo", daemon=True).start()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
    )
    return 0


def _serve_processes(settings: Any, overrides: dict[str, Any], args: argparse.Namespace) -> int:
    """A supervisor of `settings.processes` servers on one socket (server/processes.py)."""
    from server.processes import supervise

    if settings.ray_address:
        print("nestor: --processes > 1 does not work with --ray-address (sharded collections)", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    env = dict(os.environ)
    for key, value in overrides.items():  # the children read their settings from the environment
        env["NESTOR_" + key.upper()] = str(Path(value).resolve()) if key == "data_dir" else str(value)
    print(
        f"nestor: serving on http://{settings.host}:{settings.port} with {settings.processes} processes  "
        f"data in {settings.data_dir.resolve()}",
        file=sys.stderr,
    )
    if args.demo:
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        url = f"http://{host}:{settings.port}"
        threading.Thread(target=_demo_loader, args=(url, args), name="demo", daemon=True).start()
    return supervise(settings.processes, settings.host, settings.port, env)


def _demo_loader(url: str, args: argparse.Namespace) -> None:
    from server.demo import load_demo

    try:
        load_demo(url, rows=args.demo_rows, encoder=args.demo_encoder, api_key=default_api_key())
    except Exception as exc:  # the server keeps serving; say why the demo is missing
        print(f"nestor: could not load the demo: {exc}", file=sys.stderr)


def _demo(args: argparse.Namespace) -> int:
    from server.demo import load_demo

    return 0 if load_demo(args.url, rows=args.rows, encoder=args.encoder, api_key=args.api_key) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nestor", description="Nestor vector search engine")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP server on the embedded store")
    serve.add_argument("--host", help="address to bind (NESTOR_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (NESTOR_PORT, default 6333)")
    serve.add_argument("--data-dir", type=Path, help="data directory (NESTOR_DATA_DIR, default ./data)")
    serve.add_argument("--log-level", help="log level (NESTOR_LOG_LEVEL, default info)")
    serve.add_argument(
        "--ray-address",
        help="a Ray cluster for sharded collections: auto, HOST:PORT or local (NESTOR_RAY_ADDRESS; default: none)",
    )
    serve.add_argument(
        "--processes",
        type=int,
        help="server processes sharing the port and the data: one writes, the others serve searches "
        "(NESTOR_PROCESSES, default 1; docs/processes.md)",
    )
    serve.add_argument("--demo", action="store_true", help="load the demo collection (PyPI summaries) on first start")
    serve.add_argument("--demo-rows", type=int, help=argparse.SUPPRESS)  # tests load a slice
    serve.add_argument("--demo-encoder", help=argparse.SUPPRESS)  # tests use the fast `hash` encoder
    serve.set_defaults(func=_serve)
    demo = sub.add_parser("demo", help="load the demo collection into a running server")
    demo.add_argument("--url", default=default_url(), help="server URL (NESTOR_URL, default http://127.0.0.1:6333)")
    demo.add_argument("--api-key", default=default_api_key(), help="an admin API key (NESTOR_API_KEY)")
    demo.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    demo.add_argument("--encoder", help=argparse.SUPPRESS)
    demo.set_defaults(func=_demo)
    add_client_commands(sub)
    args = parser.parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
