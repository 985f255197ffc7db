"""Request bodies of Qdrant's REST API, as `qdrant-client` 1.20 sends them.

Lenient where Qdrant settings are harmless to Nestor (sharding, consistency, WAL and optimizer knobs
are accepted and ignored: unknown keys pass); fields whose meaning Nestor cannot honour are declared
so that the routes can refuse them by name. Filters stay raw JSON here: `filters.to_filter` reads them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

__all__ = [
    "Batch",
    "CountRequest",
    "CreateCollection",
    "CreateFieldIndex",
    "DeletePayload",
    "DeleteVectors",
    "HnswConfigDiff",
    "PointRequest",
    "PointStruct",
    "PointVectors",
    "PointsSelector",
    "QueryBatch",
    "QueryGroupsRequest",
    "QueryRequest",
    "RawId",
    "RecommendBatch",
    "RecommendRequest",
    "RecoverRequest",
    "ScrollRequest",
    "SearchBatch",
    "SearchRequest",
    "SetPayload",
    "UpdateOperations",
    "UpdateVectors",
    "UpsertPoints",
    "VectorParams",
    "WithPayload",
    "WithVector",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


RawId = StrictInt | StrictStr  # checked by `ids.point_id`
WithVector = bool | list[str]


class PayloadInclude(_In):
    include: list[str]


class PayloadExclude(_In):
    exclude: list[str]


WithPayload = bool | list[str] | PayloadInclude | PayloadExclude


class HnswConfigDiff(_In):
    m: int | None = Field(None, ge=0)
    ef_construct: int | None = Field(None, ge=4)
    full_scan_threshold: int | None = None
    on_disk: bool | None = None


class VectorParams(_In):
    size: int = Field(ge=1)
    distance: Literal["Cosine", "Euclid", "Dot", "Manhattan"]
    hnsw_config: HnswConfigDiff | None = None
    quantization_config: dict[str, Any] | None = None
    on_disk: bool | None = None
    multivector_config: dict[str, Any] | None = None
    datatype: str | None = None


class CreateCollection(_In):
    vectors: VectorParams | dict[str, VectorParams] | None = None
    sparse_vectors: dict[str, Any] | None = None
    hnsw_config: HnswConfigDiff | None = None
    quantization_config: dict[str, Any] | None = None
    shard_number: int | None = Field(None, ge=1)
    replication_factor: int | None = Field(None, ge=1)
    init_from: Any = None


class PointStruct(_In):
    id: RawId
    vector: Any = None
    payload: dict[str, Any] | None = None


class Batch(_In):
    ids: list[RawId]
    vectors: Any = None
    payloads: list[dict[str, Any] | None] | None = None


class UpsertPoints(_In):
    points: list[PointStruct] | None = None
    batch: Batch | None = None
    update_filter: Any = None


class PointRequest(_In):
    ids: list[RawId]
    with_payload: WithPayload = True
    with_vector: WithVector = False


class ScrollRequest(_In):
    offset: RawId | None = None
    limit: int | None = Field(None, ge=1)
    filter: Any = None
    with_payload: WithPayload = True
    with_vector: WithVector = False
    order_by: Any = None


class CountRequest(_In):
    filter: Any = None
    exact: bool = True


class PointsSelector(_In):
    """`{"points": [ids]}` or `{"filter": ...}`: what a delete or clear-payload acts on."""

    points: list[RawId] | None = None
    filter: Any = None


class SetPayload(PointsSelector):
    payload: dict[str, Any]
    key: str | None = None


class DeletePayload(PointsSelector):
    keys: list[str]


class PointVectors(_In):
    id: RawId
    vector: Any


class UpdateVectors(_In):
    points: list[PointVectors]
    update_filter: Any = None


class DeleteVectors(PointsSelector):
    vector: list[str]


class UpdateOperations(_In):
    operations: list[dict[str, Any]]


class QueryRequest(_In):
    prefetch: Any = None
    query: Any = None
    using: str | None = None
    filter: Any = None
    params: dict[str, Any] | None = None
    score_threshold: float | None = None
    limit: int | None = Field(None, ge=1)
    offset: int | None = Field(None, ge=0)
    with_vector: WithVector = False
    with_payload: WithPayload = False
    lookup_from: Any = None


class QueryGroupsRequest(QueryRequest):
    group_by: str = Field(min_length=1, max_length=256)
    group_size: int = Field(3, ge=1)
    with_lookup: Any = None


class QueryBatch(_In):
    searches: list[QueryRequest]


class SearchRequest(_In):
    """The older `POST .../points/search`: `vector` is a list, or `{"name", "vector"}` for a named one."""

    vector: Any
    filter: Any = None
    params: dict[str, Any] | None = None
    limit: int = Field(ge=1)
    offset: int | None = Field(None, ge=0)
    with_payload: WithPayload = False
    with_vector: WithVector = False
    score_threshold: float | None = None


class SearchBatch(_In):
    searches: list[SearchRequest]


class RecommendRequest(_In):
    """The older `POST .../points/recommend`."""

    positive: list[Any] = Field(default_factory=list)
    negative: list[Any] = Field(default_factory=list)
    strategy: str | None = None
    using: str | None = None
    filter: Any = None
    params: dict[str, Any] | None = None
    limit: int = Field(ge=1)
    offset: int | None = Field(None, ge=0)
    with_payload: WithPayload = False
    with_vector: WithVector = False
    score_threshold: float | None = None
    lookup_from: Any = None


class RecommendBatch(_In):
    searches: list[RecommendRequest]


class RecoverRequest(_In):
    """`PUT .../snapshots/recover`: `location` names a snapshot stored on this server."""

    location: str = Field(min_length=1, max_length=2048)
    checksum: str | None = None
    priority: str | None = None


class CreateFieldIndex(_In):
    field_name: str = Field(min_length=1, max_length=256)
    field_schema: str | dict[str, Any] | None = None
