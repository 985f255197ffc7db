"""LangChain's `QdrantVectorStore` (langchain-qdrant) on the Qdrant surface, unmodified: add texts with
UUID ids, similarity search, a metadata filter, get by ids, delete; and reopening the collection, which
validates its config as langchain-qdrant reads it."""

from __future__ import annotations

import uuid
import warnings

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_qdrant import QdrantVectorStore
from qdrant_client import models as m

from tests.e2e.serverproc import ServerProcess
from tests.qdrant.conftest import ADMIN, connect

pytestmark = pytest.mark.e2e

TEXTS = [
    "the cat sat on the mat",
    "dogs chase cats in the park",
    "a treatise on vector databases",
    "nearest neighbour search with graphs",
    "a recipe for lemon cake",
]
SOURCES = ["pets", "pets", "db", "db", "food"]


def test_langchain_qdrant_round_trip(server: ServerProcess) -> None:
    emb = DeterministicFakeEmbedding(size=16)
    ids = [str(uuid.uuid4()) for _ in TEXTS]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Api key is used with an insecure connection")
        store = QdrantVectorStore.from_texts(
            TEXTS,
            emb,
            metadatas=[{"source": s, "n": i} for i, s in enumerate(SOURCES)],
            ids=ids,
            url=server.url,
            prefix="qdrant",
            api_key=ADMIN,
            collection_name="lc",
        )
    # The fake embedding is deterministic per text, so a text finds itself first.
    for text in TEXTS:
        assert store.similarity_search(text, k=1)[0].page_content == text
    hits = store.similarity_search_with_score(TEXTS[2], k=3)
    assert hits[0][0].page_content == TEXTS[2] and hits[0][1] == pytest.approx(1.0, abs=1e-4)
    assert hits[0][0].metadata["_id"] == ids[2]
    flt = m.Filter(must=[m.FieldCondition(key="metadata.source", match=m.MatchValue(value="db"))])
    found = store.similarity_search(TEXTS[0], k=5, filter=flt)
    assert sorted(d.page_content for d in found) == sorted(TEXTS[2:4])
    got = store.get_by_ids([ids[4], ids[0]])
    assert {d.page_content for d in got} == {TEXTS[4], TEXTS[0]}
    assert {d.metadata["source"] for d in got} == {"food", "pets"}
    assert store.delete([ids[0], ids[1]]) is True
    assert store.get_by_ids([ids[0], ids[1]]) == []
    assert [d.page_content for d in store.similarity_search(TEXTS[0], k=5)].count(TEXTS[0]) == 0
    more = store.add_texts(["one more text"], metadatas=[{"source": "new"}], ids=[str(uuid.uuid4())])
    assert store.get_by_ids(more)[0].metadata["source"] == "new"

    # Reopening an existing collection: langchain-qdrant checks its vector size and distance.
    client = connect(server)
    reopened = QdrantVectorStore(client=client, collection_name="lc", embedding=emb)
    assert reopened.similarity_search(TEXTS[3], k=1)[0].page_content == TEXTS[3]
    client.close()
