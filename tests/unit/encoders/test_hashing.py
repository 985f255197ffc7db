"""The `hash` and `hash-tokens` encoders: deterministic, normalised, and roughly lexical."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from encoders import EncoderInputError, EncoderKind
from encoders.hashing import HashConfig, HashEncoder, HashTokensConfig, HashTokensEncoder

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "a quick brown fox leaps over a lazy dog",
    "interest rates rose again at the central bank",
    "Vector search engines index embeddings",
]


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def chamfer(q: np.ndarray, d: np.ndarray) -> float:
    """MaxSim: for each query token its best document token, summed."""
    return float((q @ d.T).max(axis=1).sum())


def digest(vectors: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(vectors, dtype="<f4").tobytes()).hexdigest()[:16]


def test_deterministic_across_instances() -> None:
    a = HashEncoder(HashConfig()).embed_documents(TEXTS).dense()
    b = HashEncoder(HashConfig()).embed_documents(TEXTS).dense()
    np.testing.assert_array_equal(a, b)


def test_deterministic_across_processes() -> None:
    # Python's own str hash is salted per process; the encoder must not depend on it.
    code = (
        "import hashlib, numpy as np; from encoders.hashing import HashConfig, HashEncoder; "
        f"v = HashEncoder(HashConfig()).embed_documents({TEXTS!r}).dense(); "
        "print(hashlib.sha256(np.ascontiguousarray(v, dtype='<f4').tobytes()).hexdigest()[:16])"
    )
    root = Path(__file__).resolve().parents[3]
    here = digest(HashEncoder(HashConfig()).embed_documents(TEXTS).dense())
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=root, env=env
        )
        assert out.stdout.strip() == here


def test_golden_vector() -> None:
    # Stored vectors must stay reproducible across releases: changing the hashing changes this.
    v = HashEncoder(HashConfig(dim=64)).embed_documents(["hello nestor world"]).dense()
    assert digest(v) == GOLDEN_HELLO_64


@pytest.mark.parametrize("dim", [2, 17, 256, 1024])
def test_dims_dtype_and_unit_norm(dim: int) -> None:
    enc = HashEncoder(HashConfig(dim=dim))
    out = enc.embed_documents(TEXTS)
    assert (out.kind, enc.kind, enc.dim, out.dim) == (EncoderKind.dense, EncoderKind.dense, dim, dim)
    v = out.dense()
    assert v.shape == (len(TEXTS), dim) and v.dtype == np.float32 and v.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-6)
    assert not out.errors


def test_similar_texts_are_closer() -> None:
    v = HashEncoder(HashConfig()).embed_documents(TEXTS).dense()
    assert cos(v[0], v[1]) > 0.3
    assert cos(v[0], v[1]) > cos(v[0], v[2]) + 0.2
    assert cos(v[0], v[1]) > cos(v[0], v[3]) + 0.2


def test_query_matches_documents() -> None:
    enc = HashEncoder(HashConfig())
    q = enc.embed_query(["brown fox"]).dense()[0]
    docs = enc.embed_documents(TEXTS).dense()
    assert int(np.argmax(docs @ q)) in (0, 1)
    np.testing.assert_array_equal(enc.embed_query(TEXTS).dense(), docs)


def test_seed_case_and_bigrams_change_vectors() -> None:
    base = HashEncoder(HashConfig()).embed_documents(TEXTS).dense()
    assert not np.array_equal(HashEncoder(HashConfig(seed=1)).embed_documents(TEXTS).dense(), base)
    upper = [t.upper() for t in TEXTS]
    np.testing.assert_array_equal(HashEncoder(HashConfig()).embed_documents(upper).dense(), base)
    assert not np.array_equal(HashEncoder(HashConfig(lowercase=False)).embed_documents(upper).dense(), base)
    # Bigrams make word order matter; unigrams alone are a bag of words.
    swapped = ["dog bites man", "man bites dog"]
    with_bi = HashEncoder(HashConfig()).embed_documents(swapped).dense()
    without = HashEncoder(HashConfig(bigrams=False)).embed_documents(swapped).dense()
    np.testing.assert_array_equal(without[0], without[1])
    assert cos(with_bi[0], with_bi[1]) < 0.99


def test_bad_rows_are_reported_not_fatal() -> None:
    enc = HashEncoder(HashConfig(dim=8))
    texts: list[object] = ["fine text", "", "   ", "!!! ???", 7, "also fine"]
    out = enc.embed_documents(texts)  # type: ignore[arg-type]
    assert sorted(out.errors) == [1, 2, 3, 4]
    assert "empty" in out.errors[1] and "no word" in out.errors[3] and "string" in out.errors[4]
    assert out.ok_rows().tolist() == [0, 5]
    v = out.dense()
    assert v.shape == (6, 8)
    np.testing.assert_array_equal(v[[1, 2, 3, 4]], 0.0)
    np.testing.assert_array_equal(v[[0, 5]], enc.embed_documents(["fine text", "also fine"]).dense())
    with pytest.raises(EncoderInputError, match="row 1: text is empty"):
        out.raise_for_errors()
    with pytest.raises(TypeError, match="dense"):
        out.multivector()


def test_empty_batch() -> None:
    out = HashEncoder(HashConfig(dim=8)).embed_documents([])
    assert out.dense().shape == (0, 8) and not out.errors


def test_tokens_one_unit_vector_per_word() -> None:
    enc = HashTokensEncoder(HashTokensConfig(dim=128))
    assert (enc.kind, enc.dim, enc.name) == (EncoderKind.multivector, 128, "hash-tokens")
    out = enc.embed_documents(TEXTS)
    mv = out.multivector()
    assert [m.shape for m in mv] == [(len(t.split()), 128) for t in TEXTS]
    for m in mv:
        assert m.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(m, axis=1), 1.0, rtol=1e-6)
    again = HashTokensEncoder(HashTokensConfig(dim=128)).embed_query(TEXTS).multivector()
    for a, b in zip(mv, again, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="multivector"):
        out.dense()


def test_tokens_similar_texts_score_higher() -> None:
    mv = HashTokensEncoder(HashTokensConfig()).embed_documents(TEXTS).multivector()
    assert chamfer(mv[0], mv[1]) > chamfer(mv[0], mv[2]) + 1.0
    assert chamfer(mv[0], mv[1]) > chamfer(mv[0], mv[3]) + 1.0


def test_tokens_truncation_and_errors() -> None:
    enc = HashTokensEncoder(HashTokensConfig(dim=16, max_tokens=3))
    out = enc.embed_documents(["one two three four five", "", "solo"])
    mv = out.multivector()
    assert [m.shape for m in mv] == [(3, 16), (0, 16), (1, 16)]
    assert list(out.errors) == [1]
    without_context = HashTokensEncoder(HashTokensConfig(dim=16, bigrams=False))
    # Without bigrams a token vector is its word's signed one-hot coordinate.
    solo = without_context.embed_documents(["solo solo"]).multivector()[0]
    assert np.count_nonzero(solo[0]) == 1
    np.testing.assert_array_equal(solo[0], solo[1])


GOLDEN_HELLO_64 = "5ad39e0a887d9c66"
