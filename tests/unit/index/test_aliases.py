"""Aliases in the catalog: resolved by every lookup, durable across a restart, applied all or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from index.aliases import AliasAction, AliasNotFound
from index.catalog import Catalog
from index.errors import CollectionExists, CollectionNotFound, InvalidRequest
from nestor_client.models import CollectionConfig

CFG = CollectionConfig.model_validate({"dim": 2, "metric": "dot", "index": {"type": "flat"}})


def test_aliases_resolve_persist_and_apply_all_or_nothing(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    a, _ = cat.create("a", CFG)
    b, _ = cat.create("b", CFG)
    cat.update_aliases([AliasAction("create", "live", collection="a"), AliasAction("create", "old", collection="b")])
    assert cat.get("live") is a and cat.get("old") is b
    before = (tmp_path / "aliases.json").read_bytes()
    with pytest.raises(AliasNotFound):  # the rename would apply, the delete cannot: neither does
        cat.update_aliases([AliasAction("rename", "live", new_name="prod"), AliasAction("delete", "nope")])
    assert (tmp_path / "aliases.json").read_bytes() == before
    assert cat.aliases.items() == [("live", "a"), ("old", "b")]
    with pytest.raises(InvalidRequest):
        cat.update_aliases([AliasAction("create", "b", collection="a")])  # would shadow collection b
    with pytest.raises(InvalidRequest):
        cat.update_aliases([AliasAction("create", "bad name!", collection="a")])
    with pytest.raises(CollectionNotFound):
        cat.update_aliases([AliasAction("create", "x", collection="missing")])
    with pytest.raises(CollectionExists):
        cat.create("live", CFG)
    cat.update_aliases([AliasAction("rename", "live", new_name="prod")])
    cat.close()

    again = Catalog(tmp_path)  # a restart reads the map back
    again.open_all()
    assert again.aliases.items() == [("old", "b"), ("prod", "a")]
    assert again.get("prod").name == "a"
    with pytest.raises(CollectionNotFound):
        again.get("live")
    again.delete("b")
    assert again.aliases.items() == [("prod", "a")]
    again.close()
