"""The factory: which backend serves a config, the hnswlib fallback without the native graph, and loads.

`index.backends.graph.AVAILABLE` is False where the C++ extension did not build; int8 + HNSW then
trains hnswlib on the vectors instead, and `info` says so. A saved index loads with the config's
current search defaults, not the ones it was saved with.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from index.backends import graph
from index.backends.base import Space
from index.backends.graph import GraphIndex
from index.backends.hnsw import HnswIndex
from index.collection import Collection
from index.contract import Query
from index.dense import DenseField
from index.encoded import EncodedIndex
from index.factory import backend_name, load_index, new_index
from nestor_client.models import VectorConfig
from tests.unit.index.conftest import Engine, rows, wait_indexed

DIM, N = 16, 100
INT8_HNSW: dict[str, Any] = {
    "dim": DIM,
    "metric": "l2",
    "index": {"type": "hnsw"},
    "quantize": {"type": "int8"},
    "training": {"threshold": 64},
}


def _trained(engine: Engine, name: str, config: dict[str, Any]) -> tuple[Collection, np.ndarray]:
    coll = engine.create(name, config)
    data = rows(np.random.default_rng(0), N, DIM)
    coll.upsert(list(range(N)), data)
    wait_indexed(coll)
    return coll, data


def _inner(coll: Collection) -> Any:
    f = coll.fields[""]
    assert isinstance(f, DenseField) and isinstance(f.state.index, EncodedIndex)
    return f.state.index.inner


def _self_search(coll: Collection, data: np.ndarray, strategy: str) -> None:
    for i in range(0, N, 7):
        res = coll.search([Query(data[i], limit=3)])[0]
        assert res.strategy == strategy and res.hits[0].id == i


def test_without_the_native_graph_int8_hnsw_falls_back_to_hnswlib(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(graph, "AVAILABLE", False)
    coll, data = _trained(engine, "fallback", INT8_HNSW)
    assert isinstance(_inner(coll), HnswIndex)
    backend = coll.info().index.backend
    assert backend is not None and backend.startswith("hnswlib (fallback: ") and "unavailable" in backend
    _self_search(coll, data, "int8_hnsw")
    engine.restart()  # the hnswlib index saved at close loads as it is
    coll = engine.get("fallback")
    f = coll.fields[""]
    assert isinstance(f, DenseField) and f.last_optimized is not None and f.state.upto == N
    assert isinstance(_inner(coll), HnswIndex)
    _self_search(coll, data, "int8_hnsw")


def test_with_the_native_graph_int8_hnsw_uses_it(engine: Engine) -> None:
    assert graph.AVAILABLE, "these tests expect the native graph to be built here"
    coll, data = _trained(engine, "native", INT8_HNSW)
    assert isinstance(_inner(coll), GraphIndex) and _inner(coll).codec == "int8"
    backend = coll.info().index.backend
    assert backend is not None and backend.startswith("nestor-graph (int8")
    _self_search(coll, data, "int8_hnsw")


def test_a_saved_native_graph_is_rebuilt_where_the_graph_is_unavailable(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A data directory moved to a machine without the extension: the saved graph cannot load there."""
    coll, data = _trained(engine, "moved", INT8_HNSW)
    assert isinstance(_inner(coll), GraphIndex)
    monkeypatch.setattr(graph, "AVAILABLE", False)
    with caplog.at_level(logging.ERROR, logger="nestor.collection"):
        engine.restart()
    assert "rebuilding from the store" in caplog.text
    coll = engine.get("moved")
    wait_indexed(coll)
    assert isinstance(_inner(coll), HnswIndex)
    assert (coll.info().index.backend or "").startswith("hnswlib (fallback: ")
    _self_search(coll, data, "int8_hnsw")


def test_plain_hnsw_is_the_native_graph_or_hnswlib_as_a_named_fallback(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    coll = engine.create("plain", {"dim": DIM, "metric": "l2"})
    coll.upsert([1], np.ones((1, DIM), np.float32))
    wait_indexed(coll)
    assert (coll.info().index.backend or "").startswith("nestor-graph (float32, ")
    monkeypatch.setattr(graph, "AVAILABLE", False)
    without = engine.create("without", {"dim": DIM, "metric": "l2"})
    without.upsert([1], np.ones((1, DIM), np.float32))
    wait_indexed(without)
    assert (without.info().index.backend or "").startswith("hnswlib (fallback: ")
    flat = engine.create("flat", {"dim": DIM, "index": {"type": "flat"}})
    assert flat.info().index.backend == "exact scan"
    assert backend_name(None) == "exact scan"


@pytest.mark.parametrize("saved_by", ["graph", "hnswlib"])
def test_load_index_applies_the_configs_current_search_defaults(tmp_path: Path, saved_by: str) -> None:
    """A plain HNSW index saved by the native graph, or by hnswlib (stores from before the graph served
    plain HNSW), loads as what it is, with the config's current ef."""
    saved_cfg = VectorConfig.model_validate({"dim": DIM, "metric": "l2", "index": {"type": "hnsw", "ef": 16}})
    index: Any = (
        new_index(saved_cfg, DIM, Space.l2, threads=1)
        if saved_by == "graph"
        else HnswIndex(DIM, Space.l2, m=16, ef_construction=100, ef=16, threads=1)
    )
    kind = GraphIndex if saved_by == "graph" else HnswIndex
    assert isinstance(index, kind) and index.ef == 16
    data = rows(np.random.default_rng(2), 50, DIM)
    index.add(data, np.arange(50, dtype=np.int64))
    index.save(tmp_path / "index")
    now = VectorConfig.model_validate({"dim": DIM, "metric": "l2", "index": {"type": "hnsw", "ef": 200}})
    loaded = load_index(tmp_path / "index", now, Space.l2, threads=1)
    assert isinstance(loaded, kind) and loaded.ef == 200 and loaded.count == 50
    got = loaded.search_one(data[7:8], 1, None)
    assert got is not None and list(got[0]) == [7]
    wrong = VectorConfig.model_validate({"dim": DIM, "metric": "l2", "index": {"type": "ivf_pq"}})
    with pytest.raises(ValueError, match="does not serve index type 'ivf_pq'"):
        load_index(tmp_path / "index", wrong, Space.l2, threads=1)


def test_new_index_by_config() -> None:
    def make(spec: dict[str, Any]) -> Any:
        return new_index(VectorConfig.model_validate({"dim": DIM, **spec}), DIM, Space.ip, threads=1)

    assert isinstance(make({"index": {"type": "hnsw", "m": 8}}), GraphIndex)
    assert make({"index": {"type": "hnsw", "m": 8}}).m == 8
    assert make({"index": {"type": "flat"}}) is None  # exact scans, no index
    assert make({"index": {"type": "ivf_pq"}}) is None  # until trained
    assert make({"quantize": {"type": "int8"}}) is None  # compressed: until trained
