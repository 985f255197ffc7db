"""Collection lifecycle through the client."""

from __future__ import annotations

import pytest

from nestor_client import CollectionExists, CollectionNotFound, NestorClient, ValidationError
from nestor_client.errors import BadRequest


def test_create_list_inspect_delete(client: NestorClient) -> None:
    info = client.create_collection("docs", dim=8, metric="dot", index={"type": "hnsw", "m": 8, "ef": 32})
    assert info.config.dim == 8 and info.config.metric == "dot"
    assert info.config.index.type == "hnsw" and info.count == 0
    client.create_collection("other", dim=4, index={"type": "flat"})
    assert [(c.name, c.count) for c in client.list_collections()] == [("docs", 0), ("other", 0)]
    got = client.get_collection("docs")
    assert got.config == info.config
    assert set(got.memory) >= {"vectors", "graph", "codes", "rerank", "payload"}
    assert client.delete_collection("docs") is True
    assert [c.name for c in client.list_collections()] == ["other"]
    with pytest.raises(CollectionNotFound):
        client.get_collection("docs")


def test_create_is_idempotent_but_conflicts_on_a_different_config(client: NestorClient) -> None:
    client.create_collection("c", dim=8)
    client.create_collection("c", dim=8)  # same config: fine
    with pytest.raises(CollectionExists):
        client.create_collection("c", dim=16)


@pytest.mark.parametrize(
    "config",
    [
        {"dim": 0},
        {"dim": 8, "metric": "hamming"},
        {"dim": 8, "index": {"type": "annoy"}},
        {"dim": 8, "index": {"type": "hnsw", "m": 1}},
        {"dim": 8, "index": {"type": "ivf_pq", "nbits": 5}},
        {"dim": 8, "surprise": True},
    ],
)
def test_bad_config_is_422_and_creates_nothing(client: NestorClient, config: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        client.create_collection("c", config)
    assert client.list_collections() == []


def test_bad_name_is_400(client: NestorClient) -> None:
    with pytest.raises(BadRequest):
        client.create_collection("no spaces allowed", dim=4)


def test_deleting_unknown_collection_is_404(client: NestorClient) -> None:
    with pytest.raises(CollectionNotFound):
        client.delete_collection("ghost")


def test_recreated_collection_starts_empty(client: NestorClient) -> None:
    client.create_collection("c", dim=2, index={"type": "flat"})
    client.upsert("c", ids=[1], vectors=[[1.0, 0.0]])
    client.delete_collection("c")
    client.create_collection("c", dim=2, index={"type": "flat"})
    assert client.count("c") == 0
