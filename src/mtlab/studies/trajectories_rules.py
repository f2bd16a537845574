"""Claim rules of study ``trajectories`` (Mueller, Dredze & Andrews 2024), tested on synthetic
tables in tests/test_claim_rules.py. Thresholds were fixed before any result was looked at.

Table ``pairs``: one row per (``setting``, ``method``, ``task``, ``seed``) pair of an MTL run
and the STL run of that task (both finished), with ``group`` (the kind of setting: ``teacher,
bottleneck``, ``teacher, wide``, a dataset), ``baseline`` (the plain MTL method of the study),
``early_gap`` / ``late_gap`` (mean matched-loss gap ``val_mtl − val_stl`` over the early /
late levels; negative = MTL generalises better), ``final_transfer`` (MTL − STL test metric, the STL run at its
best-validation checkpoint and the MTL run at one checkpoint for all its tasks, the lowest mean
validation loss; positive = positive transfer), ``early_slowdown``
(geometric mean over the early levels of MTL steps ÷ STL steps to reach a level),
``early_cos`` (the task's mean cos to the other tasks' gradient over the MTL run's early
checkpoints) and ``d_<factor>`` (mean MTL − STL factor difference over the early levels).
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pandas as pd

from mtlab.measure.stats import Interval, cluster_bootstrap, correlation_interval, mean_interval
from mtlab.report.analysis import CONTRADICTED, HOLDS, INCONCLUSIVE
from mtlab.studies.claims import all_of, claim_rule, directional, equivalent, r

SOURCE = "Mueller, Dredze & Andrews 2024 (abstract; paper notes §1–§5)"
FACTORS = ("sharpness", "fisher_trace", "coherence")


def _f(s: pd.Series) -> np.ndarray:
    return s.to_numpy(dtype=float)


def _base(pairs: pd.DataFrame) -> pd.DataFrame:
    return pairs[pairs.baseline.astype(bool)] if len(pairs) else pairs


def clusters(d: pd.DataFrame) -> np.ndarray:
    """The MTL run of each pair row (its setting and seed): the tasks of one run share a trunk,
    so rows of one run are resampled together."""
    return (d.setting.astype(str) + "|" + d.seed.astype(str)).to_numpy()


def _agreement(a: np.ndarray, b: np.ndarray, groups: np.ndarray) -> Interval:
    """The fraction of rows where ``a`` and ``b`` have the same sign, with its interval."""
    return cluster_bootstrap([a, b], lambda x, y: float((np.sign(x) == np.sign(y)).mean()),
                             groups)  # fmt: skip


def _ci(iv: Interval) -> list[Any]:
    return [r(iv.lo), r(iv.hi)]


@claim_rule(
    "gap.early_sign_persists",
    "A matched-loss gap appears early and has the sign of the final transfer: among baseline "
    "pairs with |final transfer| ≥ {min_transfer:g} and |early gap| ≥ {min_gap:g}, the early "
    "gap's sign agrees with the transfer's (gap < 0 ⇔ transfer > 0), and the late gap keeps the "
    "early sign, more often than chance (both 95% bootstrap CIs, resampling MTL runs, above "
    "{chance:.0%}; below it: contradicted; at least {min_pairs} pairs).",
    source=SOURCE,
    min_transfer=0.01,
    min_gap=0.01,
    chance=0.5,
    min_pairs=6,
)
def early_sign(
    pairs: pd.DataFrame,
    *,
    min_transfer: float,
    min_gap: float,
    chance: float,
    min_pairs: int,
) -> tuple[str, dict[str, Any]]:
    b = _base(pairs)
    clear = b[(b.final_transfer.abs() >= min_transfer) & (b.early_gap.abs() >= min_gap)]
    n = len(clear)
    agree = _agreement(-_f(clear.early_gap), _f(clear.final_transfer), clusters(clear))
    both = clear[clear.late_gap.abs() >= min_gap]
    persist = _agreement(_f(both.late_gap), _f(both.early_gap), clusters(both))
    ev = {
        "pairs_with_clear_transfer_and_gap": n,
        "runs": agree.clusters,
        "sign_agreement": r(agree.point),
        "sign_agreement_ci": _ci(agree),
        "persistence": r(persist.point),
        "persistence_ci": _ci(persist),
        "per_group": {
            str(g): {
                "n": len(d),
                "agreement": r(float((np.sign(-d.early_gap) == np.sign(d.final_transfer)).mean())),
            }
            for g, d in clear.groupby("group")
        },
    }
    if n < min_pairs:
        return INCONCLUSIVE, ev
    return all_of([directional(agree.lo, agree.hi, chance),
                   directional(persist.lo, persist.hi, chance)]), ev  # fmt: skip


@claim_rule(
    "factors.do_not_explain_gap",
    "No single-task trajectory factor (sharpness, Fisher trace, gradient coherence) consistently "
    "explains the gap. Holds only if, in every kind of setting ({min_groups} or more kinds with "
    "≥ {min_pairs} baseline pairs each), every factor's early MTL − STL difference has a Spearman "
    "correlation with the early gap whose 95% bootstrap CI (resampling MTL runs) lies inside "
    "±{delta:g}; contradicted if a factor's CI lies outside ±{delta:g} with one sign in every "
    "kind — of either sign: a factor consistently opposite to theory also explains.",
    source=SOURCE,
    delta=0.5,
    min_groups=2,
    min_pairs=6,
)
def factors_do_not_explain(
    pairs: pd.DataFrame, *, delta: float, min_groups: int, min_pairs: int
) -> tuple[str, dict[str, Any]]:
    b = _base(pairs)
    groups = [(g, d) for g, d in b.groupby("group") if len(d) >= min_pairs]
    ev: dict[str, Any] = {"groups": [str(g) for g, _ in groups], "correlations": {}}
    verdicts, explains = [], []
    for f in FACTORS:
        col = f"d_{f}"
        if col not in b:
            continue
        signs = []
        for g, d in groups:
            c = correlation_interval(_f(d[col]), _f(d.early_gap), clusters(d))
            v = equivalent(c.lo, c.hi, delta)
            ev["correlations"][f"{f} | {g}"] = {"n": c.n, "runs": c.clusters, "rho": r(c.point),
                                                "ci": _ci(c), "verdict": v}  # fmt: skip
            verdicts.append(v)
            signs.append(np.sign(c.point) if v == CONTRADICTED else 0.0)
        if groups and all(s != 0 for s in signs) and len(set(signs)) == 1:
            explains.append(f)
    ev["factors_that_explain"] = explains
    if explains:
        return CONTRADICTED, ev
    if len(groups) < min_groups:
        return INCONCLUSIVE, ev
    return (HOLDS if verdicts and all(v == HOLDS for v in verdicts) else INCONCLUSIVE), ev


@claim_rule(
    "conflict.slowdown_not_transfer",
    "Gradient conflict goes with slower optimisation but does not predict generalisation: over "
    "baseline pairs, the Spearman ρ(early cos to the other tasks, early log slowdown) has a 95% "
    "bootstrap CI (resampling MTL runs) below 0, and ρ(early cos, final transfer) a CI inside "
    "±{delta:g} (at least {min_pairs} pairs).",
    source=SOURCE,
    delta=0.3,
    min_pairs=6,
)
def conflict_slowdown(
    pairs: pd.DataFrame, *, delta: float, min_pairs: int
) -> tuple[str, dict[str, Any]]:
    b = _base(pairs)
    groups = clusters(b)
    slow = correlation_interval(_f(b.early_cos), np.log(_f(b.early_slowdown)), groups)
    trans = correlation_interval(_f(b.early_cos), _f(b.final_transfer), groups)
    ev = {
        "n": slow.n,
        "runs": slow.clusters,
        "rho_cos_slowdown": r(slow.point),
        "ci_cos_slowdown": _ci(slow),
        "rho_cos_transfer": r(trans.point),
        "ci_cos_transfer": _ci(trans),
        "per_setting_cos_and_transfer": {
            str(k): [r(float(d.early_cos.mean())), r(float(d.final_transfer.mean()))]
            for k, d in b.groupby("setting")
        },
        "conflict_sign_predicts_transfer_sign": r(
            float((np.sign(b.early_cos) == np.sign(b.final_transfer)).mean()) if len(b) else None
        ),
    }
    if slow.n < min_pairs:
        return INCONCLUSIVE, ev
    with_slow = directional(-slow.hi, -slow.lo)  # a negative correlation predicted
    return all_of([with_slow, equivalent(trans.lo, trans.hi, delta)]), ev


def method_effects(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per non-baseline method and (setting, task, seed): its change of early conflict, of
    log slowdown and of final transfer against the baseline method."""
    keys = ["setting", "task", "seed"]
    base = _base(pairs).set_index(keys)
    rows = []
    for m, d in pairs[~pairs.baseline.astype(bool)].groupby("method"):
        j = d.set_index(keys).merge(
            base, left_index=True, right_index=True, suffixes=("", "_base"), how="inner"
        )
        for k, row in j.iterrows():
            rows.append(
                {
                    "method": m,
                    **dict(zip(keys, cast(tuple[Any, ...], k), strict=True)),
                    "d_cos": row.early_cos - row.early_cos_base,
                    "d_log_slowdown": float(
                        np.log(row.early_slowdown) - np.log(row.early_slowdown_base)
                    ),
                    "d_transfer": row.final_transfer - row.final_transfer_base,
                }
            )
    return pd.DataFrame(rows, columns=["method", *keys, "d_cos", "d_log_slowdown", "d_transfer"])


@claim_rule(
    "methods.change_optimisation_not_transfer",
    "Multi-task methods change the optimisation trajectory more than transfer: for every method, "
    "the median |change of early cos| ≥ {min_dcos:g} or the median |change of log slowdown| ≥ "
    "log {min_slow_ratio:g} (the lower end of its 95% bootstrap CI, resampling MTL runs), while "
    "its mean change of final transfer over the baseline has a CI inside ±{delta:g}; "
    "contradicted if a method's transfer change lies wholly outside ±{delta:g}, or its "
    "trajectory change wholly below both thresholds.",
    source=SOURCE,
    min_dcos=0.05,
    min_slow_ratio=1.1,
    delta=0.02,
)
def methods_change(
    pairs: pd.DataFrame,
    *,
    min_dcos: float,
    min_slow_ratio: float,
    delta: float,
) -> tuple[str, dict[str, Any]]:
    eff = method_effects(pairs)
    ev: dict[str, Any] = {}
    verdicts = []
    for m, d in eff.groupby("method"):
        groups = clusters(d)
        dcos = cluster_bootstrap([np.abs(_f(d.d_cos))], np.median, groups)
        dslow = cluster_bootstrap([np.abs(_f(d.d_log_slowdown))], np.median, groups)
        trans = mean_interval(_f(d.d_transfer), groups)
        changes = directional(dcos.lo, dcos.hi, min_dcos)
        if changes != HOLDS:  # either measure of the trajectory may show the change
            alt = directional(dslow.lo, dslow.hi, float(np.log(min_slow_ratio)))
            changes = alt if alt == HOLDS or changes == CONTRADICTED else changes
        v = all_of([changes, equivalent(trans.lo, trans.hi, delta)])
        ev[str(m)] = {
            "cells": len(d),
            "runs": trans.clusters,
            "median_abs_d_cos": r(dcos.point),
            "median_abs_d_cos_ci": _ci(dcos),
            "median_abs_d_log_slowdown": r(dslow.point),
            "median_abs_d_log_slowdown_ci": _ci(dslow),
            "mean_d_transfer": r(trans.point),
            "mean_d_transfer_ci": _ci(trans),
            "improves_transfer": r(float((d.d_transfer > delta).mean())),
            "verdict": v,
        }
        verdicts.append(v)
    return all_of(verdicts), ev


RULES = (early_sign, factors_do_not_explain, conflict_slowdown, methods_change)

__all__ = ["FACTORS", "RULES", "clusters", "method_effects"]
