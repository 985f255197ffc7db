"""`hash` and `hash-tokens`: deterministic, dependency-free encoders for tests and demos.

Feature hashing (the "hashing trick") of lower-cased word unigrams and bigrams: each feature goes
through keyed blake2b to a coordinate and a sign, counts add up, and the vector is L2-normalised.
Texts sharing words therefore score higher than unrelated ones, which is enough for demos and for
tests of everything around an encoder. The hash is keyed by `seed` and never uses Python's
randomised `hash()`, so vectors are identical across processes, machines and restarts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from hashlib import blake2b
from typing import TYPE_CHECKING, ClassVar, TypeVar

import numpy as np
from pydantic import Field

from encoders.base import (
    F32,
    BaseEncoder,
    Embeddings,
    EncoderConfig,
    EncoderKind,
    check_texts,
)

if TYPE_CHECKING:
    from encoders.base import Encoder

__all__ = ["HashConfig", "HashEncoder", "HashTokensConfig", "HashTokensEncoder"]

_WORD = re.compile(r"\w+")
_PERSON = b"nestor.hash"  # domain separation: these digests are never reused for anything else
# A neighbour bigram's weight in a token vector; below 1/2 so that the two bigrams together can
# never cancel the token's own unigram to a zero vector.
_CONTEXT_WEIGHT = 1.0 / 3.0


class HashConfig(EncoderConfig):
    dim: int = Field(default=256, ge=2, le=65536)
    seed: int = Field(default=0, ge=0, lt=2**64)
    bigrams: bool = True
    lowercase: bool = True
    max_batch_size: int = Field(default=4096, ge=1)


class HashTokensConfig(HashConfig):
    # Bounded like a transformer's sequence length, so one long text cannot yield unbounded vectors.
    max_tokens: int = Field(default=256, ge=1)


class _Hasher:
    def __init__(self, config: HashConfig) -> None:
        self.dim = config.dim
        self.bigrams = config.bigrams
        self.lowercase = config.lowercase
        self._key = config.seed.to_bytes(8, "little")
        # Vocabularies are Zipfian, so a bounded cache catches most lookups.
        self.feature = lru_cache(maxsize=1 << 16)(self._feature)

    def _feature(self, feature: str) -> tuple[int, float]:
        digest = blake2b(feature.encode("utf-8"), digest_size=8, key=self._key, person=_PERSON).digest()
        h = int.from_bytes(digest, "little")
        # Signed hashing: collisions cancel on average instead of piling up a bias.
        return h % self.dim, 1.0 if h >> 63 else -1.0

    def words(self, text: str) -> list[str]:
        return _WORD.findall(text.lower() if self.lowercase else text)


_HashConfigT = TypeVar("_HashConfigT", bound=HashConfig)


class _HashEncoderBase(BaseEncoder[_HashConfigT]):
    """What the dense and token-level hash encoders share: the hasher and their sizes."""

    def __init__(self, config: _HashConfigT) -> None:
        super().__init__(config)
        self._hasher = _Hasher(config)

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def max_batch_size(self) -> int:
        return self.config.max_batch_size


class HashEncoder(_HashEncoderBase[HashConfig]):
    """One vector per text: hashed unigram (and bigram) counts, L2-normalised."""

    name: ClassVar[str] = "hash"
    kind: ClassVar[EncoderKind] = EncoderKind.dense
    config_model: ClassVar[type[EncoderConfig]] = HashConfig

    def embed_documents(self, texts: Sequence[str]) -> Embeddings:
        rows, errors = check_texts(texts)
        good: list[int] = []
        vectors: list[F32] = []
        for i in rows:
            words = self._hasher.words(texts[i])
            if not words:
                errors[i] = "text has no word characters"
                continue
            feats = list(words)
            if self.config.bigrams:
                feats += [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
            vec = np.zeros(self.dim, dtype=np.float64)
            for f in feats:
                j, sign = self._hasher.feature(f)
                vec[j] += sign
            norm = float(np.linalg.norm(vec))
            if norm == 0.0:
                errors[i] = "hashed features cancel out; use a larger dim"
                continue
            good.append(i)
            vectors.append((vec / norm).astype(np.float32))
        return Embeddings.assemble(self.kind, self.dim, len(texts), good, vectors, errors)

    def embed_query(self, texts: Sequence[str]) -> Embeddings:
        # Symmetric: a query is hashed exactly like a document.
        return self.embed_documents(texts)


class HashTokensEncoder(_HashEncoderBase[HashTokensConfig]):
    """One vector per word, for multivector collections: the word's hashed unigram plus, with
    `bigrams`, its two neighbouring bigrams at a lower weight, each row L2-normalised."""

    name: ClassVar[str] = "hash-tokens"
    kind: ClassVar[EncoderKind] = EncoderKind.multivector
    config_model: ClassVar[type[EncoderConfig]] = HashTokensConfig

    def embed_documents(self, texts: Sequence[str]) -> Embeddings:
        rows, errors = check_texts(texts)
        good: list[int] = []
        vectors: list[F32] = []
        for i in rows:
            words = self._hasher.words(texts[i])[: self.config.max_tokens]
            if not words:
                errors[i] = "text has no word characters"
                continue
            mat = np.zeros((len(words), self.dim), dtype=np.float64)
            for t, w in enumerate(words):
                j, sign = self._hasher.feature(w)
                mat[t, j] += sign
            if self.config.bigrams:
                for t in range(len(words) - 1):
                    j, sign = self._hasher.feature(f"{words[t]} {words[t + 1]}")
                    mat[t, j] += _CONTEXT_WEIGHT * sign
                    mat[t + 1, j] += _CONTEXT_WEIGHT * sign
            mat /= np.linalg.norm(mat, axis=1, keepdims=True)
            good.append(i)
            vectors.append(mat.astype(np.float32))
        return Embeddings.assemble(self.kind, self.dim, len(texts), good, vectors, errors)

    def embed_query(self, texts: Sequence[str]) -> Embeddings:
        return self.embed_documents(texts)


if TYPE_CHECKING:
    # Static proof that the built-ins satisfy the protocol the registry hands out.
    _dense: type[Encoder] = HashEncoder
    _tokens: type[Encoder] = HashTokensEncoder
