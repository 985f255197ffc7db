"""Hits made natively (index/hit_class.py) are the objects `Hit(id, score)` makes."""

from __future__ import annotations

import numpy as np
import pytest

from index.contract import Hit
from index.hit_class import HITS, make_hits


def test_native_hits_equal_the_dataclass_s() -> None:
    if not HITS:
        pytest.skip("no native module: make_hits is the dataclass itself")
    ids: list[object] = [3, "a-uuid", 7]
    scores: list[object] = [0.5, 1.25, np.float32(2.0)]
    got = make_hits(ids, scores)
    assert got == [Hit(i, s) for i, s in zip(ids, scores, strict=True)]  # type: ignore[arg-type]
    assert all(type(h) is Hit and h.payload is None and h.vectors is None for h in got)
    assert got[1].id is ids[1] and got[2].score is scores[2]  # the objects given, not copies
    assert make_hits([], []) == []
    with pytest.raises(ValueError, match="differ in length"):
        make_hits([1, 2], [0.5])
