"""The base of every input model and the point id type, shared by `models` and `filters`."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

__all__ = ["InputModel", "PointId"]


class InputModel(BaseModel):
    """An input shape: unknown keys are an error, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid")


# Unsigned integers or strings, as in Qdrant. Strict so that "1" and 1 stay different ids.
PointId = Annotated[StrictInt, Field(ge=0, le=2**63 - 1)] | Annotated[StrictStr, Field(min_length=1, max_length=512)]
