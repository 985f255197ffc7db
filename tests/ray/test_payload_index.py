"""Payload indexes on a sharded collection: given at creation or added later, built by every replica.

The sharded collection records `payload_schema` in its collection.json and sends it to every live
replica (each records it in its own collection.json); a replica out of service during the change gets
it when it is healed, and every replica again at start-up. Answers equal a single-node collection's,
with no `+payload_scan` once every key is indexed. (Not tested here: killing a replica. Ray 2.60 can
abort the driver when an actor dies while a compiled search graph registers its channels.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cluster.sharded import ShardedCollection
from index.collection import Collection, CollectionOptions, Query
from nestor_client.models import CollectionConfig, Filter, PayloadSchemaType
from tests.synth import manifold

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::FutureWarning")

OPTS = CollectionOptions(save_idle_seconds=0.2)
FILTERS = [
    Filter.model_validate({"must": [{"key": "g", "match": {"value": 2}}]}),
    Filter.model_validate(
        {"must": [{"key": "year", "range": {"gte": 2010}}], "must_not": [{"key": "tag", "match": {"value": "b"}}]}
    ),
]


def _same(single: Collection, sharded: ShardedCollection, q: Any, *, indexed: bool) -> None:
    for flt in FILTERS:
        assert sharded.count_where(flt) == single.count_where(flt)
        got = sharded.search([Query(v, limit=5, filter=flt) for v in q])
        want = single.search([Query(v, limit=5, filter=flt) for v in q])
        assert [[h.id for h in r.hits] for r in got] == [[h.id for h in r.hits] for r in want]
        answered = indexed or "tag" not in flt.model_dump_json()  # only "tag" waits for its index
        assert all(("payload_scan" not in r.strategy) == answered for r in got), [r.strategy for r in got]


def test_payload_indexes_on_every_shard(tmp_path: Path, cluster: Any) -> None:
    n, dim = 600, 8
    x, q = manifold(n, dim, seed=1, normalize=False), manifold(4, dim, seed=2, normalize=False)
    config = CollectionConfig.model_validate(
        {"dim": dim, "index": {"type": "flat"}, "payload_schema": {"g": "integer", "year": "integer"}}
    )
    single = Collection.create("one", tmp_path / "one", config, OPTS)
    sharded = ShardedCollection.create(
        "many", tmp_path / "many", config.model_copy(update={"shards": 2, "replicas": 2}), OPTS, cluster
    )
    try:
        pays = [{"g": i % 5, "year": 2000 + i % 25, "tag": ["a", "b", "c"][i % 3]} for i in range(n)]
        single.upsert(list(range(n)), x, pays)
        sharded.upsert(list(range(n)), x, pays)
        _same(single, sharded, q, indexed=False)  # "tag" has no index yet
        assert single.create_payload_index("tag", PayloadSchemaType.keyword)
        assert sharded.create_payload_index("tag", PayloadSchemaType.keyword)
        assert not sharded.create_payload_index("tag", PayloadSchemaType.keyword)
        _same(single, sharded, q, indexed=True)
        info = sharded.info()
        assert info.payload_schema["tag"].state == "ready" and info.payload_schema["tag"].points == n
        saved = json.loads((tmp_path / "many" / "collection.json").read_text())
        assert saved["payload_schema"]["tag"] == "keyword"
        for sh in sharded.shards:
            for rep in sh.replicas:
                replica = json.loads((Path(rep.directory) / "collection.json").read_text())
                assert replica["payload_schema"] == {"g": "integer", "year": "integer", "tag": "keyword"}
        assert sharded.delete_payload_index("tag") and not sharded.delete_payload_index("tag")
        assert "tag" not in sharded.info().payload_schema
    finally:
        single.close()
        sharded.close()
