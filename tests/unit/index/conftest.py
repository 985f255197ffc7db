"""Shared set-up of the engine's unit tests: a catalog that can be restarted, and numpy oracles.

The tests drive `index/` in-process, through the catalog and the collection contract, with no
server. Background saves are off (`save_idle_seconds` of an hour), so an index is persisted only
where a test asks for it (`save_indexes`) or at close; `wait_indexed` waits for the indexer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from index.catalog import Catalog
from index.collection import Collection
from index.contract import CollectionOptions
from index.dense import DenseField
from index.stamp import WriteStamp, install
from nestor_client.models import CollectionConfig

F32 = npt.NDArray[np.float32]
QUIET = CollectionOptions(save_idle_seconds=3600, save_max_seconds=3600)


class Engine:
    """One data directory and its catalog, which a test can restart (close, then open everything again)."""

    def __init__(self, data_dir: Path, options: CollectionOptions) -> None:
        self.data_dir = data_dir
        self.options = options
        self.catalog = Catalog(data_dir, options)

    def create(self, name: str, config: dict[str, Any]) -> Collection:
        coll, created = self.catalog.create(name, CollectionConfig.model_validate(config))
        assert created and isinstance(coll, Collection)
        return coll

    def get(self, name: str) -> Collection:
        coll = self.catalog.get(name)
        assert isinstance(coll, Collection)
        return coll

    def restart(self, options: CollectionOptions | None = None) -> None:
        self.catalog.close()
        self.options = options or self.options
        self.catalog = Catalog(self.data_dir, self.options)
        self.catalog.open_all()

    def close(self) -> None:
        self.catalog.close()


@pytest.fixture
def options() -> CollectionOptions:
    """The engine options of a test's catalog; a module overrides this fixture to change them."""
    return QUIET


@pytest.fixture
def engine(tmp_path: Path, options: CollectionOptions) -> Iterator[Engine]:
    eng = Engine(tmp_path / "data", options)
    yield eng
    eng.close()


def until(cond: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def indexed(f: DenseField) -> bool:
    st = f.state
    return f.plain_flat or (st.index is not None and st.upto == f.labels.n)


def wait_indexed(coll: Collection, timeout: float = 10.0) -> None:
    """Until every dense vector's index covers every committed label."""
    until(lambda: all(indexed(f) for f in coll.dense_fields()), timeout, f"{coll.name} to be indexed")


def rows(rng: np.random.Generator, n: int, dim: int) -> F32:
    return rng.normal(size=(n, dim)).astype(np.float32)


def unit(x: F32) -> F32:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def top_cosine(data: dict[Any, F32], q: F32, k: int) -> list[tuple[Any, float]]:
    """The exact top `k` (id, cosine) of `data`, best first."""
    scored = [(pid, float(unit(v) @ unit(q))) for pid, v in data.items()]
    return sorted(scored, key=lambda t: -t[1])[:k]


def top_l2(data: dict[Any, F32], q: F32, k: int) -> list[tuple[Any, float]]:
    """The exact top `k` (id, L2 distance) of `data`, nearest first."""
    scored = [(pid, float(np.linalg.norm(v.astype(np.float64) - q))) for pid, v in data.items()]
    return sorted(scored, key=lambda t: t[1])[:k]


def maxsim(query: F32, doc: F32) -> float:
    """MaxSim under cosine: for each query token, its best cosine with a document token, summed."""
    return float((unit(query) @ unit(doc).T).max(axis=1).sum())


def top_maxsim(data: dict[Any, F32], q: F32, k: int) -> list[tuple[Any, float]]:
    scored = [(pid, maxsim(q, v)) for pid, v in data.items()]
    return sorted(scored, key=lambda t: -t[1])[:k]


def ids_scores(hits: list[Any]) -> tuple[list[Any], list[float]]:
    return [h.id for h in hits], [h.score for h in hits]


@pytest.fixture(params=["files", "stamp"])
def write_stamp(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WriteStamp | None]:
    """A follower's view of the primary's writes: its files alone ("files"), or the write stamp the
    primary bumps (index/stamp.py), installed here as `nestor serve --processes N` installs it."""
    if request.param == "files":
        yield None
        return
    path = tmp_path / "write.stamp"
    install(WriteStamp(path, writer=True))
    reader = WriteStamp(path)
    try:
        yield reader
    finally:
        install(None)
        reader.close()
