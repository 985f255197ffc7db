"""`NestorVectorStore` beyond LangChain's standard suite, against a real server: metadata filters (each
form checked against a Python predicate over the same documents), delete by filter, integer ids, scores,
MMR, named vectors, from_texts, the async client (its API key too), and bad input that changes nothing."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding

from nestor_client import AsyncNestorClient, DimensionMismatch, NestorClient, Unauthorized, Unprocessable
from nestor_client.integrations.langchain import NestorVectorStore
from nestor_client.models import FieldCondition, Filter, MatchValue
from tests.e2e.serverproc import ServerProcess

pytestmark = pytest.mark.e2e

EMBEDDING = DeterministicFakeEmbedding(size=8)

BOOKS: list[tuple[str, dict[str, Any]]] = [
    ("Dune", {"genre": "sf", "year": 1965, "rating": 8.5, "tags": ["desert", "epic"], "lent": True}),
    ("Neuromancer", {"genre": "sf", "year": 1984, "rating": 7.9, "tags": ["cyber"], "lent": False}),
    ("Emma", {"genre": "novel", "year": 1815, "rating": 7.9, "tags": ["society"], "lent": None}),
    ("Solaris", {"genre": "sf", "year": 1961, "rating": 8.1, "author": {"name": "Lem", "born": 1921}}),
    ("Middlemarch", {"genre": "novel", "year": 1871, "rating": 8.5, "tags": ["society", "epic"]}),
    ("The Road", {"genre": "drama", "year": 2006, "rating": 7.2, "lent": True}),
]


def _name() -> str:
    return f"lc-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client(nestor_url: str) -> Iterator[NestorClient]:
    with NestorClient(nestor_url) as c:
        yield c


@pytest.fixture
def books(client: NestorClient) -> Iterator[NestorVectorStore]:
    store = NestorVectorStore(client=client, collection_name=_name(), embedding=EMBEDDING)
    store.add_texts([t for t, _ in BOOKS], [m for _, m in BOOKS], ids=[t for t, _ in BOOKS])
    yield store
    store.delete_collection()


FILTERS: list[tuple[Any, Callable[[dict[str, Any]], bool]]] = [
    ({"genre": "sf"}, lambda m: m["genre"] == "sf"),
    ({"genre": "sf", "rating": 8.5}, lambda m: m["genre"] == "sf" and m["rating"] == 8.5),
    ({"year": 1984}, lambda m: m["year"] == 1984),
    ({"lent": True}, lambda m: m.get("lent") is True),
    ({"lent": None}, lambda m: "lent" in m and m["lent"] is None),
    ({"tags": "epic"}, lambda m: "epic" in m.get("tags", [])),
    ({"genre": ["novel", "drama"]}, lambda m: m["genre"] in ("novel", "drama")),
    ({"rating": [7.2, 8.1]}, lambda m: m["rating"] in (7.2, 8.1)),
    ({"year": {"$gte": 1900, "$lt": 2000}}, lambda m: 1900 <= m["year"] < 2000),
    ({"genre": {"$ne": "sf"}}, lambda m: m["genre"] != "sf"),
    ({"genre": {"$nin": ["sf", "drama"]}}, lambda m: m["genre"] not in ("sf", "drama")),
    ({"genre": {"$in": ["drama"]}, "lent": {"$eq": True}}, lambda m: m["genre"] == "drama" and m.get("lent")),
    ({"author": {"name": "Lem"}}, lambda m: m.get("author", {}).get("name") == "Lem"),
    (
        {"should": [{"key": "metadata.year", "range": {"lt": 1900}}, {"key": "metadata.rating", "range": {"gt": 8.2}}]},
        lambda m: m["year"] < 1900 or m["rating"] > 8.2,
    ),
    (
        Filter(must_not=[FieldCondition(key="metadata.genre", match=MatchValue(value="sf"))]),
        lambda m: m["genre"] != "sf",
    ),
]


@pytest.mark.parametrize(("flt", "predicate"), FILTERS, ids=[str(i) for i in range(len(FILTERS))])
def test_filters_match_the_predicate(books: NestorVectorStore, flt: Any, predicate: Any) -> None:
    expected = {title for title, meta in BOOKS if predicate(meta)}
    assert expected and len(expected) < len(BOOKS)  # each filter keeps some and drops some
    found = books.similarity_search("a book", k=len(BOOKS), filter=flt)
    assert {d.id for d in found} == expected
    assert all(d.metadata == dict(BOOKS)[d.page_content] for d in found)


async def test_async_filter_and_scores(books: NestorVectorStore) -> None:
    found = await books.asimilarity_search_with_score("Dune", k=3, filter={"genre": "sf"})
    assert found[0][0].id == "Dune" and found[0][1] == pytest.approx(1.0, abs=1e-5)
    assert {d.metadata["genre"] for d, _ in found} == {"sf"}
    relevance = await books.asimilarity_search_with_relevance_scores("Dune", k=6)
    assert relevance[0][1] == pytest.approx(1.0, abs=1e-5)
    assert all(0.0 <= r <= 1.0 for _, r in relevance) and relevance[-1][1] < relevance[0][1]
    await books.aclose()  # the async client the store made on this loop


def test_score_threshold_is_applied_by_the_server(books: NestorVectorStore) -> None:
    scored = books.similarity_search_with_score("Dune", k=6)
    cut = (scored[1][1] + scored[2][1]) / 2  # between the second and the third
    kept = books.similarity_search_with_score("Dune", k=6, score_threshold=cut)
    assert [d.id for d, _ in kept] == [d.id for d, _ in scored[:2]]
    exact = books.similarity_search("Dune", k=6, search_params={"exact": True})
    assert [d.id for d in exact] == [d.id for d, _ in scored]
    with pytest.raises(TypeError, match="score_treshold"):
        books.similarity_search("Dune", score_treshold=0.5)


def test_delete_by_filter_and_bad_delete(books: NestorVectorStore) -> None:
    assert books.delete(filter={"genre": "sf"})
    left = books.similarity_search("a book", k=10)
    assert sorted(d.id or "" for d in left) == ["Emma", "Middlemarch", "The Road"]
    with pytest.raises(ValueError, match="ids or filter"):
        books.delete()
    assert len(books.similarity_search("a book", k=10)) == 3


def test_integer_ids_stay_integers(client: NestorClient) -> None:
    store = NestorVectorStore(client=client, collection_name=_name(), embedding=EMBEDDING)
    try:
        assert store.add_texts(["one", "two"], ids=[1, 2]) == [1, 2]  # type: ignore[list-item,comparison-overlap]
        assert [d.id for d in store.get_by_ids([1])] == ["1"]  # type: ignore[list-item]
        assert store.get_by_ids(["1"]) == []  # the string "1" is another id
        assert [r.id for r in client.get(store.collection_name, [1, 2])] == [1, 2]
        store.delete([2])  # type: ignore[list-item]
        assert [d.page_content for d in store.similarity_search("two", k=5)] == ["one"]
    finally:
        store.delete_collection()


def test_mmr_prefers_diverse_documents(client: NestorClient) -> None:
    store = NestorVectorStore(client=client, collection_name=_name(), embedding=EMBEDDING)
    try:
        store.add_texts(["apple", "apple", "pear", "plum"], ids=["a1", "a2", "p", "q"])
        relevant = store.max_marginal_relevance_search("apple", k=2, fetch_k=4, lambda_mult=1.0)
        assert sorted(d.id or "" for d in relevant) == ["a1", "a2"]  # pure relevance: both copies
        # The query equals the first pick, so at lambda 0.5 relevance and redundancy cancel for every
        # candidate; below it, the copy (redundancy 1) loses to any other document.
        diverse = store.max_marginal_relevance_search("apple", k=2, fetch_k=4, lambda_mult=0.25)
        assert diverse[0].page_content == "apple" and diverse[1].page_content != "apple"
    finally:
        store.delete_collection()


def test_named_vector_collection(client: NestorClient) -> None:
    store = NestorVectorStore(client=client, collection_name=_name(), embedding=EMBEDDING, vector_name="text")
    try:
        store.add_texts(["apple", "apple", "pear"], [{"n": 1}, {"n": 2}, {"n": 3}], ids=["a1", "a2", "p"])
        config = client.get_collection(store.collection_name).config
        assert config.vectors is not None and set(config.vectors) == {"text"}
        assert config.vectors["text"].dim == 8 and config.vectors["text"].metric == "cosine"
        assert store.similarity_search("pear", k=1)[0] == Document(id="p", page_content="pear", metadata={"n": 3})
        diverse = store.max_marginal_relevance_search("apple", k=2, fetch_k=3, lambda_mult=0.25)
        assert [d.page_content for d in diverse] == ["apple", "pear"]
    finally:
        store.delete_collection()


def test_from_texts_creates_a_cosine_collection(nestor_url: str, client: NestorClient) -> None:
    store = NestorVectorStore.from_texts(["x", "y"], EMBEDDING, [{"k": 1}, {"k": 2}], url=nestor_url)
    try:
        config = client.get_collection(store.collection_name).config
        assert (config.dim, config.metric) == (8, "cosine")
        hit = store.similarity_search("y", k=1)[0]
        assert (hit.page_content, hit.metadata) == ("y", {"k": 2}) and hit.id
    finally:
        store.delete_collection()
        store.close()  # the client from_texts made
    assert store.client is not None and store.client._http.is_closed


async def test_afrom_texts_and_an_async_only_store(nestor_url: str) -> None:
    async with AsyncNestorClient(nestor_url) as aclient:
        store = await NestorVectorStore.afrom_texts(
            ["x", "y"], EMBEDDING, ids=["x", "y"], async_client=aclient, collection_name=_name()
        )
        try:
            assert [d.id for d in await store.asimilarity_search("x", k=2)] == ["x", "y"]
            assert [d.id for d in await store.aget_by_ids(["y", "nope"])] == ["y"]
            with pytest.raises(RuntimeError, match="async methods"):
                store.similarity_search("x")
        finally:
            assert await store.adelete_collection()


def test_one_async_client_per_event_loop(client: NestorClient) -> None:
    store = NestorVectorStore(client=client, collection_name=_name(), embedding=EMBEDDING)

    async def round_trip(text: str) -> list[str | None]:
        await store.aadd_texts([text], ids=[text])
        docs = await store.asimilarity_search(text, k=5)
        await store.aclose()
        return [d.id for d in docs]

    try:
        assert asyncio.run(round_trip("first")) == ["first"]
        assert sorted(asyncio.run(round_trip("second")), key=str) == ["first", "second"]  # a new loop works too
    finally:
        store.delete_collection()


def test_bad_input_changes_nothing(books: NestorVectorStore, client: NestorClient) -> None:
    before = client.count(books.collection_name)
    with pytest.raises(ValueError, match="2 texts but 1 metadatas"):
        books.add_texts(["a", "b"], [{"x": 1}])
    with pytest.raises(ValueError, match="unknown filter operator"):
        books.similarity_search("a", filter={"year": {"$between": [1, 2]}})
    with pytest.raises(Unprocessable):  # the server refuses a float in `match` (422)
        books.similarity_search("a", filter={"must": [{"key": "metadata.year", "match": {"value": 1.5}}]})
    wrong_dim = NestorVectorStore(
        client=client, collection_name=books.collection_name, embedding=DeterministicFakeEmbedding(size=5)
    )
    with pytest.raises(DimensionMismatch):
        wrong_dim.add_texts(["c", "d"], ids=["c", "d"])
    assert client.count(books.collection_name) == before
    assert books.get_by_ids(["c", "d"]) == []


def test_the_async_client_made_from_client_carries_its_api_key(tmp_path: Path) -> None:
    key = "lc-secret-key"
    keys = f"admin:{hashlib.sha256(key.encode()).hexdigest()}"
    server = ServerProcess(tmp_path / "data", env={"NESTOR_API_KEYS": keys}).start()
    try:

        async def add_and_search(store: NestorVectorStore) -> list[str | None]:
            try:
                await store.aadd_texts(["tea"], ids=["tea"])
                return [d.id for d in await store.asimilarity_search("tea", k=1)]
            finally:
                await store.aclose()

        with NestorClient(server.url, api_key=key) as client, NestorClient(server.url) as anonymous:
            store = NestorVectorStore(client=client, collection_name="keyed", embedding=EMBEDDING)
            assert asyncio.run(add_and_search(store)) == ["tea"]
            stranger = NestorVectorStore(client=anonymous, collection_name="keyed", embedding=EMBEDDING)
            with pytest.raises(Unauthorized):
                asyncio.run(add_and_search(stranger))
    finally:
        server.stop()


def test_a_collection_dropped_elsewhere_is_created_again(client: NestorClient) -> None:
    store = NestorVectorStore(client=client, collection_name=_name(), embedding=EMBEDDING)
    try:
        store.add_texts(["old"], ids=["old"])
        assert client.delete_collection(store.collection_name)
        assert store.similarity_search("old") == []  # reads of a missing collection are empty
        store.add_texts(["new"], ids=["new"])
        assert [d.id for d in store.similarity_search("new", k=5)] == ["new"]
        assert client.get_collection(store.collection_name).config.dim == 8
    finally:
        store.delete_collection()


async def test_msgpack_wire_sync_and_async(nestor_url: str) -> None:
    with NestorClient(nestor_url, wire="msgpack") as client:
        store = NestorVectorStore(client=client, collection_name=_name(), embedding=EMBEDDING)
        try:
            store.add_texts(["pear", "plum"], [{"n": 1.5}, {"n": [1, {"x": None}]}], ids=["p", "q"])
            assert store.get_by_ids(["q"]) == [Document(id="q", page_content="plum", metadata={"n": [1, {"x": None}]})]
            await store.aadd_texts(["fig"], [{"n": 3}], ids=["f"])
            docs = await store.asimilarity_search("fig", k=3, filter={"n": {"$gte": 1.5}})
            assert [d.id for d in docs] == ["f", "p"]  # q's array holds no number >= 1.5
        finally:
            await store.aclose()
            store.delete_collection()
