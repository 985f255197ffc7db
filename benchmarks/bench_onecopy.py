"""One copy of each vector: bytes per vector of plain HNSW against raw hnswlib, and search speed before/after.

    python benchmarks/bench_onecopy.py --before /tmp/before-src             # 100k pypi-minilm
    python benchmarks/bench_onecopy.py --tiny                                # smoke run

Sections (each side runs in its own process, so its RSS is its own):

* ``memory``: RAM and disk bytes per vector, in the same run, of (a) raw hnswlib (M 16, ef_construction
  200, `max_elements` exactly n, so no slack), its index saved with `save_index`; (b) a Nestor collection of
  plain HNSW (m 16, ef_construction 200, metric dot) loaded as a user would (upserts of 1,000 points), once
  its index covers every point; (c) the same with the code of ``--before`` (a source tree from before this
  change, with its own built extension). RAM: the growth of the process's `VmRSS` from just before the
  index or collection is made (data already loaded) until it is built (after `gc` and `malloc_trim`), / n.
  Disk: hnswlib's saved file; the collection's directory after `close()` (rows, SQLite, saved index), / n.
* ``speed``: the same graph (built and saved once by the ``--before`` code, which keeps its own float32
  copy) loaded by both codes: the before one reads its copy, this one the row store (the saved codes are
  dropped). Single-query searches (k 10, ef 64, one thread) in passes that alternate between the two
  processes, so both see the same machine load; QPS per pass and recall@10.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from common import environment, load_dataset, markdown_table, recall_at_k, write_results  # noqa: E402

M, EFC, EF, K = 16, 200, 64, 10


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise KeyError("VmRSS")


def _settle_heap() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _dir_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------------ workers


def worker_hnswlib(n: int, data: str | None, tmp: Path) -> dict[str, Any]:
    import hnswlib

    ds = load_dataset(n=n, n_queries=10, data=data)

    n = ds.base.shape[0]  # the data may hold fewer than asked (tiny synthetic sets)
    _settle_heap()
    rss0 = _rss()
    t0 = time.perf_counter()
    idx = hnswlib.Index(space="ip", dim=ds.dim)
    idx.init_index(max_elements=n, M=M, ef_construction=EFC, random_seed=100)
    idx.add_items(ds.base, np.arange(n), num_threads=os.cpu_count() or 1)
    build = time.perf_counter() - t0
    _settle_heap()
    rss1 = _rss()
    path = tmp / "hnswlib.bin"
    idx.save_index(str(path))
    return {"side": "raw hnswlib", "n": n, "build_s": build, "ram": (rss1 - rss0) / n, "disk": path.stat().st_size / n}


def worker_nestor(n: int, data: str | None, tmp: Path, label: str) -> dict[str, Any]:
    from index.collection import Collection
    from index.contract import CollectionOptions
    from nestor_client.models import CollectionConfig

    ds = load_dataset(n=n, n_queries=10, data=data)

    n = ds.base.shape[0]  # the data may hold fewer than asked (tiny synthetic sets)
    opts = CollectionOptions(save_idle_seconds=1e6, save_max_seconds=1e6)
    cfg = CollectionConfig.model_validate(
        {"dim": ds.dim, "metric": "dot", "index": {"type": "hnsw", "m": M, "ef_construction": EFC}}
    )
    d = tmp / f"coll-{label}"
    _settle_heap()
    rss0 = _rss()
    t0 = time.perf_counter()
    coll = Collection.create("c", d, cfg, opts)
    ids = list(range(n))
    for s in range(0, n, 1000):
        coll.upsert(ids[s : s + 1000], ds.base[s : s + 1000], None)
    f = coll.fields[""]
    while f.state.index is None or f.state.upto < coll.labels.n or f.phase != "ready":
        time.sleep(0.1)
    build = time.perf_counter() - t0
    _settle_heap()
    rss1 = _rss()
    mem = coll.info().model_dump(mode="json").get("memory") or {}
    parts = {k: v.get("ram", 0) / n for k, v in mem.items() if isinstance(v, dict)}
    coll.close()
    return {
        "side": label,
        "n": n,
        "build_s": build,
        "ram": (rss1 - rss0) / n,
        "disk": _dir_bytes(d) / n,
        "info_ram_parts": parts,
    }


def worker_speed(n: int, data: str | None, saved: Path, rows: bool) -> None:
    """Load the saved graph (over a row store when `rows`), then run timing passes on command."""
    from index.backends.base import IndexParams
    from index.backends.graph import GraphIndex

    ds = load_dataset(n=n, n_queries=1000, data=data)

    n = ds.base.shape[0]  # the data may hold fewer than asked (tiny synthetic sets)
    if rows:
        from index.vectors import VectorStore

        store = VectorStore(saved.parent / "vectors.f32", ds.dim)
        g = GraphIndex.load(saved, rows=store)
        assert g._graph.external
    else:
        g = GraphIndex.load(saved)
    found = g.search(ds.queries, K, IndexParams(ef=EF)).labels
    recall = recall_at_k(found, ds.gt, K)
    print(json.dumps({"ready": True, "recall": recall, "memory": g.memory()}), flush=True)
    for line in sys.stdin:
        if line.strip() != "pass":
            break
        qs = ds.queries
        for q in qs[:50]:  # warm-up
            g.search_one(q, K, EF)
        t0 = time.perf_counter()
        for q in qs:
            g.search_one(q, K, EF)
        qps = len(qs) / (time.perf_counter() - t0)
        print(json.dumps({"qps": qps}), flush=True)


def build_saved_graph(n: int, data: str | None, out: Path) -> None:
    """With the code on PYTHONPATH: build a plain float32 graph (its own copy) and save it, plus the rows."""
    from index.backends.base import Space
    from index.backends.graph import GraphIndex

    ds = load_dataset(n=n, n_queries=10, data=data)

    n = ds.base.shape[0]  # the data may hold fewer than asked (tiny synthetic sets)
    g = GraphIndex(ds.dim, Space.ip, "float32", m=M, ef_construction=EFC)
    g.add(ds.base, np.arange(n, dtype=np.int64))
    g.save(out / "graph")
    ds.base.astype("<f4").tofile(out / "vectors.f32")


# ------------------------------------------------------------------------------------------ driver


def _run(tree: Path, args: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{tree}:{tree / 'clients' / 'python'}"}
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args], env=env, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def memory(n: int, data: str | None, before: Path | None, tmp: Path) -> list[dict[str, Any]]:
    common = ["--n", str(n), "--tmp", str(tmp)] + (["--data", data] if data else [])
    rows = [_run(REPO, ["--worker", "hnswlib", *common])]
    rows.append(_run(REPO, ["--worker", "nestor", "--label", "nestor (one copy)", *common]))
    if before is not None:
        rows.append(_run(before, ["--worker", "nestor", "--label", "nestor (before: two copies)", *common]))
    base = rows[0]
    for r in rows:
        r["ram_ratio"] = r["ram"] / base["ram"]
        r["disk_ratio"] = r["disk"] / base["disk"]
    return rows


def speed(n: int, data: str | None, before: Path, tmp: Path, passes: int) -> dict[str, Any]:
    common = ["--n", str(n)] + (["--data", data] if data else [])
    _run(before, ["--worker", "build", "--tmp", str(tmp), *common])
    procs: dict[str, subprocess.Popen[str]] = {}
    ready: dict[str, Any] = {}
    for side, tree, extra in (("before", before, []), ("after", REPO, ["--rows"])):
        env = {**os.environ, "PYTHONPATH": f"{tree}:{tree / 'clients' / 'python'}"}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "speed", "--tmp", str(tmp), *common, *extra]
        procs[side] = p = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None
        ready[side] = json.loads(p.stdout.readline())
    qps: dict[str, list[float]] = {"before": [], "after": []}
    try:
        for i in range(passes):
            order = ("before", "after") if i % 2 == 0 else ("after", "before")
            for side in order:
                p = procs[side]
                assert p.stdin is not None and p.stdout is not None
                p.stdin.write("pass\n")
                p.stdin.flush()
                qps[side].append(json.loads(p.stdout.readline())["qps"])
    finally:
        for p in procs.values():
            assert p.stdin is not None
            p.stdin.close()
            p.wait(timeout=60)
    return {
        "passes": passes,
        "qps": qps,
        "median_qps": {s: float(np.median(v)) for s, v in qps.items()},
        "ratio_after_before": float(np.median(qps["after"]) / np.median(qps["before"])),
        "recall": {s: r["recall"] for s, r in ready.items()},
        "graph_memory": {s: r["memory"] for s, r in ready.items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--data", default=None)
    ap.add_argument("--before", type=Path, default=None, help="a source tree (with its built extension) from before")
    ap.add_argument("--sections", default="memory,speed")
    ap.add_argument("--passes", type=int, default=6)
    ap.add_argument("--out", default="onecopy")
    ap.add_argument("--tiny", action="store_true", help="a smoke run: 2,000 points, 2 passes")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--label", default="", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--rows", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        if args.worker == "hnswlib":
            print(json.dumps(worker_hnswlib(args.n, args.data, args.tmp)))
        elif args.worker == "nestor":
            print(json.dumps(worker_nestor(args.n, args.data, args.tmp, args.label)))
        elif args.worker == "build":
            build_saved_graph(args.n, args.data, args.tmp)
            print("{}")
        else:
            worker_speed(args.n, args.data, args.tmp / "graph", args.rows)
        return 0
    if args.tiny:
        args.n, args.passes = min(args.n, 2000), 2
    results: dict[str, Any] = {"environment": environment(), "args": {k: str(v) for k, v in vars(args).items()}}
    results["uptime_before"] = _uptime()
    tmp = Path(tempfile.mkdtemp(prefix="nestor-onecopy-"))
    try:
        sections = set(args.sections.split(","))
        if "memory" in sections:
            results["memory"] = mem = memory(args.n, args.data, args.before, tmp)
            results["uptime_after_memory"] = _uptime()
            cols = [
                ("side", "", ""),
                ("ram", "RAM B/vector", ".0f"),
                ("ram_ratio", "vs hnswlib", ".3f"),
                ("disk", "disk B/vector", ".0f"),
                ("disk_ratio", "vs hnswlib", ".3f"),
                ("build_s", "build s", ".1f"),
            ]
            print(markdown_table(mem, cols))
        if "speed" in sections:
            before = args.before or REPO  # without a before tree: this code against itself (a smoke run)
            results["speed"] = sp = speed(args.n, args.data, before, tmp, args.passes)
            results["uptime_after_speed"] = _uptime()
            print(json.dumps(sp, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["uptime_after"] = _uptime()
    print(f"results: {write_results(args.out, results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
