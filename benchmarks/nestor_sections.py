"""The Nestor half of the core benchmark: the engine in-process, the REST path, ingest, restart, IVF-PQ.

Each function takes the run's `RunContext` and returns `{"build": [...], "search": [...], ...}` rows
in the same shape as `baselines.py`, so both land in one table. The sections share one server and
one data directory through `ctx.cache`, in this order: ingest (starts the server and loads the
data) -> rest -> restart (stops and restarts it) -> engine (opens the data in-process) -> ivfpq.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from baselines import free_port, wait_http
from common import RunContext, Stopwatch, recall_at_k, search_row, time_batch, time_single

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "clients" / "python"))

from nestor_client import NestorClient  # noqa: E402

Section = dict[str, Any]
HNSW = {"type": "hnsw", "m": 16, "ef_construction": 200, "ef": 64}
COLL = "bench"


class _Server:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start `nestor serve`; returns seconds from spawn until /readyz answers."""
        exe = Path(sys.executable).parent / "nestor"
        cmd = [str(exe), "serve", "--port", str(self.port), "--data-dir", str(self.data_dir), "--log-level", "warning"]
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ})
        wait_http(self.url + "/readyz", self.proc, timeout=600)
        return time.perf_counter() - t0

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        self.proc.wait(timeout=300)
        self.proc = None


def _server(ctx: RunContext) -> _Server:
    if "nestor_server" not in ctx.cache:
        d = ctx.workdir / "nestor-data"
        shutil.rmtree(d, ignore_errors=True)
        srv = _Server(d)
        srv.start()
        atexit.register(srv.stop)  # a failing later section must not leave the server running
        ctx.cache["nestor_server"] = srv
    server: _Server = ctx.cache["nestor_server"]
    return server


def _wait_indexed(client: NestorClient, name: str) -> dict[str, Any]:
    while True:
        idx = client.get_collection(name).index
        if idx["state"] == "ready" and not idx["pending"]:
            return idx
        time.sleep(0.2)


def nestor_ingest(ctx: RunContext) -> Section:
    """Bulk upsert over REST (msgpack, raw float32, batches of 1,000): acknowledged rate, indexed rate."""
    srv = _server(ctx)
    data = ctx.data
    batch = int(ctx.opt("ingest_batch", 1000))
    with NestorClient(srv.url, wire="msgpack", timeout=600) as c:
        c.create_collection(COLL, dim=data.dim, metric="dot", index=HNSW)
        ids = list(range(data.n))
        with Stopwatch() as ack:
            c.upload(COLL, ids=ids, vectors=data.base, batch_size=batch)
        _wait_indexed(c, COLL)
        indexed_s = time.perf_counter() - ack._t0
        info = c.get_collection(COLL)
    mem = info.memory
    rows = [
        {
            "system": "nestor REST",
            "variant": f"upsert acked, durable (batch {batch})",
            "n": data.n,
            "build_s": ack.seconds,
            "rate_vps": data.n / ack.seconds,
        },
        {
            "system": "nestor REST",
            "variant": "upsert until fully indexed (HNSW M=16 efc=200)",
            "n": data.n,
            "build_s": indexed_s,
            "rate_vps": data.n / indexed_s,
            "bytes_per_vec": (mem["graph"]["ram"] + mem["codes"]["ram"]) / data.n,
        },
    ]
    return {"build": rows, "memory": mem}


def _rest_single(url: str, wire: str, ctx: RunContext, ef: int) -> tuple[Any, list[Any]]:
    qs = ctx.data.queries
    with NestorClient(url, wire=wire) as c:  # type: ignore[arg-type]
        params = {"ef": ef}

        def one(i: int) -> list[Any]:
            return [h.id for h in c.search(COLL, qs[i], limit=ctx.k, params=params, with_payload=False)]

        return time_single(one, len(qs), ctx.repeats, ctx.warmup)


def nestor_rest(ctx: RunContext) -> Section:
    """Nestor over REST with nestor_client: single-query JSON and msgpack, and batch search, per ef."""
    srv = _server(ctx)
    data, k = ctx.data, ctx.k
    rows = []
    for ef in ctx.opt("rest_efs", [32, 48, 64, 128]):
        for wire in ("json", "msgpack"):
            timing, out = _rest_single(srv.url, wire, ctx, ef)
            rows.append(search_row("nestor REST", f"single, {wire}", f"ef={ef}", recall_at_k(out, data.gt, k), timing))
        with NestorClient(srv.url, wire="msgpack", timeout=600) as c:
            searches = [
                {"vector": q.tobytes(), "limit": k, "params": {"ef": ef}, "with_payload": False} for q in data.queries
            ]

            def run_all(searches: list[Any] = searches) -> list[Any]:
                return c.search_batch(COLL, searches)

            timing, res = time_batch(run_all, len(searches), ctx.repeats)
            found = [[h.id for h in r] for r in res]
            rows.append(
                search_row("nestor REST", "batch, msgpack", f"ef={ef}", recall_at_k(found, data.gt, k), batch=timing)
            )
    return {"search": rows}


def nestor_restart(ctx: RunContext) -> Section:
    """Restart of the loaded collection: after a graceful stop, and after kill -9."""
    srv = _server(ctx)
    rows = []
    srv.stop()
    graceful = srv.start()
    with NestorClient(srv.url, wire="msgpack") as c:
        c.upsert(COLL, ids=[10**9], vectors=ctx.data.base[:1])  # one acknowledged write past the saved index
        count = c.count(COLL)
    srv.stop(kill=True)
    killed = srv.start()
    with NestorClient(srv.url) as c:
        assert c.count(COLL) == count, "an acknowledged write was lost across kill -9"
        c.delete(COLL, ids=[10**9])
        _wait_indexed(c, COLL)
    rows.append(
        {"system": "nestor", "variant": "restart after graceful stop (to /readyz)", "n": count, "build_s": graceful}
    )
    rows.append({"system": "nestor", "variant": "restart after kill -9 (to /readyz)", "n": count, "build_s": killed})
    srv.stop()  # the engine section opens the same data in-process
    return {"build": rows}


def nestor_engine(ctx: RunContext) -> Section:
    """The engine in-process (no HTTP): HNSW single-query and batch QPS per ef, without payloads."""
    sys.path.insert(0, str(REPO))
    from index.catalog import Catalog
    from index.collection import Query
    from nestor_client.models import SearchParams

    srv = _server(ctx)
    srv.stop()
    data, k = ctx.data, ctx.k
    with Stopwatch() as load:
        catalog = Catalog(srv.data_dir)
        catalog.open_all()
    coll = catalog.get(COLL)
    rows = []
    try:
        for ef in ctx.opt("efs", [16, 32, 64, 128, 256]):
            params = SearchParams(ef=ef)
            queries = [Query(vector=q, limit=k, params=params, with_payload=False) for q in data.queries]

            def one(i: int, queries: list[Any] = queries) -> list[Any]:
                return [h.id for h in coll.search([queries[i]])[0].hits]

            single, out = time_single(one, len(queries), ctx.repeats, ctx.warmup)
            batch, res = time_batch(lambda queries=queries: coll.search(queries), len(queries), ctx.repeats)
            assert [[h.id for h in r.hits] for r in res] == out
            rows.append(
                search_row("nestor engine", "in-process", f"ef={ef}", recall_at_k(out, data.gt, k), single, batch)
            )
    finally:
        catalog.close()
    return {
        "search": rows,
        "build": [
            {"system": "nestor engine", "variant": "open catalog in-process", "n": data.n, "build_s": load.seconds}
        ],
    }


def nestor_ivfpq(ctx: RunContext) -> Section:
    """IVF-PQ (4-bit fast-scan codes) with full-precision rescore, in-process: train, sweep, bytes/vector."""
    sys.path.insert(0, str(REPO))
    from index.catalog import Catalog
    from index.collection import Query
    from nestor_client.models import CollectionConfig, SearchParams

    data, k = ctx.data, ctx.k
    d = ctx.workdir / "nestor-ivf"
    shutil.rmtree(d, ignore_errors=True)
    catalog = Catalog(d)
    m = int(ctx.opt("ivf_m", data.dim // 4))
    cfg = CollectionConfig(
        dim=data.dim, metric="dot", index={"type": "ivf_pq", "m": m, "nbits": 4, "train_threshold": data.n}
    )
    coll, _ = catalog.create("ivf", cfg)
    rows: list[dict[str, Any]] = []
    try:
        with Stopwatch() as build:
            for s in range(0, data.n, 10_000):
                coll.upsert(list(range(s, min(s + 10_000, data.n))), data.base[s : s + 10_000])
            while True:
                info = coll.info()["index"]
                if info["trained"] and not info["pending"] and info["state"] == "ready":
                    break
                time.sleep(0.2)
        mem = coll.info()["memory"]
        build_row = {
            "system": "nestor engine",
            "variant": f"IVF-PQ {info['spec']} + rescore",
            "n": data.n,
            "build_s": build.seconds,
            "rate_vps": data.n / build.seconds,
            "code_bytes_per_vec": info["code_bytes_per_vector"],
            "bytes_per_vec": (mem["graph"]["ram"] + mem["codes"]["ram"]) / data.n,
        }
        for nprobe in ctx.opt("ivf_nprobes", [64, 96, 128]):
            for over in ctx.opt("ivf_oversampling", [8, 12, 16]):
                params = SearchParams(nprobe=nprobe, oversampling=over, rescore=True)
                queries = [Query(vector=q, limit=k, params=params, with_payload=False) for q in data.queries]

                def one(i: int, queries: list[Any] = queries) -> list[Any]:
                    return [h.id for h in coll.search([queries[i]])[0].hits]

                single, out = time_single(one, len(queries), ctx.repeats, ctx.warmup)
                batch, _ = time_batch(lambda queries=queries: coll.search(queries), len(queries), ctx.repeats)
                rows.append(
                    search_row(
                        "nestor engine",
                        f"IVF-PQ {info['spec']} + rescore",
                        f"nprobe={nprobe} over={over}",
                        recall_at_k(out, data.gt, k),
                        single,
                        batch,
                        code_bytes_per_vec=info["code_bytes_per_vector"],
                    )
                )
    finally:
        catalog.close()
    return {"build": [build_row], "search": rows, "memory": mem}


__all__ = ["nestor_engine", "nestor_ingest", "nestor_ivfpq", "nestor_rest", "nestor_restart"]
_ = np  # numpy is used through the dataset arrays
