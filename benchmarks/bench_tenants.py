"""What `is_tenant` buys (issue 14): a tenant-filtered search with and without per-tenant graphs.

    .venv/bin/python benchmarks/bench_tenants.py                     # 100k points -> results/tenants.json
    .venv/bin/python benchmarks/bench_tenants.py --n 20000 --queries 100 --out tenants_20k   # a quick look

Data: `../shared/data/pypi-minilm`, the first `--n` points. Each point belongs to one of 10 tenants whose
sizes fall off like real customers' (30 %, 20 %, 15 %, 10 %, 8 %, 6 %, 5 %, 3 %, 2 %, 1 %), assigned at
random (so a tenant's points are spread over the whole space, as different customers' documents are).
Every query names a tenant, drawn in proportion to the tenants' sizes.

Two collections get the same vectors and payloads (HNSW m 16, ef_construction 100): `plain` indexes
`tenant` as a keyword, `tenant` marks it `is_tenant`, so each tenant above `exact_filter_threshold` points
gets its own graph. For each, the smallest ef with recall@10 >= 0.95 against the exact filtered top 10,
then p50/p99 latency and QPS there (one thread, interleaved passes), and the strategies that ran.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import harness  # noqa: E402
from common import environment, load_dataset, markdown_table, write_results  # noqa: E402

from index.collection import Collection  # noqa: E402
from index.contract import CollectionOptions, Query  # noqa: E402
from index.runtime import configure_threads  # noqa: E402
from nestor_client.models import (  # noqa: E402
    CollectionConfig,
    Filter,
    PayloadIndexParams,
    PayloadSchemaType,
    SearchParams,
)

K = 10
TARGET = 0.95
EFS = [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]
SHARES = [0.30, 0.20, 0.15, 0.10, 0.08, 0.06, 0.05, 0.03, 0.02, 0.01]
REPEATS = 3
F32 = npt.NDArray[np.float32]


def load_average() -> float:
    return os.getloadavg()[0]


def build(path: Path, name: str, base: F32, tenants: list[str], *, is_tenant: bool) -> Collection:
    cfg = CollectionConfig.model_validate(
        {"dim": base.shape[1], "metric": "cosine", "index": {"type": "hnsw", "m": 16, "ef_construction": 100}}
    )
    coll = Collection.create(name, path / name, cfg, CollectionOptions(save_idle_seconds=3600, save_max_seconds=3600))
    schema = PayloadIndexParams(type=PayloadSchemaType.keyword, is_tenant=is_tenant)
    coll.create_payload_index("tenant", schema)
    for s in range(0, len(base), 5000):
        ids = list(range(s, min(s + 5000, len(base))))
        coll.upsert(ids, base[s : s + 5000], [{"tenant": tenants[i]} for i in ids])
    while not all(f.state.index is not None and f.state.upto == f.labels.n for f in coll.dense_fields()):
        time.sleep(0.2)
    while coll.tenants.step():  # the tenant graphs, if any, to completion (the indexer does the same)
        pass
    return coll


def run(
    coll: Collection, queries: F32, flts: list[Filter], ef: int
) -> tuple[list[list[int]], list[float], Counter[str]]:
    hits, lat, plans = [], [], Counter[str]()
    p = SearchParams(ef=ef)
    for q, f in zip(queries, flts, strict=True):
        t = time.perf_counter()
        res = coll.search([Query(q, limit=K, filter=f, params=p, with_payload=False)])[0]
        lat.append(time.perf_counter() - t)
        hits.append([int(h.id) for h in res.hits])
        plans[res.strategy] += 1
    return hits, lat, plans


def recall(got: list[list[int]], truth: list[list[int]]) -> float:
    return float(np.mean([len(set(g) & set(t)) / max(len(t), 1) for g, t in zip(got, truth, strict=True)]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--out", default="tenants")
    ap.add_argument("--tiny", action="store_true", help="a few hundred points, one pass: a smoke run, no numbers")
    args = ap.parse_args(argv)
    harness.set_tiny(args.tiny)
    repeats = 1 if args.tiny else REPEATS
    configure_threads()
    ds = load_dataset(args.n, args.queries, args.data)
    base, queries = ds.base, ds.queries
    n = len(base)
    rng = np.random.default_rng(5)
    names = [f"org{i}" for i in range(len(SHARES))]
    tenant_of = rng.choice(len(SHARES), size=n, p=np.array(SHARES) / sum(SHARES))
    tenants = [names[t] for t in tenant_of]
    q_tenant = rng.choice(len(SHARES), size=len(queries), p=np.array(SHARES) / sum(SHARES))
    flts = [Filter.model_validate({"must": [{"key": "tenant", "match": {"value": names[t]}}]}) for t in q_tenant]
    unit = base / np.linalg.norm(base, axis=1, keepdims=True)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    truth = []
    for q, t in zip(qn, q_tenant, strict=True):
        members = np.flatnonzero(tenant_of == t)
        sc = unit[members] @ q
        truth.append(members[np.argsort(-sc)[:K]].tolist())
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nestor-tenants-") as tmp:
        colls: dict[str, Collection] = {}
        builds: dict[str, float] = {}
        for label, flag in (("keyword index", False), ("is_tenant", True)):
            t0 = time.perf_counter()
            colls[label] = build(Path(tmp), label.replace(" ", "_"), base, tenants, is_tenant=flag)
            builds[label] = time.perf_counter() - t0
            print(f"built {label} in {builds[label]:.1f} s", file=sys.stderr)
        chosen: dict[str, int] = {}
        for ef in EFS:  # lockstep sweep: the smallest ef that reaches the target, per side
            for label, coll in colls.items():
                if label not in chosen and recall(run(coll, queries, flts, ef)[0], truth) >= TARGET:
                    chosen[label] = ef
            if len(chosen) == len(colls):
                break
        lat: dict[str, list[float]] = {label: [] for label in colls}
        qps: dict[str, list[float]] = {label: [] for label in colls}
        loads: list[float] = [load_average()]
        plans: dict[str, Counter[str]] = {}
        got: dict[str, float] = {}
        for _ in range(repeats):
            for label, coll in colls.items():
                ef = chosen.get(label, EFS[-1])
                t0 = time.perf_counter()
                h, lt, plans[label] = run(coll, queries, flts, ef)
                qps[label].append(len(queries) / (time.perf_counter() - t0))
                lat[label] += lt
                got[label] = recall(h, truth)
                loads.append(load_average())
        for label, coll in colls.items():
            tg = coll.tenants
            rows.append(
                {
                    "index": label,
                    "ef": chosen.get(label, "not reached"),
                    "recall@10": round(got[label], 4),
                    "p50 ms": round(statistics.median(lat[label]) * 1e3, 3),
                    "p99 ms": round(float(np.percentile(lat[label], 99)) * 1e3, 3),
                    "QPS": round(statistics.median(qps[label])),
                    "plans": ", ".join(f"{k} {v}" for k, v in plans[label].most_common()),
                    "tenant graphs": tg.count(),
                    "tenant graph RAM MB": round(tg.ram_bytes() / 2**20, 1),
                    "build s": round(builds[label], 1),
                }
            )
        for coll in colls.values():
            coll.close()
    env = environment()
    table = markdown_table(rows, list(rows[0]))
    print(f"is_tenant, {n:,} points, {len(queries)} queries; load average {min(loads):.2f}-{max(loads):.2f}")
    print(table)
    write_results(
        args.out,
        {"n": n, "queries": len(queries), "shares": SHARES, "rows": rows, "load": loads, "environment": env}
        | {"meta": {"threads_pinned": "engine defaults (configure_threads); searches single-threaded"}},
    )


if __name__ == "__main__":
    main()
