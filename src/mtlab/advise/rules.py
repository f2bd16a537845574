"""The rules ``mtlab advise`` decides by — fixed here, before any number, and unit-tested on small
tables where they must hold and where they must fail.

* :func:`clear_winner`: a candidate beats STL only if its mean paired difference over seeds
  exceeds ``CLEAR_MARGIN_SE`` standard errors of that difference (and is positive); with fewer
  than ``MIN_SEEDS`` seeds nothing is clear.
* :func:`helpful_source`: a source task helps a recipient if its mean affinity onto it exceeds
  ``CLEAR_MARGIN_SE`` standard errors (over seeds) above zero; the most helpful such source.
* :func:`stable_grouping`: a grouping is acted on with confidence only if at least
  ``STABLE_FRACTION`` of the seeds' own affinity matrices choose it too; else it is reported
  as not distinguishable from the alternatives the other seeds chose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

CLEAR_MARGIN_SE = 2.0
MIN_SEEDS = 2
STABLE_FRACTION = 2 / 3


def paired_difference(base: Sequence[float], cand: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of ``cand − base`` paired by seed (NaN pairs dropped)."""
    d = np.asarray(cand, float) - np.asarray(base, float)
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return math.nan, math.nan
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.nan
    return float(d.mean()), se


def clear_winner(
    base: Sequence[float], cand: Sequence[float], margin: float = CLEAR_MARGIN_SE
) -> bool:
    """``cand`` (higher is better) beats ``base`` beyond its noise (module doc)."""
    mean, se = paired_difference(base, cand)
    n = int(np.isfinite(np.asarray(cand, float) - np.asarray(base, float)).sum())
    if n < MIN_SEEDS or not math.isfinite(mean) or not math.isfinite(se):
        return False
    return mean > 0 and mean > margin * se


def helpful_source(
    mean_row: Sequence[float], se_row: Sequence[float], recipient: int,
    margin: float = CLEAR_MARGIN_SE,
) -> int | None:  # fmt: skip
    """The source index with the largest mean affinity onto ``recipient`` among those clearly
    above zero (None: no source helps beyond noise)."""
    best, best_val = None, -math.inf
    for j, (m, s) in enumerate(zip(mean_row, se_row, strict=True)):
        if j == recipient or not math.isfinite(m):
            continue
        clear = m > 0 and (math.isfinite(s) and m > margin * s)
        if clear and m > best_val:
            best, best_val = j, float(m)
    return best


def stable_grouping(
    chosen: Sequence[Sequence[str]], per_seed: Sequence[Sequence[Sequence[str]]],
    fraction: float = STABLE_FRACTION,
) -> tuple[bool, float]:  # fmt: skip
    """Whether ``chosen`` (groups of task names) is also the choice of at least ``fraction`` of
    the seeds; returns (stable, the fraction that agrees)."""

    def canon(groups: Sequence[Sequence[str]]) -> tuple[tuple[str, ...], ...]:
        return tuple(sorted(tuple(sorted(g)) for g in groups))

    if not per_seed:
        return False, math.nan
    agree = sum(canon(g) == canon(chosen) for g in per_seed) / len(per_seed)
    return agree >= fraction, agree


__all__ = [
    "CLEAR_MARGIN_SE",
    "MIN_SEEDS",
    "STABLE_FRACTION",
    "clear_winner",
    "helpful_source",
    "paired_difference",
    "stable_grouping",
]
