"""RRF and DBSF against results computed by hand (and Qdrant's own RRF example)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from index.fusion import dbsf, rrf


def test_rrf_matches_qdrants_example() -> None:
    lists = [
        [(2, 0.9), (1, 0.8)],
        [(1, 0.7), (2, 0.6), (3, 0.5)],
        [(5, 0.9), (3, 0.5), (1, 0.4)],
    ]
    got = rrf(lists)  # k = 2: 1 / (pos + 2)
    assert [pid for pid, _ in got] == [1, 2, 3, 5]
    assert [s for _, s in got] == pytest.approx([1 / 3 + 1 / 2 + 1 / 4, 1 / 2 + 1 / 3, 1 / 4 + 1 / 3, 1 / 2])


def test_rrf_k_and_weights() -> None:
    lists = [[(1, 0.9), (2, 0.8)], [(2, 0.9), (1, 0.8)]]
    assert rrf(lists, k=60) == [(1, pytest.approx(1 / 60 + 1 / 61)), (2, pytest.approx(1 / 61 + 1 / 60))]
    # weight 3 on the first list: positions count a third; 1: 1/(1/3+1) + 1/(2+1), 2: 1/(2/3+1) + 1/(1+1)
    got = rrf(lists, weights=[3.0, 1.0])
    assert got == [(2, pytest.approx(0.6 + 0.5)), (1, pytest.approx(0.75 + 1 / 3))]
    zero = dict(rrf([[(1, 0.9)], [(2, 0.9)]], weights=[1.0, 0.0]))
    assert zero == {1: 0.5, 2: 0.0}  # a zero-weight list contributes nothing, its points still take part
    with pytest.raises(ValueError, match="one per prefetch"):
        rrf(lists, weights=[1.0])


def test_rrf_ties_keep_first_appearance() -> None:
    # a and b score the same (1/2 + 1/3): a appeared first, so it stays first, whatever the ids
    assert [pid for pid, _ in rrf([[("b", 5.0), ("a", 1.0)], [("a", 2.0), ("b", 0.0)]])] == ["b", "a"]
    assert [pid for pid, _ in rrf([[("a", 1.0), ("b", 5.0)], [("b", 0.0), ("a", 2.0)]])] == ["a", "b"]


def test_single_element_and_empty_lists() -> None:
    assert rrf([[(7, -3.0)]]) == [(7, 0.5)]
    assert dbsf([[(7, -3.0)]]) == [(7, 0.5)]
    assert rrf([]) == [] and dbsf([[], []]) == []
    assert dbsf([[(7, 1.0)], [(7, 100.0), (8, 0.0)]])[0][0] == 7


def test_dbsf_by_hand() -> None:
    # list 1: mean 2, sample std 1, so [-1, 5] maps to [0, 1]: a 4/6, b 3/6, c 2/6
    # list 2: mean 5, sample std sqrt(50): c (10 - 5 + 3 sqrt 50) / (6 sqrt 50), d (0 - 5 + 3 sqrt 50) / (6 sqrt 50)
    got = dbsf([[("a", 3.0), ("b", 2.0), ("c", 1.0)], [("c", 10.0), ("d", 0.0)]])
    s50 = math.sqrt(50)
    c2, d2 = (5 + 3 * s50) / (6 * s50), (-5 + 3 * s50) / (6 * s50)
    assert [pid for pid, _ in got] == ["c", "a", "b", "d"]
    assert [s for _, s in got] == pytest.approx([2 / 6 + c2, 4 / 6, 3 / 6, d2])


def test_dbsf_all_equal_scores_and_ties() -> None:
    assert dbsf([[(1, 0.3), (2, 0.3), (3, 0.3)]]) == [(1, 0.5), (2, 0.5), (3, 0.5)]
    # scores outside mean +- 3 std are not clipped: one outlier among many equal scores goes past 1
    lst = [(i, 0.0) for i in range(20)] + [(99, 100.0)]
    top = dbsf([lst])[0]
    assert top[0] == 99 and top[1] > 1.0
    # equal fused scores keep first appearance
    assert [p for p, _ in dbsf([[("x", 2.0), ("y", 1.0)], [("y", 2.0), ("x", 1.0)]])] == ["x", "y"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=30))
def test_dbsf_one_list_keeps_its_order_and_centres_on_a_half(scores: list[float]) -> None:
    ranked = sorted(enumerate(scores), key=lambda p: -p[1])
    got = dbsf([ranked])
    assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
    if len(set(scores)) > 1:
        assert sum(s for _, s in got) / len(got) == pytest.approx(0.5, abs=1e-9)
    else:
        assert all(s == 0.5 for _, s in got)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 15), unique=True, max_size=10), min_size=1, max_size=4), st.integers(1, 100))
def test_rrf_is_the_sum_of_reciprocal_ranks(lists: list[list[int]], k: int) -> None:
    got = dict(rrf([[(pid, 0.0) for pid in ids] for ids in lists], k=k))
    want: dict[int, float] = {}
    for ids in lists:
        for pos, pid in enumerate(ids):
            want[pid] = want.get(pid, 0.0) + 1 / (pos + k)
    assert got == pytest.approx(want)
