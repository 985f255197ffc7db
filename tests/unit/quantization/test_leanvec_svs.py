"""Optional cross-check against Intel SVS's own LeanVec-OOD solver (runs when `scalable-vs` is installed)."""

from __future__ import annotations

import numpy as np
import pytest

from quantization.leanvec import frank_wolfe_matrices, leanvec_loss, second_moment
from tests.synth import manifold

svs = pytest.importorskip("svs", reason="scalable-vs is not installed")

pytestmark = pytest.mark.optional


def test_frank_wolfe_matches_svs_compute_leanvec_matrices() -> None:
    x = manifold(4000, 48, latent=8, seed=1)
    q = manifold(600, 48, latent=8, seed=2) * np.linspace(0.2, 1.8, 48, dtype=np.float32)  # shifted queries
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    kx, kq = second_moment(x), second_moment(q)
    ours_b, ours_a, _ = frank_wolfe_matrices(kq, kx, 12)
    svs_b, svs_a = svs.compute_leanvec_matrices(x, q, 12)
    ours = leanvec_loss(kq, kx, ours_a, ours_b)
    theirs = leanvec_loss(kq, kx, svs_a.astype(np.float64), svs_b.astype(np.float64))
    assert ours == pytest.approx(theirs, rel=0.02)
    # the reduced inner products agree as well, up to float32 rounding in SVS
    np.testing.assert_allclose((q @ ours_a) @ (x[:50] @ ours_b).T, (q @ svs_a) @ (x[:50] @ svs_b).T, atol=2e-2)
