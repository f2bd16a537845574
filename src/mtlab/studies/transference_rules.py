"""Claim rules of study ``transference`` (tested on synthetic tables in tests/test_claim_rules.py).

Tables: ``affinity`` — rows of evaluation ``affinity`` (``dataset``, ``seed``, ``recipient``,
``source``, ``same_group``, ``value``); ``eta`` — rows of evaluation ``eta`` (``dataset``,
``seed``, ``eta``, ``rel_error``); ``grouping`` — rows of evaluation ``grouping`` (``dataset``,
``seed``, ``affinity_kind``, ``recovered``, ``groups``); ``acc`` — mean test accuracy per
(``dataset``, ``seed``) (index) and model (columns: ``stl``, ``all_together``, ``sum``,
``itmtl``, ``grouped``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mtlab.measure.stats import Interval, mean_interval
from mtlab.report.analysis import CONTRADICTED, HOLDS, INCONCLUSIVE
from mtlab.studies.claims import all_of, claim_rule, directional

SOURCE = "Fifty et al. 2020/2021; paper notes"


def _seed_interval(values: pd.Series) -> Interval:
    """The mean over seeds (one value per seed: the seeds are the independent draws) with its
    bootstrap interval; with two or three seeds it spans about their range."""
    return mean_interval(values.to_numpy(dtype=float))


def _ci(iv: Interval) -> list[float]:
    return [round(iv.lo, 5), round(iv.hi, 5)]


@claim_rule(
    "affinity.signs",
    "Tasks sharing a teacher have positive mean affinity and tasks with competing teachers "
    "through the 4-unit bottleneck negative mean affinity: the mean over seeds of each has a 95% "
    "bootstrap CI on its predicted side of 0 (the opposite side: contradicted; at least "
    "{min_seeds} seeds).",
    source=SOURCE,
    min_seeds=2,
)
def affinity_signs(affinity: pd.DataFrame, *, min_seeds: int) -> tuple[str, dict[str, Any]]:
    pa = affinity[(affinity.dataset == "planted-groups") & (affinity.recipient != affinity.source)]
    signs = pa.groupby(["seed", "same_group"]).value.mean().unstack()
    if signs.empty or True not in signs or False not in signs:
        return INCONCLUSIVE, {"within_group": [], "cross_group": []}
    within, cross = _seed_interval(signs[True]), _seed_interval(signs[False])
    ev = {
        "within_group": [round(float(v), 5) for v in signs[True]],
        "cross_group": [round(float(v), 5) for v in signs[False]],
        "within_ci": _ci(within),
        "cross_ci": _ci(cross),
    }
    if len(signs) < min_seeds:
        return INCONCLUSIVE, ev
    return all_of([directional(within.lo, within.hi), directional(-cross.hi, -cross.lo)]), ev


@claim_rule(
    "affinity.first_order_small_eta",
    "The first-order estimate η⟨g_i, g_j⟩/L_i agrees with the lookahead affinity as η → 0: the "
    "relative difference shrinks monotonically with η and is ≤ {max_error:.0%} at the smallest η, "
    "on every run (a property of the two computations, not a statistical one: any run that "
    "breaks it contradicts it).",
    source=SOURCE,
    max_error=0.05,
)
def first_order(eta: pd.DataFrame, *, max_error: float) -> tuple[str, dict[str, Any]]:
    ok = True
    for _, g in eta.groupby(["dataset", "seed"]):
        errs = g.sort_values("eta").rel_error.to_numpy()
        ok &= bool(errs[0] <= max_error and (np.diff(errs) >= 0).all())
    ev = {
        f"{r['dataset']} s{r['seed']} η={r['eta']:g}": round(float(r["rel_error"]), 4)
        for r in eta.to_dict("records")
    }
    if eta.empty:
        return INCONCLUSIVE, ev
    return (HOLDS if ok else CONTRADICTED), ev


@claim_rule(
    "grouping.recovers_planted",
    "The exact grouping search (budget 3) on the measured affinities returns the three planted "
    "groups in every seed (in none: contradicted; in some: inconclusive; at least {min_seeds} "
    "seeds).",
    source=SOURCE,
    min_seeds=2,
)
def recovers_planted(grouping: pd.DataFrame, *, min_seeds: int) -> tuple[str, dict[str, Any]]:
    pg = grouping[(grouping.dataset == "planted-groups") & (grouping.affinity_kind == "lookahead")]
    rec = pg.recovered.astype(bool)
    ev = {
        "recovered": f"{int(rec.sum())} of {len(rec)} seeds",
        "chosen": {int(r["seed"]): r["groups"] for r in pg.to_dict("records")},
    }
    if len(rec) < min_seeds:
        return INCONCLUSIVE, ev
    return (HOLDS if rec.all() else CONTRADICTED if not rec.any() else INCONCLUSIVE), ev


@claim_rule(
    "grouping.beats_all_together",
    "On the family with planted conflicts, training the chosen groups gives a higher mean test "
    "accuracy than training all tasks together: the mean over seeds of the difference has a "
    "95% bootstrap CI above 0 (below 0: contradicted; at least {min_seeds} seeds).",
    source=SOURCE,
    min_seeds=2,
)
def beats_all_together(acc: pd.DataFrame, *, min_seeds: int) -> tuple[str, dict[str, Any]]:
    pl = acc.loc["planted-groups"]
    diff = _seed_interval(pl["grouped"] - pl["all_together"])
    ev = {
        "grouped": pl["grouped"].round(4).tolist(),
        "all_together": pl["all_together"].round(4).tolist(),
        "stl": pl["stl"].round(4).tolist() if "stl" in pl else None,
        "difference": round(diff.point, 4),
        "difference_ci": _ci(diff),
    }
    if len(pl) < min_seeds:
        return INCONCLUSIVE, ev
    return directional(diff.lo, diff.hi), ev


@claim_rule(
    "itmtl.vs_sum",
    "IT-MTL (per step, the candidate among sum, PCGrad, UPGrad and each task alone with the best "
    "lookahead total-loss ratio) improves the mean test accuracy over the plain sum by more than "
    "{margin:g} (accuracy): the mean difference over runs has a 95% bootstrap CI (resampling "
    "seeds) above {margin:g}; wholly below it: contradicted.",
    source=SOURCE,
    margin=0.005,
)
def itmtl_vs_sum(acc: pd.DataFrame, *, margin: float) -> tuple[str, dict[str, Any]]:
    d = (acc["itmtl"] - acc["sum"]).to_numpy(dtype=float)
    seeds = acc.index.get_level_values("seed").to_numpy()
    diff = mean_interval(d, seeds)
    ev = {
        "itmtl": acc["itmtl"].round(4).tolist(),
        "sum": acc["sum"].round(4).tolist(),
        "mean_difference": round(diff.point, 4),
        "difference_ci": _ci(diff),
    }
    return directional(diff.lo, diff.hi, margin), ev


RULES = (affinity_signs, first_order, recovers_planted, beats_all_together, itmtl_vs_sum)
