"""The rules ``mtlab advise`` decides by — fixed here, before any number, and unit-tested on small
tables where they must hold and where they must fail.

* :func:`clear_winner`: a candidate beats STL only if its mean paired difference over seeds
  exceeds ``CLEAR_MARGIN_SE`` standard errors of that difference (and is positive); with fewer
  than ``MIN_SEEDS`` seeds nothing is clear.
* :func:`helpful_partners`: a source task helps a recipient if its mean affinity onto it exceeds
  ``CLEAR_MARGIN_SE`` standard errors (over seeds) above zero; a task's MTL partners are the
  members of its group that help it.
* :func:`credited`: a gain belongs to a partner or a source only if the candidate clearly beats
  (:func:`clear_winner`) the same procedure with that partner's or source's training labels
  permuted (its null control); otherwise the gain is the procedure's (pretraining and rescaling,
  or training in a shared network), not the task's.
* :func:`network_scale`: the initial scale of the shared networks is the one with the lowest
  mean regret over tasks in the single-task grid (each task's best scale is its fair STL).
* :func:`reference_beats_networks`: the non-neural reference is better on a task than every
  network tried if its mean validation metric exceeds every network's.
* :func:`default_estimator`: above ``PAIRS_MAX_TASKS`` tasks ``advise`` estimates the transfer
  with the estimator that measured best against the realised transfer on the planted table
  nearest the user's task count on a log scale (``estimator_evidence.json``, written by
  ``benchmarks/transfer_estimators.py``; tables of 16 and 48 tasks): among the estimators whose
  cost stayed within that table's cap (``ESTIMATOR_COST_CAPS``) of the realised pairs', the
  highest Spearman correlation with the realised transfer (ties: the cheaper).
* :func:`~mtlab.grouping.stable_grouping` (defined with the grouping search, which reports it for
  every budget): a grouping is acted on with confidence only if at least ``STABLE_FRACTION`` of
  the seeds' own affinity matrices choose it too; else it is reported as not distinguishable
  from the alternatives the other seeds chose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mtlab.grouping import STABLE_FRACTION, stable_grouping

CLEAR_MARGIN_SE = 2.0
MIN_SEEDS = 2
#: the most an estimator may cost, as a fraction of the realised pairs', per evidence table
#: (its task count) — the issue's caps: 25 % at 16 tasks, 10 % at 48
ESTIMATOR_COST_CAPS = {16: 0.25, 48: 0.10}


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


def credited(control: Sequence[float], cand: Sequence[float]) -> bool:
    """The candidate's gain belongs to its partner or source: it clearly beats its null
    control, paired by seed (module doc). No control (every seed NaN): not credited."""
    return clear_winner(control, cand)


def network_scale(means: dict[float, Sequence[float]]) -> float:
    """``means[scale]``: per task (one order for every scale) the mean validation metric of STL
    at that initial scale. The scale with the lowest mean regret ``best(task) − value`` over
    tasks; a task with no finite value at a scale counts the largest regret seen; ties go to the
    scale nearest 1 (the network's usual initialisation)."""
    scales = sorted(means)
    M = np.asarray([means[s] for s in scales], float)  # scales × tasks
    if M.size == 0:
        raise ValueError("network_scale needs at least one scale and one task")
    best = np.nanmax(np.where(np.isfinite(M), M, -np.inf), axis=0)
    regret = best[None, :] - M
    finite = regret[np.isfinite(regret)]
    regret = np.where(np.isfinite(regret), regret, finite.max() if finite.size else 0.0)
    mean = regret.mean(axis=1)
    low = mean.min()
    tied = [s for s, m in zip(scales, mean, strict=True) if m <= low + 1e-12]
    return min(tied, key=lambda s: (abs(math.log(s)), s))


def finite_mean(values: Sequence[float], empty: float = math.nan) -> float:
    """The mean of the finite values (a diverged seed is NaN: never averaged in); ``empty`` if
    there is none (−inf where a candidate is ranked, so that it is never chosen)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else empty


def reference_beats_networks(reference: Sequence[float], networks: Sequence[Sequence[float]]
                             ) -> bool:  # fmt: skip
    """The reference's mean validation metric is above every network candidate's (each given
    per seed; NaN seeds left out); False when no network has a finite value."""
    ref = finite_mean(reference)
    nets = [m for m in map(finite_mean, networks) if math.isfinite(m)]
    return math.isfinite(ref) and bool(nets) and ref > max(nets)


def evidence_table(tasks: int, available: Sequence[int]) -> int:
    """The task count of the evidence table nearest ``tasks`` on a log scale (ties: the
    larger table)."""
    if not available:
        raise ValueError("the evidence holds no table")
    return min(sorted(set(available)), key=lambda n: (abs(math.log(n / tasks)), -n))


def default_estimator(evidence: Sequence[dict[str, Any]], tasks: int,
                      caps: dict[int, float] | None = None) -> str:  # fmt: skip
    """The estimator ``advise`` uses on ``tasks`` tasks above ``PAIRS_MAX_TASKS`` (module doc).
    ``evidence``: one row per (table, estimator) with ``estimator``, ``tasks``,
    ``cost_fraction`` and ``spearman``; the realised pairs themselves (``pairs``) are not a
    candidate. The table nearest ``tasks`` (:func:`evidence_table`) decides, with its cost cap
    (``caps``, default :data:`ESTIMATOR_COST_CAPS`). Raises ValueError when no estimator
    qualifies."""
    caps = ESTIMATOR_COST_CAPS if caps is None else caps
    table = evidence_table(tasks, [int(r["tasks"]) for r in evidence])
    cap = caps.get(table, min(caps.values()))
    ok = [r for r in evidence
          if int(r["tasks"]) == table and r["estimator"] != "pairs"
          and math.isfinite(float(r["cost_fraction"])) and float(r["cost_fraction"]) <= cap
          and math.isfinite(float(r["spearman"]))]  # fmt: skip
    if not ok:
        raise ValueError(f"no estimator in the evidence at {table} tasks costs at most "
                         f"{cap:.0%} of the realised pairs")  # fmt: skip
    best = max(sorted(ok, key=lambda r: r["estimator"]),
               key=lambda r: (float(r["spearman"]), -float(r["cost_fraction"])))  # fmt: skip
    return str(best["estimator"])


def helpful_partners(
    mean_row: Sequence[float], se_row: Sequence[float], recipient: int,
    members: Sequence[int] | None = None, margin: float = CLEAR_MARGIN_SE,
) -> list[int]:  # fmt: skip
    """The sources (among ``members``; default all) whose mean affinity onto ``recipient`` is
    clearly above zero: more than ``margin`` standard errors over seeds."""
    out = []
    for j in range(len(mean_row)) if members is None else members:
        m, s = float(mean_row[j]), float(se_row[j])
        if j != recipient and math.isfinite(m) and math.isfinite(s) and m > 0 and m > margin * s:
            out.append(j)
    return out


__all__ = [
    "CLEAR_MARGIN_SE",
    "ESTIMATOR_COST_CAPS",
    "MIN_SEEDS",
    "STABLE_FRACTION",
    "clear_winner",
    "credited",
    "default_estimator",
    "evidence_table",
    "finite_mean",
    "helpful_partners",
    "network_scale",
    "paired_difference",
    "reference_beats_networks",
    "stable_grouping",
]
