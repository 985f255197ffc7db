"""The int8 pair as a pipeline, this checkout's code against an older revision's, in one process.

    .venv/bin/python benchmarks/ab_pipeline_pair.py --n 100000 --rounds 40 --old main

`index/pair.py` and `index/pipeline.py` at `--old` are loaded beside this checkout's as separate modules
(everything else is this checkout's), so the special path (`search` of an int8 vector), the old pipeline
and the new one answer the same queries on one collection, interleaved round by round (each form first
in turn, every other round reversed): a difference of a microsecond or two a query between two
revisions is readable under load, where two runs of `bench_pipeline.py` differ by more. Reported: thread
CPU per query (median round), each pipeline over the special path in the same round, and new minus old.
The collection is kept under `--keep` (built once, reopened after).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as index/runtime.py, before faiss loads

import argparse  # noqa: E402
import math
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
sys.path.insert(2, str(Path(__file__).resolve().parents[1] / "clients" / "python"))

from bench_pipeline import K, load  # noqa: E402
from common import load_dataset  # noqa: E402

import index.pipeline as new  # noqa: E402
from index.catalog import Catalog  # noqa: E402
from index.contract import Query  # noqa: E402
from index.runtime import configure_threads  # noqa: E402
from nestor_client.models import SearchParams  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def old_pipeline(rev: str) -> Any:
    """`index.pipeline` at `rev`, over `index.pair` at `rev`."""

    def source(path: str) -> str:
        return subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:{path}"], capture_output=True, text=True, check=True
        ).stdout

    pair = types.ModuleType("old_pair")
    sys.modules["old_pair"] = pair
    exec(compile(source("index/pair.py"), "old_pair.py", "exec"), pair.__dict__)  # noqa: S102
    pipe = types.ModuleType("old_pipeline")
    sys.modules["old_pipeline"] = pipe
    code = source("index/pipeline.py").replace("from index.pair import", "from old_pair import")
    exec(compile(code, "old_pipeline.py", "exec"), pipe.__dict__)  # noqa: S102
    return pipe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--old", default="main", help="the git revision of the old index/pair.py and index/pipeline.py")
    ap.add_argument("--keep", default="/tmp/nestor-ab-pair", help="where the collection is kept between runs")
    args = ap.parse_args()
    configure_threads()
    old = old_pipeline(args.old)
    ds = load_dataset(args.n, args.queries, None)
    folder = Path(args.keep) / str(args.n)
    built = folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    cat = Catalog(folder)
    if built:
        cat.open_all()
        coll: Any = cat.get("int8")
    else:
        cfg = {"dim": ds.base.shape[1], "training": {"threshold": args.n}, "quantize": {"type": "int8"}}
        coll = load(cat, "int8", cfg, list(range(args.n)), ds.base)
    while (idx := next(iter(coll.info().vectors.values())).index).state != "ready" or idx.pending:
        time.sleep(0.5)
    cand = math.ceil(K * float(coll.fields[""].state.index.default_oversampling))
    qs, leaf = ds.queries, SearchParams(rescore=False)

    def special(i: int) -> list[Any]:
        return coll.search([Query(qs[i], limit=K, params=None, with_payload=False)])[0].hits  # type: ignore[no-any-return]

    def pipeline(mod: Any) -> Any:
        def one(i: int) -> list[Any]:
            q = qs[i]
            root = mod.Stage(q, limit=K, prefetch=[mod.Stage(q, limit=cand, params=leaf)])
            mod.check(coll, root)
            return mod.run(coll, root, with_payload=False)[0]  # type: ignore[no-any-return]

        return one

    forms = {"special": special, "old": pipeline(old), "new": pipeline(new)}
    for i in range(len(qs)):  # the same ids and scores from all three
        want = [(h.id, h.score) for h in special(i)]
        assert all([(h.id, h.score) for h in fn(i)] == want for fn in forms.values()), i
    cpu: dict[str, list[float]] = {f: [] for f in forms}
    loads = []
    names = list(forms)
    for r in range(args.rounds):
        order = names[r % 3 :] + names[: r % 3]
        for f in order[::-1] if r % 2 else order:
            fn = forms[f]
            for i in range(10):
                fn(i)
            c0 = time.thread_time_ns()
            for i in range(len(qs)):
                fn(i)
            cpu[f].append((time.thread_time_ns() - c0) / 1e3 / len(qs))
        loads.append(os.getloadavg()[0])
    cat.close()
    print(
        f"{args.n} points, {len(qs)} queries, {cand} candidates, old {args.old}; load {min(loads):.2f}-{max(loads):.2f}"
    )  # noqa: T201
    for f in names:
        ratio = statistics.median(a / b for a, b in zip(cpu[f], cpu["special"], strict=True))
        med, best = statistics.median(cpu[f]), min(cpu[f])
        line = f"{f:8s} CPU µs/query median {med:7.2f}  best {best:7.2f}  / special, same round {ratio:.4f}"
        print(line)  # noqa: T201
    diff = statistics.median(a - b for a, b in zip(cpu["new"], cpu["old"], strict=True))
    print(f"new - old, same round (median): {diff:+.2f} µs")  # noqa: T201


if __name__ == "__main__":
    main()
