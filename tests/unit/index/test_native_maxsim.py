"""The native MaxSim (index/_maxsim.h) against the numpy reference, for every token type, and its checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from index import _graph
from index.tokens import TokenFiles
from quantization.maxsim import TokenStore


def _store(rng: np.random.Generator, counts: list[int], dim: int, dtype: str) -> TokenStore:
    x = rng.normal(size=(sum(counts), dim)).astype(np.float32)
    off = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return TokenStore.from_float(x, off, dtype)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
@settings(max_examples=30, deadline=None)
@given(
    counts=st.lists(st.integers(0, 9), min_size=1, max_size=40),
    dim=st.sampled_from([1, 5, 8, 16, 37, 384]),  # below, at and past every SIMD width
    t=st.integers(1, 21),  # query tokens: the 8-, 4- and 1-row blocks
    seed=st.integers(0, 2**16),
)
def test_native_maxsim_is_the_numpy_maxsim(dtype: str, counts: list[int], dim: int, t: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    store = _store(rng, counts, dim, dtype)
    q = rng.normal(size=(t, dim)).astype(np.float32)
    n = len(counts)
    want = store.scores(q)
    got = _graph.maxsim(q, store.codes, store.row_scale, store.offsets, None, n)
    assert got.dtype == np.float32 and got.shape == (n,)
    empty = np.asarray(counts) == 0
    assert np.all(got[empty] == -np.inf)  # a document without tokens ranks last
    np.testing.assert_allclose(got[~empty], want[~empty], rtol=1e-4, atol=1e-4 * t * dim**0.5)
    docs = rng.permutation(n)[: max(1, n // 2)].astype(np.int64)  # a subset, in any order
    np.testing.assert_array_equal(_graph.maxsim(q, store.codes, store.row_scale, store.offsets, docs, n), got[docs])


def test_spare_rows_and_offsets_past_n_docs_are_not_read() -> None:
    """The token store keeps spare capacity: only `n_docs` documents and their rows count."""
    rng = np.random.default_rng(1)
    store = _store(rng, [3, 2, 4], 8, "int8")
    codes = np.concatenate([store.codes, np.full((5, 8), 127, np.int8)])
    scale = np.concatenate([store.row_scale, np.full(5, 1e9, np.float32)])  # type: ignore[list-item]
    offsets = np.concatenate([store.offsets, [999, 999]]).astype(np.int64)  # garbage past n_docs
    q = rng.normal(size=(3, 8)).astype(np.float32)
    got = _graph.maxsim(q, codes, scale, offsets, None, 3)
    np.testing.assert_allclose(got, store.scores(q), rtol=1e-5)


def test_bad_input_is_a_value_error_not_a_wild_read() -> None:
    rng = np.random.default_rng(2)
    store = _store(rng, [3, 2], 8, "int8")
    q = rng.normal(size=(2, 8)).astype(np.float32)
    codes, scale, off = store.codes, store.row_scale, store.offsets
    with pytest.raises(ValueError, match="below n_docs"):
        _graph.maxsim(q, codes, scale, off, np.array([2], np.int64), 2)
    with pytest.raises(ValueError, match="below n_docs"):
        _graph.maxsim(q, codes, scale, off, np.array([-1], np.int64), 2)
    with pytest.raises(ValueError, match="within the codes"):
        _graph.maxsim(q, codes, scale, np.array([0, 3, 9], np.int64), None, 2)
    with pytest.raises(ValueError, match="n_docs"):
        _graph.maxsim(q, codes, scale, off, None, 5)
    with pytest.raises(ValueError, match="scale"):
        _graph.maxsim(q, codes, None, off, None, 2)
    with pytest.raises(ValueError, match="dimension"):
        _graph.maxsim(q[:, :4], codes, scale, off, None, 2)
    with pytest.raises(ValueError, match="int8"):
        _graph.maxsim(q, codes.astype(np.int32), None, off, None, 2)


def test_the_token_files_score_natively(tmp_path: object) -> None:
    """`TokenSnapshot.scores` (what every MaxSim of the engine calls) gives the numpy store's scores."""
    from pathlib import Path

    rng = np.random.default_rng(3)
    counts = np.array([4, 1, 6, 2], np.int64)
    tokens = rng.normal(size=(int(counts.sum()), 16)).astype(np.float32)
    files = TokenFiles(Path(str(tmp_path)), 16, "int8", 0)
    try:
        files.append(tokens, counts)
        snap = files.snapshot()
        q = rng.normal(size=(5, 16)).astype(np.float32)
        ref = TokenStore.from_float(tokens, np.concatenate([[0], np.cumsum(counts)]), "int8")
        np.testing.assert_allclose(snap.scores(q), ref.scores(q), rtol=1e-5)
        labels = np.array([3, 0], np.int64)
        np.testing.assert_allclose(snap.scores(q, labels), ref.scores(q, labels), rtol=1e-5)
    finally:
        files.close()
