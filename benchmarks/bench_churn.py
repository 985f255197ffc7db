"""Churn benchmark: disk, RSS, recall and search latency of a collection rewritten round after round.

    python benchmarks/bench_churn.py                       # 20k points, 10 rounds (about 5 minutes here)
    python benchmarks/bench_churn.py --n 100000 --rounds 10

Sections:

* ``churn``: through a real `nestor serve` (default settings: the background optimizer compacts once
  dead labels pass 20 %), load ``n`` points of pypi-minilm, then ``rounds`` rounds that each overwrite
  20 % of the live points (the same vectors with a small perturbation, renormalised) and delete 5 %
  (re-inserting the previous round's deleted). One client searches the whole time; each latency is
  tagged with whether a compaction was running when the search started (the optimizer's state, polled
  every 0.1 s). After each round, once the indexer and the optimizer are idle: disk (every file of the
  data directory), RSS (`VmRSS`), recall@10 at ef 64 against the exact top-10 of the live points, and
  search p50/p99. At the end, a fresh server loads the same live points once, for the 1.3x bar.
* ``soak``: ``--soak-seconds`` of mixed writes (every 0.5 s: overwrite 200 points, re-insert the last 50
  deleted, delete 50 more) under a searching client, with disk and RSS sampled every 10 s; the growth over
  the second half is the trend.
* ``fresh``: only the fresh load the churn section ends with, of the first ``--fresh-n`` points (the
  churn's live count after its rounds: 95 % of ``n``), for a churn run cut short before its own.
* ``rebuild``: repair against rebuild, in-process on hnswlib with the same m and ef_construction, after
  overwriting 25 % of the points: (a) rebuild a graph of the live points from scratch, (b) repair in
  place: mark the old nodes deleted and insert the new vectors into their slots
  (`replace_deleted`), (c) leave the tombstones. Time and recall@10 at ef 64 of each.

Results go to ``benchmarks/results/churn.json``; the tables are printed as markdown.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(1, str(REPO / "clients" / "python"))

from baselines import free_port, wait_http  # noqa: E402
from common import environment, load_dataset, markdown_table, write_results  # noqa: E402

from nestor_client import NestorClient  # noqa: E402

M, EF_CONSTRUCTION, EF = 16, 100, 64
K = 10
F32 = np.ndarray


class Server:
    def __init__(self, data: Path, env: dict[str, str] | None = None) -> None:
        self.data = data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = Path(sys.executable).parent / "nestor"
        cmd = [str(exe), "serve", "--port", str(self.port), "--data-dir", str(data), "--log-level", "warning"]
        self.proc = subprocess.Popen(cmd, cwd=data.parent, env={**os.environ, **(env or {})})
        wait_http(self.url + "/readyz", self.proc, timeout=300)

    def rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise KeyError("VmRSS")

    def disk(self) -> int:
        return sum(p.stat().st_size for p in self.data.rglob("*") if p.is_file())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=300)


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _upload(c: NestorClient, name: str, ids: list[int], vecs: F32, payload: dict[str, Any]) -> None:
    for s in range(0, len(ids), 1000):
        c.upsert(name, ids=ids[s : s + 1000], vectors=vecs[s : s + 1000], payloads=[payload] * len(ids[s : s + 1000]))


def _settle(c: NestorClient, name: str, timeout: float = 900.0) -> dict[str, Any]:
    """Until the index covers every point and no compaction runs or is due."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = c.get_collection(name)
        opt = info.optimizer
        due = (
            opt is not None
            and opt.enabled
            and info.usage is not None
            and info.usage.labels >= opt.min_points
            and info.usage.dead_labels / max(info.usage.labels, 1) > opt.threshold
        )
        saved = info.last_optimized is not None and info.last_optimized >= (info.last_write or 0)
        idle = opt is not None and opt.state == "idle"
        if info.index["state"] == "ready" and not info.index["pending"] and idle and saved and not due:
            return info.model_dump(mode="json")  # indexed, saved to disk, and nothing to compact
        time.sleep(0.2)
    raise TimeoutError("the collection did not settle")


def _exact(live: dict[int, F32], queries: F32) -> list[set[int]]:
    ids = np.fromiter(live, dtype=np.int64, count=len(live))
    mat = np.stack([live[i] for i in ids.tolist()])
    scores = queries @ mat.T
    top = np.argpartition(-scores, K - 1, axis=1)[:, :K]
    return [set(ids[row].tolist()) for row in top]


def _measure(c: NestorClient, name: str, live: dict[int, F32], queries: F32) -> dict[str, float]:
    truth = _exact(live, queries)
    lat: list[float] = []
    found = 0
    for q, want in zip(queries, truth, strict=True):
        t0 = time.perf_counter()
        hits = c.search(name, q, limit=K, params={"ef": EF}, with_payload=False)
        lat.append((time.perf_counter() - t0) * 1000)
        found += len({int(h.id) for h in hits} & want)  # type: ignore[arg-type]
    return {
        "recall": found / (K * len(queries)),
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


class Searcher(threading.Thread):
    """One client searching without pause; every latency tagged with the optimizer's state."""

    def __init__(self, url: str, name: str, queries: F32) -> None:
        super().__init__(daemon=True)
        self.url, self.name, self.queries = url, name, queries
        self.stop = threading.Event()
        self.compacting = False
        self.samples: list[tuple[float, bool]] = []  # (ms, compaction running)

    def run(self) -> None:
        with NestorClient(self.url, timeout=60.0) as c:
            i = 0
            while not self.stop.is_set():
                q = self.queries[i % len(self.queries)]
                during = self.compacting
                t0 = time.perf_counter()
                c.search(self.name, q, limit=K, params={"ef": EF}, with_payload=False)
                self.samples.append(((time.perf_counter() - t0) * 1000, during))
                i += 1


class Watcher(threading.Thread):
    def __init__(self, url: str, name: str, searcher: Searcher) -> None:
        super().__init__(daemon=True)
        self.url, self.name, self.searcher = url, name, searcher
        self.stop = threading.Event()
        self.compactions: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def run(self) -> None:
        with NestorClient(self.url, timeout=60.0) as c:
            last = None
            while not self.stop.is_set():
                opt = c.get_collection(self.name).optimizer
                if opt is not None:
                    self.searcher.compacting = opt.state == "running"
                    if opt.last is not None and opt.last != last:
                        last = opt.last
                        self.saw(last.model_dump(mode="json") if hasattr(last, "model_dump") else last)
                time.sleep(0.1)

    def saw(self, last: dict[str, Any]) -> None:
        """A finished compaction's record, once: from the polls, or from a settled info the polls missed."""
        with self.lock:
            if last not in self.compactions:
                self.compactions.append(last)


def _pcts(ms: list[float]) -> dict[str, float | int]:
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def churn(
    n: int, rounds: int, n_queries: int, root: Path, data: str | None, partial: str | None = None
) -> dict[str, Any]:
    """The churn rounds; with `partial`, the results so far are also written there after every round."""
    ds = load_dataset(n=n, n_queries=n_queries, data=data)
    rng = np.random.default_rng(15)
    name = "churn"
    load_before = _uptime()
    server = Server(root / "churn")
    out: dict[str, Any] = {"n": n, "rounds": rounds, "uptime_before": load_before}
    try:
        with NestorClient(server.url, timeout=120.0) as c:
            c.create_collection(
                name, dim=ds.dim, metric="dot", index={"type": "hnsw", "m": M, "ef_construction": EF_CONSTRUCTION}
            )
            ids = list(range(n))
            _upload(c, name, ids, ds.base, {"r": 0})
            live = {i: ds.base[i] for i in ids}
            _settle(c, name)
            fresh = {"disk": server.disk(), "rss": server.rss(), **_measure(c, name, live, ds.queries)}
            out["loaded"] = fresh
            searcher = Searcher(server.url, name, ds.queries)
            watcher = Watcher(server.url, name, searcher)
            searcher.start()
            watcher.start()
            deleted_prev: list[int] = []
            rows = []
            for r in range(1, rounds + 1):
                t0 = time.perf_counter()
                start = len(searcher.samples)
                alive = np.fromiter(live, dtype=np.int64, count=len(live))
                over = rng.choice(alive, int(0.2 * len(alive)), replace=False)
                pert = ds.base[over] + rng.normal(scale=0.02, size=(len(over), ds.dim)).astype(np.float32)
                pert /= np.linalg.norm(pert, axis=1, keepdims=True)
                _upload(c, name, over.tolist(), pert, {"r": r})
                live.update(zip(over.tolist(), pert, strict=True))
                if deleted_prev:  # re-insert the previous round's deleted, as they were loaded
                    back = np.asarray(deleted_prev)
                    _upload(c, name, back.tolist(), ds.base[back], {"r": r})
                    live.update((i, ds.base[i]) for i in back.tolist())
                alive = np.fromiter(live, dtype=np.int64, count=len(live))
                gone = rng.choice(alive, int(0.05 * n), replace=False).tolist()
                for s in range(0, len(gone), 1000):
                    c.delete(name, ids=gone[s : s + 1000])
                for i in gone:
                    live.pop(i)
                deleted_prev = gone
                writes_s = time.perf_counter() - t0
                during = [ms for ms, _ in searcher.samples[start:]]
                info = _settle(c, name)
                if (info.get("optimizer") or {}).get("last"):  # a compaction that ended between the watcher's polls
                    watcher.saw(info["optimizer"]["last"])
                settled_s = time.perf_counter() - t0
                after = _measure(c, name, live, ds.queries)
                rows.append(
                    {
                        "round": r,
                        "live": len(live),
                        "disk_mb": server.disk() / 1e6,
                        "rss_mb": server.rss() / 1e6,
                        "recall": after["recall"],
                        "p50_during": _pcts(during).get("p50_ms"),
                        "p99_during": _pcts(during).get("p99_ms"),
                        "p50_after": after["p50_ms"],
                        "p99_after": after["p99_ms"],
                        "writes_s": writes_s,
                        "settled_s": settled_s,
                        "compactions": len(watcher.compactions),
                        "dead_labels": info["usage"]["dead_labels"],
                    }
                )
                print(rows[-1], flush=True)
                if partial is not None:  # what a run cut short still reports (the latency split so far)
                    snap = {
                        **out,
                        "rounds_table": rows,
                        "compactions": list(watcher.compactions),
                        "latency_in_compaction": _pcts([ms for ms, d in list(searcher.samples) if d]),
                        "latency_outside": _pcts([ms for ms, d in list(searcher.samples) if not d]),
                        "uptime_during": _uptime(),
                    }
                    write_results(partial, {"churn_partial": snap})
            out["uptime_during"] = _uptime()
            searcher.stop.set()
            watcher.stop.set()
            searcher.join()
            watcher.join()
            out["rounds_table"] = rows
            out["compactions"] = watcher.compactions
            out["latency_in_compaction"] = _pcts([ms for ms, d in searcher.samples if d])
            out["latency_outside"] = _pcts([ms for ms, d in searcher.samples if not d])
            out["final"] = {"disk": server.disk(), "rss": server.rss(), "live": len(live)}
            final_ids = sorted(live)
            final_vecs = np.stack([live[i] for i in final_ids])
    finally:
        server.stop()
    server = Server(root / "fresh")  # the same live points, loaded once
    try:
        with NestorClient(server.url, timeout=120.0) as c:
            c.create_collection(
                name, dim=ds.dim, metric="dot", index={"type": "hnsw", "m": M, "ef_construction": EF_CONSTRUCTION}
            )
            _upload(c, name, final_ids, final_vecs, {"r": 0})
            _settle(c, name)
            out["fresh"] = {"disk": server.disk(), "rss": server.rss(), **_measure(c, name, live, ds.queries)}
    finally:
        server.stop()
    out["disk_ratio"] = out["final"]["disk"] / out["fresh"]["disk"]
    out["rss_ratio"] = out["final"]["rss"] / out["fresh"]["rss"]
    return out


def fresh(n: int, n_queries: int, root: Path, data: str | None) -> dict[str, Any]:
    """A fresh server loads `n` points once: disk, RSS, recall and latency, as the churn section's last step."""
    ds = load_dataset(n=n, n_queries=n_queries, data=data)
    out: dict[str, Any] = {"n": n, "uptime_before": _uptime()}
    server = Server(root / "fresh-only")
    try:
        with NestorClient(server.url, timeout=120.0) as c:
            c.create_collection(
                "fresh", dim=ds.dim, metric="dot", index={"type": "hnsw", "m": M, "ef_construction": EF_CONSTRUCTION}
            )
            ids = list(range(n))
            _upload(c, "fresh", ids, ds.base, {"r": 0})
            _settle(c, "fresh")
            live = {i: ds.base[i] for i in ids}
            out.update({"disk": server.disk(), "rss": server.rss(), **_measure(c, "fresh", live, ds.queries)})
    finally:
        server.stop()
    out["uptime_after"] = _uptime()
    return out


def soak(n: int, seconds: float, n_queries: int, root: Path, data: str | None) -> dict[str, Any]:
    """Mixed writes (overwrites, deletes, re-inserts) and searches for `seconds`; disk and RSS every 10 s."""
    ds = load_dataset(n=n, n_queries=n_queries, data=data)
    rng = np.random.default_rng(16)
    name = "soak"
    out: dict[str, Any] = {"n": n, "seconds": seconds, "uptime_before": _uptime()}
    server = Server(root / "soak")
    try:
        with NestorClient(server.url, timeout=120.0) as c:
            hnsw = {"type": "hnsw", "m": M, "ef_construction": EF_CONSTRUCTION}
            c.create_collection(name, dim=ds.dim, metric="dot", index=hnsw)
            _upload(c, name, list(range(n)), ds.base, {"r": 0})
            _settle(c, name)
            searcher = Searcher(server.url, name, ds.queries)
            watcher = Watcher(server.url, name, searcher)
            searcher.start()
            watcher.start()
            samples: list[dict[str, float]] = []
            t0 = time.monotonic()
            next_sample = t0
            deleted: list[int] = []
            while time.monotonic() - t0 < seconds:
                over = rng.choice(n, 200, replace=False)
                over = over[~np.isin(over, deleted)]
                pert = ds.base[over] + rng.normal(scale=0.02, size=(len(over), ds.dim)).astype(np.float32)
                pert /= np.linalg.norm(pert, axis=1, keepdims=True)
                c.upsert(name, ids=over.tolist(), vectors=pert, payloads=[{"r": 1}] * len(over))
                if deleted:
                    c.upsert(name, ids=deleted, vectors=ds.base[deleted], payloads=[{"r": 1}] * len(deleted))
                deleted = rng.choice(n, 50, replace=False).tolist()
                c.delete(name, ids=deleted)
                time.sleep(0.5)
                if time.monotonic() >= next_sample:
                    samples.append(
                        {"t": time.monotonic() - t0, "disk_mb": server.disk() / 1e6, "rss_mb": server.rss() / 1e6}
                    )
                    next_sample += 10.0
            out["uptime_during"] = _uptime()
            searcher.stop.set()
            watcher.stop.set()
            searcher.join()
            watcher.join()
    finally:
        server.stop()
    out["samples"] = samples
    out["compactions"] = len(watcher.compactions)
    half = [x for x in samples if x["t"] >= seconds / 2]
    for key in ("disk_mb", "rss_mb"):  # the trend over the second half: a least-squares line's rise / mean
        if len(half) > 2:
            t = np.asarray([x["t"] for x in half])
            y = np.asarray([x[key] for x in half])
            slope = float(np.polyfit(t, y, 1)[0])
            out[f"{key}_trend_second_half"] = slope * (t[-1] - t[0]) / float(y.mean())
            out[f"{key}_mean_second_half"] = float(y.mean())
        out[f"{key}_max"] = max(x[key] for x in samples)
        out[f"{key}_min"] = min(x[key] for x in samples)
    out["latency_in_compaction"] = _pcts([ms for ms, d in searcher.samples if d])
    out["latency_outside"] = _pcts([ms for ms, d in searcher.samples if not d])
    return out


def rebuild(n: int, n_queries: int, data: str | None) -> dict[str, Any]:
    import hnswlib

    ds = load_dataset(n=n, n_queries=n_queries, data=data)
    rng = np.random.default_rng(7)
    over = rng.choice(n, n // 4, replace=False)
    newv = ds.base[over] + rng.normal(scale=0.02, size=(len(over), ds.dim)).astype(np.float32)
    newv /= np.linalg.norm(newv, axis=1, keepdims=True)
    final = ds.base.copy()
    final[over] = newv
    truth = _exact(dict(enumerate(final)), ds.queries)

    def recall(index: Any, labels_to_ids: F32 | None = None) -> float:
        index.set_ef(EF)
        got, _ = index.knn_query(ds.queries, k=K)
        if labels_to_ids is not None:
            got = labels_to_ids[got]
        return sum(len(set(g.tolist()) & t) for g, t in zip(got, truth, strict=True)) / (K * len(truth))

    def new(cap: int, replace: bool = False) -> Any:
        idx = hnswlib.Index(space="ip", dim=ds.dim)
        idx.init_index(max_elements=cap, M=M, ef_construction=EF_CONSTRUCTION, allow_replace_deleted=replace)
        idx.set_num_threads(1)
        return idx

    out: dict[str, Any] = {"n": n, "overwritten": len(over)}
    t0 = time.perf_counter()
    base = new(n)
    base.add_items(ds.base, np.arange(n))
    out["initial_build_s"] = time.perf_counter() - t0

    # (c) tombstones: the new vectors under new labels, the old ones marked deleted
    tomb = new(n + len(over))
    tomb.add_items(ds.base, np.arange(n))
    t0 = time.perf_counter()
    for lab in over.tolist():
        tomb.mark_deleted(lab)
    tomb.add_items(newv, np.arange(n, n + len(over)))
    out["tombstones_s"] = time.perf_counter() - t0
    to_ids = np.concatenate([np.arange(n), over])
    out["tombstones_recall"] = recall(tomb, to_ids)

    # (b) repair in place: mark deleted, then insert the new vectors into the freed slots
    rep = new(n, replace=True)
    rep.add_items(ds.base, np.arange(n))
    t0 = time.perf_counter()
    for lab in over.tolist():
        rep.mark_deleted(lab)
    rep.add_items(newv, np.arange(n, n + len(over)), replace_deleted=True)
    out["repair_s"] = time.perf_counter() - t0
    out["repair_recall"] = recall(rep, to_ids)

    # (a) rebuild from the live rows
    t0 = time.perf_counter()
    reb = new(n)
    reb.add_items(final, np.arange(n))
    out["rebuild_s"] = time.perf_counter() - t0
    out["rebuild_recall"] = recall(reb)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--sections", default="churn,rebuild", help="any of churn, rebuild, soak")
    ap.add_argument("--soak-seconds", type=float, default=1800.0)
    ap.add_argument("--fresh-n", type=int, default=None, help="points of the fresh section (default: 95 %% of n)")
    ap.add_argument("--out", default="churn")
    ap.add_argument("--data", default=None, help="the data root holding pypi-minilm/ (default: $NESTOR_DATA)")
    ap.add_argument("--tiny", action="store_true", help="a smoke run: 1,500 points, 1 round, 8 queries, 8 s of soak")
    args = ap.parse_args(argv)
    if args.tiny:
        args.n, args.rounds, args.queries, args.soak_seconds = min(args.n, 1500), 1, 8, min(args.soak_seconds, 8.0)
    sections = set(args.sections.split(","))
    results: dict[str, Any] = {"environment": environment(), "args": vars(args)}
    root = Path(tempfile.mkdtemp(prefix="nestor-churn-"))
    try:
        if "rebuild" in sections:
            results["rebuild"] = rebuild(args.n, args.queries, args.data)
            print(markdown_table([results["rebuild"]], list(results["rebuild"])))
        if "churn" in sections:
            stem = args.out[: -len(".json")] if args.out.endswith(".json") else args.out
            ch = churn(
                args.n,
                args.rounds,
                args.queries,
                root,
                args.data,
                f"{stem}_partial.json" if stem != args.out else f"{stem}_partial",
            )
            results["churn"] = ch
            cols = [
                ("round", "round", ""),
                ("live", "live", ""),
                ("disk_mb", "disk MB", ".1f"),
                ("rss_mb", "RSS MB", ".1f"),
                ("recall", "recall@10", ".4f"),
                ("p50_during", "p50 during (ms)", ".2f"),
                ("p99_during", "p99 during (ms)", ".2f"),
                ("p50_after", "p50 after (ms)", ".2f"),
                ("p99_after", "p99 after (ms)", ".2f"),
                ("compactions", "compactions so far", ""),
            ]
            print(markdown_table(ch["rounds_table"], cols))
            summary = {
                k: ch[k]
                for k in (
                    "disk_ratio",
                    "rss_ratio",
                    "latency_in_compaction",
                    "latency_outside",
                    "loaded",
                    "final",
                    "fresh",
                )
            }
            print(summary)
        if "fresh" in sections:
            results["fresh"] = fr = fresh(args.fresh_n or int(0.95 * args.n), args.queries, root, args.data)
            print(fr)
        if "soak" in sections:
            results["soak"] = sk = soak(args.n, args.soak_seconds, args.queries, root, args.data)
            print(
                markdown_table(
                    sk["samples"], [("t", "s", ".0f"), ("disk_mb", "disk MB", ".1f"), ("rss_mb", "RSS MB", ".1f")]
                )
            )
            print({k: v for k, v in sk.items() if k != "samples"})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    path = write_results(args.out if args.out.endswith(".json") else args.out, results)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
