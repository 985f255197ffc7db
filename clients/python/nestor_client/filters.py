"""Payload filters in Qdrant's shape: the wire models (the engine's semantics are in `index/filters.py`).

A `Filter` has `must`, `should` and `must_not` lists of conditions; a condition is a field condition
(`match`, `range` or `values_count` on a payload key), `has_id`, `is_empty`, `is_null`, `nested` (a
filter that one object of an array must satisfy whole), or a `Filter` itself.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

from nestor_client._common import InputModel, PointId

__all__ = [
    "Condition",
    "FieldCondition",
    "Filter",
    "HasIdCondition",
    "IsEmptyCondition",
    "IsNullCondition",
    "KeyRef",
    "MatchAny",
    "MatchExcept",
    "MatchText",
    "MatchValue",
    "Nested",
    "NestedCondition",
    "Range",
    "RangeBound",
    "ValuesCount",
]


class MatchValue(InputModel):
    value: StrictStr | StrictInt | StrictBool


class MatchAny(InputModel):
    any: list[StrictStr | StrictInt] = Field(min_length=1)


class MatchExcept(InputModel):
    except_: list[StrictStr | StrictInt] = Field(alias="except", min_length=1)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class MatchText(InputModel):
    """Full-text match on a `text` payload index: every word of `text` occurs in the field (case-insensitive)."""

    text: str = Field(min_length=1, max_length=4096)


# A range bound: a number, or on a `datetime` index an RFC 3339 string (a numeric string still reads as a number).
RangeBound = float | str


class Range(InputModel):
    gt: RangeBound | None = None
    gte: RangeBound | None = None
    lt: RangeBound | None = None
    lte: RangeBound | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Range:
        if self.gt is None and self.gte is None and self.lt is None and self.lte is None:
            raise ValueError("range needs at least one of gt, gte, lt, lte")
        return self


_Count = StrictInt  # a count of values: a non-negative JSON integer, never "3" or 3.5


class ValuesCount(InputModel):
    """How many values the key holds (Qdrant's `values_count`): an array its length, a scalar 1, a missing
    key or `null` 0. Every given bound must hold."""

    lt: _Count | None = Field(None, ge=0)
    gt: _Count | None = Field(None, ge=0)
    gte: _Count | None = Field(None, ge=0)
    lte: _Count | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one_bound(self) -> ValuesCount:
        if self.gt is None and self.gte is None and self.lt is None and self.lte is None:
            raise ValueError("values_count needs at least one of gt, gte, lt, lte")
        return self


class FieldCondition(InputModel):
    key: str = Field(min_length=1, max_length=256)
    match: MatchValue | MatchAny | MatchExcept | MatchText | None = None
    range: Range | None = None
    values_count: ValuesCount | None = None

    @model_validator(mode="after")
    def _one_clause(self) -> FieldCondition:
        if [self.match, self.range, self.values_count].count(None) != 2:
            raise ValueError("a field condition needs exactly one of match, range or values_count")
        return self


class KeyRef(InputModel):
    key: str = Field(min_length=1, max_length=256)


class HasIdCondition(InputModel):
    has_id: list[PointId] = Field(min_length=1)


class IsEmptyCondition(InputModel):
    is_empty: KeyRef


class IsNullCondition(InputModel):
    is_null: KeyRef


class Nested(InputModel):
    """`key` names an array of objects; `filter` is evaluated against each object, its keys relative to it."""

    key: str = Field(min_length=1, max_length=256)
    filter: Filter


class NestedCondition(InputModel):
    """Matches a point when one object of the array at `nested.key` satisfies the whole `nested.filter`."""

    nested: Nested


class Filter(InputModel):
    must: list[Condition] | None = None
    should: list[Condition] | None = None
    must_not: list[Condition] | None = None


Condition = FieldCondition | HasIdCondition | IsEmptyCondition | IsNullCondition | NestedCondition | Filter
Nested.model_rebuild()
Filter.model_rebuild()
