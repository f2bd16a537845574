"""Claim rules of study ``trajectories`` (Mueller, Dredze & Andrews 2024), tested on synthetic
tables in tests/test_claim_rules.py. Thresholds were fixed before any result was looked at.

Table ``pairs``: one row per (``setting``, ``method``, ``task``, ``seed``) pair of an MTL run
and the STL run of that task (both finished), with ``group`` (the kind of setting: ``teacher,
bottleneck``, ``teacher, wide``, a dataset), ``baseline`` (the plain MTL method of the study),
``early_gap`` / ``late_gap`` (mean matched-loss gap ``val_mtl − val_stl`` over the early /
late levels; negative = MTL generalises better), ``final_transfer`` (MTL − STL test metric at
each run's best-validation checkpoint; positive = positive transfer), ``early_slowdown``
(geometric mean over the early levels of MTL steps ÷ STL steps to reach a level),
``early_cos`` (the task's mean cos to the other tasks' gradient over the MTL run's early
checkpoints) and ``d_<factor>`` (mean MTL − STL factor difference over the early levels).
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pandas as pd

from mtlab.measure.stats import correlate
from mtlab.studies.claims import claim_rule, r

SOURCE = "Mueller, Dredze & Andrews 2024 (abstract; paper notes §1–§5)"
FACTORS = ("sharpness", "fisher_trace", "coherence")


def _f(s: pd.Series) -> np.ndarray:
    return s.to_numpy(dtype=float)


def _base(pairs: pd.DataFrame) -> pd.DataFrame:
    return pairs[pairs.baseline.astype(bool)] if len(pairs) else pairs


@claim_rule(
    "gap.early_sign_persists",
    "A matched-loss gap appears early and has the sign of the final transfer: among baseline "
    "pairs with |final transfer| ≥ {min_transfer:g}, the early gap's sign agrees with the "
    "transfer's (gap < 0 ⇔ transfer > 0) in ≥ {min_agree:.0%}, and the late gap keeps the early "
    "sign in ≥ {min_persist:.0%} (at least {min_pairs} pairs).",
    source=SOURCE,
    min_transfer=0.01,
    min_agree=0.75,
    min_persist=0.75,
    min_pairs=6,
)
def early_sign(
    pairs: pd.DataFrame,
    *,
    min_transfer: float,
    min_agree: float,
    min_persist: float,
    min_pairs: int,
) -> tuple[bool, dict[str, Any]]:
    b = _base(pairs)
    clear = b[(b.final_transfer.abs() >= min_transfer) & np.isfinite(b.early_gap)]
    n = len(clear)
    agree = float((np.sign(-clear.early_gap) == np.sign(clear.final_transfer)).mean()) if n else 0.0
    both = clear[np.isfinite(clear.late_gap)]
    persist = (
        float((np.sign(both.late_gap) == np.sign(both.early_gap)).mean()) if len(both) else 0.0
    )
    ev = {
        "pairs_with_clear_transfer": n,
        "sign_agreement": r(agree),
        "persistence": r(persist),
        "per_group": {
            str(g): {
                "n": len(d),
                "agreement": r(float((np.sign(-d.early_gap) == np.sign(d.final_transfer)).mean())),
            }
            for g, d in clear.groupby("group")
        },
    }
    return n >= min_pairs and agree >= min_agree and persist >= min_persist, ev


@claim_rule(
    "factors.do_not_explain_gap",
    "No single-task trajectory factor (sharpness, Fisher trace, gradient coherence) consistently "
    "explains the gap: none has an early MTL − STL difference whose Spearman correlation with the "
    "early gap reaches |ρ| ≥ {rho_min:g} with a 95% bootstrap CI excluding 0 and the same sign in "
    "every kind of setting ({min_groups} or more kinds with ≥ {min_pairs} baseline pairs each).",
    source=SOURCE,
    rho_min=0.5,
    min_groups=2,
    min_pairs=6,
)
def factors_do_not_explain(
    pairs: pd.DataFrame, *, rho_min: float, min_groups: int, min_pairs: int
) -> tuple[bool, dict[str, Any]]:
    b = _base(pairs)
    groups = [(g, d) for g, d in b.groupby("group") if len(d) >= min_pairs]
    ev: dict[str, Any] = {"groups": [str(g) for g, _ in groups], "correlations": {}}
    explains = []
    for f in FACTORS:
        col = f"d_{f}"
        if col not in b:
            continue
        signs = []
        for g, d in groups:
            c = correlate(_f(d[col]), _f(d.early_gap))
            ev["correlations"][f"{f} | {g}"] = {
                "n": c.n,
                "rho": r(c.spearman),
                "ci": [r(c.spearman_lo), r(c.spearman_hi)],
            }
            strong = c.excludes_zero() and abs(c.spearman) >= rho_min
            signs.append(np.sign(c.spearman) if strong else 0.0)
        if groups and all(s != 0 for s in signs) and len(set(signs)) == 1:
            explains.append(f)
    ev["factors_that_explain"] = explains
    return len(groups) >= min_groups and not explains, ev


@claim_rule(
    "conflict.slowdown_not_transfer",
    "Gradient conflict goes with slower optimisation but does not predict generalisation: over "
    "baseline pairs, Spearman ρ(early cos to the other tasks, early slowdown) ≤ −{rho_min:g} with "
    "a 95% CI below 0, while ρ(early cos, final transfer) has |ρ| < {rho_min:g} or a CI "
    "containing 0 (at least {min_pairs} pairs).",
    source=SOURCE,
    rho_min=0.3,
    min_pairs=6,
)
def conflict_slowdown(
    pairs: pd.DataFrame, *, rho_min: float, min_pairs: int
) -> tuple[bool, dict[str, Any]]:
    b = _base(pairs)
    slow = correlate(_f(b.early_cos), np.log(_f(b.early_slowdown)))
    trans = correlate(_f(b.early_cos), _f(b.final_transfer))
    ev = {
        "n": slow.n,
        "rho_cos_slowdown": r(slow.spearman),
        "ci_cos_slowdown": [r(slow.spearman_lo), r(slow.spearman_hi)],
        "rho_cos_transfer": r(trans.spearman),
        "ci_cos_transfer": [r(trans.spearman_lo), r(trans.spearman_hi)],
        "per_setting_cos_and_transfer": {
            str(k): [r(float(d.early_cos.mean())), r(float(d.final_transfer.mean()))]
            for k, d in b.groupby("setting")
        },
        "conflict_sign_predicts_transfer_sign": r(
            float((np.sign(b.early_cos) == np.sign(b.final_transfer)).mean()) if len(b) else None
        ),
    }
    with_slow = slow.spearman <= -rho_min and slow.spearman_hi < 0
    not_transfer = not (abs(trans.spearman) >= rho_min and trans.excludes_zero())
    return slow.n >= min_pairs and bool(with_slow) and not_transfer, ev


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
    "log {min_slow_ratio:g}, while final transfer improves over the baseline by more than "
    "{min_transfer:g} in fewer than {max_improve:.0%} of (setting, task, seed) cells.",
    source=SOURCE,
    min_dcos=0.05,
    min_slow_ratio=1.1,
    min_transfer=0.01,
    max_improve=0.75,
)
def methods_change(
    pairs: pd.DataFrame,
    *,
    min_dcos: float,
    min_slow_ratio: float,
    min_transfer: float,
    max_improve: float,
) -> tuple[bool, dict[str, Any]]:
    eff = method_effects(pairs)
    ev: dict[str, Any] = {}
    ok = not eff.empty
    for m, d in eff.groupby("method"):
        dcos = float(d.d_cos.abs().median())
        dslow = float(d.d_log_slowdown.abs().median())
        improve = float((d.d_transfer > min_transfer).mean())
        changes = dcos >= min_dcos or dslow >= np.log(min_slow_ratio)
        ev[str(m)] = {
            "cells": len(d),
            "median_abs_d_cos": r(dcos),
            "median_abs_d_log_slowdown": r(dslow),
            "improves_transfer": r(improve),
            "mean_d_transfer": r(float(d.d_transfer.mean())),
        }
        ok &= bool(changes and improve < max_improve)
    return ok, ev


RULES = (early_sign, factors_do_not_explain, conflict_slowdown, methods_change)

__all__ = ["FACTORS", "RULES", "method_effects"]
