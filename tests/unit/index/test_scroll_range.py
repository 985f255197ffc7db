"""Scroll's fast page (index/scroll.py `_range_texts`): a page whose labels are one ascending run reads its
payloads as one label range, in order, straight into the hits. Checked against `get` of the same ids, on
pages that are runs (a bulk load in id order) and pages that are not (after overwrites and deletes)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from index import scroll
from index.collection import Collection
from tests.unit.index.conftest import Engine


def _scroll_all(coll: Collection, page: int) -> list[Any]:
    out: list[Any] = []
    offset = None
    while True:
        hits, offset = coll.scroll(limit=page, offset=offset)
        out += hits
        if offset is None:
            return out


def test_run_pages_and_broken_runs_give_the_stored_payloads(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    coll = engine.create("s", {"dim": 4, "metric": "dot", "index": {"type": "flat"}})
    n = 300
    coll.upsert(list(range(n)), np.ones((n, 4), np.float32), [{"i": i, "s": f"p{i}"} for i in range(n)])
    fast: list[bool] = []
    real = scroll._range_texts

    def spy(*args: Any) -> Any:
        got = real(*args)
        fast.append(got is not None)
        return got

    monkeypatch.setattr(scroll, "_range_texts", spy)
    got = _scroll_all(coll, 50)
    assert [h.id for h in got] == list(range(n)) and all(fast) and len(fast) == 6
    assert [h.payload for h in got] == [{"i": i, "s": f"p{i}"} for i in range(n)]

    coll.upsert([10, 120], np.ones((2, 4), np.float32), [{"i": -10}, None])  # new labels: runs broken
    coll.delete([200])
    fast.clear()
    got = _scroll_all(coll, 50)
    want = {h.id: h.payload for h in coll.get(list(range(n)))}
    assert [h.id for h in got] == sorted(want) and 200 not in want
    assert {h.id: h.payload for h in got} == want and want[10] == {"i": -10} and want[120] == {}
    assert not all(fast) and any(fast)  # the broken pages took the other road, the rest the fast one
