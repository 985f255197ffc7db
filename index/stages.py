"""The query pipeline's value types (`Stage`, `Fusion`, `StageReport`, `PipelineLimits`) and two helpers
that `index/pipeline.py` and `index/pair.py` share."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from index.backends.base import F32
from index.contract import PointIdT, SparseVec
from index.fusion import DEFAULT_RRF_K
from nestor_client.models import Filter, SearchParams

__all__ = ["Fusion", "PipelineLimits", "Scored", "Stage", "StageReport", "and_filters", "finite"]

Scored = list[tuple[PointIdT, float]]  # (id, user-facing score), best first


@dataclass(frozen=True, slots=True)
class Fusion:
    method: Literal["rrf", "dbsf"]
    k: int = DEFAULT_RRF_K
    weights: tuple[float, ...] | None = None


@dataclass(slots=True)
class Stage:
    """One node. `query`: a vector ([dim], or [tokens, dim] for a multivector), a `SparseVec` (for a
    sparse `using`), a point id (its stored vector of `using`, the point itself left out), a `Fusion`,
    or None (pass one prefetch through)."""

    query: F32 | SparseVec | PointIdT | Fusion | None
    using: str | None = None
    filter: Filter | None = None
    params: SearchParams | None = None
    limit: int = 10
    score_threshold: float | None = None
    prefetch: list[Stage] = field(default_factory=list)
    exclude: PointIdT | None = None  # set by `check` for a query by point id
    lower: bool = False  # set by `check`: the vector's scores are L2 distances (lower is better)
    fused: SearchParams | None = None  # set by `check`: the one search that answers this node (`_fused_params`)


@dataclass(slots=True)
class StageReport:
    """What ran at one node (the wire's `nestor_client.query.QueryStage`; a dataclass, which costs a
    fraction of a pydantic model per node on the search path)."""

    kind: Literal["search", "rescore", "fusion", "prefetch"]
    using: str | None
    strategy: str | None
    limit: int
    candidates_in: int
    candidates_out: int
    time_ms: float
    stages: list[StageReport]

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "using": self.using,
            "strategy": self.strategy,
            "limit": self.limit,
            "candidates_in": self.candidates_in,
            "candidates_out": self.candidates_out,
            "time_ms": self.time_ms,
            "stages": [s.as_dict() for s in self.stages],
        }


@dataclass(frozen=True, slots=True)
class PipelineLimits:
    max_depth: int = 4  # prefetch levels under the root
    max_candidates: int = 100_000  # the sum of every node's limit (the root's plus offset)
    max_limit: int = 10_000  # one node's limit (the root's plus offset)


def finite(vec: F32) -> bool:
    """No NaN or infinity in `vec`: a finite self dot product has none (3x cheaper than `isfinite` on one
    query); past float32's range it overflows, and the element-wise test decides."""
    return math.isfinite(float(np.vdot(vec, vec))) or bool(np.isfinite(vec).all())


def and_filters(a: Filter | None, b: Filter | None) -> Filter | None:
    if a is None:
        return b
    if b is None:
        return a
    return Filter(must=[a, b])
