"""Payload index schemas: what `PUT /collections/{name}/index` and `payload_schema` take, in either spelling
(a type name, or an object with the options that say more than the type)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import (
    AliasChoices,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from nestor_client._common import InputModel


class _Model(InputModel):
    """Every input model of this module (unknown keys are an error)."""


class PayloadSchemaType(StrEnum):
    """What a payload index holds (Qdrant's names): the filters it answers are in `index/payload_index.py`."""

    keyword = "keyword"
    integer = "integer"
    float = "float"
    bool = "bool"
    datetime = "datetime"
    uuid = "uuid"
    text = "text"


class PayloadIndexParams(_Model):
    """A payload index's schema as an object: its `type`, and
    - `is_tenant` (keyword): queries nearly always name one value of it, a customer or a user; each large
      tenant gets a graph of its own;
    - `value_graphs` (keyword or integer): filters often require one value of it (`cat == 3`); each value
      holding more than `NESTOR_EXACT_FILTER_THRESHOLD` points and at most a `filter_walk_fraction` of them
      gets a graph of its own, as Qdrant adds links per indexed value (`payload_m`); a graph build per value."""

    type: PayloadSchemaType
    is_tenant: bool = False
    value_graphs: bool = False

    @model_serializer(mode="wrap")
    def _compact(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Options at their defaults are left out (collection.json stays readable by a version without them)."""
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if k == "type" or v is not False}

    @model_validator(mode="after")
    def _graph_types(self) -> PayloadIndexParams:
        if self.is_tenant and self.type is not PayloadSchemaType.keyword:
            raise ValueError("is_tenant is only for keyword payload indexes")
        if self.value_graphs and self.type not in (PayloadSchemaType.keyword, PayloadSchemaType.integer):
            raise ValueError("value_graphs is only for keyword and integer payload indexes")
        return self


# A payload index's schema: a type name, or `{"type": ..., "is_tenant": ..., "value_graphs": ...}`.
PayloadSchema = PayloadSchemaType | PayloadIndexParams


def schema_type(schema: PayloadSchema) -> PayloadSchemaType:
    """The index type of a schema in either form."""
    return schema.type if isinstance(schema, PayloadIndexParams) else schema


def is_tenant(schema: PayloadSchema) -> bool:
    """True for a keyword index marked `is_tenant`."""
    return isinstance(schema, PayloadIndexParams) and schema.is_tenant


def has_value_graphs(schema: PayloadSchema) -> bool:
    """True when values of the index get graphs of their own (`is_tenant` or `value_graphs`)."""
    return isinstance(schema, PayloadIndexParams) and (schema.is_tenant or schema.value_graphs)


def plain_schema(schema: PayloadSchema) -> PayloadSchema:
    """One spelling per schema: the object form only when it says more than the type."""
    return schema if has_value_graphs(schema) else schema_type(schema)


def schema_json(schema: PayloadSchema) -> str | dict[str, Any]:
    """A schema as JSON data (the type name, or the object form): what replicas are sent."""
    return schema.model_dump(mode="json") if isinstance(schema, PayloadIndexParams) else schema.value


def parse_schema(data: str | dict[str, Any]) -> PayloadSchema:
    """The inverse of `schema_json`."""
    return PayloadSchemaType(data) if isinstance(data, str) else PayloadIndexParams.model_validate(data)


class PayloadIndexRequest(_Model):
    """`PUT /collections/{name}/index`: Qdrant's `field_name` / `field_schema`, or `field` / `schema`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    field_name: str = Field(min_length=1, max_length=256, validation_alias=AliasChoices("field_name", "field"))
    field_schema: PayloadSchema = Field(validation_alias=AliasChoices("field_schema", "schema"))

    @field_validator("field_schema", mode="after")
    @classmethod
    def _plain(cls, v: PayloadSchema) -> PayloadSchema:
        return plain_schema(v)
