"""The background indexer: a step that keeps failing turns the collection red, and it recovers.

A failing step records the error on its vector and backs off (1, 2, 4 ... s). Meanwhile searches
still answer, exactly, from the store. Once the cause goes away the next retry trains the index
and the status returns to green.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from index import indexer
from index.collection import Collection
from index.contract import CollectionOptions, Query
from index.dense import DenseField
from index.encoded import EncodedIndex
from tests.unit.index.conftest import QUIET, Engine, rows, until

DIM = 16
CONFIG: dict[str, Any] = {
    "dim": DIM,
    "metric": "l2",
    "index": {"type": "flat"},
    "quantize": {"type": "int8"},
    "training": {"threshold": 64},
}


@pytest.fixture
def options() -> CollectionOptions:
    return CollectionOptions(save_idle_seconds=0.05, save_max_seconds=3600)  # an idle indexer polls often


def _field(coll: Collection) -> DenseField:
    f = coll.fields[""]
    assert isinstance(f, DenseField)
    return f


def test_a_failing_indexer_turns_the_collection_red_until_it_recovers(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    coll = engine.create("failing", CONFIG)
    data = rows(np.random.default_rng(0), 100, DIM)
    coll.upsert(list(range(40)), data[:40])  # below the training threshold: nothing to do, green
    assert coll.info().status == "green" and coll.info().index.state == "untrained"

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("no codebook today")

    with monkeypatch.context() as m:
        m.setattr(indexer, "train_encoded", broken)
        coll.upsert(list(range(40, 100)), data[40:])  # crosses the threshold: the indexer trains, and fails
        until(lambda: coll.info().status == "red", 3.0, "status red")
        info = coll.info()
        assert info.index.state == "failing" and info.vectors[""].index.state == "failing"
        assert info.index.error == "RuntimeError: no codebook today"
        assert _field(coll).failures >= 1 and _field(coll).state.index is None
        for i in (3, 71):  # searches still answer, exactly
            res = coll.search([Query(data[i], limit=3)])[0]
            assert res.strategy == "exact" and res.hits[0].id == i and res.hits[0].score == 0.0
    # the patch is gone: the retry after the back-off trains the index
    until(lambda: coll.info().status == "green", 10.0, "status green again")
    info = coll.info()
    assert info.index.state == "ready" and info.index.error is None and _field(coll).failures == 0
    assert isinstance(_field(coll).state.index, EncodedIndex) and info.index.indexed == 100
    res = coll.search([Query(data[71], limit=3)])[0]
    assert res.strategy == "int8_flat" and res.hits[0].id == 71


def test_index_step_is_a_no_op_below_the_threshold_and_trains_above(tmp_path: Path) -> None:
    """`index_step` by hand (indexing paused and saves off, so the thread stays out of the way)."""
    quiet = Engine(tmp_path / "quiet", QUIET)
    try:
        _steps(quiet.create("steps", CONFIG))
    finally:
        quiet.close()


def _steps(coll: Collection) -> None:
    coll.pause_indexing()
    f = _field(coll)
    data = rows(np.random.default_rng(1), 200, DIM)
    coll.upsert(list(range(63)), data[:63])
    assert indexer.index_step(f) is False and f.state.index is None
    coll.upsert([63], data[63:64])
    assert indexer.index_step(f) is True  # 64 live points: trains on every one
    st = f.state
    assert isinstance(st.index, EncodedIndex) and st.upto == 64 and st.index.count == 64
    assert indexer.index_step(f) is False  # caught up
    coll.upsert(list(range(64, 100)), data[64:100])
    coll.delete([70])
    assert indexer.index_step(f) is True  # the tail goes in, the deleted label does not
    assert f.state.upto == 100 and f.state.index is not None and f.state.index.count == 99
    coll.upsert(list(range(100, 130)), data[100:130])
    assert indexer.index_step(f) is True  # 129 live >= 2 x 64: a refit on everything
    assert f.state.index is not None and f.state.index is not st.index and f.state.index.trained_on == 129
    coll.resume_indexing()
