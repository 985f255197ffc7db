"""LangChain's standard `VectorStoreIntegrationTests` on `NestorVectorStore`, against a real server.

Every test gets a fresh, empty collection of the module's server; the base class's 24 tests (12 sync,
12 async) and its no-override check run unmodified, on an unnamed vector and again on a named one.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests.vectorstores import VectorStoreIntegrationTests

from nestor_client import NestorClient
from nestor_client.integrations.langchain import NestorVectorStore

pytestmark = pytest.mark.e2e


class TestNestorVectorStore(VectorStoreIntegrationTests):
    vector_name: str | None = None  # the collection's one unnamed vector

    @pytest_asyncio.fixture
    async def vectorstore(self, nestor_url: str) -> AsyncIterator[VectorStore]:  # type: ignore[override]
        # Async so that its teardown runs on the test's loop and closes the async client made there.
        client = NestorClient(nestor_url)
        store = NestorVectorStore(
            client=client,
            collection_name=f"lc-{uuid.uuid4().hex[:12]}",
            embedding=self.get_embeddings(),
            vector_name=self.vector_name,
        )
        try:
            yield store
            if self.vector_name is not None and store.get_by_ids(["1", "foo"]):  # a test that wrote
                assert set(client.get_collection(store.collection_name).config.vectors or {}) == {self.vector_name}
        finally:
            store.delete_collection()
            await store.aclose()
            client.close()


class TestNestorVectorStoreNamedVector(TestNestorVectorStore):
    """The same suite on a collection whose vector is the named vector "text"."""

    vector_name = "text"
