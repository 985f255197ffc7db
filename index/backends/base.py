"""The `VectorIndex` protocol every ANN backend implements, and the types it speaks.

Internal labels are int64 and never reused; mapping external ids to labels is the collection's
job. Scores follow one convention, higher is better: inner product for `ip`, minus the squared
distance for `l2`. Results are padded with label -1 and score -inf, as faiss does.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["F32", "Hits", "I64", "IndexParams", "Space", "VectorIndex", "empty_hits"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


class Space(StrEnum):
    ip = "ip"
    l2 = "l2"


@dataclass(frozen=True, slots=True)
class IndexParams:
    """Search-time knobs; None means the backend's configured default."""

    ef: int | None = None
    nprobe: int | None = None
    # filtered graph walks: True walks only the nodes the filter allows, looking through rejected
    # neighbours (ACORN); False walks the whole graph and checks the filter on each result
    acorn: bool = False


@dataclass(slots=True)
class Hits:
    labels: I64  # [n, k], -1 padded
    scores: F32  # [n, k], -inf padded, higher is better


def empty_hits(n: int, k: int) -> Hits:
    return Hits(np.full((n, k), -1, dtype=np.int64), np.full((n, k), -np.inf, dtype=np.float32))


class VectorIndex(Protocol):
    """Read side: `search`, `count`. Write side: `add`, `remove`, `save` (training is each backend's own,
    called by `index.factory`)."""

    dim: int
    space: Space

    @property
    def count(self) -> int:
        """Vectors searchable now (added and not removed)."""
        ...

    @property
    def is_trained(self) -> bool: ...

    def add(self, vectors: F32, labels: I64) -> None: ...

    def remove(self, labels: I64) -> None:
        """Tombstone labels; unknown labels are ignored."""
        ...

    def search(self, queries: F32, k: int, params: IndexParams, allowed: I64 | None = None) -> Hits:
        """Top-k per query. `allowed` (sorted labels) restricts results to that set."""
        ...

    def save(self, directory: Path) -> None: ...

    def ram_bytes(self) -> int: ...
