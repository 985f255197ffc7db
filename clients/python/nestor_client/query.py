"""The query pipeline's wire models: `POST /collections/{name}/points/query` (Qdrant's Query API shape).

A request is a tree. Each node has a `query` and may have `prefetch`, a list of sub-queries whose
results it works on:
- no prefetch: a search of the vector `using` (a leaf);
- prefetch and a vector (or a point id, or a text) query: the prefetched points are rescored exactly
  on `using`, and the best `limit` kept;
- prefetch and `{"fusion": "rrf" | "dbsf"}` or `{"rrf": {"k": ..., "weights": [...]}}`: the prefetch
  results are fused.
The root's `filter` is ANDed into every leaf below it; `score_threshold` applies to the node's own list.
The response's `stages` says what ran at each node.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, model_validator

from nestor_client._common import InputModel, PointId
from nestor_client.config import VECTOR_NAME, MultiVectorInput, VectorInput
from nestor_client.filters import Filter
from nestor_client.points import ScoredPoint, SearchParams, SparseVector, WithVector

__all__ = [
    "DocumentQuery",
    "FusionQuery",
    "NearestQuery",
    "Prefetch",
    "QueryInput",
    "QueryRequest",
    "QueryResponse",
    "QueryStage",
    "RrfParams",
    "RrfQuery",
]


class FusionQuery(InputModel):
    """Fuse the prefetch results: `rrf` (reciprocal rank fusion, k=2) or `dbsf` (distribution-based)."""

    fusion: Literal["rrf", "dbsf"]


class RrfParams(InputModel):
    k: int = Field(2, ge=1, le=1_000_000)
    weights: list[float] | None = Field(None, min_length=1)  # one per prefetch, each >= 0

    @model_validator(mode="after")
    def _non_negative(self) -> RrfParams:
        if self.weights is not None and any(not w >= 0 for w in self.weights):
            raise ValueError("rrf weights must be finite numbers >= 0")
        return self


class RrfQuery(InputModel):
    """Reciprocal rank fusion with its own `k` (and optional weights per prefetch)."""

    rrf: RrfParams


class DocumentQuery(InputModel):
    """A text, embedded by the encoder of the vector `using` names (a sparse one's, e.g. bm25, gives a
    sparse query). Without `using` or prefetch, on a collection whose sparse vectors have encoders too,
    it is a hybrid query: the text searches the default dense vector and every such sparse vector, and
    the lists are fused by `fusion` (default rrf)."""

    text: str = Field(min_length=1, max_length=65536)
    fusion: Literal["rrf", "dbsf"] | None = None  # the hybrid shorthand's fusion (refused elsewhere)


class NearestQuery(InputModel):
    """A vector (or a multivector's token vectors) in any wire form: lists, base64 or raw float32 bytes."""

    nearest: SparseVector | VectorInput | MultiVectorInput


# A bare list is a vector, a list of lists a multivector query, `{"indices", "values"}` a sparse query,
# an integer or a string a point id (its stored vector of `using`; the point itself is left out).
QueryInput = (
    FusionQuery | RrfQuery | DocumentQuery | NearestQuery | SparseVector | PointId | list[float] | list[list[float]]
)


class Prefetch(InputModel):
    """A sub-query: its results feed the node above."""

    prefetch: list[Prefetch] | None = None
    query: QueryInput | None = None
    using: str | None = Field(None, pattern=VECTOR_NAME)
    filter: Filter | None = None
    params: SearchParams | None = None
    score_threshold: float | None = None
    limit: int = Field(10, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _one_prefetch(cls, data: object) -> object:
        # Qdrant takes a single prefetch object as well as a list
        if isinstance(data, dict) and isinstance(data.get("prefetch"), dict):
            return {**data, "prefetch": [data["prefetch"]]}
        return data


class QueryRequest(Prefetch):
    """The root of a query: a `Prefetch` plus paging and what each returned point carries."""

    offset: int = Field(0, ge=0)
    with_payload: bool = True
    with_vector: WithVector = Field(False, validation_alias=AliasChoices("with_vector", "with_vectors"))


class QueryStage(BaseModel):
    """What ran at one node of the pipeline, with the nodes under it in `stages`."""

    kind: Literal["search", "rescore", "fusion", "prefetch"]
    using: str | None = None  # the vector searched or rescored on (None for a fusion)
    strategy: str | None = None  # the planner's strategy (a search or rescore), or rrf/dbsf
    limit: int
    candidates_in: int  # points the stage considered: the prefetched ids (0 for a leaf search)
    candidates_out: int  # points it passed on
    time_ms: float
    stages: list[QueryStage] = Field(default_factory=list)


class QueryResponse(BaseModel):
    """The result of a query: the points, best first, and what ran at each stage."""

    points: list[ScoredPoint]
    stages: QueryStage


Prefetch.model_rebuild()
QueryRequest.model_rebuild()
QueryStage.model_rebuild()
