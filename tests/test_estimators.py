"""Judging a transfer estimator against the realised transfer (issue 25): correlations, sign
accuracy on clearly non-zero pairs, grouping regret, and the realised matrix's own reliability."""

from __future__ import annotations

import numpy as np
import pytest

from mtlab.advise.estimators import (
    TransferEstimate,
    grouping_regret,
    grouping_value,
    judge,
    off_diagonal,
    sign_accuracy,
    split_half_reliability,
)

TASKS = tuple(f"t{i}" for i in range(8))
BLOCKS = [(0, 1, 2), (3, 4, 5), (6, 7)]


def planted(within: float = 0.1, across: float = -0.02) -> np.ndarray:
    """A realised transfer matrix with three planted blocks."""
    m = np.full((8, 8), across)
    for b in BLOCKS:
        m[np.ix_(b, b)] = within
    np.fill_diagonal(m, 0.0)
    return m


def test_a_perfect_estimate_and_its_opposite():
    r, se = planted(), np.full((8, 8), 0.005)
    same = judge(TransferEstimate("same", TASKS, r * 3 + 1, cost_steps=10), r, se, budgets=(3,))
    assert same["spearman"] == pytest.approx(1.0) and same["pearson"] == pytest.approx(1.0)
    assert same["sign_accuracy"] == 0.25  # r·3 + 1 > 0 everywhere: only the 14 within-block signs
    assert same["clear_pairs"] == 56
    assert same["grouping"][0]["regret"] == pytest.approx(0.0)  # rank order is what groups
    exact = judge(TransferEstimate("exact", TASKS, r, cost_steps=10), r, se, budgets=(3,))
    assert exact["sign_accuracy"] == 1.0
    assert sorted(map(tuple, exact["grouping"][0]["chosen"])) == BLOCKS
    flipped = judge(TransferEstimate("flipped", TASKS, -r, cost_steps=10), r, se, budgets=(3,))
    assert flipped["spearman"] == pytest.approx(-1.0) and flipped["sign_accuracy"] == 0.0
    assert flipped["grouping"][0]["regret"] > 0.5


def test_sign_accuracy_counts_only_clear_pairs():
    r = planted()
    se = np.full((8, 8), 0.005)
    se[0, 3] = 1.0  # −0.02 ± 1: not clear, not counted
    est = r.copy()
    est[0, 3] = 0.5  # wrong sign on an unclear pair
    est[0, 1] = -0.1  # wrong sign on a clear pair
    acc, n = sign_accuracy(est, r, se)
    assert n == 55 and acc == pytest.approx(54 / 55)
    assert np.isnan(sign_accuracy(est, r, np.full((8, 8), 1.0))[0])


def test_grouping_value_and_regret():
    r = planted()
    assert grouping_value(r, BLOCKS) == pytest.approx(0.1)
    merged = [(0, 1, 2, 3, 4, 5), (6, 7)]
    assert grouping_value(r, merged) < 0.1
    g = grouping_regret(r[::-1, ::-1].copy(), r, budget=3)  # tasks relabelled: wrong blocks
    assert g["best_value"] == pytest.approx(0.1) and g["regret"] > 0 and g["optimal"]


def test_split_half_reliability_is_the_ceiling():
    rng = np.random.default_rng(0)
    truth = planted() + 0.05 * rng.normal(size=(8, 8))  # graded, as real transfer is
    signal = [truth + 0.01 * rng.normal(size=(8, 8)) for _ in range(6)]
    noise = [0.02 * rng.normal(size=(8, 8)) for _ in range(6)]
    assert split_half_reliability(signal) > 0.6
    assert abs(split_half_reliability(noise)) < 0.4
    with pytest.raises(ValueError, match="two seeds"):
        split_half_reliability(signal[:1])


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="8 × 8"):
        TransferEstimate("x", TASKS, np.zeros((3, 3)), cost_steps=1)
    with pytest.raises(ValueError, match="cost_steps"):
        TransferEstimate("x", TASKS, np.zeros((8, 8)), cost_steps=-1)
    with pytest.raises(ValueError, match="differ"):
        judge(TransferEstimate("x", TASKS, np.zeros((8, 8)), 1), np.zeros((3, 3)), np.zeros((3, 3)))
    assert off_diagonal(np.arange(9.0).reshape(3, 3)).tolist() == [1, 2, 3, 5, 6, 7]
