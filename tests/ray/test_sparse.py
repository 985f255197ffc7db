"""Sparse vectors on a sharded collection: upserts split by shard, searches and a dense-plus-sparse fusion
merge to what one node answers (an idf vector's too, through the compiled search graph); bad sparse input
and sparse-only sharded collections are refused before anything is sent."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cluster.sharded import ShardedCollection
from index.collection import Collection, CollectionOptions
from index.contract import Query, SparseVec
from index.errors import InvalidConfig, InvalidVector
from index.pipeline import Fusion, Stage, check, run
from nestor_client.models import CollectionConfig

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::FutureWarning")


def _sv(rng: np.random.Generator) -> SparseVec:
    idx = rng.choice(50, size=int(rng.integers(1, 6)), replace=False).astype(np.uint32)
    return SparseVec(idx, rng.random(len(idx)).astype(np.float32))


def test_sharded_sparse_equals_single_node(tmp_path: Path, cluster: Any) -> None:
    n = 200
    rng = np.random.default_rng(3)
    dense = rng.normal(size=(n, 4)).astype(np.float32)
    sparse: list[SparseVec | None] = [None if i % 7 == 0 else _sv(rng) for i in range(n)]
    config = CollectionConfig.model_validate(
        {"vectors": {"d": {"dim": 4, "index": {"type": "flat"}}}, "sparse_vectors": {"s": {}, "i": {"modifier": "idf"}}}
    )
    opts = CollectionOptions(save_idle_seconds=0.2)
    single = Collection.create("one", tmp_path / "one", config, opts)
    sharded = ShardedCollection.create(
        "many", tmp_path / "many", config.model_copy(update={"shards": 2}), opts, cluster
    )
    try:
        ids: list[Any] = list(range(n))
        for c in (single, sharded):
            c.upsert(ids, {"d": dense, "s": sparse, "i": sparse})
        assert sharded.count == n
        got = sharded.get([1, 7], with_vector=["s"])
        assert got[0].vectors is not None and got[0].vectors["s"]["indices"] == sparse[1].indices.tolist()  # type: ignore[union-attr]
        q = SparseVec(np.array([3, 11, 40], np.uint32), np.array([1.0, 0.5, 2.0], np.float32))
        for c in (single, sharded):
            res = c.search(
                [Query(np.zeros(0, np.float32), limit=15, offset=2, sparse=q, using="s", with_payload=False)]
            )[0]
            c.test_hits = [(h.id, round(h.score, 5)) for h in res.hits]  # type: ignore[attr-defined]
        assert sharded.test_hits == single.test_hits and len(single.test_hits) > 5  # type: ignore[attr-defined]
        # and through the compiled search graph, once it is built (the sparse query travels packed)
        sq = Query(np.zeros(0, np.float32), limit=15, offset=2, sparse=q, using="s", with_payload=False)
        deadline = time.monotonic() + 60
        while not sharded._dags and time.monotonic() < deadline:
            sharded.search([sq])
            time.sleep(0.2)
        assert sharded._dags, "the compiled search graph was never built"
        res = sharded.search([sq])[0]
        assert [(h.id, round(h.score, 5)) for h in res.hits] == single.test_hits  # type: ignore[attr-defined]
        # an idf vector: the summed document frequencies travel packed with the query
        iq = Query(np.zeros(0, np.float32), limit=15, sparse=q, using="i", with_payload=False)
        want = [(h.id, round(h.score, 5)) for h in single.search([iq])[0].hits]
        assert [(h.id, round(h.score, 5)) for h in sharded.search([iq])[0].hits] == want and len(want) > 5
        plain = Query(np.zeros(0, np.float32), limit=15, sparse=q, using="s", with_payload=False)
        assert want != [(h.id, round(h.score, 5)) for h in single.search([plain])[0].hits]  # the idf counts
        dq = rng.normal(size=4).astype(np.float32)
        answers = []
        for c in (single, sharded):
            root = Stage(
                Fusion("rrf"), limit=10, prefetch=[Stage(q, using="s", limit=30), Stage(dq, using="d", limit=30)]
            )
            check(c, root)
            answers.append([(h.id, round(h.score, 6)) for h in run(c, root, with_payload=False)[0]])
        assert answers[0] == answers[1] and len(answers[0]) == 10
        bad = [SparseVec(np.array([1, 1], np.uint32), np.array([1.0, 2.0], np.float32))] + [None] * 1
        with pytest.raises(InvalidVector):
            sharded.upsert([1000, 1001], {"d": dense[:2], "s": bad})
        assert sharded.count == n
    finally:
        single.close()
        sharded.close()


def test_sparse_only_is_refused_on_shards(tmp_path: Path, cluster: Any) -> None:
    for i, cfg in enumerate([{"shards": 2, "sparse_vectors": {"s": {}}}]):
        with pytest.raises(InvalidConfig):
            ShardedCollection.create(
                f"x{i}", tmp_path / f"x{i}", CollectionConfig.model_validate(cfg), CollectionOptions(), cluster
            )
        assert not (tmp_path / f"x{i}").exists()
