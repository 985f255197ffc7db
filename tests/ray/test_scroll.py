"""Scroll on a sharded collection: the same pages as a single-node collection, and tenant indexes on replicas.

Each shard answers its own page from the offset; the router merges them by id (`merge_pages`), so the
pages, their order and every `next_page_offset` equal a single node's, with and without a filter, with
integer and string ids. An `is_tenant` keyword index reaches every replica with the flag.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cluster.sharded import ShardedCollection
from index.collection import Collection
from index.contract import CollectionOptions
from nestor_client.models import CollectionConfig, Filter, PayloadIndexParams, PayloadSchemaType
from tests.synth import manifold

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::FutureWarning")

OPTS = CollectionOptions(save_idle_seconds=0.2)


def _pages(coll: Any, flt: Filter | None, limit: int) -> list[tuple[list[Any], Any]]:
    out, offset = [], None
    while True:
        hits, offset = coll.scroll(flt, limit=limit, offset=offset)
        out.append(([(h.id, h.payload) for h in hits], offset))
        if offset is None:
            return out


def test_sharded_scroll_equals_single_node(tmp_path: Path, cluster: Any) -> None:
    n, dim = 400, 8
    x = manifold(n, dim, seed=1, normalize=False)
    ids: list[Any] = [i * 7 % 1009 for i in range(n - 40)] + [f"id-{i:03d}" for i in range(40)]
    spec = {"dim": dim, "index": {"type": "flat"}, "payload_schema": {"g": "integer"}}
    config = CollectionConfig.model_validate(spec)
    single = Collection.create("one", tmp_path / "one", config, OPTS)
    sharded = ShardedCollection.create(
        "many", tmp_path / "many", config.model_copy(update={"shards": 3, "replicas": 1}), OPTS, cluster
    )
    try:
        pays: list[dict[str, Any] | None] = [{"g": i % 5, "t": f"t{i % 4}", "free": i % 7} for i in range(n)]
        single.upsert(ids, x, pays)
        sharded.upsert(ids, x, pays)
        filters = [
            None,
            Filter.model_validate({"must": [{"key": "g", "match": {"value": 2}}]}),
            Filter.model_validate({"must": [{"key": "free", "range": {"gte": 5}}]}),
        ]
        for flt in filters:
            for limit in (1, 9, 1000):
                want = _pages(single, flt, limit)
                assert _pages(sharded, flt, limit) == want
                assert sum(len(p) for p, _ in want) == single.count_where(flt)
        schema = PayloadIndexParams(type=PayloadSchemaType.keyword, is_tenant=True)
        assert sharded.create_payload_index("t", schema)
        assert sharded.info().payload_schema["t"].is_tenant
        for sh in sharded.shards:
            for rep in sh.replicas:
                replica = json.loads((Path(rep.directory) / "collection.json").read_text())
                assert replica["payload_schema"]["t"] == {"type": "keyword", "is_tenant": True}
    finally:
        single.close()
        sharded.close()
