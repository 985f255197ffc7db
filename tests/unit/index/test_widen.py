"""A rescore that cannot vouch for its top k widens its walk (`Graph::walk_rescored`, index/widen.py).

Driven through `Collection.search` on an int8 HNSW collection: a broad filter whose matches all sit in the
densest band of scores (the points ranked 40-100 % for the query) is found at the recall of exact filtered
search, by the native path and by the planner's alike, and the graph counts the walks it ran again; plain
queries, whose top 10 stand well clear of the codes' error, never widen.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from index import native
from index.contract import CollectionOptions, Query
from index.widen import vouches
from nestor_client.models import Filter
from tests.synth import manifold
from tests.unit.index.conftest import QUIET, Engine, wait_indexed

N, DIM, K = 3000, 32, 10


@pytest.fixture
def options() -> CollectionOptions:
    return dataclasses.replace(QUIET, exact_filter_threshold=100)  # the band (1,800 points) is walked


def _band(data: np.ndarray, q: np.ndarray) -> list[int]:
    order = np.argsort(-(data @ q), kind="stable")
    return sorted(int(i) for i in order[len(order) * 2 // 5 :])


def test_a_filter_in_the_densest_band_widens_the_rescore_on_both_paths(engine: Engine) -> None:
    data = manifold(N + 20, DIM, seed=11)
    base, queries = data[:N], data[N:]
    cfg = {"dim": DIM, "metric": "cosine", "index": {"type": "hnsw", "ef": 24}, "quantize": {"type": "int8"}}
    coll = engine.create("w", {**cfg, "rerank": {"oversampling": 2}, "training": {"threshold": 1000}})
    coll.upsert(list(range(N)), base)
    wait_indexed(coll)
    graph = coll.fields[""].state.index.inner._graph
    plain = [coll.search([Query(q, limit=K, with_payload=False)])[0] for q in queries]
    assert graph.widened == 0 and all(len(r.hits) == K for r in plain)

    found: dict[bool, list[Any]] = {True: [], False: []}
    recall = []
    for q in queries:
        band = _band(base, q)
        truth = set(np.array(band)[np.argsort(-(base[band] @ q), kind="stable")[:K]].tolist())
        flt = Filter.model_validate({"must": [{"has_id": band}]})
        for on in (True, False):
            native.ENABLED = on
            try:
                res = coll.search([Query(q, limit=K, filter=flt, with_payload=False)])[0]
            finally:
                native.ENABLED = True
            assert res.strategy == "int8_hnsw_filtered"  # a walk, not the exact scan of the band
            found[on].append([h.id for h in res.hits])
        recall.append(len(truth & set(found[True][-1])) / K)
    assert found[True] == found[False]  # the same rule on both paths
    assert float(np.mean(recall)) >= 0.95
    assert graph.widened >= len(queries) // 2  # most walked again (16 of 20 here), natively at least
    assert coll.info()["vectors"][""]["index"]["rescore_widened"] == graph.widened  # what operators see


def test_vouches_only_when_the_kth_score_clears_the_codes_error() -> None:
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 0.01, 40).astype(np.float32)
    apart = np.linspace(1.0, 0.2, 40).astype(np.float32)  # scores far apart next to the codes' error
    assert vouches(apart + noise, apart, K)
    dense = (0.3 + rng.normal(0, 0.001, 40)).astype(np.float32)  # all within the codes' error
    assert not vouches(dense + noise, dense, K)
    assert vouches(np.array([0.5], np.float32), np.array([0.4], np.float32), 1)  # too few to judge
