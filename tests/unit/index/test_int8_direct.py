"""int8 flat codes searched as faiss's 8-bit "direct" codes (cosine and L2): a vector beyond the range of
the sample the scale was fitted on must still find itself. faiss mangles a query coordinate outside the
codes' 0..255 box, so before queries were clipped to it, 88 of these 2,000 cosine vectors (18 for L2) lost
their own top 1 whatever the oversampling."""

from __future__ import annotations

import numpy as np
import pytest

from index.contract import Query
from nestor_client.models import SearchParams
from tests.unit.index.conftest import Engine, until, wait_indexed

DIM = 16


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_vectors_beyond_the_fitted_range_find_themselves(engine: Engine, metric: str) -> None:
    coll = engine.create(
        "c",
        {
            "dim": DIM,
            "metric": metric,
            "index": {"type": "flat"},
            "quantize": {"type": "int8"},
            "training": {"threshold": 64, "refit_growth": 1000},  # fitted on the first 64 rows, never again
        },
    )
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2000, DIM)).astype(np.float32)
    coll.upsert(list(range(64)), x[:64])
    until(lambda: coll.info().index.get("trained_on") == 64, 30, "the int8 codes to be fitted")
    coll.upsert(list(range(64, 2000)), x[64:])
    wait_indexed(coll, 30)
    assert coll.info().index.get("trained_on") == 64  # the later rows were coded with the first 64's scale
    missed = []
    for i in range(2000):
        res = coll.search([Query(x[i], limit=1, params=SearchParams(oversampling=4), with_payload=False)])[0]
        assert res.strategy == "int8_flat"
        if [h.id for h in res.hits] != [i]:
            missed.append(i)
    assert missed == []
