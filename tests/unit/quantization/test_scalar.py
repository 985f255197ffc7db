"""int8 scalar quantization: code range, reconstruction error, asymmetric scores, clipping, recall."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from quantization.base import Transform, load_state, save_state
from quantization.leanvec import NotFittedError
from quantization.scalar import Int8Quantizer
from tests.unit.quantization._lowrank import F32, exact_topk, lowrank, recall, topk

PROPS = settings(max_examples=40, deadline=None)

FLOATS = st.floats(-100, 100, width=32, allow_subnormal=False)


@st.composite
def matrices(draw: st.DrawFn, max_rows: int = 30, max_dim: int = 16) -> F32:
    shape = (draw(st.integers(1, max_rows)), draw(st.integers(1, max_dim)))
    return draw(arrays(np.float32, shape, elements=FLOATS))


@PROPS
@given(matrices(), st.booleans())
def test_full_range_error_is_at_most_half_a_step(x: F32, per_dimension: bool) -> None:
    q = Int8Quantizer(quantile=1.0, per_dimension=per_dimension).fit(x)
    assert isinstance(q, Transform) and q.d_in == q.d_out == x.shape[1]
    codes = q.transform(x)
    assert codes.dtype == np.int8 and codes.shape == x.shape
    assert np.array_equal(q.encode(x), codes)
    recon = q.decode(codes)
    assert recon.dtype == np.float32
    delta = q.state()[1]["delta"]
    assert np.all(np.abs(recon - x) <= delta / 2 + 1e-5 * (1 + np.abs(x)))
    if per_dimension:  # the extremes of each dimension hit the ends of the code range
        assert np.all((codes.min(axis=0) == -128) | (delta == 0))
        assert np.all((codes.max(axis=0) == 127) | (delta == 0))


@PROPS
@given(matrices(), st.floats(0.5, 1.0), st.booleans())
def test_asymmetric_scores_match_decoded_inner_products(x: F32, quantile: float, per_dimension: bool) -> None:
    q = Int8Quantizer(quantile, per_dimension).fit(x)
    codes = q.transform(x)
    scores = q.asymmetric_scores(x, codes)
    expected = x.astype(np.float64) @ q.decode(codes).T.astype(np.float64)
    assert scores.shape == (x.shape[0], x.shape[0]) and scores.dtype == np.float32
    assert np.allclose(scores, expected, rtol=1e-4, atol=1e-4 * (1 + np.abs(expected).max()))


@PROPS
@given(matrices(), st.floats(0.5, 1.0))
def test_clipping_keeps_decoded_values_inside_the_fitted_range(x: F32, quantile: float) -> None:
    q = Int8Quantizer(quantile).fit(x)
    lo, delta = q.state()[1]["lo"], q.state()[1]["delta"]
    wild = (x * 10).astype(np.float32)
    recon = q.decode(q.transform(wild))
    assert np.all(recon >= lo - 1e-4 * (1 + np.abs(lo))) and np.all(recon <= lo + 255 * delta + 1e-3)


@PROPS
@given(matrices(max_rows=20), st.floats(0.5, 1.0), st.booleans(), st.integers(0, 3))
def test_deterministic_and_state_round_trip(x: F32, quantile: float, per_dimension: bool, seed: int) -> None:
    a = Int8Quantizer(quantile, per_dimension, seed, max_fit_rows=7).fit(x)
    b = Int8Quantizer(quantile, per_dimension, seed, max_fit_rows=7).fit(x)
    assert np.array_equal(a.transform(x), b.transform(x))
    with tempfile.TemporaryDirectory() as tmp:
        save_state(Path(tmp), *a.state())
        c = Int8Quantizer.from_state(*load_state(Path(tmp)))
    assert c.state()[0] == a.state()[0]
    codes = a.transform(x)
    assert np.array_equal(c.transform(x), codes)
    assert np.array_equal(c.decode(codes), a.decode(codes))
    assert np.array_equal(c.asymmetric_scores(x, codes), a.asymmetric_scores(x, codes))


def test_constant_dimension_decodes_exactly() -> None:
    x = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]], np.float32)
    q = Int8Quantizer().fit(x)
    recon = q.decode(q.transform(np.array([[2.0, 5.0], [2.0, 9.0]], np.float32)))
    assert np.all(recon[:, 1] == 5.0)


def test_quantile_clips_outliers() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 4)).astype(np.float32)
    x[0] = 1000.0  # one outlier would otherwise stretch every step by ~150x
    full, clipped = Int8Quantizer(1.0).fit(x), Int8Quantizer(0.99).fit(x)
    err_full = np.abs(full.decode(full.transform(x[1:])) - x[1:]).mean()
    err_clipped = np.abs(clipped.decode(clipped.transform(x[1:])) - x[1:]).mean()
    assert err_clipped < err_full / 10


def test_per_dimension_ranges_beat_a_global_range_on_uneven_spreads() -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2000, 16)) * np.logspace(0, -3, 16)).astype(np.float32)
    errors = {}
    for per_dimension in (True, False):
        q = Int8Quantizer(per_dimension=per_dimension).fit(x)
        errors[per_dimension] = np.mean((q.decode(q.transform(x)) - x) ** 2)
    assert errors[True] < errors[False] / 2


def test_recall_without_rerank() -> None:
    base, queries = lowrank()
    truth = exact_topk(base, queries, 10)
    q = Int8Quantizer().fit(base)
    found = topk(q.asymmetric_scores(queries, q.transform(base)), 10)
    assert recall(found, truth, 10) >= 0.95  # measured 0.99 on seeds 0-2


def test_usage_errors() -> None:
    with pytest.raises(ValueError):
        Int8Quantizer(quantile=0.4)
    with pytest.raises(ValueError):
        Int8Quantizer(max_fit_rows=0)
    q = Int8Quantizer()
    assert not q.is_fitted
    with pytest.raises(NotFittedError):
        q.transform(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="empty"):
        q.fit(np.ones((0, 3), np.float32))
    q.fit(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="codes"):
        q.decode(np.ones((2, 3), np.uint8))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind"):
        Int8Quantizer.from_state({"kind": "binary"}, {})
    with pytest.raises(ValueError, match="inconsistent"):
        Int8Quantizer.from_state(q.state()[0], {"lo": np.zeros(3, np.float32), "delta": np.zeros(2, np.float32)})
