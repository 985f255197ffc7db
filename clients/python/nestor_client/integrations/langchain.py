"""LangChain's `VectorStore` on a Nestor collection.

    from nestor_client import NestorClient
    from nestor_client.integrations.langchain import NestorVectorStore

    store = NestorVectorStore(client=NestorClient(url), collection_name="docs", embedding=embeddings)
    store.add_texts(["Nestor is a vector database."], metadatas=[{"lang": "en"}])
    store.similarity_search("what is Nestor?", k=4, filter={"lang": "en"})

Needs `langchain-core` (the `langchain` extra); nothing else in `nestor_client` imports it.

A document is one point: its id is the point's id (LangChain's string ids are Nestor string ids; an int
given as an int stays an int id), and its payload holds the text and the metadata under two keys
(`page_content`, `metadata`), so metadata comes back exactly as it went in. The collection is created on
the first write, with the embedding's dimension and cosine, unless it exists. The async methods use an
`AsyncNestorClient`: the one passed, else one made from `client` for each event loop.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, Self, cast

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from nestor_client.async_client import AsyncNestorClient
from nestor_client.client import NestorClient, async_twin
from nestor_client.errors import CollectionExists, CollectionNotFound
from nestor_client.integrations._filters import metadata_filter
from nestor_client.integrations._langchain_points import PointLayout, prepare, similarity_to_relevance
from nestor_client.models import Filter, ScoredPoint, SearchParams

__all__ = ["NestorVectorStore"]

Metric = Literal["cosine", "dot", "l2"]
FilterArg = Filter | Mapping[str, Any] | None
_SEARCH_KEYWORDS = frozenset({"score_threshold", "search_params"})


class NestorVectorStore(VectorStore):
    """A LangChain vector store over the Nestor collection `collection_name`.

    `client` serves the sync methods and `async_client` the async ones; give either or both (without
    `async_client`, one is made from `client`'s URL, API key, timeout and wire format). `vector_name`
    picks a named vector of the collection (default: its only or unnamed one). `metric` and
    `collection_config` (index, compression, ... as in `create_collection`) are used only when the store
    creates the collection. `filter=` takes metadata conditions or a Nestor filter (see `_filters`).
    """

    def __init__(
        self,
        client: NestorClient | None = None,
        *,
        collection_name: str,
        embedding: Embeddings,
        async_client: AsyncNestorClient | None = None,
        vector_name: str | None = None,
        metric: Metric = "cosine",
        collection_config: Mapping[str, Any] | None = None,
        content_key: str = "page_content",
        metadata_key: str = "metadata",
        batch_size: int = 256,
    ) -> None:
        if client is None and async_client is None:
            raise ValueError("give a NestorClient (client=) or an AsyncNestorClient (async_client=), or both")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.client = client
        self.collection_name = collection_name
        self.metric: Metric = metric
        self.collection_config = dict(collection_config or {})
        self.batch_size = batch_size
        self._embedding = embedding
        self._layout = PointLayout(content_key, metadata_key, vector_name)
        self._async_given = async_client
        self._async_made: dict[asyncio.AbstractEventLoop, AsyncNestorClient] = {}
        self._created = False  # the collection is known to exist
        self._owns_client = False  # from_texts made the client: close() closes it

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    @property
    def vector_name(self) -> str | None:
        return self._layout.vector_name

    @property
    def content_key(self) -> str:
        return self._layout.content_key

    @property
    def metadata_key(self) -> str:
        return self._layout.metadata_key

    # -- writes ----------------------------------------------------------------------------------

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: Sequence[str | int | None] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed and upsert `texts`; returns their ids (given, or new UUID strings). A text whose id exists
        replaces that document. Each batch of `batch_size` is one atomic write."""
        texts, metadatas, point_ids = prepare(texts, metadatas, ids)
        client = self._sync()
        for start in range(0, len(texts), self.batch_size):
            vectors = self._embedding.embed_documents(texts[start : start + self.batch_size])
            points = self._layout.points(point_ids, texts, metadatas, vectors, start)
            if not self._created:
                self._create(client, vectors)
            try:
                client.upsert(self.collection_name, points)
            except CollectionNotFound:  # dropped behind this store's back: create it again, once
                self._create(client, vectors)
                client.upsert(self.collection_name, points)
        return cast(list[str], point_ids)

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: Sequence[str | int | None] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        texts, metadatas, point_ids = prepare(texts, metadatas, ids)
        client = self._async()
        for start in range(0, len(texts), self.batch_size):
            vectors = await self._embedding.aembed_documents(texts[start : start + self.batch_size])
            points = self._layout.points(point_ids, texts, metadatas, vectors, start)
            if not self._created:
                await self._acreate(client, vectors)
            try:
                await client.upsert(self.collection_name, points)
            except CollectionNotFound:
                await self._acreate(client, vectors)
                await client.upsert(self.collection_name, points)
        return cast(list[str], point_ids)

    def delete(self, ids: Sequence[str | int] | None = None, **kwargs: Any) -> bool:
        """Delete the documents with `ids` (unknown ids are ignored), or those matching `filter=`."""
        point_ids, flt = self._delete_args(ids, kwargs)
        if point_ids == []:
            return True
        try:
            self._sync().delete(self.collection_name, ids=point_ids, filter=flt)
        except CollectionNotFound:
            pass  # nothing was ever written: nothing to delete
        return True

    async def adelete(self, ids: Sequence[str | int] | None = None, **kwargs: Any) -> bool:
        point_ids, flt = self._delete_args(ids, kwargs)
        if point_ids == []:
            return True
        try:
            await self._async().delete(self.collection_name, ids=point_ids, filter=flt)
        except CollectionNotFound:
            pass
        return True

    def delete_collection(self) -> bool:
        """Drop the whole collection; the next write creates it again. False when it did not exist."""
        self._created = False
        try:
            return self._sync().delete_collection(self.collection_name)
        except CollectionNotFound:
            return False

    async def adelete_collection(self) -> bool:
        self._created = False
        try:
            return await self._async().delete_collection(self.collection_name)
        except CollectionNotFound:
            return False

    # -- reads -----------------------------------------------------------------------------------

    def get_by_ids(self, ids: Sequence[str | int], /) -> list[Document]:
        """The stored documents among `ids`; unknown ids are left out."""
        if not ids:
            return []
        try:
            records = self._sync().get(self.collection_name, list(ids))
        except CollectionNotFound:
            return []
        return [self._layout.document(r) for r in records]

    async def aget_by_ids(self, ids: Sequence[str | int], /) -> list[Document]:
        if not ids:
            return []
        try:
            records = await self._async().get(self.collection_name, list(ids))
        except CollectionNotFound:
            return []
        return [self._layout.document(r) for r in records]

    def similarity_search(self, query: str, k: int = 4, filter: FilterArg = None, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    async def asimilarity_search(
        self, query: str, k: int = 4, filter: FilterArg = None, **kwargs: Any
    ) -> list[Document]:
        return [doc for doc, _ in await self.asimilarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: FilterArg = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """The `k` nearest documents with Nestor's score (cosine and dot: similarity; l2: distance).

        Keywords: `score_threshold` (applied by the server) and `search_params` (`ef`, `exact`, ...)."""
        vector = self._embedding.embed_query(query)
        return self._layout.scored(self._search(vector, k, filter, kwargs))

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: FilterArg = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        vector = await self._embedding.aembed_query(query)
        return self._layout.scored(await self._asearch(vector, k, filter, kwargs))

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: FilterArg = None, **kwargs: Any
    ) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, filter, **kwargs)]

    async def asimilarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: FilterArg = None, **kwargs: Any
    ) -> list[Document]:
        return [doc for doc, _ in self._layout.scored(await self._asearch(embedding, k, filter, kwargs))]

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, filter: FilterArg = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        return self._layout.scored(self._search(embedding, k, filter, kwargs))

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: FilterArg = None,
        **kwargs: Any,
    ) -> list[Document]:
        vector = self._embedding.embed_query(query)
        return self.max_marginal_relevance_search_by_vector(vector, k, fetch_k, lambda_mult, filter, **kwargs)

    async def amax_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: FilterArg = None,
        **kwargs: Any,
    ) -> list[Document]:
        vector = await self._embedding.aembed_query(query)
        return await self.amax_marginal_relevance_search_by_vector(vector, k, fetch_k, lambda_mult, filter, **kwargs)

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: FilterArg = None,
        **kwargs: Any,
    ) -> list[Document]:
        """`k` of the `fetch_k` nearest documents, picked for relevance and diversity (LangChain's MMR)."""
        hits = self._search(embedding, fetch_k, filter, kwargs, with_vector=True)
        return self._layout.mmr(embedding, hits, k, lambda_mult)

    async def amax_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: FilterArg = None,
        **kwargs: Any,
    ) -> list[Document]:
        hits = await self._asearch(embedding, fetch_k, filter, kwargs, with_vector=True)
        return self._layout.mmr(embedding, hits, k, lambda_mult)

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        # Nestor scores cosine and dot as similarities (higher is better), l2 as a distance.
        if self.metric == "l2":
            return self._euclidean_relevance_score_fn
        return similarity_to_relevance

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        client: NestorClient | None = None,
        url: str = "http://127.0.0.1:6333",
        api_key: str | None = None,
        collection_name: str | None = None,
        **kwargs: Any,
    ) -> Self:
        """A store on `client` (or a new client for `url`, which `close()` closes), filled with `texts`.
        Without `collection_name` a new collection `langchain-<uuid>` is used; other keywords go to the
        constructor."""
        owned = client is None
        client = client if client is not None else NestorClient(url, api_key=api_key)
        name = collection_name or f"langchain-{uuid.uuid4().hex}"
        store = cls(client, collection_name=name, embedding=embedding, **kwargs)
        store._owns_client = owned
        store.add_texts(texts, metadatas, ids=ids)
        return store

    @classmethod
    async def afrom_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        async_client: AsyncNestorClient | None = None,
        url: str = "http://127.0.0.1:6333",
        api_key: str | None = None,
        collection_name: str | None = None,
        **kwargs: Any,
    ) -> Self:
        """`from_texts` through an `AsyncNestorClient` (given, or a new one for `url`, which `aclose()` closes)."""
        owned = async_client is None
        if async_client is None:
            async_client = AsyncNestorClient(url, api_key=api_key)
        name = collection_name or f"langchain-{uuid.uuid4().hex}"
        store = cls(collection_name=name, embedding=embedding, async_client=async_client, **kwargs)
        store._owns_client = owned
        await store.aadd_texts(texts, metadatas, ids=ids)
        return store

    def close(self) -> None:
        """Close the clients this store made (`from_texts` without `client`, the async client of a loop
        that is not running); the clients passed in stay the caller's."""
        if self._owns_client and self.client is not None:
            self.client.close()
        made, self._async_made = self._async_made, {}
        for loop, client in made.items():
            if not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(client.close())

    async def aclose(self) -> None:
        """Close the async client this store made for the running loop (or `afrom_texts` without one)."""
        client = self._async_made.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()
        if self._owns_client and self._async_given is not None:
            await self._async_given.close()

    # -- the parts sync and async share ----------------------------------------------------------

    def _sync(self) -> NestorClient:
        if self.client is None:
            raise RuntimeError("this store was built with an AsyncNestorClient only: use the async methods")
        return self.client

    def _async(self) -> AsyncNestorClient:
        if self._async_given is not None:
            return self._async_given
        # An httpx.AsyncClient's connections belong to the loop that opened them: one client per loop.
        loop = asyncio.get_running_loop()
        client = self._async_made.get(loop)
        if client is None:
            for old in [lp for lp in self._async_made if lp.is_closed()]:
                del self._async_made[old]
            client = self._async_made[loop] = async_twin(self._sync())
        return client

    def _collection_config(self, dim: int) -> dict[str, Any]:
        vector = {"metric": self.metric, **self.collection_config, "dim": dim}
        if self.vector_name is None:
            return vector
        return {"vectors": {self.vector_name: vector}}

    def _create(self, client: NestorClient, vectors: list[list[float]]) -> None:
        """Create the collection for vectors like `vectors`, unless it exists (then it is used as it is)."""
        try:
            client.create_collection(self.collection_name, self._collection_config(len(vectors[0])))
        except CollectionExists:
            pass
        self._created = True

    async def _acreate(self, client: AsyncNestorClient, vectors: list[list[float]]) -> None:
        try:
            await client.create_collection(self.collection_name, self._collection_config(len(vectors[0])))
        except CollectionExists:
            pass
        self._created = True

    def _delete_args(self, ids: Sequence[str | int] | None, kwargs: Mapping[str, Any]) -> tuple[Any, Any]:
        flt = metadata_filter(kwargs.get("filter"), self.metadata_key)
        if (ids is None) == (flt is None):
            raise ValueError("delete needs ids or filter= (one of them); to drop everything, use delete_collection()")
        return (list(ids) if ids is not None else None), flt

    def _search_args(self, k: int, filter: FilterArg, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(kwargs) - _SEARCH_KEYWORDS
        if unknown:  # a typo would otherwise pass silently, e.g. `score_treshold`
            raise TypeError(f"unknown search keywords {sorted(unknown)}; known: {sorted(_SEARCH_KEYWORDS)}")
        params = kwargs.get("search_params")
        return {
            "limit": k,
            "filter": metadata_filter(filter, self.metadata_key),
            "params": params.model_dump(exclude_none=True) if isinstance(params, SearchParams) else params,
            "score_threshold": kwargs.get("score_threshold"),
            "using": self.vector_name,
        }

    def _with(self, with_vector: bool) -> bool | list[str]:
        # MMR needs the vector it searched; of named vectors, only that one.
        return [self.vector_name] if with_vector and self.vector_name is not None else with_vector

    def _search(
        self, vector: list[float], k: int, filter: FilterArg, kwargs: Mapping[str, Any], *, with_vector: bool = False
    ) -> list[ScoredPoint]:
        args = self._search_args(k, filter, kwargs)
        try:
            result = self._sync().search(self.collection_name, vector, with_vector=self._with(with_vector), **args)
        except CollectionNotFound:
            return []  # nothing written yet
        return result.points

    async def _asearch(
        self, vector: list[float], k: int, filter: FilterArg, kwargs: Mapping[str, Any], *, with_vector: bool = False
    ) -> list[ScoredPoint]:
        args = self._search_args(k, filter, kwargs)
        try:
            result = await self._async().search(
                self.collection_name, vector, with_vector=self._with(with_vector), **args
            )
        except CollectionNotFound:
            return []
        return result.points
