"""The crash rounds' checks (tests/e2e/oracle.py) against a fake server: each fault they exist for is caught."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nestor_client.models import Record
from tests.e2e.oracle import F32, check_exact_search, check_vectors


@dataclass
class _Hit:
    id: int
    score: float


class _Server:
    """Stores vectors; its exact search is numpy's unless a test breaks it."""

    def __init__(self, vectors: dict[int, F32]) -> None:
        self.vectors = {i: v.copy() for i, v in vectors.items()}

    def get(self, name: str, ids: list[int], **_: Any) -> list[Record]:
        return [Record(id=i, vector=self.vectors[i].tolist()) for i in ids if i in self.vectors]

    def search(self, name: str, query: F32, *, limit: int, params: dict[str, Any]) -> list[_Hit]:
        assert params == {"exact": True}
        ranked = sorted(((float(v @ query), i) for i, v in self.vectors.items()), reverse=True)
        return [_Hit(i, s) for s, i in ranked[:limit]]


def _truth() -> tuple[dict[int, F32], F32]:
    rng = np.random.default_rng(3)
    return {i: rng.standard_normal(16).astype(np.float32) for i in range(200)}, rng.standard_normal(16).astype(
        np.float32
    )


def test_a_faithful_server_passes() -> None:
    truth, q = _truth()
    server: Any = _Server(truth)
    assert check_vectors(server, "c", truth) == []
    assert check_exact_search(server, "c", truth, q, limit=50) == []
    assert check_exact_search(server, "c", truth, q, limit=200) == []


def test_one_flipped_bit_is_caught() -> None:
    truth, _ = _truth()
    server: Any = _Server(truth)
    server.vectors[7][3] = np.nextafter(server.vectors[7][3], np.float32(10))  # one ulp: close, not equal
    assert check_vectors(server, "c", truth) == ["id 7: stored vector differs from the acknowledged one"]


def test_a_lost_point_is_caught() -> None:
    truth, q = _truth()
    server: Any = _Server(truth)
    del server.vectors[9]
    assert check_vectors(server, "c", truth) == ["id 9: no vector"]
    assert check_exact_search(server, "c", truth, q, limit=200) != []


def test_a_resurrected_point_is_caught() -> None:
    truth, q = _truth()
    server: Any = _Server({**truth, 500: q * 10})  # a deleted point came back, and it ranks first
    problems = check_exact_search(server, "c", truth, q, limit=10)
    assert "hit 0: id 500 is not a live acknowledged point" in problems


def test_a_wrong_ranking_or_score_is_caught() -> None:
    truth, q = _truth()
    server: Any = _Server(truth)
    hits = server.search("c", q, limit=10, params={"exact": True})
    server.search = lambda *a, **k: [hits[1], hits[0], *hits[2:]]
    problems = check_exact_search(server, "c", truth, q, limit=10)
    assert any(p.startswith("rank 0:") for p in problems)
    server.search = lambda *a, **k: [_Hit(h.id, h.score + 0.01) for h in hits]
    assert any("scored" in p for p in check_exact_search(server, "c", truth, q, limit=10))
