"""The `batch` section of head_to_head.py: one batch of searches over REST against raw hnswlib's batch.

Both sides of a duel get the same msgpack bytes and give back the same shape, on one thread each, at ef 32.
Nestor: `nestor_client` posts the batch to a server started with `NESTOR_SEARCH_THREADS=1` and decodes the
hits. Raw: the same request body is decoded, its vectors stacked and searched with one `knn_query` on one
thread, and the answer packed as the server packs it and decoded again. So the raw side pays the wire
format the REST side needs, and the ratio measures HTTP, validation, planning and the search itself.
Two duels: `search/matrix` (the query matrix as one float32 buffer, columns of ids and scores back) and
`search/batch` (one body and one hit object per search, as before it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
from common import Dataset, duel_row
from nestor_sections import COLL, _Server, _wait_indexed

from nestor_client import NestorClient

__all__ = ["batch_section"]

EF = 32
Out = list[list[Any]]


def _raw_batch(index: Any, dim: int) -> Callable[[bytes], Out]:
    """`search/batch`'s wire format: a body per search in, a dict per hit out."""

    def run(body: bytes) -> Out:
        req = msgpack.unpackb(body, raw=False)["searches"]
        mat = np.frombuffer(b"".join(s["vector"] for s in req), dtype=np.float32).reshape(len(req), dim)
        labels, dist = index.knn_query(mat, k=req[0]["limit"], num_threads=1)
        out = [
            [{"id": lab, "score": sc} for lab, sc in zip(ls, ss, strict=True)]
            for ls, ss in zip(labels.tolist(), (1.0 - dist).tolist(), strict=True)  # hnswlib's ip: 1 - dot
        ]
        reply = msgpack.unpackb(msgpack.packb({"result": out}, use_bin_type=True), raw=False)
        return [[h["id"] for h in hits] for hits in reply["result"]]

    return run


def _raw_matrix(index: Any, dim: int) -> Callable[[bytes], Out]:
    """`search/matrix`'s wire format: one float32 buffer in, columns of ids and scores out."""

    def run(body: bytes) -> Out:
        req = msgpack.unpackb(body, raw=False)
        mat = np.frombuffer(req["vectors"], dtype=np.float32).reshape(-1, dim)
        labels, dist = index.knn_query(mat, k=req["limit"], num_threads=1)
        out = {"ids": labels.tolist(), "scores": (1.0 - dist).tolist()}
        reply = msgpack.unpackb(msgpack.packb({"result": out}, use_bin_type=True), raw=False)
        return reply["result"]["ids"]  # type: ignore[no-any-return]

    return run


def _duel(name: str, rest: Callable[[], Out], raw: Callable[[], Out], n_q: int, pairs: int, gt: Any) -> dict[str, Any]:
    """Interleaved passes, each one request of every query; ratio = median of the per-pair QPS ratios."""

    def timed(fn: Callable[[], Out]) -> tuple[float, Out]:
        t0 = time.perf_counter()
        out = fn()
        return n_q / (time.perf_counter() - t0), out

    timed(rest), timed(raw)  # warm-up
    qa, qb = [], []
    for _ in range(pairs):
        x, out_a = timed(rest)
        y, out_b = timed(raw)
        qa.append(x)
        qb.append(y)
    return duel_row(name, qa, qb, out_a, out_b, gt)


def _server(data_dir: Path) -> _Server:
    old = os.environ.get("NESTOR_SEARCH_THREADS")
    os.environ["NESTOR_SEARCH_THREADS"] = "1"  # one thread each side
    try:
        srv = _Server(data_dir)
        srv.start()
    finally:
        if old is None:
            os.environ.pop("NESTOR_SEARCH_THREADS")
        else:
            os.environ["NESTOR_SEARCH_THREADS"] = old
    return srv


def batch_section(data_dir: Path, raw: Any, data: Dataset, pairs: int) -> list[dict[str, Any]]:
    raw.set_ef(EF)
    qs, n_q, gt = data.queries, len(data.queries), data.gt
    params = {"ef": EF}
    searches = [{"vector": q.tobytes(), "limit": 10, "params": params, "with_payload": False} for q in qs]
    batch_body = msgpack.packb({"searches": searches}, use_bin_type=True)
    matrix_body = msgpack.packb({"vectors": qs.tobytes(), "limit": 10, "params": params}, use_bin_type=True)
    raw_batch, raw_matrix = _raw_batch(raw, data.dim), _raw_matrix(raw, data.dim)
    srv = _server(data_dir)
    try:
        with NestorClient(srv.url, wire="msgpack", timeout=600) as c:
            _wait_indexed(c, COLL)
            what = f"of {n_q} (msgpack) vs raw hnswlib batch + the same msgpack, ef={EF}, 1 thread"
            return [
                _duel(
                    f"REST batch search/matrix {what}",
                    lambda: c.search_matrix(COLL, qs, limit=10, params=params).ids,
                    lambda: raw_matrix(matrix_body),
                    n_q,
                    pairs,
                    gt,
                ),
                _duel(
                    f"REST batch search/batch {what}",
                    lambda: [[h.id for h in hits] for hits in c.search_batch(COLL, searches)],
                    lambda: raw_batch(batch_body),
                    n_q,
                    pairs,
                    gt,
                ),
            ]
    finally:
        srv.stop()
