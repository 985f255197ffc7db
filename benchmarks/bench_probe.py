"""What the live recall probe costs: CPU seconds per round, and the share of a core at the defaults.

The probe (server/probe.py) reruns `sample` recent queries of each collection exactly every `interval`
seconds. This builds (or reopens, from --workdir) a 100k x 384 collection of real MiniLM embeddings
(../shared/data/pypi-minilm), fills the probe's query buffer with real queries, and measures:

1. rounds: process CPU time of forced probe rounds (nothing else runs in the process then); the
   default-settings cost is that CPU time divided by the default interval;
2. live: the probe's own thread at the default settings for --live-seconds, against the same process
   idle for as long (the difference is the probe);
3. throttle: the thread with an interval far too short (0.05 s), to show the CPU budget holds it down.

    python benchmarks/bench_probe.py [--index hnsw|ivf_pq|flat] [--live-seconds 120] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "clients/python")]

from benchmarks.common import (  # noqa: E402
    harness,  # noqa: E402
    load_dataset,
    write_results,
)
from index.catalog import Catalog  # noqa: E402
from index.collection import Collection, CollectionOptions, Query  # noqa: E402
from index.runtime import configure_threads  # noqa: E402
from nestor_client.models import CollectionConfig  # noqa: E402
from server.probe import ProbeOptions, RecallProbe  # noqa: E402

INDEXES: dict[str, dict[str, Any]] = {
    "hnsw": {"type": "hnsw"},
    "ivf_pq": {"type": "ivf_pq"},
    "flat": {"type": "flat"},
}


def _quiet() -> None:
    """Wait while someone else benchmarks (they create /tmp/nestor_bench_quiet)."""
    flag = Path("/tmp/nestor_bench_quiet")
    while flag.exists():
        print("waiting: /tmp/nestor_bench_quiet exists", flush=True)
        time.sleep(10)


def _collection(workdir: Path, index: str, n: int) -> tuple[Catalog, Any]:
    catalog = Catalog(workdir / index, CollectionOptions(save_idle_seconds=1.0))
    catalog.open_all()
    name = f"pypi-{index}"
    if name in catalog.names() and catalog.get(name).count == n:
        print(f"reopened {name} from {workdir / index}", flush=True)
        return catalog, catalog.get(name)
    if name in catalog.names():
        catalog.delete(name)
    data = load_dataset(n=n, n_queries=1, gt_depth=1)
    coll, _ = catalog.create(name, CollectionConfig(dim=data.base.shape[1], metric="cosine", index=INDEXES[index]))
    assert isinstance(coll, Collection)
    started = time.perf_counter()
    for i in range(0, n, 5000):
        coll.upsert(list(range(i, min(i + 5000, n))), data.base[i : i + 5000], None)
    while True:
        idx = coll.info()["index"]
        if idx["state"] == "ready" and not idx.get("pending"):
            break
        time.sleep(0.5)
    print(f"built {name}: {n} points in {time.perf_counter() - started:.1f} s", flush=True)
    return catalog, coll


def _live(probe: Any, colls: dict[str, Any], seconds: float) -> float:
    """Process CPU seconds over `seconds` of wall time, with the probe thread running (or not)."""
    if probe is not None:
        probe.start(lambda: colls)
    cpu = time.process_time()
    time.sleep(seconds)
    used = time.process_time() - cpu
    if probe is not None:
        probe.stop()
    return used


def main(argv: list[str] | None = None) -> None:
    configure_threads()  # the engine's thread-pool defaults, as `nestor serve` sets them
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", choices=sorted(INDEXES), default="hnsw")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--live-seconds", type=float, default=120.0)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/nestor-bench-probe"))
    ap.add_argument("--tiny", action="store_true", help="a few hundred points, 2 rounds, 1 s live: a smoke run")
    args = ap.parse_args(argv)
    harness.set_tiny(args.tiny)
    scratch = None
    if args.tiny:  # a fresh collection of its own, never the cached full-size one
        args.n, args.rounds, args.live_seconds = harness.TINY_N, 2, 1.0
        scratch = tempfile.TemporaryDirectory(prefix="nestor-bench-probe-tiny-")
        args.workdir = Path(scratch.name)
    else:
        _quiet()
    catalog, coll = _collection(args.workdir, args.index, args.n)
    time.sleep(3)  # let the index save settle: the measurement should see an idle collection
    defaults = ProbeOptions()
    # The probe remembers queries as the search path hands them over: Query objects, not bare vectors.
    vectors = load_dataset(n=1, n_queries=defaults.buffer, gt_depth=1).queries
    queries = [Query(vector=v) for v in vectors]
    name = coll.name

    probe = RecallProbe(defaults)
    probe.remember(name, queries)
    probe.probe(name, coll, force=True)  # warm up: page in the vectors, first BLAS call
    cpu_s, wall_s, recalls = [], [], []
    for _ in range(args.rounds):
        c, w = time.process_time(), time.perf_counter()
        recalls.append(probe.probe(name, coll, force=True))
        cpu_s.append(time.process_time() - c)
        wall_s.append(time.perf_counter() - w)
    cpu_round = statistics.median(cpu_s)
    pct_default = 100 * cpu_round / defaults.interval
    print(
        f"rounds ({defaults.sample} queries, k={defaults.k}): median CPU {cpu_round * 1000:.1f} ms, "
        f"wall {statistics.median(wall_s) * 1000:.1f} ms, recall@10 {statistics.mean(r or 0 for r in recalls):.3f}; "
        f"at the default interval {defaults.interval:.0f} s: {pct_default:.3f}% of a core",
        flush=True,
    )

    colls = {name: coll}
    idle = _live(None, colls, args.live_seconds)
    live_probe = RecallProbe(defaults)
    live_probe.remember(name, queries)
    busy = _live(_AlwaysNew(live_probe, name, queries), colls, args.live_seconds)
    pct_live = 100 * (busy - idle) / args.live_seconds
    print(
        f"live, defaults, {args.live_seconds:.0f} s: process CPU {busy:.3f} s with the probe "
        f"({live_probe.rounds} rounds) vs {idle:.3f} s idle: {pct_live:.3f}% of a core",
        flush=True,
    )

    tight = RecallProbe(ProbeOptions(interval=0.05))
    tight.remember(name, queries)
    throttled = _live(_AlwaysNew(tight, name, queries), colls, min(args.live_seconds, 60))
    window = min(args.live_seconds, 60)
    pct_tight = 100 * (throttled - idle * window / args.live_seconds) / window
    print(
        f"throttle, interval 0.05 s, budget {defaults.cpu_budget:.0%}: {tight.rounds} rounds in {window:.0f} s, "
        f"{pct_tight:.3f}% of a core",
        flush=True,
    )

    out = write_results(
        f"probe_{args.index}",
        {
            "index": args.index,
            "n": args.n,
            "dim": int(vectors.shape[1]),
            "defaults": {"interval": defaults.interval, "sample": defaults.sample, "k": defaults.k},
            "round_cpu_seconds": cpu_s,
            "round_wall_seconds": wall_s,
            "recall_at_10": statistics.mean(r or 0 for r in recalls),
            "cpu_percent_at_default_interval": pct_default,
            "live_seconds": args.live_seconds,
            "live_cpu_seconds": busy,
            "idle_cpu_seconds": idle,
            "live_rounds": live_probe.rounds,
            "cpu_percent_live": pct_live,
            "throttle_rounds": tight.rounds,
            "cpu_percent_throttled": pct_tight,
            "meta": {"threads_pinned": "engine defaults (configure_threads); the probe's one thread"},
        },
    )
    print(f"wrote {out}")
    catalog.close()
    if scratch is not None:
        scratch.cleanup()


class _AlwaysNew:
    """Wraps a probe so each round first sees a new query: the worst case, where nothing is skipped."""

    def __init__(self, probe: RecallProbe, name: str, queries: list[Query]) -> None:
        self.probe, self.name, self.queries, self.i = probe, name, queries, 0

    def start(self, collections: Any) -> None:
        def fresh() -> Any:
            self.i += 1
            self.probe.remember(self.name, self.queries[self.i % len(self.queries) : self.i % len(self.queries) + 1])
            return collections()

        self.probe.start(fresh)

    def stop(self) -> None:
        self.probe.stop()


if __name__ == "__main__":
    main()
