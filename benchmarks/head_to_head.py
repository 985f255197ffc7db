"""Interleaved head-to-head runs for the core bars that sit close to their thresholds.

`bench_core.py` measures each system once, one section after another. On a shared 2-core machine
the load changes between sections, and that biases their ratios. Here each pair is measured
alternately: a pass of A, then a pass of B, repeated. The reported ratio is the median of the
per-pair ratios, so both sides see the same load.

    python benchmarks/head_to_head.py [--n 100000] [--queries 1000] [--pairs 5]

Pairs: Nestor engine vs raw hnswlib (same ef); Nestor IVF-PQ + rerank vs faiss IVF-PQ fast-scan + RFlat,
each at its fastest setting with recall@10 >= 0.95 on the same nlist/nprobe/rerank-factor grids, faiss
on one thread (`h2h_ivf.py`); LeanVec-ID 128 (int8 codes, and float32) vs raw hnswlib, both tuned to
recall@10 0.95 (`h2h_leanvec.py`); a REST batch vs raw hnswlib's batch with the same msgpack bytes, one
thread each, ef 32 (`h2h_batch.py`); Nestor REST (msgpack, the client) vs the bare FastAPI + hnswlib
msgpack endpoint.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as bench_core.py: same conditions for both sides

import argparse  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import h2h_leanvec  # noqa: E402
import harness  # noqa: E402
import msgpack  # noqa: E402
from baselines import bare_server, build_hnswlib  # noqa: E402
from common import RESULTS_DIR, duel_row, load_dataset, write_results  # noqa: E402
from h2h_batch import batch_section  # noqa: E402
from h2h_ivf import ivf_section  # noqa: E402
from nestor_sections import COLL, HNSW, _Server, _wait_indexed  # noqa: E402

from index.catalog import Catalog  # noqa: E402
from index.collection import Query  # noqa: E402
from index.runtime import configure_threads  # noqa: E402
from nestor_client import NestorClient  # noqa: E402
from nestor_client.models import CollectionConfig, SearchParams  # noqa: E402


def _pass(fn: Callable[[int], Any], n: int) -> tuple[float, float, list[Any]]:
    """(QPS by wall time, QPS by this thread's CPU time, the answers). Every single-query search here runs
    on the calling thread (faiss pinned to one OpenMP thread), so CPU time holds all of its work and is
    less sensitive to other load on the machine than wall time."""
    out: list[Any] = [None] * n
    c0, t0 = time.thread_time(), time.perf_counter()
    for i in range(n):
        out[i] = fn(i)
    wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
    return n / wall, n / max(cpu, 1e-9), out


def duel(name: str, a: Callable[[int], Any], b: Callable[[int], Any], n: int, pairs: int, gt: Any) -> dict[str, Any]:
    """Alternate passes of a (Nestor) and b (baseline); ratio = median of per-pair a/b QPS."""
    _pass(a, min(n, 50))
    _pass(b, min(n, 50))
    qa, qb, ca, cb = [], [], [], []
    for _ in range(pairs):
        x, cx, out_a = _pass(a, n)
        y, cy, out_b = _pass(b, n)
        qa.append(x)
        qb.append(y)
        ca.append(cx)
        cb.append(cy)
    return duel_row(name, qa, qb, out_a, out_b, gt, cpu=(ca, cb))


def main(argv: list[str] | None = None) -> int:
    configure_threads()  # the engine's thread-pool defaults, as `nestor serve` sets them
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--queries", type=int, default=None)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--data", default=None)
    ap.add_argument("--out", default=str(RESULTS_DIR / "head_to_head.json"))
    ap.add_argument(
        "--only", default="engine,ivf,leanvec,batch,rest", help="comma-separated: engine,ivf,leanvec,batch,rest"
    )
    ap.add_argument(
        "--leanvec", default="", help="comma-separated LeanVec variants (default all): " + h2h_leanvec.NAMES
    )
    ap.add_argument("--tiny", action="store_true", help="a few hundred points, one pair, IVF8: a smoke run")
    args = ap.parse_args(argv)
    harness.set_tiny(args.tiny)
    efs = (32,) if args.tiny else (16, 32, 64, 128, 256)
    if args.tiny:
        args.pairs = 1
    data = load_dataset(n=args.n, n_queries=args.queries, data=args.data)
    qs, gt, n_q = data.queries, data.gt, len(data.queries)
    work = Path(tempfile.mkdtemp(prefix="nestor-h2h-"))
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    print(
        "| pair | Nestor QPS (recall) | baseline QPS (recall) | median ratio | per-pair ratios |\n|---|---|---|---|---|"
    )
    try:
        raw, _ = build_hnswlib(data.base)
        raw_path = work / "raw.bin"
        raw.save_index(str(raw_path))
        catalog = Catalog(work / "nestor")
        only = set(args.only.split(","))
        if only & {"engine", "batch", "rest"}:  # the engine's HNSW collection: only these sections search it
            coll, _ = catalog.create(COLL, CollectionConfig(dim=data.dim, metric="dot", index=HNSW))
            for s in range(0, data.n, 10_000):
                coll.upsert(list(range(s, min(s + 10_000, data.n))), data.base[s : s + 10_000])
            while coll.info()["index"]["pending"] or coll.info()["index"]["state"] != "ready":
                time.sleep(0.2)
        for ef in efs if "engine" in only else ():
            sp = SearchParams(ef=ef)
            queries = [Query(vector=q, params=sp, with_payload=False) for q in qs]

            raw.set_ef(ef)

            def raw_one(i: int) -> list[int]:
                return raw.knn_query(qs[i : i + 1], k=10)[0][0].tolist()  # type: ignore[no-any-return]

            def eng_one(i: int, queries: list[Query] = queries) -> list[Any]:
                return [h.id for h in coll.search([queries[i]])[0].hits]

            rows.append(duel(f"engine vs hnswlib, ef={ef}", eng_one, raw_one, n_q, args.pairs, gt))

        if "ivf" in only:  # benchmarks/h2h_ivf.py: both sides tuned on the same grids, faiss on one thread
            mark = harness.section_mark()
            ivf = ivf_section(catalog, data, args.pairs, args.tiny, duel)
            rows += [{**r, "load": harness.section_load(mark)} for r in ivf["rows"]]
            extra["ivf_tuning"] = ivf["tuning"]
        if "leanvec" in only:  # benchmarks/h2h_leanvec.py: both sides tuned to recall 0.95
            mark = harness.section_mark()
            got = h2h_leanvec.run(catalog, raw, data.base, qs, gt, args.pairs, duel, args.leanvec)
            rows += [{**r, "load": harness.section_load(mark)} for r in got]
        catalog.close()

        if "batch" in only:  # benchmarks/h2h_batch.py: the same msgpack bytes on both sides, one thread each
            mark = harness.section_mark()
            got = batch_section(work / "nestor", raw, data, args.pairs)
            rows += [{**r, "load": harness.section_load(mark)} for r in got]

        if "rest" in only:
            srv = _Server(work / "nestor")
            srv.start()
            try:
                with bare_server(raw_path, data.dim, 64) as url, NestorClient(srv.url, wire="msgpack") as c:
                    import httpx

                    with httpx.Client(base_url=url, timeout=30.0) as h:

                        def bare_one(i: int) -> list[int]:
                            body = msgpack.packb({"vector": qs[i].tolist(), "k": 10}, use_single_float=True)
                            r = h.post("/search.msgpack", content=body, headers={"content-type": "application/msgpack"})
                            return msgpack.unpackb(r.content)["ids"]  # type: ignore[no-any-return]

                        def rest_one(i: int) -> list[Any]:
                            return [
                                x.id for x in c.search(COLL, qs[i], limit=10, params={"ef": 64}, with_payload=False)
                            ]

                        _wait_indexed(c, COLL)
                        rows.append(
                            duel(
                                "REST msgpack (client) vs bare FastAPI+hnswlib msgpack, ef=64",
                                rest_one,
                                bare_one,
                                n_q,
                                args.pairs,
                                gt,
                            )
                        )
            finally:
                srv.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cmd = "python benchmarks/head_to_head.py " + " ".join(sys.argv[1:] if argv is None else argv)
    meta = {
        "wire_format": {
            "rest": "msgpack on both sides (nestor_client wire=msgpack, bare /search.msgpack)",
            "batch": "msgpack on both sides: the client's body (search/matrix: one float32 buffer; search/batch: "
            "one body per search) decoded; hits packed as the server packs them, and decoded",
        },
        "threads_pinned": {
            "nestor": "engine defaults, 1 search thread; the batch server NESTOR_SEARCH_THREADS=1",
            "faiss": "omp=1",
            "hnswlib": "knn_query num_threads=1; set_num_threads(1) in the leanvec rows",
        },
    }
    out = write_results(args.out, {"command": cmd.strip(), "rows": rows, **extra, "meta": meta})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
