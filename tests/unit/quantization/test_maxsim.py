"""Exact MaxSim scoring: agreement with a naive loop, candidate subsets, float16/int8 error bounds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from quantization.base import load_state, save_state
from quantization.maxsim import TokenStore, gather_segments, maxsim_scores, maxsim_topk, topk_scores

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def naive_scores(q: npt.NDArray[Any], tokens: npt.NDArray[Any], offsets: I64, ids: list[int]) -> list[float]:
    out = []
    for d in ids:
        doc = tokens[offsets[d] : offsets[d + 1]].astype(np.float64)
        if len(doc) == 0:
            out.append(-np.inf)
            continue
        total = 0.0
        for qi in q.astype(np.float64):
            total += max(float(qi @ p) for p in doc)
        out.append(total)
    return out


def corpus(seed: int, n: int = 30, dim: int = 16) -> tuple[F32, I64]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 9, size=n)
    sizes[[0, n - 1]] = [0, 0]  # empty documents first and last stress the segment boundaries
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    tokens = rng.normal(size=(int(offsets[-1]), dim)).astype(np.float32)
    return tokens, offsets


@pytest.mark.parametrize("chunk", [1, 7, 10_000])
def test_all_documents_match_naive(chunk: int) -> None:
    tokens, offsets = corpus(0)
    q = np.random.default_rng(1).normal(size=(5, 16)).astype(np.float32)
    got = maxsim_scores(q, tokens, offsets, chunk_tokens=chunk)
    assert got.dtype == np.float32 and got.shape == (30,)
    np.testing.assert_allclose(got, naive_scores(q, tokens, offsets, list(range(30))), rtol=1e-5, atol=1e-5)
    assert np.isneginf(got[0]) and np.isneginf(got[-1])


def test_candidate_subset_in_given_order() -> None:
    tokens, offsets = corpus(2)
    q = np.random.default_rng(3).normal(size=(4, 16)).astype(np.float32)
    ids = [17, 3, 0, 3, 29, 8]  # any order, repeats and empty documents allowed
    got = maxsim_scores(q, tokens, offsets, ids)
    np.testing.assert_allclose(got, naive_scores(q, tokens, offsets, ids), rtol=1e-5, atol=1e-5)
    assert maxsim_scores(q, tokens, offsets, []).shape == (0,)


def test_gather_segments() -> None:
    offsets = np.array([0, 2, 2, 5, 6], dtype=np.int64)
    rows, sub = gather_segments(offsets, [2, 0, 1, 3])
    np.testing.assert_array_equal(rows, [2, 3, 4, 0, 1, 5])
    np.testing.assert_array_equal(sub, [0, 3, 5, 5, 6])
    with pytest.raises(ValueError, match="doc_ids"):
        gather_segments(offsets, [4])


def test_empty_query_scores_zero() -> None:
    tokens, offsets = corpus(4)
    got = maxsim_scores(np.zeros((0, 16), np.float32), tokens, offsets)
    nonempty = np.diff(offsets) > 0
    assert (got[nonempty] == 0).all() and np.isneginf(got[~nonempty]).all()


def test_topk_matches_sorted_naive_with_ties_by_id() -> None:
    tokens, offsets = corpus(5)
    # Documents 6 and 20 become copies of document 11: an exact three-way tie.
    docs = [tokens[offsets[d] : offsets[d + 1]] for d in range(30)]
    docs[6] = docs[20] = docs[11] = docs[11] if len(docs[11]) else tokens[:3]
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    tokens = np.concatenate(docs)
    q = tokens[offsets[11] : offsets[11] + 2] + 0.01  # makes the tied documents the best ones
    ids, scores = maxsim_topk(q, tokens, offsets, 5)
    naive = np.array(naive_scores(q, tokens, offsets, list(range(30))))
    expected = sorted(range(30), key=lambda d: (-naive[d], d))[:5]
    assert list(ids[:3]) == [6, 11, 20]
    assert list(ids) == expected
    np.testing.assert_allclose(scores, naive[expected], rtol=1e-5)
    sub_ids, _ = maxsim_topk(q, tokens, offsets, 2, doc_ids=[20, 3, 6])
    assert list(sub_ids) == [6, 20]
    assert maxsim_topk(q, tokens, offsets, 100)[0].size == 30
    assert topk_scores(np.zeros(3, np.float32), 0)[0].size == 0


@pytest.mark.parametrize(
    ("dtype", "scale"), [("float32", "row"), ("float16", "row"), ("int8", "row"), ("int8", "global")]
)
def test_store_scores_exact_for_stored_values(dtype: Any, scale: Any) -> None:
    tokens, offsets = corpus(6)
    store = TokenStore.from_float(tokens, offsets, dtype=dtype, scale=scale)
    q = np.random.default_rng(7).normal(size=(6, 16)).astype(np.float32)
    stored, off = store.dequantize()
    np.testing.assert_array_equal(off, offsets)
    np.testing.assert_allclose(store.scores(q, chunk_tokens=9), maxsim_scores(q, stored, off), rtol=1e-5, atol=1e-4)
    ids = [4, 28, 4, 13]
    sub, sub_off = store.dequantize(ids)
    np.testing.assert_allclose(store.scores(q, ids), naive_scores(q, sub, sub_off, [0, 1, 2, 3]), rtol=1e-5, atol=1e-4)
    top_ids, top_scores = store.topk(q, 3)
    np.testing.assert_array_equal(top_ids, maxsim_topk(q, stored, off, 3)[0])
    full = maxsim_scores(q, stored, off)
    expected = sorted([4, 28, 13], key=lambda d: (-full[d], d))[:2]
    np.testing.assert_array_equal(store.topk(q, 2, [4, 28, 13])[0], expected)
    np.testing.assert_allclose(top_scores, np.sort(full)[::-1][:3], rtol=1e-5)


def test_float16_error_bound() -> None:
    tokens, offsets = corpus(8, n=40, dim=32)
    q = np.random.default_rng(9).normal(size=(7, 32)).astype(np.float32)
    exact = maxsim_scores(q, tokens, offsets)
    half = TokenStore.from_float(tokens, offsets, "float16").scores(q)
    np.testing.assert_allclose(maxsim_scores(q, tokens.astype(np.float16), offsets), half, rtol=1e-6)
    # |<q, p16 - p>| <= |q| |p| 2^-11 per token, and max over tokens is 1-Lipschitz in the sup norm.
    bound = np.linalg.norm(q, axis=1).sum() * np.linalg.norm(tokens, axis=1).max() * 2.0**-11 + 1e-4
    ok = np.isfinite(exact)
    assert np.abs(half[ok] - exact[ok]).max() <= bound
    assert np.array_equal(np.isneginf(half), np.isneginf(exact))


@pytest.mark.parametrize("scale", ["row", "global"])
def test_int8_error_bound(scale: Any) -> None:
    tokens, offsets = corpus(10, n=40, dim=32)
    q = np.random.default_rng(11).normal(size=(7, 32)).astype(np.float32)
    store = TokenStore.from_float(tokens, offsets, "int8", scale=scale)
    exact = maxsim_scores(q, tokens, offsets)
    approx = store.scores(q)
    # Each coordinate is off by at most s/2, so |<q, p8 - p>| <= |q|_1 s_max / 2 per query token.
    s_max = float(store.row_scale.max()) if store.row_scale is not None else float(store.global_scale or 0)
    bound = np.abs(q).sum() * s_max / 2 + 1e-4
    ok = np.isfinite(exact)
    err = np.abs(approx[ok] - exact[ok]).max()
    assert 0 < err <= bound
    assert store.nbytes == tokens.size + (4 * tokens.shape[0] if scale == "row" else 0)


def test_zero_rows_and_store_state(tmp_path: Path) -> None:
    tokens, offsets = corpus(12)
    tokens[0] = 0.0
    for dtype, scale in (("int8", "row"), ("int8", "global"), ("float16", "row")):
        store = TokenStore.from_float(tokens, offsets, dtype, scale)  # type: ignore[arg-type]
        meta, arrays = store.state()
        save_state(tmp_path / f"{dtype}-{scale}", meta, arrays)
        back = TokenStore.from_state(*load_state(tmp_path / f"{dtype}-{scale}"))
        q = tokens[5:8]
        np.testing.assert_array_equal(back.scores(q), store.scores(q))
        assert back.dtype == dtype and back.n_docs == 30 and back.dim == 16
        assert np.isfinite(store.dequantize()[0]).all()
    with pytest.raises(ValueError, match="token_store"):
        TokenStore.from_state({"type": "x"}, {})


def test_validation() -> None:
    tokens, offsets = corpus(13)
    with pytest.raises(ValueError, match="query_tokens"):
        maxsim_scores(np.zeros((2, 5), np.float32), tokens, offsets)
    with pytest.raises(ValueError, match="offsets"):
        maxsim_scores(tokens[:2], tokens, [0, 5, 3, len(tokens)])
    with pytest.raises(ValueError, match="2-D"):
        maxsim_scores(tokens[:2], tokens[0], [0, 16])
    with pytest.raises(ValueError, match="dtype"):
        TokenStore.from_float(tokens, offsets, "int4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scale"):
        TokenStore.from_float(tokens, offsets, "int8", "col")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="need a scale"):
        TokenStore(tokens.astype(np.int8), offsets)
    with pytest.raises(ValueError, match="no scale"):
        TokenStore(tokens, offsets, 1.0)
    with pytest.raises(ValueError, match="per-row"):
        TokenStore(tokens.astype(np.int8), offsets, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="unsupported"):
        TokenStore(tokens.astype(np.float64), offsets)
