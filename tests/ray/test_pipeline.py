"""The query pipeline on a sharded collection: it runs through the collection contract only, so two
shards answer a nested prefetch, fusion and rescore tree exactly as one node does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cluster.sharded import ShardedCollection
from index.collection import Collection, CollectionOptions
from index.pipeline import Fusion, Stage, check, run
from nestor_client.models import CollectionConfig, Filter

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::FutureWarning")


def test_sharded_pipeline_equals_single_node(tmp_path: Path, cluster: Any) -> None:
    n = 300
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(n, 8)).astype(np.float32), rng.normal(size=(n, 4)).astype(np.float32)
    config = CollectionConfig.model_validate(
        {
            "vectors": {
                "a": {"dim": 8, "index": {"type": "flat"}},
                "b": {"dim": 4, "metric": "l2", "index": {"type": "flat"}},
            }
        }
    )
    opts = CollectionOptions(save_idle_seconds=0.2)
    single = Collection.create("one", tmp_path / "one", config, opts)
    sharded = ShardedCollection.create(
        "many", tmp_path / "many", config.model_copy(update={"shards": 2}), opts, cluster
    )
    try:
        ids: list[Any] = list(range(n))
        for c in (single, sharded):
            c.upsert(ids, {"a": a, "b": b}, [{"g": i % 3} for i in ids])

        def tree() -> Stage:
            flt = Filter.model_validate({"must_not": [{"key": "g", "match": {"value": 0}}]})
            fused = Stage(
                Fusion("rrf"),
                limit=30,
                prefetch=[Stage(a[3] + 0.1, using="a", limit=25), Stage(b[3] + 0.1, using="b", limit=25)],
            )
            return Stage(7, using="a", filter=flt, limit=10, prefetch=[fused, Stage(a[7], using="a", limit=5)])

        got = []
        for c in (single, sharded):
            root = tree()
            check(c, root)
            got.append(run(c, root, with_payload=True))
        (hits1, rep1), (hits2, rep2) = got
        assert [h.id for h in hits2] == [h.id for h in hits1] and len(hits1) == 10
        assert [h.score for h in hits2] == pytest.approx([h.score for h in hits1], rel=1e-5)
        assert [h.payload for h in hits2] == [h.payload for h in hits1]
        assert all(h.payload is not None and h.payload["g"] != 0 for h in hits1) and 7 not in [h.id for h in hits1]
        assert rep2.kind == rep1.kind == "rescore" and rep2.stages[0].candidates_in == rep1.stages[0].candidates_in
    finally:
        single.close()
        sharded.close()
