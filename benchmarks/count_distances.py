"""Distance computations per query of an HNSW walk, on Nestor's graph and on hnswlib's, at the same ef.

Neither library counts them, so both graphs are read (Nestor's `Graph.get_state`, hnswlib's saved
index file) and the same walk is replayed in numpy: the greedy descent through the upper layers,
then the level-0 beam of `ef` (hnswlib's `searchBaseLayerST`, which Nestor's `beam_search` expands in
the same order), counting every vector scored. The distances are the float32 inner products of the
base rows, so the count is exact for the float32 graphs and, for the int8 graph, the count of the
walk its float32 twin would take (the codes change a few comparisons). qdrant-edge's graph cannot
be read this way: it is not counted.

    .venv/bin/python benchmarks/count_distances.py --reuse /tmp/native --queries 200
    .venv/bin/python benchmarks/count_distances.py --tiny --n 1500 --data DIR --reuse DIR   # smoke

Needs the indexes `bench_native.py --reuse DIR` built (f32, int8, hnswlib-N.bin in DIR).
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
for _p in (BENCH, BENCH.parent, BENCH.parent / "clients" / "python"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import bench_native  # noqa: E402
import harness  # noqa: E402
import numpy as np  # noqa: E402
from common import load_dataset  # noqa: E402

from index.dense import DenseField  # noqa: E402


class Walkable:
    """An HNSW graph as arrays: level-0 links [n, m0] (-1 padded), upper links by (node, level), entry."""

    def __init__(self, links0: Any, upper: dict[tuple[int, int], Any], entry: int, top: int, rows: Any) -> None:
        self.links0, self.upper, self.entry, self.top, self.rows = links0, upper, entry, top, rows

    def walk(self, q: Any, ef: int) -> int:
        """The vectors one query scores: descent, then the level-0 beam."""
        rows = self.rows
        cur, count = self.entry, 1
        cur_d = -float(rows[cur] @ q)
        for level in range(self.top, 0, -1):
            changed = True
            while changed:
                changed = False
                nbs = self.upper.get((cur, level))
                if nbs is None or not len(nbs):
                    continue
                d = -(rows[nbs] @ q)
                count += len(nbs)
                j = int(np.argmin(d))
                if d[j] < cur_d:
                    cur_d, cur, changed = float(d[j]), int(nbs[j]), True
        seen = {cur}
        beam = [(cur_d, cur, False)]  # sorted by distance; (distance, node, expanded)
        while True:
            i = next((i for i, b in enumerate(beam) if not b[2]), None)
            if i is None:
                return count
            d0, node, _ = beam[i]
            beam[i] = (d0, node, True)
            nbs = [int(x) for x in self.links0[node] if x >= 0 and int(x) not in seen]
            if not nbs:
                continue
            seen.update(nbs)
            d = -(rows[nbs] @ q)
            count += len(nbs)
            for dist, nb in zip(d.tolist(), nbs, strict=True):
                if len(beam) == ef and dist >= beam[-1][0]:
                    continue
                beam.append((dist, nb, False))
                beam.sort(key=lambda b: b[0])
                del beam[ef:]


def nestor_graph(coll: Any, rows: Any) -> Walkable:
    f = coll.fields[""]
    assert isinstance(f, DenseField)
    index = f.state.index
    g = getattr(index, "inner", index)._graph
    st = g.get_state()
    m0 = st["links0"].shape[1] - 1
    links0 = np.full((len(st["links0"]), m0), -1, np.int64)
    for i, ll in enumerate(st["links0"]):
        links0[i, : ll[0]] = ll[1 : ll[0] + 1]
    m = (m0 // 2) + 1  # an upper list: a count and m links
    upper: dict[tuple[int, int], Any] = {}
    pos = 0
    for i, lv in enumerate(st["levels"].tolist()):
        for level in range(1, lv + 1):
            ll = st["upper"][pos : pos + m]
            upper[(i, level)] = ll[1 : ll[0] + 1].astype(np.int64)
            pos += m
    # positions are not labels after a reorder: the rows in position order
    return Walkable(links0, upper, int(st["entry"]), int(st["max_level"]), rows[st["labels"]])


def hnswlib_graph(path: Path, rows: Any) -> Walkable:
    """hnswlib's saved index (hnswalg.h saveIndex): a header, level-0 blocks, then per node its upper lists."""
    raw = path.read_bytes()
    off_l0, max_el, n, size_el, label_off, data_off = struct.unpack_from("<6Q", raw, 0)
    top, entry = struct.unpack_from("<iI", raw, 48)
    max_m, max_m0, _m = struct.unpack_from("<3Q", raw, 56)
    pos = 56 + 24 + 8 + 8  # mult_ (double), ef_construction_
    block = np.frombuffer(raw, np.uint8, n * size_el, pos).reshape(n, size_el)
    head = block[:, : 4 * (max_m0 + 1)].copy().view(np.uint32)
    labels = block[:, label_off : label_off + 8].copy().view(np.uint64)[:, 0].astype(np.int64)
    links0 = np.full((n, max_m0), -1, np.int64)
    for i in range(n):
        c = int(head[i, 0]) & 0xFFFF
        links0[i, :c] = head[i, 1 : c + 1]
    pos += n * size_el
    per_level = 4 * (max_m + 1)
    upper: dict[tuple[int, int], Any] = {}
    for i in range(n):
        (size,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        for level in range(size // per_level):
            ll = np.frombuffer(raw, np.uint32, max_m + 1, pos + level * per_level)
            upper[(i, level + 1)] = ll[1 : (int(ll[0]) & 0xFFFF) + 1].astype(np.int64)
        pos += size
    del off_l0, max_el, data_off
    return Walkable(links0, upper, int(entry), int(top), rows[labels])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reuse", required=True)
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--data", default=None)
    ap.add_argument("--tiny", action="store_true")
    args = ap.parse_args(argv)
    harness.set_tiny(args.tiny)
    data = load_dataset(n=args.n, n_queries=args.queries, data=args.data)
    base, qs = np.ascontiguousarray(data.base, np.float32), data.queries
    work = Path(args.reuse)
    work.mkdir(parents=True, exist_ok=True)
    f32 = bench_native.nestor(work, "f32", base, int8=False)
    int8 = bench_native.nestor(work, "int8", base, int8=True)
    bench_native.raw_hnswlib(work, base)  # built and saved if missing
    graphs = {
        "nestor float32": nestor_graph(f32, base),
        "nestor int8 (its float32 twin)": nestor_graph(int8, base),
        "hnswlib float32": hnswlib_graph(work / f"hnswlib-{len(base)}.bin", base),
    }
    f32.close()
    int8.close()
    efs = [16, 32, 48, 64, 128, 256] if not args.tiny else [16, 48]
    print("| graph | " + " | ".join(f"ef {ef}" for ef in efs) + " |")
    print("|---|" + "---|" * len(efs))
    for name, g in graphs.items():
        counts = [np.mean([g.walk(q, ef) for q in qs]) for ef in efs]
        print(f"| {name} | " + " | ".join(f"{c:,.0f}" for c in counts) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
