"""Per-value graphs: the points of one tenant (or of one value of a key) are searched together, in a graph
of their own.

A keyword payload index marked `is_tenant` says that queries nearly always name one value of it (a
customer, a user). For every such value with at least `min_points` points, the indexer keeps a small
HNSW (Nestor's native graph, float32) over just that tenant's vectors, for each dense vector served by
a graph. A query whose filter requires that tenant walks the tenant's graph (with the rest of the filter
as a mask), so its plan never touches another tenant's points, and its cost follows the tenant's size,
not the collection's. A smaller tenant is scanned exactly (cheaper than any walk at that size); a
tenant whose graph is still being built takes the general planner. Qdrant builds the same thing as
extra links per tenant value (`is_tenant`, `payload_m`).

A keyword or integer index marked `value_graphs` gets the same for each of its values that is large
enough and not broad (at most `filter_walk_fraction` of the points: a broader value is served as well
by a walk of the whole graph that tests its hits), so `cat == 3` walks the graph of cat 3 alone instead
of an ACORN walk of everything.

The graphs are derived state, rebuilt in the background after a restart. Each step adds the tenant's
new rows (labels only grow, so the graph's labels stay sorted) and marks the rows that left the tenant
(deleted, overwritten, or moved to another tenant) as deleted in its graph. Rows newer than a graph are
scanned exactly at query time, and a hit is only returned while its label is live, so a reader never
sees a point outside its filter.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyroaring import BitMap

from index.backends import graph as native
from index.backends.base import F32, Hits, IndexParams
from index.backends.graph import GraphIndex
from index.dense import DenseField
from index.payload_index import bitmap, labels_of
from index.planner import exact_rows, merge
from nestor_client.models import HnswIndexConfig

if TYPE_CHECKING:
    from index.collection import Collection

__all__ = ["TenantGraph", "TenantGraphs"]

_STEP_ROWS = 4096  # rows added per indexer step, so searches and other work interleave with a build
_TRAIN_ROWS = 20_000  # members whose vectors set an int8 graph's per-dimension code range
_RESCORE_MIN = 40  # an int8 graph's walk hands on max(this, 4 k) candidates to be rescored from the rows


@dataclass(slots=True)
class TenantGraph:
    graph: GraphIndex
    members: BitMap  # labels in the graph, not marked deleted
    upto: int  # every member label is below this; the tenant's rows from here on are not in the graph


class TenantGraphs:
    """The tenant graphs of one collection, keyed by (vector name, payload key, tenant value)."""

    def __init__(self, coll: Collection, min_points: int) -> None:
        self._coll = coll
        self.min_points = max(min_points, 1)
        self._graphs: dict[tuple[str, str, Any], TenantGraph] = {}
        self._lock = threading.Lock()  # one builder at a time (the indexer); readers take a snapshot

    def get(self, field: str, key: str, value: Any) -> TenantGraph | None:
        return self._graphs.get((field, key, value))

    def ram_bytes(self) -> int:
        return sum(tg.graph.ram_bytes() for tg in list(self._graphs.values()))

    def count(self) -> int:
        return len(self._graphs)

    # -- the indexer's step ------------------------------------------------------------------

    def step(self) -> bool:
        """Bring the graphs a step closer to the tenants; False when every graph is current."""
        with self._lock:
            return self._step()

    def _step(self) -> bool:
        coll = self._coll
        payload = coll.payload
        keys = payload.graph_fields()
        fields = [f for f in coll.fields.values() if _served(f)]
        wanted: set[tuple[str, str, Any]] = set()
        busy = False
        for key, kind in keys.items():
            values = payload.value_bitmaps(key)
            live = len(payload.live)
            for value, members in values:
                if len(members) < self.min_points:
                    continue
                for f in fields:
                    assert isinstance(f, DenseField)
                    if kind == "values" and len(members) > f.options.filter_walk_fraction * live:
                        continue  # a broad value: a walk of the whole graph that tests its hits is as good
                    wanted.add((f.name, key, value))
                    busy |= self._refresh(f, key, value, members)
        for gone in set(self._graphs) - wanted:  # a tenant that shrank, or an index dropped
            graphs = dict(self._graphs)
            del graphs[gone]
            self._graphs = graphs
        return busy

    def _refresh(self, f: DenseField, key: str, value: Any, members: BitMap) -> bool:
        tg = self._graphs.get((f.name, key, value))
        if tg is None:
            g = _new_graph(f, members)
            if g is None:
                return False  # no member has this vector yet
            tg = TenantGraph(g, BitMap(), 0)
            self._graphs = {**self._graphs, (f.name, key, value): tg}
        left = tg.members - members
        if left:
            tg.graph.remove(labels_of(left))
            tg.members -= left
        n = f.labels.n
        alive = f.alive
        window = BitMap()
        if tg.upto < n:
            window.add_range(tg.upto, n)
        new = labels_of(members & window)
        if not len(new):
            return bool(left)
        new = new[:_STEP_ROWS]
        has = new[alive[new]]  # a point may not have this vector
        if len(has):
            tg.graph.add(f.vectors.take(has), has)
            tg.members |= bitmap(has)
        tg.upto = int(new[-1]) + 1
        return True

    # -- queries -----------------------------------------------------------------------------

    def search(self, f: DenseField, tg: TenantGraph, queries: F32, k: int, ef: int | None, allowed: BitMap) -> Hits:
        """The best k of `allowed` (the filter's live labels, all of this tenant): the tenant's graph, masked
        by the rest of the filter when there is one, then an exact scan of the rows newer than the graph.
        Hits may include a label that died since `allowed` was read: the caller drops those.

        `allowed` stays a bitmap: counted by range and handed to the graph serialised, never listed. Listing
        it and splitting it at `upto` with numpy cost ~100 us a query for a value of 30k points, as much as
        the walk, and grew with the collection (`cat == 3` at 1M points: 100k labels a query)."""
        upto = tg.upto
        inside = allowed.range_cardinality(0, upto)
        members = len(tg.members)
        whole = inside == members  # the filter is the tenant and nothing else: no mask
        acorn = inside < f.options.filter_walk_fraction * max(members, 1)
        # the graph holds labels below `upto` only, so the whole bitmap masks it as its part below would
        mask = None if whole else allowed.serialize()
        if tg.graph.rows is None:  # int8 codes: the walk's best candidates rescored from the rows
            rows, keep = f.vectors.buffer(), max(_RESCORE_MIN, 4 * k)
            hits = tg.graph.search(queries, k, IndexParams(ef=ef, acorn=acorn), mask, rows, keep)
        else:
            hits = tg.graph.search(queries, k, IndexParams(ef=ef, acorn=acorn), mask)
        if allowed and allowed.max() >= upto:  # rows newer than the graph: exactly
            window = BitMap()
            window.add_range(upto, allowed.max() + 1)
            hits = merge(hits, exact_rows(f, queries, k, labels_of(allowed & window), f.alive), k)
        return hits


def _new_graph(f: DenseField, members: BitMap) -> GraphIndex | None:
    """An empty graph for a value's points, of the codec `value_graph_codec` names. Why int8 by default: the
    value's rows lie scattered among the collection's, so a walk over them in place misses the cache on
    every node; its own codes, a quarter of the size and renumbered in walk order, walked `zone == far` at
    300k (30k points far from every query, ef 384 for recall 0.95) in 0.48 ms of CPU against 2.3 ms, at
    the same recall once rescored. None when none of `members` has this vector to fit the codes on."""
    cfg = f.config.index
    assert isinstance(cfg, HnswIndexConfig)
    codec = f.options.value_graph_codec
    rows = f.vectors if codec == "float32" else None
    g = GraphIndex(f.dim, f.space, codec, m=cfg.m, ef_construction=cfg.ef_construction, ef=cfg.ef, rows=rows)
    g.threads = f.options.index_threads or g.threads
    if codec == "int8":
        sample = labels_of(members)
        sample = sample[sample < f.labels.n]
        sample = sample[f.alive[sample]][:_TRAIN_ROWS]
        if not len(sample):
            return None
        g.train(f.vectors.take(sample))
    return g


def _served(f: object) -> bool:
    """A dense vector searched through a graph: the one kind a tenant graph speeds up."""
    return isinstance(f, DenseField) and isinstance(f.config.index, HnswIndexConfig) and native.AVAILABLE
