"""API tests drive the real app in-process through the real client (no mocks of the engine)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nestor_client import NestorClient
from server.app import create_app
from server.settings import Settings


@contextmanager
def running(data_dir: Path, wire: str = "json", **overrides: object) -> Iterator[NestorClient]:
    overrides.setdefault("ingest_roots", [data_dir.parent])  # ingest tests write their sources beside the data
    settings = Settings(data_dir=data_dir, index_save_idle_seconds=0.2, **overrides)  # type: ignore[arg-type]
    with TestClient(create_app(settings)) as http:
        yield NestorClient(http_client=http, wire=wire)  # type: ignore[arg-type]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[NestorClient]:
    with running(tmp_path / "data") as c:
        yield c


@pytest.fixture
def server(tmp_path: Path) -> Callable[..., object]:
    """Start (and restart) an app on the same data dir: `with server(**settings) as client:`."""

    def start(**overrides: object) -> object:
        return running(tmp_path / "data", **overrides)

    return start


def wait_indexed(client: NestorClient, name: str, timeout: float = 60.0) -> dict[str, object]:
    """Block until the collection's background indexer has caught up."""
    deadline = time.monotonic() + timeout
    while True:
        info = client.get_collection(name)
        idx = info.index
        if idx.get("state") == "ready" and not idx.get("pending"):
            return idx
        if time.monotonic() > deadline:
            raise AssertionError(f"index of {name} not ready: {idx}")
        time.sleep(0.05)
