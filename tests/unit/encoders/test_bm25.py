"""The bm25 encoder: tokens, stems and stopwords as bm25s makes them, stable term ids, BM25's document
weights; and, with the collection's IDF, the same scores as bm25s (times the constant k1 + 1)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from encoders.base import EncoderKind
from encoders.bm25 import Bm25Config, Bm25Encoder

CORPUS = [
    "Django REST framework JWT authentication",
    "A fast web framework for building APIs with Python",
    "Plotting library for the web, built on a fast renderer",
    "Authentication and authorization helpers for Flask web apps",
    "Fast JSON parsing and serialization",
    "Framework agnostic authentication: tokens, sessions and more",
]


def test_tokens_stems_and_stopwords() -> None:
    enc = Bm25Encoder(Bm25Config())
    assert enc.kind is EncoderKind.sparse
    assert enc.terms("running runs Runner")[:2] == [enc.terms("run")[0]] * 2  # Snowball: running, runs -> run
    assert enc.terms("the and of a") == []  # Lucene's English stopwords
    assert enc.terms("x y z") == []  # tokens are two characters or more, as in bm25s
    assert len(set(enc.terms("Django django DJANGO"))) == 1
    # ids are a hash of the stem, fixed forever: stored vectors must mean the same after a restart or upgrade
    assert enc.terms("django")[0] == Bm25Encoder(Bm25Config(k1=2.0)).terms("django")[0] == 321494124


def test_document_and_query_weights() -> None:
    cfg = Bm25Config(k1=1.2, b=0.75, avg_len=4.0)
    enc = Bm25Encoder(cfg)
    idx, val = enc.embed_documents(["web web framework for python"]).sparse()[0]  # 4 tokens after "for"
    assert list(idx) == sorted(idx)
    norm = cfg.k1 * (1 - cfg.b + cfg.b * 4 / cfg.avg_len)
    weights = dict(zip(idx.tolist(), val.tolist(), strict=True))
    assert weights[enc.terms("web")[0]] == pytest.approx(2 * 2.2 / (2 + norm), rel=1e-6)
    assert weights[enc.terms("python")[0]] == pytest.approx(1 * 2.2 / (1 + norm), rel=1e-6)
    q_idx, q_val = enc.embed_query(["web web python"]).sparse()[0]
    assert len(q_idx) == 2 and q_val.tolist() == [1.0, 1.0]
    emb = enc.embed_documents(["", "the of", "ok text"])
    assert set(emb.errors) == {0}  # a blank text is an error row; stopwords alone make an empty vector
    assert len(emb.sparse()[1][0]) == 0 and len(emb.sparse()[2][0]) == 2


def test_scores_match_bm25s() -> None:
    bm25s = pytest.importorskip("bm25s")
    stemmer_mod = pytest.importorskip("Stemmer")
    stemmer = stemmer_mod.Stemmer("english")
    tokens = bm25s.tokenize(CORPUS, stopwords="en", stemmer=stemmer, show_progress=False)
    ref = bm25s.BM25(k1=1.5, b=0.75)
    ref.index(tokens, show_progress=False)
    avg_len = float(np.mean([len(d) for d in tokens.ids]))
    enc = Bm25Encoder(Bm25Config(k1=1.5, b=0.75, avg_len=avg_len))
    docs = enc.embed_documents(CORPUS).sparse()
    n = len(docs)
    for query in ["fast web framework", "authentication", "python json parsing tokens"]:
        q_idx, q_val = enc.embed_query([query]).sparse()[0]
        df = {t: sum(1 for i, _ in docs if t in i) for t in q_idx.tolist()}
        ours = []
        for d_idx, d_val in docs:
            w = dict(zip(d_idx.tolist(), d_val.tolist(), strict=True))
            ours.append(
                sum(
                    qv * math.log((n - df[t] + 0.5) / (df[t] + 0.5) + 1) * w.get(t, 0.0)
                    for t, qv in zip(q_idx.tolist(), q_val.tolist(), strict=True)
                )
            )
        q_tok = bm25s.tokenize([query], stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)[0]
        theirs = ref.get_scores(q_tok)
        assert np.asarray(ours) == pytest.approx(np.asarray(theirs) * 2.5, rel=1e-5)  # lucene drops the (k1 + 1)
        assert max(ours) > 0
