"""One real `nestor serve` per test module, with API keys on, driven by the real `qdrant-client`."""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient

from server.auth import hash_key
from tests.e2e.serverproc import ServerProcess

ADMIN = "qdrant-admin-key-0123456789"
READ = "qdrant-read-key-0123456789"
WRITE = "qdrant-write-key-0123456789"
SCOPED = "qdrant-scoped-key-0123456789"  # reads collection "tenanted", only its points of tenant "a"
KEYS = json.dumps(
    [
        {"sha256": hash_key(ADMIN), "role": "admin"},
        {"sha256": hash_key(READ), "role": "read"},
        {"sha256": hash_key(WRITE), "role": "write"},
        {
            "sha256": hash_key(SCOPED),
            "collections": {"tenanted": "read"},
            "filter": {"tenanted": {"must": [{"key": "tenant", "match": {"value": "a"}}]}},
        },
    ]
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("qdrant")
    proc = ServerProcess(tmp / "data", env={"NESTOR_API_KEYS": KEYS, "NESTOR_INDEX_SAVE_IDLE_SECONDS": "0.2"})
    proc.start()
    try:
        yield proc
    finally:
        compat_checks_done()
        proc.stop()


def compat_checks_done() -> None:
    """Every QdrantClient checks the server's version in a thread of its own; one still running when the
    server stops (or is killed) fails to connect and warns from that thread: let them finish first."""
    for t in threading.enumerate():
        if "_check_compatibility" in t.name:
            t.join(timeout=30)


def _quiet(factory: Any, **kwargs: Any) -> Any:
    # qdrant-client warns whenever an API key travels over plain HTTP: true, and beside the point here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Api key is used with an insecure connection")
        return factory(**kwargs)


def connect(server: ServerProcess, key: str | None = ADMIN, **kwargs: Any) -> QdrantClient:
    """A client given only the URL (and the key), as a user would write it."""
    client: QdrantClient = _quiet(QdrantClient, url=server.url + "/qdrant", api_key=key, **kwargs)
    return client


def connect_async(server: ServerProcess, key: str | None = ADMIN) -> AsyncQdrantClient:
    client: AsyncQdrantClient = _quiet(AsyncQdrantClient, url=server.url, prefix="qdrant", api_key=key)
    return client


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[QdrantClient]:
    c = connect(server)
    yield c
    c.close()
