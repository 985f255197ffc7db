"""The default MUVERA configuration (issue 20): what a vector with only `{"type": "muvera"}` gets, and the
exact scan a small collection takes when it is cheaper than MUVERA's candidates."""

from __future__ import annotations

import numpy as np
import pytest

from index.contract import Query
from index.errors import InvalidConfig
from index.multivector import DEFAULT_FDE_INDEX
from nestor_client.models import IvfPqIndexConfig, MuveraConfig, SearchParams
from tests.synth_tokens import clustered_token_sets
from tests.unit.index.conftest import Engine, wait_indexed

DIM = 48


def _int8(x: np.ndarray) -> np.ndarray:
    """A token set as the int8 store holds it: one scale per token row."""
    s = np.abs(x).max(axis=1, keepdims=True) / 127.0
    return np.clip(np.rint(x / s), -127, 127) * s


def _truth(docs: list[np.ndarray], q: np.ndarray, k: int) -> list[int]:
    scores = np.array([(q @ _int8(d).T).max(axis=1).sum() for d in docs])
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]


def test_the_default_is_int8_tokens_wide_buckets_and_an_ivf_pq_fde_index(engine: Engine) -> None:
    coll = engine.create("m", {"dim": DIM, "metric": "cosine", "multivector": {"type": "muvera"}})
    mv = coll.config.multivector
    assert isinstance(mv, MuveraConfig)
    assert (mv.k_sim, mv.d_proj, mv.r_reps, mv.token_dtype, mv.oversampling) == (2, 32, 20, "int8", 40.0)
    assert mv.exact_below == 10_000
    assert isinstance(coll.config.index, IvfPqIndexConfig) and coll.config.index == DEFAULT_FDE_INDEX
    assert coll.config.index.rescore is False and coll.config.index.train_threshold == 256
    # a named index is kept; tokens narrower than the default projection are kept whole
    named = engine.create(
        "h", {"dim": 8, "metric": "dot", "multivector": {"type": "muvera"}, "index": {"type": "hnsw"}}
    )
    assert named.config.index.type == "hnsw"
    assert isinstance(named.config.multivector, MuveraConfig) and named.config.multivector.d_proj is None
    with pytest.raises(InvalidConfig, match="d_proj 32 exceeds"):  # but one asked for is checked
        engine.create("bad", {"dim": 8, "metric": "dot", "multivector": {"type": "muvera", "d_proj": 32}})


def test_a_small_collection_searches_exactly_when_that_is_cheaper(engine: Engine) -> None:
    docs, queries = clustered_token_sets(1500, 8, DIM, seed=5)  # about 7.5 tokens per document
    coll = engine.create("m", {"dim": DIM, "metric": "cosine", "multivector": {"type": "muvera"}})
    coll.upsert(list(range(1500)), docs)
    wait_indexed(coll, 60)
    assert coll.info()["index"].trained  # the default FDE index trained at 256 documents
    # 1,500 documents x 7.5 tokens is more than 400 candidates' tokens plus the FDE search: MUVERA
    found = coll.search([Query(q, limit=10) for q in queries])
    assert {r.strategy for r in found} == {"muvera"}
    hits = sum(len({h.id for h in r.hits} & set(_truth(docs, q, 10))) for r, q in zip(found, queries, strict=True))
    assert hits / (10 * len(queries)) >= 0.9
    # 400 documents live (1,100 deleted): scoring them all costs less than MUVERA, so it is exact
    coll.delete(list(range(400, 1500)))
    live = docs[:400]
    small = coll.search([Query(q, limit=10) for q in queries])
    assert {r.strategy for r in small} == {"maxsim"}
    for r, q in zip(small, queries, strict=True):
        assert [h.id for h in r.hits] == _truth(live, q, 10)  # exact over the stored int8 tokens
    # 200 candidates at oversampling 20: 400 x 7.5 tokens still cost less than 200 x 7.5 + the FDE search
    assert {r.strategy for r in coll.search([Query(queries[0], limit=10, params=SearchParams(oversampling=20))])} == {
        "maxsim"
    }


def test_exact_below_zero_keeps_muveras_candidates(engine: Engine) -> None:
    docs, queries = clustered_token_sets(600, 4, DIM, seed=6)
    mv = {"type": "muvera", "exact_below": 0, "oversampling": 10}
    coll = engine.create("m", {"dim": DIM, "metric": "cosine", "multivector": mv})
    coll.upsert(list(range(600)), docs)
    wait_indexed(coll, 60)
    assert {r.strategy for r in coll.search([Query(q, limit=10) for q in queries])} == {"muvera"}
    mv["exact_below"] = 10_000  # the same collection with the default: 600 small documents are scanned
    other = engine.create("e", {"dim": DIM, "metric": "cosine", "multivector": mv})
    other.upsert(list(range(600)), docs)
    wait_indexed(other, 60)
    assert {r.strategy for r in other.search([Query(q, limit=10) for q in queries])} == {"maxsim"}
