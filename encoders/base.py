"""The `Encoder` protocol, the types it speaks, and the errors of the encoder layer.

An encoder turns texts into vectors. It is configured by a pydantic model (its fields are its whole
config, persisted with a collection as `EncoderSpec{name, config}`), says whether it yields one
vector per text (`dense`) or one per token (`multivector`), and embeds documents and queries
separately because some models prefix or treat them differently.

Batch calls never fail as a whole because of one bad text: they return `Embeddings` with a per-row
error map (weaviate's `VectorizeBatch`), so an ingest job can report the row and keep the rest.

Errors carry the HTTP status they map to and a stable type name, like `index.errors`:

    EncoderError                     500 encoder_error
    ├── EncoderNotFound              404 encoder_not_found
    ├── EncoderConfigError           422 invalid_encoder_config
    ├── EncoderInputError            422 invalid_encoder_input   (rows that cannot be embedded)
    ├── EncoderUnavailable           503 encoder_unavailable     (optional dependency missing)
    └── DuplicateEncoder             500 duplicate_encoder       (two packages claim one name)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "F32",
    "BaseEncoder",
    "DuplicateEncoder",
    "Embeddings",
    "Encoder",
    "EncoderConfig",
    "EncoderConfigError",
    "EncoderError",
    "EncoderFactory",
    "EncoderInputError",
    "EncoderKind",
    "EncoderNotFound",
    "EncoderSpec",
    "EncoderUnavailable",
    "SparseEmbedding",
    "check_texts",
]

F32 = npt.NDArray[np.float32]


class EncoderError(Exception):
    status: int = 500
    type: str = "encoder_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EncoderNotFound(EncoderError):
    status = 404
    type = "encoder_not_found"

    def __init__(self, name: str, available: Sequence[str]) -> None:
        known = ", ".join(sorted(available)) or "none (is nestor installed, e.g. `pip install -e .`?)"
        super().__init__(f"no encoder named {name!r}; available: {known}")
        self.name = name


class EncoderConfigError(EncoderError):
    status = 422
    type = "invalid_encoder_config"


class EncoderInputError(EncoderError):
    status = 422
    type = "invalid_encoder_input"

    def __init__(self, errors: Mapping[int, str]) -> None:
        shown = "; ".join(f"row {i}: {msg}" for i, msg in sorted(errors.items())[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"cannot embed {len(errors)} text(s): {shown}{more}")
        self.errors = dict(errors)


class EncoderUnavailable(EncoderError):
    status = 503
    type = "encoder_unavailable"


class DuplicateEncoder(EncoderError):
    status = 500
    type = "duplicate_encoder"


class EncoderKind(StrEnum):
    dense = "dense"
    multivector = "multivector"
    sparse = "sparse"  # one {indices, values} vector per text (BM25, SPLADE)


# A sparse embedding: uint32 indices (distinct, ascending) and their float32 values.
SparseEmbedding = tuple[npt.NDArray[np.uint32], F32]


class EncoderConfig(BaseModel):
    """Base of every encoder's config. Unknown keys are errors, so a typo never silently falls back
    to a default; frozen, so a running encoder's persisted config cannot drift from what it does."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class EncoderSpec(BaseModel):
    """What a collection persists to rebuild its encoder: the registry name plus the config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    config: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Embeddings:
    """The vectors of one batch, row i for text i.

    `dense`: one float32 array [n, dim]. `multivector`: a list of n float32 arrays [tokens_i, dim].
    `sparse`: a list of n (indices, values) pairs. Rows listed in `errors` hold zeros (dense), zero
    tokens (multivector) or no entries (sparse) and must be skipped.
    """

    kind: EncoderKind
    dim: int
    vectors: F32 | list[F32] | list[SparseEmbedding]
    errors: Mapping[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.vectors)

    def dense(self) -> F32:
        if not isinstance(self.vectors, np.ndarray):
            raise TypeError("these embeddings are multivector; use .multivector()")
        return self.vectors

    def multivector(self) -> list[F32]:
        if isinstance(self.vectors, np.ndarray) or self.kind is EncoderKind.sparse:
            raise TypeError(f"these embeddings are {self.kind.value}; use .{self.kind.value}()")
        return self.vectors  # type: ignore[return-value]

    def sparse(self) -> list[SparseEmbedding]:
        if self.kind is not EncoderKind.sparse:
            raise TypeError(f"these embeddings are {self.kind.value}; use .{self.kind.value}()")
        return self.vectors  # type: ignore[return-value]

    def ok_rows(self) -> npt.NDArray[np.intp]:
        """Indices of the rows that embedded fine, in order."""
        mask = np.ones(len(self), dtype=bool)
        mask[list(self.errors)] = False
        return np.flatnonzero(mask)

    def raise_for_errors(self) -> None:
        """For callers that cannot skip rows (a search by text): turn row errors into one error."""
        if self.errors:
            raise EncoderInputError(self.errors)

    @classmethod
    def assemble(
        cls,
        kind: EncoderKind,
        dim: int,
        n: int,
        rows: Sequence[int],
        vectors: F32 | Sequence[F32],
        errors: Mapping[int, str],
    ) -> Embeddings:
        """Scatter the vectors of the good `rows` into a batch of `n`, leaving error rows empty."""
        if kind is EncoderKind.dense:
            out = np.zeros((n, dim), dtype=np.float32)
            if len(rows):
                out[np.asarray(rows, dtype=np.intp)] = np.asarray(vectors, dtype=np.float32)
            return cls(kind, dim, out, dict(errors))
        multi = [np.zeros((0, dim), dtype=np.float32) for _ in range(n)]
        for row, vecs in zip(rows, vectors, strict=True):
            multi[row] = np.ascontiguousarray(vecs, dtype=np.float32)
        return cls(kind, dim, multi, dict(errors))


def check_texts(texts: Sequence[object]) -> tuple[list[int], dict[int, str]]:
    """Split a batch into embeddable rows and per-row errors (non-strings, blank texts).

    A blank text would still get a vector from most models, but one that means nothing and matches
    everything equally, so it is reported rather than stored."""
    rows: list[int] = []
    errors: dict[int, str] = {}
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            errors[i] = f"text must be a string, got {type(text).__name__}"
        elif not text.strip():
            errors[i] = "text is empty"
        else:
            rows.append(i)
    return rows, errors


class Encoder(Protocol):
    """What the engine needs from an encoder. Implementations must be safe to call from threads."""

    @property
    def name(self) -> str:
        """The registry name (entry-point name) this encoder is found under."""
        ...

    @property
    def config(self) -> EncoderConfig: ...

    @property
    def kind(self) -> EncoderKind: ...

    @property
    def dim(self) -> int: ...

    @property
    def max_batch_size(self) -> int:
        """Most texts one `embed_*` call should get; callers split bigger batches."""
        ...

    @property
    def max_tokens_per_batch(self) -> int | None:
        """Token budget per call for remote APIs; None when only `max_batch_size` applies."""
        ...

    def spec(self) -> EncoderSpec:
        """Name plus the full config (defaults filled in), for persisting with a collection."""
        ...

    def embed_documents(self, texts: Sequence[str]) -> Embeddings: ...

    def embed_query(self, texts: Sequence[str]) -> Embeddings: ...


class EncoderFactory(Protocol):
    """What an entry point in group `nestor.encoders` must load: usually the encoder class itself."""

    config_model: type[EncoderConfig]

    def __call__(self, config: Any) -> Encoder: ...


ConfigT = TypeVar("ConfigT", bound=EncoderConfig)


class BaseEncoder(Generic[ConfigT]):
    """Optional helper base: holds the config and derives `spec` from it. Not required by the
    registry; a plugin only has to satisfy `Encoder` and `EncoderFactory`."""

    name: ClassVar[str]
    kind: ClassVar[EncoderKind]
    config_model: ClassVar[type[EncoderConfig]]

    def __init__(self, config: ConfigT) -> None:
        self._config = config

    @property
    def config(self) -> ConfigT:
        return self._config

    @property
    def max_tokens_per_batch(self) -> int | None:
        return None

    def spec(self) -> EncoderSpec:
        return EncoderSpec(name=self.name, config=self._config.model_dump(mode="json"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._config!r})"
