"""One copy of each vector: a plain HNSW graph reads the collection's rows in place (index/backends/graph.py).

The graph keeps no float32 copy in RAM and saves links only; it follows the row store as it grows, moves
to a memory map (the RAM cap) or is rewritten by a compaction; a graph saved with its own codes (before)
still loads, over the rows. The native checks refuse rows that do not cover the graph's labels.
"""

from __future__ import annotations

import gc
import threading
import weakref
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from index.backends.base import IndexParams, Space
from index.backends.graph import GraphIndex
from index.contract import Query
from index.ramcap import apply_ram_cap
from index.vectors import VectorStore
from nestor_client.models import SearchParams
from tests.unit.index.conftest import QUIET, Engine, rows, top_cosine, top_l2, wait_indexed

DIM = 16


def _graph_of(coll: Any, name: str = "") -> GraphIndex:
    index = coll.fields[name].state.index
    assert isinstance(index, GraphIndex)
    return index


def _recall(coll: Any, data: dict[int, np.ndarray], queries: np.ndarray, oracle: Any) -> float:
    found = 0
    for q in queries:
        res = coll.search([Query(q, limit=10, params=SearchParams(ef=128))])[0]
        assert res.strategy == "hnsw", res.strategy
        found += len({h.id for h in res.hits} & {pid for pid, _ in oracle(data, q, 10)})
    return found / (10 * len(queries))


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_the_graph_reads_the_rows_and_saves_links_only(engine: Engine, metric: str) -> None:
    rng = np.random.default_rng(3)
    coll = engine.create("c", {"dim": DIM, "metric": metric, "index": {"type": "hnsw", "m": 8}})
    data = rows(rng, 2500, DIM)
    for s in range(0, 2500, 100):  # many small appends: the RAM store grows (and moves) several times
        coll.upsert(list(range(s, s + 100)), data[s : s + 100], None)
    wait_indexed(coll)
    graph = _graph_of(coll)
    assert graph._graph.external and graph.rows is coll.fields[""].vectors
    held = graph.memory()["codes"]
    assert held == (0 if metric == "cosine" else 4 * graph._graph.capacity)  # l2 keeps one norm per node
    live = {i: data[i] for i in range(2500)}
    oracle = top_cosine if metric == "cosine" else top_l2
    queries = rows(rng, 20, DIM)
    assert _recall(coll, live, queries, oracle) >= 0.95
    coll.save_indexes()
    index_dir = coll.fields[""].dir / "index"
    saved = {p.name for p in index_dir.rglob("*.npy")}
    assert "links0.npy" in saved and "codes.npy" not in saved

    engine.restart()
    coll = engine.get("c")
    assert _graph_of(coll)._graph.external and _graph_of(coll).count == 2500
    assert _recall(coll, live, queries, oracle) >= 0.95


def test_a_graph_saved_with_its_own_codes_loads_over_the_rows(tmp_path: Path) -> None:
    """A state written before the graph read rows (codes.npy beside the links) loads, drops the codes,
    and answers the same; saved again, it is links only."""
    rng = np.random.default_rng(4)
    data = rows(rng, 800, DIM)
    own = GraphIndex(DIM, Space.ip, "float32", m=8, ef_construction=64)
    own.add(data, np.arange(800, dtype=np.int64))
    own.remove(np.arange(0, 800, 7, dtype=np.int64))
    assert not own._graph.external and own.memory()["codes"] >= 800 * DIM * 4
    own.save(tmp_path / "legacy")
    assert (tmp_path / "legacy" / "codes.npy").is_file()

    store = VectorStore(tmp_path / "vectors.f32", DIM)
    store.append(data)
    loaded = GraphIndex.load(tmp_path / "legacy", rows=store)
    assert loaded._graph.external and loaded.memory()["codes"] == 0 and loaded.count == own.count
    queries = rows(rng, 10, DIM)
    want = own.search(queries, 10, IndexParams(ef=64))
    got = loaded.search(queries, 10, IndexParams(ef=64))
    assert np.array_equal(got.labels, want.labels) and np.array_equal(got.scores, want.scores)
    loaded.save(tmp_path / "again")
    assert not (tmp_path / "again" / "codes.npy").exists()
    with pytest.raises(ValueError, match="reads the collection's rows"):
        GraphIndex.load(tmp_path / "again")  # links only: without the rows there are no vectors
    again = GraphIndex.load(tmp_path / "again", rows=store)
    assert np.array_equal(again.search(queries, 10, IndexParams(ef=64)).labels, want.labels)
    store.close()


def test_rows_that_do_not_cover_the_labels_are_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    data = rows(rng, 300, DIM)
    store = VectorStore(tmp_path / "v.f32", DIM, on_disk=True)
    store.append(data[:200])
    g = GraphIndex(DIM, Space.l2, "float32", m=8, rows=store)
    g.add(data[:200], np.arange(200, dtype=np.int64))
    with pytest.raises(ValueError, match="has no row"):
        g._graph.add(data[:1], None, np.asarray([250], np.int64), 1, store.buffer())
    with pytest.raises(ValueError, match="do not cover label 199"):
        g._graph.set_rows(data[:100])
    with pytest.raises(ValueError, match="float32"):
        g._graph.set_rows(data[:, :8].copy())
    with pytest.raises(ValueError, match="float32"):
        g._graph.set_rows(data.astype(np.float64))
    assert g.count == 200  # nothing changed
    q = data[17][None, :]
    assert g.search(q, 1, IndexParams()).labels[0, 0] == 17
    with pytest.raises(ValueError, match="int8 graph keeps its own codes"):
        GraphIndex(DIM, Space.l2, "int8", rows=store)
    own = GraphIndex(DIM, Space.l2, "float32", m=8)
    own.add(data[:10], np.arange(10, dtype=np.int64))
    with pytest.raises(ValueError, match="keeps its own vectors"):
        own._graph.set_rows(data)
    store.close()


def test_memory_mapping_the_rows_lets_the_ram_array_go(tmp_path: Path) -> None:
    """Over the RAM cap the store maps its file; the graph must drop the RAM array it read, or the RAM
    would stay in use."""
    eng = Engine(tmp_path / "d", replace(QUIET, ram_cap=100_000, optimizer_interval=0.0))
    try:
        rng = np.random.default_rng(6)
        coll = eng.create("m", {"dim": DIM, "metric": "cosine", "index": {"type": "hnsw", "m": 8}})
        store = coll.fields[""].vectors
        assert not store.on_disk  # empty (1,024 rows of capacity): under the cap
        data = rows(rng, 2000, DIM)
        coll.upsert(list(range(2000)), data, None)
        wait_indexed(coll)
        ram = weakref.ref(store.buffer())
        assert apply_ram_cap(coll) == [""] and store.on_disk
        gc.collect()
        assert ram() is None  # nobody holds the RAM rows any more: the graph reads the map
        live = {i: data[i] for i in range(2000)}
        assert _recall(coll, live, rows(rng, 10, DIM), top_cosine) >= 0.95
    finally:
        eng.close()


def test_searches_run_while_the_store_grows_under_them(tmp_path: Path) -> None:
    """Searches hold the buffer they started with; adds move the graph to the grown one under its lock."""
    rng = np.random.default_rng(7)
    data = rows(rng, 6000, DIM)
    store = VectorStore(tmp_path / "v.f32", DIM)
    g = GraphIndex(DIM, Space.l2, "float32", m=8, ef_construction=32, threads=2, rows=store)
    stop = threading.Event()
    errors: list[BaseException] = []

    def search() -> None:
        try:
            while not stop.is_set():
                n = store.rows
                hits = g.search(data[:4], 5, IndexParams(ef=32))
                got = hits.labels[hits.labels >= 0]
                assert ((got >= 0) & (got < max(n, store.rows))).all()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=search)
    t.start()
    try:
        for s in range(0, 6000, 300):
            start = store.append(data[s : s + 300])  # grows from 1,024 rows, by doubling
            g.add(data[s : s + 300], np.arange(start, start + 300, dtype=np.int64))
        hits = g.search(data[::600], 1, IndexParams(ef=64))  # l2: each row is its own nearest
        assert hits.labels[:, 0].tolist() == list(range(0, 6000, 600))
    finally:
        stop.set()
        t.join()
        store.close()
    assert not errors, errors


def test_compaction_keeps_one_copy(tmp_path: Path) -> None:
    """The compacted generation's graph reads its own, renumbered rows."""
    eng = Engine(tmp_path / "d", replace(QUIET, optimizer_interval=0.0))
    try:
        rng = np.random.default_rng(8)
        coll = eng.create("c", {"dim": DIM, "metric": "cosine", "index": {"type": "hnsw", "m": 8}})
        data = rows(rng, 1500, DIM)
        coll.upsert(list(range(1500)), data, None)
        coll.delete(list(range(0, 1500, 2)))
        wait_indexed(coll)
        assert coll.optimize()
        st = coll.optimizer.wait(60)
        assert st.last_error is None and coll.labels.n == 750
        wait_indexed(coll)
        graph = _graph_of(coll)
        assert graph._graph.external and graph.rows is coll.fields[""].vectors
        live = {i: data[i] for i in range(1, 1500, 2)}
        assert _recall(coll, live, rows(rng, 10, DIM), top_cosine) >= 0.95
        assert not (coll.fields[""].dir / "index" / "codes.npy").exists()
    finally:
        eng.close()


@pytest.mark.parametrize("step", [1, 3])
def test_rows_by_label_give_the_graph_its_own_copy_would(tmp_path: Path, step: int) -> None:
    """Labels equal to positions (step 1) and labels with gaps (step 3, as after deaths before indexing):
    the graph over the rows builds and answers exactly as one over its own copy."""
    rng = np.random.default_rng(9)
    data = rows(rng, 1200, DIM)
    labels = np.arange(0, 1200, step, dtype=np.int64)
    own = GraphIndex(DIM, Space.l2, "float32", m=8, ef_construction=48, threads=1)
    own.add(data[labels], labels)
    store = VectorStore(tmp_path / "v.f32", DIM)
    store.append(data)
    by_rows = GraphIndex(DIM, Space.l2, "float32", m=8, ef_construction=48, threads=1, rows=store)
    by_rows.add(data[labels], labels)
    queries = rows(rng, 30, DIM)
    want = own.search(queries, 10, IndexParams(ef=40))
    got = by_rows.search(queries, 10, IndexParams(ef=40))
    assert np.array_equal(got.labels, want.labels) and np.allclose(got.scores, want.scores)
    assert set(got.labels.ravel().tolist()) <= set(labels.tolist())
    store.close()
