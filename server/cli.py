"""The `nestor` command: `nestor serve [--host --port --data-dir]`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
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
        }.items()
        if v is not None
    }
    settings = Settings(**overrides)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(
        f"nestor: serving on http://{settings.host}:{settings.port}  data in {settings.data_dir.resolve()}",
        file=sys.stderr,
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nestor", description="Nestor vector search engine")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP server on the embedded store")
    serve.add_argument("--host", help="address to bind (NESTOR_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (NESTOR_PORT, default 6333)")
    serve.add_argument("--data-dir", type=Path, help="data directory (NESTOR_DATA_DIR, default ./data)")
    serve.add_argument("--log-level", help="log level (NESTOR_LOG_LEVEL, default info)")
    serve.set_defaults(func=_serve)
    args = parser.parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
