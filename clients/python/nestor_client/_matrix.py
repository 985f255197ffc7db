"""Matrix search (`POST .../points/search/matrix`): a query matrix in one buffer, hits back as columns.

For many plain searches (no filter, no payload) this skips what `search_batch` pays per search and per
hit on both ends: a validated model per search on the server, a `ScoredPoint` per hit here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._body import ParamsLike, plain
from ._codec import MatrixLike, f32_to_b64
from ._response import Envelope

__all__ = ["MatrixResult", "matrix_body", "parse_matrix"]


@dataclass(frozen=True, slots=True)
class MatrixResult:
    """Per query row, its hits best first: `ids[i]` and `scores[i]` (as many as were found)."""

    ids: list[list[Any]]
    scores: list[list[float]]
    strategy: str
    time: float

    def __len__(self) -> int:
        return len(self.ids)


def matrix_body(
    vectors: MatrixLike, limit: int, params: ParamsLike | None, using: str | None, wire: str
) -> dict[str, Any]:
    mat = np.ascontiguousarray(vectors, dtype="<f4")
    if mat.ndim != 2:
        raise ValueError(f"vectors must be a matrix [queries, dim], not of shape {mat.shape}")
    body: dict[str, Any] = {"vectors": mat.tobytes() if wire == "msgpack" else f32_to_b64(mat), "limit": limit}
    if params is not None:
        body["params"] = plain(params)
    if using is not None:
        body["using"] = using
    return body


def parse_matrix(env: Envelope) -> MatrixResult:
    ids, scores = env.result["ids"], env.result["scores"]
    if len(ids) != len(scores):
        raise ValueError(f"{len(ids)} id rows but {len(scores)} score rows")
    return MatrixResult(ids, scores, str(env.strategy or ""), float(env.time))
