"""Pluggable text encoders: the `Encoder` protocol, its registry and the built-in encoders.

Independent of the engine: nothing here imports `server`, `index` or `quantization`. Built-ins
(`hash`, `hash-tokens`, `sentence-transformers`, `sentence-transformers-tokens`) are found through
the entry-point group `nestor.encoders`, like any third-party encoder; the torch-based ones import
torch only when built.
"""

from encoders.base import (
    BaseEncoder,
    DuplicateEncoder,
    Embeddings,
    Encoder,
    EncoderConfig,
    EncoderConfigError,
    EncoderError,
    EncoderFactory,
    EncoderInputError,
    EncoderKind,
    EncoderNotFound,
    EncoderSpec,
    EncoderUnavailable,
)
from encoders.registry import (
    GROUP,
    EncoderRegistry,
    available_encoders,
    clear_cache,
    create_encoder,
    default_registry,
    get_encoder,
    load_encoder,
    normalize_spec,
)

__all__ = [
    "GROUP",
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
    "EncoderRegistry",
    "EncoderSpec",
    "EncoderUnavailable",
    "available_encoders",
    "clear_cache",
    "create_encoder",
    "default_registry",
    "get_encoder",
    "load_encoder",
    "normalize_spec",
]
