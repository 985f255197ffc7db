"""Where an IVF-PQ query's time goes, Nestor against faiss at one setting, interleaved in blocks.

    python benchmarks/ivf_parts.py [--n 100000] [--rounds 60] [--nprobe 96] [--factor 12]

One IVF512 (PQ96x4fs) collection and faiss's IVF512,PQ96x4fs,RFlat with the same codes, fast-scan kernel
`implem=11` on both, faiss pinned to one OpenMP thread. Each round times a block of 100 queries of every
variant in turn, so each sees the same load; the ratios are medians of the per-round ratios, of CPU time
(`thread_time`: everything runs on this thread) and of wall time. Variants:
- `nestor`: `Collection.search`, the whole engine path (one native call: index/_faiss_ivf.h);
- `nestor_api`: the same with the shortlist through faiss's Python API and `_graph.exact` (the fallback);
- `faiss`: `IndexRefineFlat.search` through faiss's numpy wrapper, `.tolist()` of the labels;
- `native_call` and `faiss_search_c`: each side's native call alone (`FaissIvf.run`, faiss's `search_c`
  into preallocated arrays), so the difference to the lines above is the Python around them.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as head_to_head.py

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import faiss  # noqa: E402
import numpy as np  # noqa: E402
from common import load_dataset, recall_at_k, write_results  # noqa: E402
from h2h_ivf import Setting, _faiss, _fparams, _nestor, _queries  # noqa: E402

from index.backends.ivfpq import FAST_SCAN_IMPLEM, IvfPqIndex  # noqa: E402
from index.catalog import Catalog  # noqa: E402
from index.dense import DenseField  # noqa: E402
from index.runtime import configure_threads  # noqa: E402

BLOCK = 100
PAIRS = (("nestor", "faiss"), ("nestor_api", "faiss"), ("nestor", "nestor_api"), ("native_call", "faiss_search_c"))


def main(argv: list[str] | None = None) -> int:
    configure_threads()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--data", default=None)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--nprobe", type=int, default=96)
    ap.add_argument("--factor", type=int, default=12)
    ap.add_argument("--out", default="ivf_parts")
    args = ap.parse_args(argv)
    data = load_dataset(n=args.n, data=args.data)
    s = Setting(512, args.nprobe, args.factor)
    coll = _nestor(Catalog(Path(tempfile.mkdtemp(prefix="nestor-ivfparts-"))), data, 512)
    fi: Any = _faiss(data, 512)
    base: Any = faiss.downcast_index(fi.base_index)
    base.implem = FAST_SCAN_IMPLEM
    fp, qs, nq = _fparams(s), _queries(data, s), len(data.queries)
    faiss.omp_set_num_threads(1)
    f = coll.fields[""]
    assert isinstance(f, DenseField) and isinstance(f.state.index, IvfPqIndex)
    ix = f.state.index

    def nestor(i: int) -> list[Any]:
        return [h.id for h in coll.search([qs[i]])[0].hits]

    nestor(0)
    bound = ix._native
    assert bound[1] is not None, "this faiss is not one the native call runs"

    def nestor_api(i: int) -> list[Any]:
        ix._native = (ix._index, None)  # the fallback: faiss's Python API, then _graph.exact
        try:
            return nestor(i)
        finally:
            ix._native = bound

    def faiss_api(i: int) -> list[int]:
        return fi.search(data.queries[i : i + 1], 10, params=fp)[1][0].tolist()  # type: ignore[no-any-return]

    mats = [f.prepare_one(q) for q in data.queries]
    sp, rows, alive, upto, n = ix._ivf_params(s.nprobe), f.vectors.buffer(), f.alive, f.state.upto, f.labels.n
    k_ann = 10 * s.factor
    ptr, dist, labels = faiss.swig_ptr, np.empty((1, 10), np.float32), np.empty((1, 10), np.int64)

    def native_call(i: int) -> list[int]:
        got = bound[1].run(mats[i], sp, k_ann, rows, alive, upto, n, 10, False)
        return got[0]  # type: ignore[no-any-return]

    def faiss_search_c(i: int) -> list[int]:
        faiss.omp_set_num_threads(1)
        fi.search_c(1, ptr(mats[i]), 10, ptr(dist), ptr(labels), fp)
        return labels[0].tolist()  # type: ignore[no-any-return]

    fns: dict[str, Callable[[int], Any]] = {
        "nestor": nestor,
        "nestor_api": nestor_api,
        "faiss": faiss_api,
        "native_call": native_call,
        "faiss_search_c": faiss_search_c,
    }
    recall = {k: recall_at_k([fn(i) for i in range(nq)], data.gt, 10) for k, fn in fns.items()}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    wall: dict[str, list[float]] = {k: [] for k in fns}
    load_before = os.getloadavg()
    for rnd in range(args.rounds):
        start = (rnd * BLOCK) % max(nq - BLOCK, 1)
        for name, fn in fns.items():
            c0, t0 = time.thread_time(), time.perf_counter()
            for i in range(start, start + BLOCK):
                fn(i)
            cpu[name].append((time.thread_time() - c0) / BLOCK * 1e6)
            wall[name].append((time.perf_counter() - t0) / BLOCK * 1e6)
    load_after = os.getloadavg()
    print(f"setting {s}; load before {load_before}, after {load_after}")
    for name in fns:
        print(
            f"{name:15s} recall {recall[name]:.4f}  CPU {statistics.median(cpu[name]):6.1f} us  "
            f"wall {statistics.median(wall[name]):6.1f} us a query"
        )
    ratios = {}
    for a, b in PAIRS:  # speed of a over b, per round
        rc = statistics.median(x / y for x, y in zip(cpu[b], cpu[a], strict=True))
        rw = statistics.median(x / y for x, y in zip(wall[b], wall[a], strict=True))
        ratios[f"{a}/{b}"] = {"cpu": rc, "wall": rw}
        print(f"{a}/{b}: {rc:.3f}x by CPU time, {rw:.3f}x by wall time")
    out = write_results(
        args.out,
        {
            "command": "python benchmarks/ivf_parts.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "setting": str(s),
            "recall": recall,
            "cpu_us_median": {k: statistics.median(v) for k, v in cpu.items()},
            "wall_us_median": {k: statistics.median(v) for k, v in wall.items()},
            "ratios": ratios,
            "load": {"before": load_before, "after": load_after},
            "meta": {"threads_pinned": {"nestor": "one search thread", "faiss": "omp=1"}},
        },
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
