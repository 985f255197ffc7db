"""A graph built by several threads leaves no node unreachable.

The native graph inserts a batch with several threads. An insert that reached a node through an
upper layer before that node's level-0 links were written stopped there, took it as its only
neighbour, and then lost the back link when the node wrote its own list: it became unreachable, so
no search could return it, however large ef. Built by one thread the same graph had no such node.
On the code before the fix almost every 100-point build with two threads lost a few.
"""

from __future__ import annotations

import numpy as np
import pytest

from index.backends import graph
from index.backends.base import IndexParams, Space
from index.backends.graph import GraphIndex

pytestmark = pytest.mark.skipif(not graph.AVAILABLE, reason="the native graph is not built here")


@pytest.mark.parametrize("codec", ["float32", "int8"])
@pytest.mark.parametrize("threads", [1, 2, 4])
def test_every_node_is_reachable_after_a_parallel_build(codec: str, threads: int) -> None:
    rng = np.random.default_rng(threads)
    unreachable = []
    for build in range(6):
        n = 2000 if build == 0 else 100
        data = rng.normal(size=(n, 16)).astype(np.float32)
        labels = np.arange(n, dtype=np.int64)
        g = GraphIndex(16, Space.l2, codec, m=16, ef_construction=200, ef=64, seed=build, threads=threads)  # type: ignore[arg-type]
        g.train(data)
        g.add(data, labels)
        found = g.search(data, 1, IndexParams(ef=n))  # ef = n: the walk visits every node it can reach
        unreachable += [(build, int(i)) for i in np.flatnonzero(found.labels[:, 0] != labels)]
    # HNSW's neighbour heuristic can, rarely, prune a node out of every list that pointed to it (seen with
    # int8 codes on 100-node graphs, about one node in 15,000, single-threaded too), so a node or two of the
    # 2,500 may be unreachable; the race this test was written for lost a few in almost every small build.
    assert len(unreachable) <= 2, unreachable
