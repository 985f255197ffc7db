"""`bm25`: text to a sparse vector of BM25 term weights (the document side; the IDF is the collection's).

Tokenising follows bm25s's defaults, so the two rank alike: lower-case, words of two or more word
characters (`(?u)\\b\\w\\w+\\b`), Lucene's 33 English stopwords dropped, each word reduced to its
Snowball stem (PyStemmer, the C build of the Snowball stemmers that bm25s and Lucene use).

A document's value for term t is BM25's saturated, length-normalised term frequency,
tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len)), where `len` is the document's token count
after stopwords; a query's is 1 per distinct term. The IDF is not the encoder's: a sparse vector
with `modifier: "idf"` multiplies each query weight by it at search time, from document frequencies
the collection keeps current (Qdrant's split, which keeps stored vectors valid as the corpus grows).
`avg_len` is therefore fixed in the config (Qdrant's default 256): set it near your corpus's average
document length for the best length normalisation.

Term ids are hashes (keyed blake2b, 32 bits) of the stems rather than vocabulary positions: the same
word gets the same id in every process, shard and restart, with no vocabulary to persist or
synchronise. Two stems share an id with probability about 1/2^32 per pair.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from hashlib import blake2b
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
from pydantic import Field

from encoders.base import (
    BaseEncoder,
    Embeddings,
    EncoderConfig,
    EncoderKind,
    EncoderUnavailable,
    SparseEmbedding,
    check_texts,
)

if TYPE_CHECKING:
    from encoders.base import Encoder

__all__ = ["ENGLISH_STOPWORDS", "Bm25Config", "Bm25Encoder"]

# Lucene's English stop set (EnglishAnalyzer), as bm25s ships it.
ENGLISH_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with".split()
)
_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_PERSON = b"nestor.bm25"
SPARSE_DIM = 1 << 32  # the id space of a sparse vector


class Bm25Config(EncoderConfig):
    k1: float = Field(default=1.2, ge=0.0, le=10.0)
    b: float = Field(default=0.75, ge=0.0, le=1.0)
    avg_len: float = Field(default=256.0, gt=0.0)
    language: Literal["english"] | None = "english"  # the Snowball stemmer; None: no stemming
    stopwords: Literal["english"] | None = "english"
    lowercase: bool = True
    max_batch_size: int = Field(default=4096, ge=1)


def _stemmer(language: str | None) -> Callable[[str], str] | None:
    if language is None:
        return None
    try:
        import Stemmer  # PyStemmer
    except ImportError as exc:
        raise EncoderUnavailable(f"the bm25 encoder stems with PyStemmer: pip install PyStemmer ({exc})") from None
    stem: Callable[[str], str] = Stemmer.Stemmer(language).stemWord
    return stem


class Bm25Encoder(BaseEncoder[Bm25Config]):
    name: ClassVar[str] = "bm25"
    kind: ClassVar[EncoderKind] = EncoderKind.sparse
    config_model: ClassVar[type[EncoderConfig]] = Bm25Config

    def __init__(self, config: Bm25Config) -> None:
        super().__init__(config)
        self._stem = _stemmer(config.language)
        self._stop = ENGLISH_STOPWORDS if config.stopwords == "english" else frozenset()
        # word -> term id, stem included; vocabularies are Zipfian, so a bounded cache catches most
        self._term = lru_cache(maxsize=1 << 18)(self._term_id)

    @property
    def dim(self) -> int:
        return SPARSE_DIM

    @property
    def max_batch_size(self) -> int:
        return self.config.max_batch_size

    def _term_id(self, word: str) -> int:
        stem = self._stem(word) if self._stem is not None else word
        return int.from_bytes(blake2b(stem.encode("utf-8"), digest_size=4, person=_PERSON).digest(), "little")

    def terms(self, text: str) -> list[int]:
        """The term ids of a text's tokens, in order, stopwords dropped."""
        words = _TOKEN.findall(text.lower() if self.config.lowercase else text)
        stop, term = self._stop, self._term
        return [term(w) for w in words if w not in stop]

    def embed_documents(self, texts: Sequence[str]) -> Embeddings:
        cfg = self.config
        rows, errors = check_texts(texts)
        out: list[SparseEmbedding] = []
        for i in rows:
            terms = self.terms(texts[i])
            tf = Counter(terms)
            idx = np.fromiter(tf.keys(), np.uint32, len(tf))
            f = np.fromiter(tf.values(), np.float32, len(tf))
            norm = cfg.k1 * (1.0 - cfg.b + cfg.b * len(terms) / cfg.avg_len)
            out.append(_sorted(idx, (f * (cfg.k1 + 1.0) / (f + norm)).astype(np.float32)))
        return _assemble(len(texts), rows, out, errors)

    def embed_query(self, texts: Sequence[str]) -> Embeddings:
        rows, errors = check_texts(texts)
        out: list[SparseEmbedding] = []
        for i in rows:
            idx = np.fromiter(set(self.terms(texts[i])), np.uint32)
            out.append(_sorted(idx, np.ones(len(idx), np.float32)))
        return _assemble(len(texts), rows, out, errors)


def _sorted(idx: np.typing.NDArray[np.uint32], val: np.typing.NDArray[np.float32]) -> SparseEmbedding:
    order = np.argsort(idx)
    return idx[order], val[order]


def _assemble(n: int, rows: list[int], vectors: list[SparseEmbedding], errors: dict[int, str]) -> Embeddings:
    empty: SparseEmbedding = (np.zeros(0, np.uint32), np.zeros(0, np.float32))
    out = [empty] * n
    for row, v in zip(rows, vectors, strict=True):
        out[row] = v
    return Embeddings(EncoderKind.sparse, SPARSE_DIM, out, errors)


if TYPE_CHECKING:
    _bm25: type[Encoder] = Bm25Encoder
