"""Transfer estimators and how they are judged against the realised transfer (issue 25, first
part: the judging).

An estimator answers "how much does training with task j help task i" for every pair without
training every pair: a budget in, an estimated ``T × T`` matrix out (rows: recipient, columns:
source), with its cost counted in task-training steps. It is judged against the *realised*
transfer — every pair trained together over seeds — by :func:`judge`:

* Spearman and Pearson correlation with the realised matrix over the off-diagonal pairs;
* sign accuracy on the pairs whose realised transfer is clearly non-zero (beyond ``clear`` standard
  errors);
* the *grouping regret* per budget: how much of the best grouping's realised value the grouping
  chosen on the estimate gives up, both groupings valued on the realised matrix
  (:func:`grouping_regret`);

beside the realised matrix's own split-half reliability (:func:`split_half_reliability`), the
ceiling no estimator can beat with these seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: a realised entry counts as clearly non-zero beyond this many standard errors
CLEAR_SE = 2.0


@dataclass(frozen=True)
class TransferEstimate:
    """One estimator's answer: ``matrix[i, j]`` the estimated transfer from source ``j`` onto
    recipient ``i`` (the diagonal is not used), its standard error over seeds where the
    estimator has seeds, and its cost in task-training steps."""

    name: str
    tasks: tuple[str, ...]
    matrix: np.ndarray
    cost_steps: float
    se: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = np.asarray(self.matrix, float)
        if m.shape != (len(self.tasks), len(self.tasks)):
            raise ValueError(f"{self.name}: a {len(self.tasks)} × {len(self.tasks)} matrix is "
                             f"needed for {len(self.tasks)} tasks (got {m.shape})")  # fmt: skip
        if self.se is not None and np.shape(self.se) != m.shape:
            raise ValueError(f"{self.name}: the standard errors' shape {np.shape(self.se)} is "
                             f"not the matrix's {m.shape}")  # fmt: skip
        if not self.cost_steps >= 0:
            raise ValueError(f"{self.name}: cost_steps must be >= 0 (got {self.cost_steps})")


def off_diagonal(m: np.ndarray) -> np.ndarray:
    """The off-diagonal entries of a square matrix, row by row."""
    m = np.asarray(m, float)
    return m[~np.eye(len(m), dtype=bool)]


def _corr(a: np.ndarray, b: np.ndarray, kind: str) -> float:
    from scipy.stats import pearsonr, spearmanr

    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    f = spearmanr if kind == "spearman" else pearsonr
    return float(f(a, b).statistic)


def sign_accuracy(estimate: np.ndarray, realised: np.ndarray, realised_se: np.ndarray,
                  clear: float = CLEAR_SE) -> tuple[float, int]:  # fmt: skip
    """(fraction of the clearly non-zero realised pairs — |realised| > ``clear`` s.e. — whose
    estimated sign matches, how many such pairs); NaN where there is none."""
    e, r, s = (off_diagonal(x) for x in (estimate, realised, realised_se))
    mask = np.isfinite(e) & np.isfinite(r) & np.isfinite(s) & (np.abs(r) > clear * s)
    if not mask.any():
        return float("nan"), 0
    return float(np.mean(np.sign(e[mask]) == np.sign(r[mask]))), int(mask.sum())


def grouping_value(matrix: np.ndarray, groups: Sequence[Sequence[int]]) -> float:
    """The grouping objective (:mod:`mtlab.grouping`: per task, the best mean incoming transfer
    over the groups it belongs to, averaged over tasks) of ``groups`` valued on ``matrix``."""
    from mtlab.grouping import group_scores

    _, scores = group_scores(np.asarray(matrix, float), [tuple(g) for g in groups])
    return float(scores.max(axis=0).mean())


def grouping_regret(estimate: np.ndarray, realised: np.ndarray, budget: int,
                    time_limit: float = 60.0) -> dict[str, Any]:  # fmt: skip
    """The best grouping (at most ``budget`` groups) chosen on ``estimate`` and on ``realised``,
    both valued on ``realised``: ``regret`` = (best − chosen) / |best| (0: the estimate picks a
    grouping as good as the best; NaN when the best is 0). Each search is exact, or the best
    found within ``time_limit`` seconds (``optimal`` False)."""
    from mtlab.grouping import best_grouping

    chosen = best_grouping(np.nan_to_num(estimate), budget, time_limit=time_limit, anytime=True)
    best = best_grouping(realised, budget, time_limit=time_limit, anytime=True)
    v_chosen, v_best = grouping_value(realised, chosen.groups), best.value
    regret = (v_best - v_chosen) / abs(v_best) if v_best != 0 else float("nan")
    return {"budget": budget, "chosen": [list(g) for g in chosen.groups],
            "best": [list(g) for g in best.groups], "chosen_value": v_chosen,
            "best_value": v_best, "regret": float(regret),
            "optimal": bool(chosen.optimal and best.optimal)}  # fmt: skip


def split_half_reliability(per_seed: Sequence[np.ndarray]) -> float:
    """Spearman correlation (off-diagonal) between the mean matrix of the first half of the
    seeds and that of the second half: how well the realised matrix agrees with itself, the
    ceiling for any estimator judged against it. Needs two seeds or more."""
    mats = [np.asarray(m, float) for m in per_seed]
    if len(mats) < 2:
        raise ValueError("split-half reliability needs two seeds or more")
    half = len(mats) // 2
    a = np.nanmean(mats[:half], axis=0)
    b = np.nanmean(mats[half:], axis=0)
    return _corr(off_diagonal(a), off_diagonal(b), "spearman")


def judge(estimate: TransferEstimate, realised: np.ndarray, realised_se: np.ndarray,
          budgets: Sequence[int] = (), clear: float = CLEAR_SE,
          time_limit: float = 60.0) -> dict[str, Any]:  # fmt: skip
    """One estimator against the realised transfer: its cost, Spearman and Pearson with the
    realised matrix (off-diagonal), sign accuracy on the clearly non-zero pairs, and the
    grouping regret at each budget."""
    realised = np.asarray(realised, float)
    if realised.shape != estimate.matrix.shape:
        raise ValueError(f"the realised matrix {realised.shape} and {estimate.name}'s "
                         f"{estimate.matrix.shape} differ")  # fmt: skip
    e, r = off_diagonal(estimate.matrix), off_diagonal(realised)
    acc, n_clear = sign_accuracy(estimate.matrix, realised, realised_se, clear)
    return {
        "estimator": estimate.name,
        "cost_steps": estimate.cost_steps,
        "spearman": _corr(e, r, "spearman"),
        "pearson": _corr(e, r, "pearson"),
        "sign_accuracy": acc,
        "clear_pairs": n_clear,
        "grouping": [grouping_regret(estimate.matrix, realised, b, time_limit) for b in budgets],
    }


__all__ = ["CLEAR_SE", "TransferEstimate", "grouping_regret", "grouping_value", "judge",
           "off_diagonal", "sign_accuracy", "split_half_reliability"]  # fmt: skip
