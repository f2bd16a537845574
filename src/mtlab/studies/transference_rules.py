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

from mtlab.studies.claims import claim_rule

SOURCE = "Fifty et al. 2020/2021; paper notes"


@claim_rule(
    "affinity.signs",
    "Tasks sharing a teacher have positive mean affinity and tasks with competing teachers "
    "through the 4-unit bottleneck negative mean affinity, in every seed.",
    source=SOURCE,
)
def affinity_signs(affinity: pd.DataFrame) -> tuple[bool, dict[str, Any]]:
    pa = affinity[(affinity.dataset == "planted-groups") & (affinity.recipient != affinity.source)]
    signs = pa.groupby(["seed", "same_group"]).value.mean().unstack()
    if signs.empty or True not in signs or False not in signs:
        return False, {"within_group": [], "cross_group": []}
    within, cross = signs[True], signs[False]
    ev = {
        "within_group": [round(float(v), 5) for v in within],
        "cross_group": [round(float(v), 5) for v in cross],
    }
    return bool((within > 0).all() and (cross < 0).all()), ev


@claim_rule(
    "affinity.first_order_small_eta",
    "The first-order estimate η⟨g_i, g_j⟩/L_i agrees with the lookahead affinity as η → 0: the "
    "relative difference shrinks monotonically with η and is ≤ {max_error:.0%} at the smallest η, "
    "on every run.",
    source=SOURCE,
    max_error=0.05,
)
def first_order(eta: pd.DataFrame, *, max_error: float) -> tuple[bool, dict[str, Any]]:
    ok = not eta.empty
    for _, g in eta.groupby(["dataset", "seed"]):
        errs = g.sort_values("eta").rel_error.to_numpy()
        ok &= bool(errs[0] <= max_error and (np.diff(errs) >= 0).all())
    ev = {
        f"{r['dataset']} s{r['seed']} η={r['eta']:g}": round(float(r["rel_error"]), 4)
        for r in eta.to_dict("records")
    }
    return ok, ev


@claim_rule(
    "grouping.recovers_planted",
    "The exact grouping search (budget 3) on the measured affinities returns the three planted "
    "groups, in every seed.",
    source=SOURCE,
)
def recovers_planted(grouping: pd.DataFrame) -> tuple[bool, dict[str, Any]]:
    pg = grouping[(grouping.dataset == "planted-groups") & (grouping.affinity_kind == "lookahead")]
    rec = pg.recovered.astype(bool)
    ev = {
        "recovered": f"{int(rec.sum())} of {len(rec)} seeds",
        "chosen": {int(r["seed"]): r["groups"] for r in pg.to_dict("records")},
    }
    return bool(len(rec) and rec.all()), ev


@claim_rule(
    "grouping.beats_all_together",
    "On the family with planted conflicts, training the chosen groups gives a higher mean test "
    "accuracy than training all tasks together, in every seed.",
    source=SOURCE,
)
def beats_all_together(acc: pd.DataFrame) -> tuple[bool, dict[str, Any]]:
    pl = acc.loc["planted-groups"]
    ev = {
        "grouped": pl["grouped"].round(4).tolist(),
        "all_together": pl["all_together"].round(4).tolist(),
        "stl": pl["stl"].round(4).tolist() if "stl" in pl else None,
    }
    return bool((pl["grouped"] > pl["all_together"]).all()), ev


@claim_rule(
    "itmtl.vs_sum",
    "IT-MTL (per step, the candidate among sum, PCGrad, UPGrad and each task alone with the best "
    "lookahead total-loss ratio) improves the mean test accuracy over the plain sum by more than "
    "{margin:g} (accuracy), averaged over runs.",
    source=SOURCE,
    margin=0.005,
)
def itmtl_vs_sum(acc: pd.DataFrame, *, margin: float) -> tuple[bool, dict[str, Any]]:
    diff = float(acc["itmtl"].mean() - acc["sum"].mean())
    ev = {
        "itmtl": acc["itmtl"].round(4).tolist(),
        "sum": acc["sum"].round(4).tolist(),
        "mean_difference": round(diff, 4),
    }
    return bool(diff > margin), ev


RULES = (affinity_signs, first_order, recovers_planted, beats_all_together, itmtl_vs_sum)
