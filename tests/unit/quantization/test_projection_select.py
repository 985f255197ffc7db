"""LeanVec-OOD that never loses (quantization/projection_select.py): the projection kept is the one with the best
candidate recall on held-out queries, ID unless another beats it; it holds on fresh queries too."""

from __future__ import annotations

import numpy as np
import pytest

from quantization.leanvec import LeanVecTransform
from quantization.projection_select import MIN_HELD, candidate_recall, choose_projection
from tests.unit.quantization._lowrank import lowrank, ood_split

DIM_OUT = 12


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_queries_like_the_data_never_lose_to_id(seed: int) -> None:
    base, queries = lowrank(n_base=4000, n_query=700, seed=seed)
    sample, fresh = queries[:400], queries[400:]  # the posted sample, and queries it never saw
    reducer, choice = choose_projection(base, sample, DIM_OUT)
    assert choice.held_out == 80 and set(choice.recall) == {"id", "id_rescaled", "ood", "blend", "pca_matryoshka"}
    assert choice.recall[choice.chosen] >= choice.recall["id"]  # on the held-out fifth
    assert choice.chosen == "id" or choice.recall[choice.chosen] > choice.recall["id"]  # others must beat it
    id_only = LeanVecTransform(DIM_OUT, "id").fit(base)
    # and on fresh queries: never worse than ID beyond the noise of 300 queries
    assert candidate_recall(reducer, fresh, base) >= candidate_recall(id_only, fresh, base) - 0.01
    info = choice.info()
    assert info["chosen"] == choice.chosen and info["held_out_queries"] == 80
    loss = info["held_out_loss"]
    assert isinstance(loss, dict) and loss["id"] == pytest.approx(1 - choice.recall["id"], abs=1e-4)


def test_shifted_queries_keep_a_query_aware_projection() -> None:
    base, sample, fresh = ood_split(n_base=4000, n_sample=500, n_query=200, seed=3)
    reducer, choice = choose_projection(base, sample, 8)
    assert choice.chosen in ("ood", "blend")
    assert choice.recall[choice.chosen] > choice.recall["id"] + 0.1
    id_only = LeanVecTransform(8, "id").fit(base)
    assert candidate_recall(reducer, fresh, base) > candidate_recall(id_only, fresh, base) + 0.1


def test_too_few_queries_to_hold_out_fit_plain_ood() -> None:
    base, sample, _ = ood_split(n_base=2000, n_sample=5 * MIN_HELD - 1, n_query=1, seed=4)
    reducer, choice = choose_projection(base, sample, 8)
    assert choice.chosen == "ood" and not choice.recall and choice.held_out == 0
    assert isinstance(reducer, LeanVecTransform) and reducer.mode == "ood" and reducer.blend == 0.0


def test_the_blend_sits_between_ood_and_the_data_and_survives_a_save() -> None:
    base, sample, _ = ood_split(n_base=2000, n_sample=300, n_query=1, seed=5)
    blend = LeanVecTransform(8, "ood", blend=0.5).fit(base, sample)
    again = LeanVecTransform.from_state(*blend.state())
    assert again.blend == 0.5
    np.testing.assert_array_equal(again.transform(base[:5]), blend.transform(base[:5]))
    plain = LeanVecTransform(8, "ood").fit(base, sample)
    assert not np.allclose(plain.query_matrix, blend.query_matrix)
    with pytest.raises(ValueError, match="blend"):
        LeanVecTransform(8, "ood", blend=1.5)


def test_rescaled_id_keeps_each_rows_full_norm_and_its_state() -> None:
    base, _ = lowrank(n_base=1000, n_query=1, seed=6)
    plain = LeanVecTransform(8, "id").fit(base)
    scaled = LeanVecTransform(8, "id", rescale=True).fit(base)
    got = scaled.transform(base[:50])
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), np.linalg.norm(base[:50] - scaled._mean, axis=1), rtol=1e-4)
    cos = np.sum(got * plain.transform(base[:50]), axis=1) / np.linalg.norm(got, axis=1)
    np.testing.assert_allclose(cos, np.linalg.norm(plain.transform(base[:50]), axis=1), rtol=1e-4)  # same direction
    again = LeanVecTransform.from_state(*scaled.state())
    # the same rows in the same batch shape: BLAS may round a 5-row product differently from a 50-row one
    assert again.rescale and np.array_equal(again.transform(base[:5]), scaled.transform(base[:5]))
