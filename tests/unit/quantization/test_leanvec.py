"""LeanVec: properties of the PCA (ID) and learned (OOD) maps, and recall on structured synthetic data."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantization.base import Transform, load_state, save_state
from quantization.leanvec import (
    LeanVecTransform,
    NotFittedError,
    as_matrix,
    closed_form_matrices,
    frank_wolfe_matrices,
    leanvec_loss,
    second_moment,
)
from tests.unit.quantization._lowrank import F32, exact_topk, lowrank, ood_split, recall, rerank_recall, topk

PROPS = settings(max_examples=30, deadline=None)


@st.composite
def samples(draw: st.DrawFn, min_rows: int = 2, max_rows: int = 40, max_dim: int = 12) -> tuple[F32, F32]:
    """A data and a query sample: Gaussian with a random per-dimension scale, sometimes rank-deficient."""
    n = draw(st.integers(min_rows, max_rows))
    d = draw(st.integers(1, max_dim))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = rng.uniform(0.01, 3.0, d)
    x = rng.standard_normal((n, d)) * scale + rng.standard_normal(d)
    if draw(st.booleans()):  # collinear rows: covariance of rank 1
        x = rng.standard_normal((n, 1)) * rng.standard_normal((1, d))
    q = rng.standard_normal((draw(st.integers(1, max_rows)), d)) * scale[::-1]
    return x.astype(np.float32), q.astype(np.float32)


def fitted(x: F32, q: F32, mode: str, frac: float, **kw: Any) -> LeanVecTransform:
    dim_out = max(1, round(frac * x.shape[1]))
    return LeanVecTransform(dim_out, mode, **kw).fit(x, q)  # type: ignore[arg-type]


MODES = st.sampled_from([("id", "closed_form"), ("ood", "closed_form"), ("ood", "frank_wolfe")])


@PROPS
@given(samples(), MODES, st.floats(0.0, 1.0))
def test_shapes_dtypes_and_finite(data: tuple[F32, F32], mode: tuple[str, str], frac: float) -> None:
    x, q = data
    t = fitted(x, q, mode[0], frac, solver=mode[1], n_max_steps=20)
    assert isinstance(t, Transform) and t.is_fitted
    assert (t.d_in, t.d_out) == (x.shape[1], max(1, round(frac * x.shape[1])))
    for out, n in ((t.transform(x), x.shape[0]), (t.transform_queries(q), q.shape[0])):
        assert out.shape == (n, t.d_out) and out.dtype == np.float32 and np.isfinite(out).all()
    assert t.query_offset(q).shape == (q.shape[0],)


@PROPS
@given(samples(max_rows=30), MODES, st.integers(0, 3))
def test_deterministic_under_seed(data: tuple[F32, F32], mode: tuple[str, str], seed: int) -> None:
    x, q = data
    kw: dict[str, Any] = {"solver": mode[1], "seed": seed, "max_fit_rows": 10, "n_max_steps": 20}
    a, b = fitted(x, q, mode[0], 0.5, **kw), fitted(x, q, mode[0], 0.5, **kw)
    assert np.array_equal(a.transform(x), b.transform(x))
    assert np.array_equal(a.transform_queries(q), b.transform_queries(q))


@PROPS
@given(samples(), MODES)
def test_state_round_trip(data: tuple[F32, F32], mode: tuple[str, str]) -> None:
    x, q = data
    t = fitted(x, q, mode[0], 0.5, solver=mode[1], n_max_steps=20)
    with tempfile.TemporaryDirectory() as tmp:
        save_state(Path(tmp), *t.state())
        u = LeanVecTransform.from_state(*load_state(Path(tmp)))
    assert u.state()[0] == t.state()[0]
    assert np.array_equal(u.transform(x), t.transform(x))
    assert np.array_equal(u.transform_queries(q), t.transform_queries(q))
    assert np.array_equal(u.query_offset(q), t.query_offset(q))


@PROPS
@given(samples(min_rows=3))
def test_id_full_dimension_is_exact(data: tuple[F32, F32]) -> None:
    # With every component kept P is orthogonal: reduced score + q.mean == q.x exactly (up to rounding).
    x, q = data
    t = LeanVecTransform(x.shape[1]).fit(x)
    p = t.state()[1]["data_matrix"]
    assert np.allclose(p.T @ p, np.eye(x.shape[1]), atol=1e-5)
    approx = t.transform_queries(q) @ t.transform(x).T + t.query_offset(q)[:, None]
    assert np.allclose(approx, q @ x.T, atol=1e-4 * (1 + np.abs(q @ x.T).max()))


def test_ood_closed_form_full_dimension_is_exact() -> None:
    rng = np.random.default_rng(1)
    x, q = (
        rng.standard_normal((200, 10)).astype(np.float32),
        rng.standard_normal((150, 10)).astype(np.float32),
    )
    t = LeanVecTransform(10, "ood").fit(x, q)
    assert np.allclose(t.transform_queries(q) @ t.transform(x).T, q @ x.T, atol=1e-3)
    assert np.array_equal(t.query_offset(q), np.zeros(150, np.float32))
    # The free d x d factor went to the query side: the data map has orthonormal columns.
    b = t.state()[1]["data_matrix"]
    assert np.allclose(b.T @ b, np.eye(10), atol=1e-5)


def test_losses_closed_form_beats_frank_wolfe_beats_nothing() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((400, 24)) * np.linspace(2.0, 0.1, 24)
    q = rng.standard_normal((300, 24)) * np.linspace(0.1, 2.0, 24)
    kx, kq = second_moment(x.astype(np.float32)), second_moment(q.astype(np.float32))
    kx, kq = kx / np.trace(kx), kq / np.trace(kq)
    b_cf, a_cf = closed_form_matrices(kq, kx, 6, ridge=0.0)
    b_fw, a_fw, steps = frank_wolfe_matrices(kq, kx, 6)
    pca = np.linalg.eigh(kx)[1][:, ::-1][:, :6]
    nothing = leanvec_loss(kq, kx, np.zeros((24, 6)), np.zeros((24, 6)))
    cf, fw, pc = (leanvec_loss(kq, kx, a, b) for a, b in ((a_cf, b_cf), (a_fw, b_fw), (pca, pca)))
    assert 2 < steps < 500
    # The closed form is the exact rank-6 optimum, so nothing (FW, PCA) can beat it.
    assert cf <= fw + 1e-12 and cf <= pc + 1e-12 and fw < nothing
    # Eckart-Young: the optimum loss is the tail of the singular values of KQ^1/2 KX^1/2.
    root = [np.real(v @ np.diag(np.sqrt(np.maximum(w, 0))) @ v.T) for w, v in map(np.linalg.eigh, (kq, kx))]
    sv = np.linalg.svd(root[0] @ root[1], compute_uv=False)
    assert cf == pytest.approx(float(np.sum(sv[6:] ** 2)), rel=1e-6)
    # The loss helper agrees with SVS's literal D x D formula.
    literal = np.trace(b_fw @ a_fw.T @ kq @ a_fw @ b_fw.T @ kx) - 2 * np.trace(kq @ a_fw @ b_fw.T @ kx)
    assert fw == pytest.approx(float(literal + np.trace(kq @ kx)), rel=1e-9)


# --- quality on structured synthetic data (thresholds: measured on seeds 0-2, minus a margin) ---------------


def test_id_recall_with_rerank() -> None:
    base, queries = lowrank()
    truth = exact_topk(base, queries, 10)
    t = LeanVecTransform(12).fit(base)
    cand = topk(t.transform_queries(queries) @ t.transform(base).T, 50)
    # 12 of 16 latent factors: 0.67-0.71 alone, 0.97-0.98 after re-ranking 50.
    assert recall(cand, truth, 10) >= 0.55
    assert rerank_recall(base, queries, cand, truth) >= 0.93
    full = LeanVecTransform(16).fit(base)  # the whole latent space: ~0.98 with no rerank at all
    assert recall(topk(full.transform_queries(queries) @ full.transform(base).T, 10), truth, 10) >= 0.94


@pytest.mark.parametrize("solver", ["closed_form", "frank_wolfe"])
def test_ood_beats_id_when_queries_differ(solver: str) -> None:
    base, sample, queries = ood_split()
    truth = exact_topk(base, queries, 10)

    def shortlist(t: LeanVecTransform) -> Any:
        return topk(t.transform_queries(queries) @ t.transform(base).T, 20)

    id_cand = shortlist(LeanVecTransform(8).fit(base))
    ood_cand = shortlist(LeanVecTransform(8, "ood", solver=solver).fit(base, sample))  # type: ignore[arg-type]
    # PCA keeps the 8 strong data factors the queries ignore: ID ~0.06 vs OOD ~0.98 after re-ranking 20.
    assert rerank_recall(base, queries, ood_cand, truth) >= 0.9
    assert rerank_recall(base, queries, id_cand, truth) <= 0.3
    assert recall(ood_cand, truth, 10) >= recall(id_cand, truth, 10) + 0.5


# --- errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dim_out": 0},
        {"dim_out": 2, "mode": "pca"},
        {"dim_out": 2, "solver": "sgd"},
        {"dim_out": 2, "max_fit_rows": 0},
        {"dim_out": 2, "ridge": -1.0},
    ],
)
def test_invalid_config(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        LeanVecTransform(**kwargs)


def test_usage_errors() -> None:
    x = np.ones((5, 4), np.float32)
    t = LeanVecTransform(2)
    assert not t.is_fitted and not isinstance(t, Transform)  # d_in is unknown before fit
    with pytest.raises(NotFittedError):
        t.transform(x)
    with pytest.raises(ValueError, match="exceeds"):
        LeanVecTransform(5).fit(x)
    with pytest.raises(ValueError, match="query sample"):
        LeanVecTransform(2, "ood").fit(x)
    t.fit(x)
    with pytest.raises(ValueError, match="columns"):
        t.transform(np.ones((5, 3), np.float32))
    with pytest.raises(ValueError, match="kind"):
        LeanVecTransform.from_state({"kind": "binary"}, {})
    meta, arrays = t.state()
    with pytest.raises(ValueError, match="inconsistent"):
        LeanVecTransform.from_state(meta, {**arrays, "mean": np.zeros(3, np.float32)})


@pytest.mark.parametrize(
    ("value", "match"),
    [(np.ones(3), "2-D"), (np.array([[1.0, np.nan]]), "NaN"), (np.array([["a"]]), "numeric")],
)
def test_as_matrix_rejects(value: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        as_matrix(value)


def test_closed_form_without_ridge_tolerates_a_singular_sample() -> None:
    x = np.zeros((50, 6), np.float32)
    x[:, :3] = np.random.default_rng(3).standard_normal((50, 3))
    t = LeanVecTransform(2, "ood", ridge=0.0).fit(x, x)
    assert np.isfinite(t.transform(x)).all() and np.isfinite(t.transform_queries(x)).all()
