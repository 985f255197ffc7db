"""Collections with an encoder: text upserts and text searches through the API, and encoder mismatches."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from nestor_client import (
    EncoderMismatch,
    EncoderNotFound,
    InvalidConfig,
    InvalidEncoderConfig,
    NestorClient,
    NoEncoder,
    Unprocessable,
    ValidationError,
)

HASH = {"name": "hash", "config": {"dim": 64}}
DOCS = {
    "a": "fast approximate nearest neighbour search in rust",
    "b": "a library to parse yaml configuration files",
    "c": "plot charts and graphs with python",
}


def test_encoder_spec_is_validated_and_persisted_normalised(client: NestorClient) -> None:
    info = client.create_collection("t", dim=64, encoder=HASH)
    assert info.config.encoder is not None
    assert info.config.encoder.name == "hash"
    assert info.config.encoder.config["dim"] == 64 and "seed" in info.config.encoder.config  # defaults filled in
    # the same encoder, spelled with or without its defaults, is the same config: a no-op
    client.create_collection("t", dim=64, encoder={"name": "hash", "config": {"dim": 64, "seed": 0}})
    with pytest.raises(EncoderMismatch, match="seed|hash"):
        client.create_collection("t", dim=64, encoder={"name": "hash", "config": {"dim": 64, "seed": 1}})
    with pytest.raises(EncoderMismatch, match="names none"):
        client.create_collection("t", dim=64)


def test_encoder_must_fit_the_collection(client: NestorClient) -> None:
    with pytest.raises(InvalidConfig, match="set dim to 64"):
        client.create_collection("t", dim=32, encoder=HASH)
    with pytest.raises(InvalidConfig, match="multivector"):
        client.create_collection("t", dim=64, encoder={"name": "hash-tokens", "config": {"dim": 64}})
    with pytest.raises(EncoderNotFound, match="available"):
        client.create_collection("t", dim=64, encoder={"name": "no-such-encoder"})
    with pytest.raises(InvalidEncoderConfig, match="dimm"):
        client.create_collection("t", dim=64, encoder={"name": "hash", "config": {"dimm": 64}})
    assert client.list_collections() == []


def test_text_upsert_and_search(client: NestorClient) -> None:
    client.create_collection("t", dim=64, encoder=HASH, index={"type": "flat"})
    res = client.upsert("t", points=[{"id": k, "text": v, "payload": {"k": k}} for k, v in DOCS.items()])
    assert res.upserted == 3
    hits = client.search_text("t", "parse yaml files", limit=3)
    assert hits[0].id == "b" and hits[0].payload == {"k": "b"}
    assert hits[0].score > hits[1].score
    # a text search equals a vector search with the encoder's query embedding
    import encoders

    q = encoders.get_encoder("hash", {"dim": 64}).embed_query(["parse yaml files"]).dense()[0]
    by_vector = client.search("t", q, limit=3)
    assert [h.id for h in by_vector] == [h.id for h in hits]
    np.testing.assert_allclose([h.score for h in by_vector], [h.score for h in hits], rtol=1e-5)
    # points may mix text and vectors in one batch
    client.upsert("t", points=[{"id": "v", "vector": q.tolist()}, {"id": "w", "text": "plot graphs"}])
    assert client.count("t") == 5
    assert client.search_text("t", "parse yaml files", limit=1)[0].id == "v"
    batch = client.search_batch("t", [{"text": "rust search", "limit": 1}, {"vector": q.tolist(), "limit": 1}])
    assert [b[0].id for b in batch] == ["a", "v"]


def test_bad_text_requests(client: NestorClient) -> None:
    client.create_collection("plain", dim=64)
    with pytest.raises(NoEncoder, match="no encoder"):
        client.upsert("plain", points=[{"id": 1, "text": "hello"}])
    with pytest.raises(NoEncoder):
        client.search_text("plain", "hello")
    client.create_collection("t", dim=64, encoder=HASH)
    with pytest.raises(ValidationError, match="exactly one"):
        client.upsert("t", points=[{"id": 1, "text": "hello", "vector": [0.0] * 64}])
    with pytest.raises(Unprocessable, match="point 2.*empty"):
        client.upsert("t", points=[{"id": 1, "text": "fine"}, {"id": 2, "text": "  "}])
    assert client.count("t") == 0  # the batch is atomic
    with pytest.raises(Unprocessable, match="empty"):
        client.search_text("t", " ")


def test_encoder_survives_a_restart(server: Callable[..., Any]) -> None:
    with server() as c:
        c.create_collection("t", dim=64, encoder=HASH)
        c.upsert("t", points=[{"id": k, "text": v} for k, v in DOCS.items()])
    with server() as c:
        assert c.get_collection("t").config.encoder is not None
        assert c.search_text("t", "charts in python", limit=1)[0].id == "c"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None, reason="needs the encoders extra")
def test_minilm_text_search_is_semantic(client: NestorClient) -> None:
    client.create_collection("m", dim=384, encoder={"name": "sentence-transformers"}, index={"type": "flat"})
    docs = [
        "How do I reset my password?",
        "The recipe needs two eggs and a cup of flour.",
        "Stock markets fell sharply on Monday.",
        "A library for fast approximate nearest neighbour search.",
    ]
    client.upsert("m", points=[{"id": i, "text": t} for i, t in enumerate(docs)])
    # paraphrases sharing (almost) no words with their document
    assert client.search_text("m", "I forgot my login credentials", limit=1)[0].id == 0
    assert client.search_text("m", "baking a cake", limit=1)[0].id == 1
    assert client.search_text("m", "shares dropped on the exchange", limit=1)[0].id == 2
    hits = client.search_text("m", "quick vector similarity lookup", limit=4)
    assert hits[0].id == 3 and hits[0].score > hits[1].score + 0.1
