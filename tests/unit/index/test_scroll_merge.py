"""Scroll in the engine: the id order of one collection, the sharded merge of per-shard pages, tenant fields.

`merge_pages` (cluster/routing.py) is checked against the oracle "sort everything, cut pages" over random
id sets split into random shards, page sizes and offsets; `graph_fields`/`tenant_of` on a collection.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from cluster.routing import merge_pages, scroll_key
from index.contract import Hit, PointIdT
from nestor_client.models import Filter, PayloadIndexParams, PayloadSchemaType
from tests.unit.index.conftest import Engine


def _shard_page(ids: list[PointIdT], offset: PointIdT | None, limit: int) -> tuple[list[Hit], PointIdT | None]:
    """One shard's scroll page, as a collection answers it."""
    rest = sorted((i for i in ids if offset is None or scroll_key(i) >= scroll_key(offset)), key=scroll_key)
    return [Hit(i, 0.0) for i in rest[:limit]], (rest[limit] if len(rest) > limit else None)


@pytest.mark.parametrize("seed", range(30))
def test_merged_pages_are_the_pages_of_the_union(seed: int) -> None:
    rng = random.Random(seed)
    ids: list[PointIdT] = rng.sample(range(1000), rng.randint(0, 80))
    ids += [f"{rng.getrandbits(32):08x}" for _ in range(rng.randint(0, 20))]
    shards: list[list[PointIdT]] = [[] for _ in range(rng.randint(1, 5))]
    for i in ids:
        if rng.random() < 0.7 or len(shards) == 1:  # skewed: one shard may hold most points
            shards[0].append(i)
        else:
            rng.choice(shards).append(i)
    limit = rng.randint(1, 12)
    got: list[PointIdT] = []
    offset: PointIdT | None = None
    while True:
        page, offset = merge_pages([_shard_page(s, offset, limit) for s in shards], limit)
        assert len(page) <= limit and (offset is None or len(page) == limit)
        got += [h.id for h in page]
        if offset is None:
            break
    assert got == sorted(ids, key=scroll_key)


def test_string_ids_and_labels_that_die(engine: Engine) -> None:
    coll = engine.create("s", {"dim": 2, "index": {"type": "flat"}})
    ids: list[Any] = ["b", "a", 7, "c", 3]
    coll.upsert(ids, np.ones((5, 2), np.float32), [{"i": i} for i in range(5)])
    hits, nxt = coll.scroll(limit=10)
    assert [h.id for h in hits] == [3, 7, "a", "b", "c"] and nxt is None
    coll.delete(["a", 7])
    coll.upsert(["b"], np.ones((1, 2), np.float32), [{"i": 9}])  # overwritten: a new label
    hits, nxt = coll.scroll(limit=2, offset=4)
    assert [(h.id, h.payload) for h in hits] == [("b", {"i": 9}), ("c", {"i": 3})] and nxt is None
    hits, nxt = coll.scroll(Filter.model_validate({"must": [{"key": "i", "range": {"gte": 4}}]}), limit=1)
    assert [h.id for h in hits] == [3] and nxt == "b"


def test_tenant_fields_and_tenant_of(engine: Engine) -> None:
    coll = engine.create("t", {"dim": 2, "index": {"type": "flat"}})
    coll.upsert([1, 2], np.ones((2, 2), np.float32), [{"org": "x", "n": 1}, {"org": "y", "n": 2}])
    assert coll.payload.graph_fields() == {}
    assert coll.create_payload_index("org", PayloadIndexParams(type=PayloadSchemaType.keyword, is_tenant=True))
    assert coll.create_payload_index("n", PayloadSchemaType.integer)
    assert coll.payload.graph_fields() == {"org": "tenant"}

    def of(f: dict[str, Any]) -> Any:
        return coll.payload.tenant_of(Filter.model_validate(f))

    assert of({"must": [{"key": "n", "range": {"gte": 1}}, {"key": "org", "match": {"value": "y"}}]}) == ("org", "y")
    assert of({"should": [{"key": "org", "match": {"value": "y"}}]}) is None  # not required
    assert of({"must": [{"key": "org", "match": {"any": ["x", "y"]}}]}) is None  # more than one tenant
    assert of({"must": [{"must": [{"key": "org", "match": {"value": "y"}}]}]}) is None  # not top-level
    assert of({"must": [{"key": "n", "match": {"value": 1}}]}) is None  # not a tenant key
    assert coll.payload.tenant_of(None) is None
    # an integer index whose values get graphs: an integer value names one, a string or a bool does not
    assert coll.create_payload_index("n", PayloadIndexParams(type=PayloadSchemaType.integer, value_graphs=True))
    assert coll.payload.graph_fields() == {"org": "tenant", "n": "values"}
    assert of({"must": [{"key": "n", "match": {"value": 1}}]}) == ("n", 1)
    assert of({"must": [{"key": "n", "match": {"value": "1"}}]}) is None
    assert of({"must": [{"key": "n", "match": {"value": True}}]}) is None
    assert coll.create_payload_index("n", PayloadSchemaType.integer)  # value_graphs off, no rebuild
    engine.restart()
    coll = engine.get("t")
    assert coll.payload.graph_fields() == {"org": "tenant"}
    assert coll.create_payload_index("org", PayloadSchemaType.keyword)  # is_tenant off, no rebuild
    assert coll.payload.graph_fields() == {} and "org" in coll.payload.fields
    assert coll.delete_payload_index("org") and coll.payload.graph_fields() == {}


def test_numeric_looking_string_ids_stay_strings(engine: Engine) -> None:
    coll = engine.create("n", {"dim": 2, "index": {"type": "flat"}})
    coll.upsert(["10", "9", "100", "011"], np.ones((4, 2), np.float32))
    hits, nxt = coll.scroll(limit=10, with_payload=False)
    assert [h.id for h in hits] == ["011", "10", "100", "9"] and nxt is None  # code-point order, not numeric
    hits, nxt = coll.scroll(limit=1, offset="2", with_payload=False)
    assert [h.id for h in hits] == ["9"] and nxt is None
    hits, nxt = coll.scroll(limit=1, offset=10**6, with_payload=False)  # after every integer: the strings
    assert [h.id for h in hits] == ["011"] and nxt == "10"
