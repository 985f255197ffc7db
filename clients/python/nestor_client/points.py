"""Points and searches: upsert, delete, get, count and scroll requests, the records and scored points
they return, and search requests."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    Field,
    StrictBool,
    StrictInt,
    model_validator,
)

from nestor_client._common import InputModel, PointId
from nestor_client.config import VECTOR_NAME, FunnelStage, MultiVectorInput, VectorInput
from nestor_client.filters import Filter

# ---------------------------------------------------------------------------------------------
# Points


class SparseVector(InputModel):
    """A sparse vector: `values[i]` at dimension `indices[i]`. The server checks the rest (422): as many
    values as indices, indices distinct and within uint32 (0 to 2**32 - 1), values finite."""

    indices: list[StrictInt]
    values: list[float]


# Named vectors of one point: a dense vector, a multivector's token vectors, or a sparse vector, by name.
NamedVectors = dict[str, VectorInput | MultiVectorInput | SparseVector]


class Point(InputModel):
    """A vector, or named vectors (`{name: vector}`; a point may omit some), or a `text` that fills every
    vector with an encoder, or (a multi-vector default vector) a `multivector`."""

    id: PointId
    vector: VectorInput | NamedVectors | None = None
    text: str | None = None
    multivector: MultiVectorInput | None = None
    payload: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_input(self) -> Point:
        given = [self.vector, self.text, self.multivector].count(None)
        if given == 3:
            raise ValueError("give exactly one of vector, text or multivector (or named vectors)")
        # named vectors may come with a text, which fills the vectors that have an encoder
        if given < 2 and not (isinstance(self.vector, dict) and self.multivector is None):
            raise ValueError("give exactly one of vector, text or multivector (or named vectors, with a text)")
        return self


# A columnar batch's vectors of one name: a dense matrix (a list of lists, or one base64 string or raw
# bytes of n*dim float32), or a sparse vector per point (null where a point has none).
BatchColumn = list[list[float]] | str | bytes | list[SparseVector | None]


class Batch(InputModel):
    """Columnar upsert: `vectors` is the default vector's matrix (a list of lists, or one base64 string of
    n*dim float32), or `{name: column}` with a sparse vector's column a list of `{"indices", "values"}`.
    `texts` (one per id, null for none) fill every vector with an encoder, as a point's `text` does."""

    ids: list[PointId]
    vectors: list[list[float]] | str | bytes | dict[str, BatchColumn] | None = None
    texts: list[str | None] | None = None
    payloads: list[dict[str, Any] | None] | None = None

    @model_validator(mode="after")
    def _some_vectors(self) -> Batch:
        if self.vectors is None and self.texts is None:
            raise ValueError("give vectors, texts, or both")
        return self


class UpsertRequest(InputModel):
    points: list[Point] | None = None
    batch: Batch | None = None

    @model_validator(mode="after")
    def _one_form(self) -> UpsertRequest:
        if (self.points is None) == (self.batch is None):
            raise ValueError("give exactly one of points or batch")
        return self


class DeleteRequest(InputModel):
    ids: list[PointId] | None = None
    filter: Filter | None = None

    @model_validator(mode="after")
    def _one_form(self) -> DeleteRequest:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("give exactly one of ids or filter")
        return self


# True: every vector of the point; a list: those named vectors only.
WithVector = bool | list[str]


class GetRequest(InputModel):
    ids: list[PointId]
    with_payload: bool = True
    with_vector: WithVector = False


class CountRequest(InputModel):
    filter: Filter | None = None


class ScrollRequest(InputModel):
    """`POST /collections/{name}/points/scroll`: the points matching `filter`, in id order (integer ids
    ascending, then string ids in code-point order), from the id `offset` (inclusive), `limit` at a time."""

    filter: Filter | None = None
    limit: StrictInt = Field(10, ge=1, le=100_000)
    offset: PointId | None = None
    with_payload: StrictBool = True
    with_vector: StrictBool | list[str] = False


class UpdateResult(BaseModel):
    """What upsert (`upserted`) and delete (`deleted`) return; `seq` is the write's sequence number."""

    upserted: int = 0
    deleted: int = 0
    seq: int


class Record(BaseModel):
    """A point as stored. `vector` is the vector itself in a collection with one unnamed vector, and
    `{name: vector}` in one with named vectors (a multivector there is a list of token vectors)."""

    id: PointId
    payload: dict[str, Any] | None = None
    vector: list[float] | dict[str, list[float] | list[list[float]] | SparseVector] | None = None
    multivector: list[list[float]] | None = None


class ScrollResult(BaseModel):
    """One page of a scroll; `next_page_offset` is the id to pass as `offset` for the next page (None: done)."""

    points: list[Record]
    next_page_offset: PointId | None = None


# ---------------------------------------------------------------------------------------------
# Search


class SearchParams(InputModel):
    """Per-query knobs. Unset fields fall back to the collection's index config."""

    ef: int | None = Field(None, ge=1, le=32768)
    nprobe: int | None = Field(None, ge=1, le=1 << 20)
    oversampling: float | None = Field(None, ge=1.0, le=1000.0)
    rescore: bool | None = None
    exact: bool = False
    funnel: list[FunnelStage] | None = Field(None, max_length=8)


class SearchRequest(InputModel):
    """A `vector` (a sparse one for a sparse `using`), or a `text` the searched vector's encoder embeds as
    a query, or a `multivector` query."""

    vector: VectorInput | SparseVector | None = None
    text: str | None = None
    multivector: MultiVectorInput | None = None
    using: str | None = Field(None, pattern=VECTOR_NAME)  # which named vector to search; default: ""
    limit: int = Field(10, ge=1)
    offset: int = Field(0, ge=0)
    filter: Filter | None = None
    params: SearchParams | None = None
    with_payload: bool = True
    with_vector: WithVector = False
    score_threshold: float | None = None

    @model_validator(mode="after")
    def _one_query(self) -> SearchRequest:
        if [self.vector, self.text, self.multivector].count(None) != 2:
            raise ValueError("give exactly one of vector, text or multivector")
        return self


class QuerySampleRequest(InputModel):
    """Example queries for LeanVec-OOD fitting: `vectors`, or `texts` the collection's encoder embeds."""

    vectors: list[VectorInput] | None = None
    texts: list[str] | None = None
    replace: bool = False  # drop the sample kept so far instead of adding to it
    using: str | None = Field(None, pattern=VECTOR_NAME)  # the named vector it is for; default: ""

    @model_validator(mode="after")
    def _one_kind(self) -> QuerySampleRequest:
        if (self.vectors is None) == (self.texts is None):
            raise ValueError("give exactly one of vectors or texts")
        if not (self.vectors or self.texts):
            raise ValueError("the sample is empty")
        return self


class BatchSearchRequest(InputModel):
    searches: list[SearchRequest] = Field(min_length=1)


class MatrixSearchRequest(InputModel):
    """Many unfiltered searches in one body: `vectors` is the query matrix as row-major little-endian float32
    (raw bytes in msgpack, base64 in JSON), one row per search of the vector's dimension. The answer is
    columnar: `{"ids": [[...], ...], "scores": [[...], ...]}`, best first per row."""

    vectors: str | bytes
    using: str | None = Field(None, pattern=VECTOR_NAME)  # which named vector to search; default: ""
    limit: int = Field(10, ge=1)
    params: SearchParams | None = None


class ScoredPoint(BaseModel):
    id: PointId
    score: float
    payload: dict[str, Any] | None = None
    vector: list[float] | dict[str, list[float] | list[list[float]] | SparseVector] | None = None
    multivector: list[list[float]] | None = None
