"""Rerank that preserves ranking: whenever a collection reranks, its hits come back in the order of their exact
float32 scores against the original vectors, with those scores, for every codec (the int8 rerank store only
picks the candidates; the final order is float's)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from index.contract import Query
from nestor_client.models import SearchParams
from tests.unit.index.conftest import Engine, wait_indexed

DIM = 32
N = 1500
_TRAIN = {"threshold": 500}

CODECS: dict[str, dict[str, Any]] = {
    "int8-hnsw": {"quantize": {"type": "int8"}},
    "int8-hnsw-int8-store": {"quantize": {"type": "int8"}, "rerank": {"store": "int8"}},
    "int8-flat-int8-store": {"quantize": {"type": "int8"}, "index": {"type": "flat"}, "rerank": {"store": "int8"}},
    "int8-on-disk-int8-store": {"quantize": {"type": "int8"}, "rerank": {"store": "int8"}, "on_disk": True},
    "binary": {"quantize": {"type": "binary"}},
    "binary-asymmetric-int8-store": {
        "quantize": {"type": "binary", "query": "asymmetric"},
        "rerank": {"store": "int8"},
    },
    "leanvec": {"reduce": {"type": "leanvec", "dim": 8}},
    "leanvec-int8-int8-store": {
        "reduce": {"type": "leanvec", "dim": 12},
        "quantize": {"type": "int8"},
        "rerank": {"store": "int8"},
    },
    "matryoshka-funnel": {"reduce": {"type": "matryoshka", "dim": 8, "funnel": [{"dim": 16, "limit": 40}]}},
    "matryoshka-funnel-int8-store": {
        "reduce": {"type": "matryoshka", "dim": 8, "rotate": "pca", "funnel": [{"dim": 16, "limit": 40}]},
        "rerank": {"store": "int8"},
    },
    "ivf_pq": {"index": {"type": "ivf_pq", "train_threshold": 500}},
}


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("codec", sorted(CODECS))
def test_reranked_hits_are_in_exact_float_order(engine: Engine, codec: str, metric: str) -> None:
    rng = np.random.default_rng(7)
    data = rng.standard_normal((N, DIM)).astype(np.float32)
    coll = engine.create("c", {"dim": DIM, "metric": metric, "training": _TRAIN, **CODECS[codec]})
    coll.upsert(list(range(N)), data)
    wait_indexed(coll, 30)
    assert coll.fields[""].state.index is not None and coll.fields[""].state.index.is_trained
    stored = data / np.linalg.norm(data, axis=1, keepdims=True) if metric == "cosine" else data
    queries = rng.standard_normal((12, DIM)).astype(np.float32)
    batch = coll.search([Query(q, limit=10, with_payload=False) for q in queries])
    singles = [coll.search([Query(q, limit=10, with_payload=False)])[0] for q in queries]
    wide = coll.search([Query(queries[0], limit=10, with_payload=False, params=SearchParams(oversampling=3.0))])
    for q, res in zip([*queries, *queries, queries[0]], [*batch, *singles, *wide], strict=True):
        ids = np.array([h.id for h in res.hits])
        got = np.array([h.score for h in res.hits])
        assert len(ids) == 10, res.strategy
        if metric == "cosine":
            exact = stored[ids] @ (q / np.linalg.norm(q))
            assert np.all(np.diff(exact) <= 1e-6), (res.strategy, exact)
        else:
            exact = np.linalg.norm(stored[ids] - q, axis=1)
            assert np.all(np.diff(exact) >= -1e-5), (res.strategy, exact)
        np.testing.assert_allclose(got, exact, rtol=1e-4, atol=1e-4, err_msg=res.strategy)
