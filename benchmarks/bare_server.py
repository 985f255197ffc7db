"""The "bare endpoint" baseline: FastAPI + one hnswlib index, no engine, no storage.

This is what the issue compares Nestor's REST search path against. The app itself is the dozen lines in
``create_app``; ``main`` only parses arguments and runs uvicorn (no access log, as a server under load would).

    python benchmarks/bare_server.py --index /tmp/x.bin --dim 384 --port 8123 [--ef 64]
"""

from __future__ import annotations

import argparse

import hnswlib
import msgpack
import numpy as np
import uvicorn
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel


class Query(BaseModel):
    vector: list[float]
    k: int = 10


def create_app(index_path: str, dim: int, ef: int = 64) -> FastAPI:
    index = hnswlib.Index(space="ip", dim=dim)
    index.load_index(index_path)
    index.set_ef(ef)
    app = FastAPI()

    @app.post("/search")
    async def search_json(q: Query) -> dict[str, list[float] | list[int]]:
        ids, dist = index.knn_query(np.asarray(q.vector, dtype=np.float32), k=q.k)
        return {"ids": ids[0].tolist(), "scores": (1.0 - dist[0]).tolist()}

    @app.post("/search.msgpack")
    async def search_msgpack(request: Request) -> Response:
        body = msgpack.unpackb(await request.body())
        ids, dist = index.knn_query(np.asarray(body["vector"], dtype=np.float32), k=body.get("k", 10))
        out = msgpack.packb({"ids": ids[0].tolist(), "scores": (1.0 - dist[0]).tolist()})
        return Response(out, media_type="application/msgpack")

    @app.get("/health")
    def health() -> dict[str, int]:
        return {"count": index.get_current_count()}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", required=True)
    parser.add_argument("--dim", type=int, required=True)
    parser.add_argument("--ef", type=int, default=64)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = create_app(args.index, args.dim, args.ef)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
