"""Every claim rule on small synthetic tables: one where it must hold, one where it must fail.

``CASES`` maps each rule id to ``(rule, holds, fails)`` builders; the first test checks that every
rule of every study module appears here, so a new rule cannot go untested.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mtlab.studies import diagonal_rules as dg
from mtlab.studies import images_rules as ir
from mtlab.studies import relu_rules as rr
from mtlab.studies import subspace_rules as sr
from mtlab.studies import trajectories_rules as tr2
from mtlab.studies import transference_rules as tr
from mtlab.studies.claims import ClaimRule

CASES: dict[str, tuple[ClaimRule, Callable[[], Any], Callable[[], Any]]] = {}


def case(rule: ClaimRule):
    def wrap(fn):
        CASES[rule.id] = (rule, lambda: fn(True), lambda: fn(False))
        return fn

    return wrap


def _all_rules() -> list[ClaimRule]:
    from mtlab.studies import (
        diagonal_rules,
        images_rules,
        relu_rules,
        subspace_rules,
        trajectories_rules,
        transference_rules,
    )

    mods = (
        diagonal_rules,
        images_rules,
        relu_rules,
        subspace_rules,
        trajectories_rules,
        transference_rules,
    )
    return [r for m in mods for r in m.RULES]


# ---------------------------------------------------------------------------- diagonal

N = (16, 64)
METHODS = ("stl", "mtl", "ptft", "ptft_lr")


def diag_cells(loss: dict[tuple[str, str, float], float | tuple[float, ...]]) -> pd.DataFrame:
    """Cells from {(setting, method, s): loss (same at every n) or one loss per n in N}."""
    rows = []
    for (setting, method, s), v in loss.items():
        vals = v if isinstance(v, tuple) else (v,) * len(N)
        for n, x in zip(N, vals, strict=True):
            rows.append(
                {"setting": setting, "method": method, "rescale": s, "n_main": n, "mean": x}
            )
    return pd.DataFrame(rows)


@case(dg.penalty_window)
def _(ok):
    w = 3.5 if ok else 1.5  # PT+FT window vs MTL's 1 decade; the rule needs a margin of 1
    return pd.DataFrame(
        {"penalty": ["MTL", "PT+FT s=1"], "window_decades": [1.0, w], "conservation_error": 0.0}
    )


@case(dg.penalty_conservation)
def _(ok):
    return pd.DataFrame(
        {"penalty": ["MTL"], "window_decades": [1.0], "conservation_error": [1e-9 if ok else 1e-3]}
    )


@case(dg.shared_features)
def _(ok):
    loss = {}
    for s in dg.SHARED_SETTINGS:
        loss |= {(s, "stl", 1.0): 1.0, (s, "mtl", 1.0): 0.3, (s, "ptft", 1.0): 0.2}
    if not ok:
        loss[("partial_overlap", "ptft", 1.0)] = 1.2
    return diag_cells(loss)


@case(dg.no_overlap)
def _(ok):
    return diag_cells(
        {
            ("new_dims", "stl", 1.0): 1.0,
            ("new_dims", "mtl", 1.0): 1.5,
            ("new_dims", "ptft", 1.0): 1.1 if ok else 0.9,
        }
    )


@case(dg.mtl_small_n)
def _(ok):
    loss = {}
    for s in ("nested_subset", "partial_overlap"):
        loss[(s, "ptft", 1.0)] = (0.5, 0.1)
        loss[(s, "mtl", 1.0)] = (0.4, 0.2) if ok else (0.6, 0.2)  # MTL must win at small n
    return diag_cells(loss)


@case(dg.rescaling_nested)
def _(ok):
    return diag_cells(
        {
            ("nested_subset", "ptft", 1.0): 1.0,
            ("nested_subset", "ptft", 0.1): 0.4 if ok else 0.6,  # needs < 0.5 × s = 1
            ("nested_subset", "ptft", 0.01): 0.7,
        }
    )


@case(dg.rescaling_all_aux)
def _(ok):
    return diag_cells(
        {
            ("all_aux", "ptft", 1.0): 1.0,
            ("all_aux", "ptft", 0.1): 0.5,  # s > 0.01 is not "strong": not checked
            ("all_aux", "ptft", 0.01): 1.5 if ok else 0.9,
        }
    )


@case(dg.rescaling_new_dims)
def _(ok):
    return diag_cells(
        {
            ("new_dims", "stl", 1.0): 1.0,
            ("new_dims", "ptft", 1.0): 2.0,
            ("new_dims", "ptft", 0.01): 0.5 if ok else 2.5,
        }
    )


def agreement(med: dict[str, float], method: dict[str, str] | None = None) -> pd.DataFrame:
    rows = []
    for pred, v in med.items():
        m = (method or {}).get(pred, "ptft" if pred.startswith("PT+FT:") else "stl")
        for x in (v * 0.5, v, v * 1.5):  # median v
            rows.append({"prediction": pred, "rel_distance": x, "method": m, "n_main": 16,
                         "rescale": 1.0})  # fmt: skip
    return pd.DataFrame(rows)


@case(dg.gd_matches_flow)
def _(ok):
    return agreement(
        {
            "STL: exact flow": 0.01,
            "PT+FT: exact flow": 0.02 if ok else 0.08,
            "PT+FT (LR): min-norm readout": 1e-5,
        }
    )


@case(dg.figure_form)
def _(ok):
    return agreement(
        {"PT+FT: exact flow": 0.01, "PT+FT: figure form K q(2β/K)": 0.3 if ok else 0.005}
    )


@case(dg.mtl_l12)
def _(ok):
    return agreement(
        {"STL: ℓ1 limit": 0.1, "MTL: ℓ1,2 limit (aux pinned)": 0.15 if ok else 0.25},
        {"MTL: ℓ1,2 limit (aux pinned)": "mtl"},
    )


# ---------------------------------------------------------------------------- subspace

TS = (1, 2, 4, 8, 16, 32)  # r = 4


def rec_table(**features: dict[str, tuple[float, ...]]) -> pd.DataFrame:
    """Wide recovery table from {features: {metric: one value per T in TS}}."""
    rows = []
    for f, metrics in features.items():
        for i, T in enumerate(TS):
            rows.append({"features": f, "T": T, "r": 4, **{m: v[i] for m, v in metrics.items()}})
    return pd.DataFrame(rows)


GOOD_MTL = {
    "sin_max": (1.0, 0.99, 0.95, 0.5, 0.3, 0.2),
    "energy": (0.5, 0.6, 0.7, 0.8, 0.9, 0.95),
    "n_dirs": (1, 2, 3.5, 4, 4, 4),
    "theory_cos": (0.4, 0.5, 0.7, 0.8, 0.9, 0.95),
}


@case(sr.needs_r_tasks)
def _(ok):
    m = dict(GOOD_MTL)
    if not ok:
        m["sin_max"] = (1.0, 0.5, 0.95, 0.5, 0.3, 0.2)  # recovered with 2 < r tasks
    return rec_table(mtl=m)


@case(sr.error_falls)
def _(ok):
    m = dict(GOOD_MTL)
    if not ok:
        m["sin_max"] = (1.0, 0.99, 0.3, 0.5, 0.7, 0.9)  # error grows with T
    return rec_table(mtl=m)


@case(sr.energy_hides_failure)
def _(ok):
    single = {"sin_max": (1.0,) * 6, "n_dirs": (1,) * 6, "energy": (0.5, 0.6, 0.7, 0.8, 0.9, 0.97)}
    if not ok:
        single["n_dirs"] = (1, 1, 1, 2, 3, 4)  # single task finds several directions
    return rec_table(mtl=GOOD_MTL, single_task=single)


@case(sr.population_one_step)
def _(ok):
    m = dict(GOOD_MTL)
    if not ok:
        m["theory_cos"] = (0.4, 0.5, 0.6, 0.7, 0.8, 0.85)  # below 0.9 at the largest T
    return rec_table(mtl=m)


def down_table(acc: dict[tuple[str, str], dict[int, float]], ns=(10, 100, 1000)) -> pd.DataFrame:
    """{(features, kind): {d: accuracy (same at every n_down)}}."""
    rows = [
        {"features": f, "downstream_task": k, "d": d, "n_down": n, "mean": a, "se": 0.0}
        for (f, k), per_d in acc.items()
        for d, a in per_d.items()
        for n in ns
    ]
    return pd.DataFrame(rows)


@case(sr.d_independent)
def _(ok):
    falling = {25: 0.85, 400: 0.6}
    return down_table(
        {
            ("mtl", "halfspace"): {25: 0.92, 400: 0.93 if ok else 0.8},
            ("random_features", "halfspace"): falling,
            ("raw_input", "halfspace"): falling,
            ("single_task", "halfspace"): falling,
        }
    )


@case(sr.downstream_worse)
def _(ok):
    return down_table(
        {
            ("mtl", "halfspace"): {25: 0.92, 400: 0.93},
            ("single_task", "halfspace"): {25: 0.8, 400: 0.85 if ok else 0.9},
        }
    )


@case(sr.xor_separates)
def _(ok):
    return down_table(
        {
            ("mtl", "xor"): {25: 0.85, 400: 0.8 if ok else 0.7},
            ("random_features", "xor"): {25: 0.7, 400: 0.5},
        }
    )


@case(sr.shared_head_fails)
def _(ok):
    shared = {"sin_max": (1.0,) * 6, "energy": (0.5,) * 6, "n_dirs": (2,) * 6}
    if not ok:
        shared["energy"] = (0.5, 0.5, 0.6, 0.7, 0.8, 0.9)  # as good as learned heads
    return rec_table(mtl=GOOD_MTL, shared_head=shared)


@case(sr.learned_beat_random)
def _(ok):
    rand = {"energy": (0.58, 0.6, 0.62, 0.6, 0.59, 0.6 if ok else 0.8)}
    return rec_table(mtl=GOOD_MTL, random_heads=rand)


@case(sr.alternating_recovers)
def _(ok):
    s = (0.99, 0.98, 0.95, 0.3, 0.25, 0.2) if ok else (0.99, 0.98, 0.95, 0.3, 0.25, 0.5)
    return pd.DataFrame({"T": TS, "sin_max": s, "r": 4})


@case(sr.pseudo_contrastive)
def _(ok):
    return {"rel_diff": 1e-14 if ok else 1e-6, "margins_below_1": True}


# ---------------------------------------------------------------------------- relu

RN = (16, 64, 256)


def relu_cells(loss: dict[tuple[str, str], tuple[float, ...] | float]) -> pd.DataFrame:
    """{(setting, method): loss per n in RN (or one value for all)} → correlated cells."""
    rows = []
    for (setting, method), v in loss.items():
        vals = v if isinstance(v, tuple) else (v,) * len(RN)
        rows += [{"setting": setting, "method": method, "n_main": n, "mean": x}
                 for n, x in zip(RN, vals, strict=True)]  # fmt: skip
    return pd.DataFrame(rows)


@case(rr.shared_features_help)
def _(ok):
    return relu_cells({("identical", "stl"): 1.0, ("identical", "mtl"): 0.1,
                       ("identical", "ptft"): (0.1, 0.1, 0.5 if ok else 1.5)})  # fmt: skip


@case(rr.unrelated_negative)
def _(ok):
    worse = 2.0 if ok else 0.5  # log10 ratio must lie in (0, 1)
    return relu_cells({("unrelated", "stl"): 1.0, ("unrelated", "mtl"): worse,
                       ("unrelated", "ptft"): worse})  # fmt: skip


@case(rr.correlated_favours_ptft)
def _(ok):
    return relu_cells({("correlated_0.9", "stl"): 1.0, ("correlated_0.9", "mtl"): 0.5,
                       ("correlated_0.9", "ptft"): (0.6, 0.3, 0.2 if ok else 0.7)})  # fmt: skip


@case(rr.probe_needs_same)
def _(ok):
    loss = {("identical", "stl"): 1.0}
    for setting in ("correlated_0.9", "partial_new", "unrelated"):
        loss[(setting, "stl")] = 1.0
    for m in ("ptft_lr", "ntk"):
        loss[("identical", m)] = 0.01
        for setting in ("correlated_0.9", "partial_new", "unrelated"):
            loss[(setting, m)] = 5.0
    if not ok:
        loss[("partial_new", "ntk")] = 0.5  # the NTK learns the new units
    return relu_cells(loss)


@case(rr.relu_mtl_small_n)
def _(ok):
    loss = {}
    for s in ("identical", "correlated_0.9"):
        loss[(s, "ptft")] = 0.1
        loss[(s, "mtl")] = (0.12, 0.5, 1.0) if ok else (0.3, 0.5, 1.0)  # ratio 3 > 1.5 at n=16
    return relu_cells(loss)


def nested_cells(loss) -> pd.DataFrame:
    """loss(setting, s or None for STL, k) → nested cells at n_main 64."""
    rows = []
    for setting in ("subset", "new"):
        for k in range(1, 7):
            for s in (None, 0.01, 0.1, 1.0, 10.0):
                rows.append({"setting": setting, "method": "stl" if s is None else "ptft",
                             "s": 0.0 if s is None else s, "n_units": k, "n_main": 64,
                             "mean": loss(setting, s, k)})  # fmt: skip
    return pd.DataFrame(rows)


def _nested_loss(setting, s, k, *, sens=100.0, lazy_new=3.0, small_new=1.5):
    if s is None:
        return 0.1
    if setting == "subset":
        return 0.001 * (sens ** ((k - 1) / 5) if s == 0.01 else 1.0)
    if s == 10.0:
        return 0.1 * lazy_new
    return 0.1 * (small_new if s == 0.01 else 1.0)


@case(rr.nested_small_s)
def _(ok):
    return nested_cells(lambda st, s, k: _nested_loss(st, s, k, sens=100.0 if ok else 5.0))


@case(rr.lazy_large_s)
def _(ok):
    return nested_cells(lambda st, s, k: _nested_loss(st, s, k, lazy_new=3.0 if ok else 0.5))


@case(rr.small_s_like_stl)
def _(ok):
    return nested_cells(lambda st, s, k: _nested_loss(st, s, k, small_new=1.5 if ok else 5.0))


@case(rr.nested_signature)
def _(ok):
    rows = [{"s": 0.01, "n_units": k, "pr_pre": 4.0, "pr_post": 1.0 + k * 0.5,
             "ensd": 0.95 * (1.0 + k * 0.5)} for k in (1, 2, 3)]  # fmt: skip
    rows.append(
        {"s": 10.0, "n_units": 1, "pr_pre": 4.0, "pr_post": 4.1 if ok else 3.0, "ensd": 4.0}
    )
    return pd.DataFrame(rows)


def magnitude_cells(ratio) -> pd.DataFrame:
    """PT+FT/STL loss ratio(c, m) over cosine × magnitude at n_main 64 and 256."""
    rows = []
    for n in (64, 256):
        for c in (0.8, 0.9, 1.0):
            for m in (1.0, 0.1, 0.01):
                rows.append({"correlation": c, "magnitude": m, "n_main": n, "method": "stl",
                             "mean": 1.0})  # fmt: skip
                rows.append({"correlation": c, "magnitude": m, "n_main": n, "method": "ptft",
                             "mean": ratio(c, m)})  # fmt: skip
    return pd.DataFrame(rows)


@case(rr.magnitude_or_direction)
def _(ok):
    return magnitude_cells(lambda c, m: 0.01 if (c == 1 or m == 1) else (2.0 if ok else 0.5))


@case(rr.gain_concentrated)
def _(ok):
    return magnitude_cells(lambda c, m: 0.001 if (c == 1 or m == 1) else (0.5 if ok else 0.002))


def penalty_table(cons=1e-9, misaligned_lo=0.5, aligned_lo=1.95) -> pd.DataFrame:
    rows = [{"theta": 1.0, "conservation_error": cons, "l_order_tail": aligned_lo, "fd_tail": -0.9}]
    rows += [{"theta": t, "conservation_error": cons, "l_order_tail": misaligned_lo,
              "fd_tail": 1 - misaligned_lo} for t in (0.99, 0.9, 0.5)]  # fmt: skip
    return pd.DataFrame(rows)


@case(rr.relu_penalty_conservation)
def _(ok):
    return penalty_table(cons=1e-9 if ok else 1e-3)


@case(rr.penalty_misaligned)
def _(ok):
    return penalty_table(misaligned_lo=0.5 if ok else 1.5)


# ---------------------------------------------------------------------------- images


def acc_table(acc) -> pd.DataFrame:
    """acc(trunk, label, n) for labels STL, MTL, PT+FT s ∈ {0.125, 0.25, 1, 2}, n ∈ {10, 200}."""
    labels = ["STL", "MTL"] + [f"PT+FT s={s:g}" for s in (0.125, 0.25, 1.0, 2.0)]
    return pd.DataFrame(
        [{"trunk": t, "label": lab, "n_main": n, "mean": acc(t, lab, n)}
         for t in ("mlp", "cnn") for lab in labels for n in (10, 200)]
    )  # fmt: skip


def _acc(t, lab, n, *, small=0.01, large=-0.05, mtl_lead=0.02):
    base = 0.8 if n == 10 else 0.9
    return {
        "PT+FT s=0.125": base + small,
        "PT+FT s=0.25": base,
        "PT+FT s=2": base + large,
        "MTL": base + (mtl_lead if n == 10 else -mtl_lead),
    }.get(lab, base)


@case(ir.small_s_helps)
def _(ok):
    return acc_table(lambda t, lab, n: _acc(t, lab, n, small=0.01 if ok else -0.01))


@case(ir.large_s_hurts)
def _(ok):
    return acc_table(lambda t, lab, n: _acc(t, lab, n, large=-0.05 if ok else 0.01))


@case(ir.images_mtl_small_n)
def _(ok):
    return acc_table(lambda t, lab, n: _acc(t, lab, n, mtl_lead=0.02 if ok else -0.02))


@case(ir.images_nested_signature)
def _(ok):
    return pd.DataFrame(
        [{"trunk": t, "s": s, "pr_pre": 2.0, "pr_post": 1.5 if (ok or s > 0.125) else 2.5,
          "ensd": 1.4} for t in ("mlp", "cnn") for s in (0.125, 1.0)]
    )  # fmt: skip


# ---------------------------------------------------------------------------- transference


@case(tr.affinity_signs)
def _(ok):
    rows = []
    for seed in (0, 1):
        for i, j, same in ((0, 1, True), (1, 0, True), (0, 2, False), (2, 0, False)):
            v = (0.02 if same else -0.01) if (ok or seed == 0) else 0.01
            rows.append({"dataset": "planted-groups", "seed": seed, "recipient": f"t{i}",
                         "source": f"t{j}", "same_group": same, "value": v})  # fmt: skip
    return pd.DataFrame(rows)


@case(tr.first_order)
def _(ok):
    errs = (0.01, 0.03, 0.2) if ok else (0.08, 0.1, 0.2)
    return pd.DataFrame({"dataset": "planted-groups", "seed": 0, "eta": (0.01, 0.1, 0.3),
                         "rel_error": errs})  # fmt: skip


@case(tr.recovers_planted)
def _(ok):
    return pd.DataFrame({"dataset": "planted-groups", "seed": [0, 1], "affinity_kind": "lookahead",
                         "recovered": [True, ok], "groups": "a,b; c"})  # fmt: skip


def model_acc(grouped=0.9, itmtl=0.86) -> pd.DataFrame:
    idx = pd.MultiIndex.from_tuples([("planted-groups", 0), ("planted-groups", 1)],
                                    names=["dataset", "seed"])  # fmt: skip
    return pd.DataFrame({"all_together": 0.85, "grouped": grouped, "stl": 0.88, "sum": 0.85,
                         "itmtl": itmtl}, index=idx)  # fmt: skip


@case(tr.beats_all_together)
def _(ok):
    return model_acc(grouped=0.9 if ok else 0.84)


@case(tr.itmtl_vs_sum)
def _(ok):
    return model_acc(itmtl=0.86 if ok else 0.853)


def test_transference_rules_are_three_valued():
    def affinity(within, cross):
        return pd.DataFrame([{"dataset": "planted-groups", "seed": seed, "recipient": "a",
                              "source": "b" if same else "c", "same_group": same,
                              "value": (w if same else c)}
                             for seed, (w, c) in enumerate(zip(within, cross, strict=True))
                             for same in (True, False)])  # fmt: skip

    assert tr.affinity_signs.verdict(affinity([0.02, 0.03], [-0.01, -0.02])) == "holds"
    assert tr.affinity_signs.verdict(affinity([-0.02, -0.03], [-0.01, -0.02])) == "contradicted"
    assert tr.affinity_signs.verdict(affinity([0.02, -0.01], [-0.01, -0.02])) == "inconclusive"
    assert tr.affinity_signs.verdict(affinity([0.02], [-0.01])) == "inconclusive"  # one seed
    assert tr.first_order.verdict(pd.DataFrame(columns=["dataset", "seed", "eta", "rel_error"])
                                  ) == "inconclusive"  # fmt: skip

    def grouping(recovered):
        return pd.DataFrame({"dataset": "planted-groups", "seed": range(len(recovered)),
                             "affinity_kind": "lookahead", "recovered": recovered,
                             "groups": "a,b; c"})  # fmt: skip

    assert tr.recovers_planted.verdict(grouping([True, True, True])) == "holds"
    assert tr.recovers_planted.verdict(grouping([False, False])) == "contradicted"
    assert tr.recovers_planted.verdict(grouping([True, False, True])) == "inconclusive"
    assert tr.recovers_planted.verdict(grouping([True])) == "inconclusive"

    def acc(grouped, itmtl):
        idx = pd.MultiIndex.from_tuples([("planted-groups", s) for s in range(len(grouped))],
                                        names=["dataset", "seed"])  # fmt: skip
        return pd.DataFrame({"all_together": 0.85, "grouped": grouped, "stl": 0.88, "sum": 0.85,
                             "itmtl": itmtl}, index=idx)  # fmt: skip

    assert tr.beats_all_together.verdict(acc([0.9, 0.88, 0.87], [0.86] * 3)) == "holds"
    assert tr.beats_all_together.verdict(acc([0.8, 0.82, 0.84], [0.86] * 3)) == "contradicted"
    assert tr.beats_all_together.verdict(acc([0.9, 0.82, 0.87], [0.86] * 3)) == "inconclusive"
    assert tr.itmtl_vs_sum.verdict(acc([0.9] * 3, [0.86, 0.87, 0.865])) == "holds"
    assert tr.itmtl_vs_sum.verdict(acc([0.9] * 3, [0.85, 0.851, 0.852])) == "contradicted"
    assert tr.itmtl_vs_sum.verdict(acc([0.9] * 3, [0.84, 0.87, 0.86])) == "inconclusive"


# ---------------------------------------------------------------------------- trajectories


def traj_pairs(
    n: int = 60,
    *,
    gap_sign_ok=True,
    persist=True,
    factor_explains=False,
    cos_slow=True,
    cos_transfer=False,
    method_improves=False,
    noise: float = 0.0,
) -> pd.DataFrame:
    """Synthetic pair summaries: two kinds of setting, ``n`` baseline pairs each (two tasks per
    MTL run: runs ``setting``/``seed`` hold pairs ``2k`` and ``2k + 1``), and a pcgrad pair for
    every baseline pair. ``noise``: the early gap and the factors get that much noise."""
    rng = np.random.default_rng(0)
    rows = []
    for group in ("teacher, bottleneck", "digits"):
        for i in range(n):
            transfer = (i - n / 2 + 0.5) * 0.02  # half negative, half positive
            early = (-transfer if gap_sign_ok else transfer) + noise * rng.normal()
            late = early if persist else -early
            cos = rng.uniform(-1, 1)
            slow = float(np.exp(-cos if cos_slow else rng.normal()))
            if cos_transfer:
                cos = transfer * 20 + 0.01 * rng.normal()
                slow = float(np.exp(-cos))
            d_f = {f"d_{f}": (early * 3 + noise * rng.normal() if factor_explains
                              else rng.normal()) for f in tr2.FACTORS}  # fmt: skip
            base = {
                "group": group,
                "setting": f"{group}-{i // 2 % 5}",
                "task": f"t{i % 2}",
                "seed": i // 10,
                "early_gap": early,
                "late_gap": late,
                "final_transfer": transfer,
                "early_slowdown": slow,
                "early_cos": cos,
                **d_f,
            }
            rows.append({**base, "method": "sum", "baseline": True})
            rows.append(
                {
                    **base,
                    "method": "pcgrad",
                    "baseline": False,
                    "early_cos": cos + 0.2,
                    "early_slowdown": slow * 0.8,
                    "final_transfer": transfer
                    + (0.05 if method_improves else 0.002 * rng.normal()),
                }
            )
    return pd.DataFrame(rows)


@case(tr2.early_sign)
def _(ok):
    return traj_pairs() if ok else traj_pairs(gap_sign_ok=False)


@case(tr2.factors_do_not_explain)
def _(ok):
    return traj_pairs(n=400) if ok else traj_pairs(factor_explains=True)


@case(tr2.conflict_slowdown)
def _(ok):
    return traj_pairs(n=200) if ok else traj_pairs(cos_transfer=True)


@case(tr2.methods_change)
def _(ok):
    return traj_pairs() if ok else traj_pairs(method_improves=True)


def test_trajectory_rules_are_three_valued():
    """Each rule holds, is contradicted, and cannot tell (few pairs, or an interval that
    straddles its threshold) on tables made for it."""
    assert tr2.early_sign.verdict(traj_pairs()) == "holds"
    assert tr2.early_sign.verdict(traj_pairs(gap_sign_ok=False)) == "contradicted"
    assert tr2.early_sign.verdict(traj_pairs(persist=False)) == "contradicted"
    assert tr2.early_sign.verdict(traj_pairs(n=2)) == "inconclusive"  # too few pairs
    # a gap within ±0.01 has no sign: those pairs do not count
    assert tr2.early_sign.verdict(traj_pairs(n=8).assign(early_gap=0.005)) == "inconclusive"
    # a claim of absence needs the power to see the effect it denies
    assert tr2.factors_do_not_explain.verdict(traj_pairs(n=400)) == "holds"
    assert tr2.factors_do_not_explain.verdict(traj_pairs(n=12)) == "inconclusive"
    assert tr2.factors_do_not_explain.verdict(traj_pairs(factor_explains=True)) == "contradicted"
    one_kind = traj_pairs(n=400)
    assert tr2.factors_do_not_explain.verdict(one_kind[one_kind.group == "digits"]) == (
        "inconclusive")  # one kind of setting cannot show "in every kind"
    assert tr2.conflict_slowdown.verdict(traj_pairs(n=200)) == "holds"
    assert tr2.conflict_slowdown.verdict(traj_pairs(n=12)) == "inconclusive"
    assert tr2.conflict_slowdown.verdict(traj_pairs(cos_transfer=True)) == "contradicted"
    assert tr2.conflict_slowdown.verdict(traj_pairs(n=200, cos_slow=False)) != "holds"
    assert tr2.methods_change.verdict(traj_pairs()) == "holds"
    assert tr2.methods_change.verdict(traj_pairs(method_improves=True)) == "contradicted"
    # four MTL runs whose transfer changes disagree: the interval straddles ±0.02
    wide = traj_pairs(n=4)
    up = ~wide.baseline & wide.setting.str.endswith("-0")
    wide.loc[up, "final_transfer"] += 0.06
    wide.loc[~wide.baseline & ~up, "final_transfer"] -= 0.05
    assert tr2.methods_change.verdict(wide) == "inconclusive"


# ---------------------------------------------------------------------------- tests


def test_every_rule_has_a_hold_and_a_fail_case():
    ids = [r.id for r in _all_rules()]
    assert len(ids) == len(set(ids)), "rule ids must be unique"
    assert set(ids) == set(CASES), f"untested rules: {sorted(set(ids) - set(CASES))}"


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_holds_and_fails(rule_id):
    rule, holds, fails = CASES[rule_id]
    assert rule(holds()), f"{rule_id} should hold"
    assert not rule(fails()), f"{rule_id} should fail"
    claim = rule.evaluate(holds(), figure="f.png")
    assert claim.verdict and claim.figure == "f.png" and claim.text == rule.rendered()
    if rule.params:
        assert claim.evidence["thresholds"] == dict(rule.params)


@pytest.mark.parametrize("rule", _all_rules(), ids=lambda r: r.id)
def test_text_is_rendered_from_the_thresholds(rule):
    text = rule.rendered()
    assert "{" not in text and "}" not in text
    for name, value in rule.params.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            shown = (f"{value:g}", f"{value:.0%}")
            assert any(v in text for v in shown), f"{rule.id}: threshold {name} not in its text"
