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


VERDICTS = ("holds", "contradicted", "inconclusive")


def case(rule: ClaimRule):
    """``fn(verdict)`` builds a table on which ``rule`` must give that verdict."""

    def wrap(fn):
        CASES[rule.id] = (rule, fn)
        return fn

    return wrap


def seeded(parts: list[pd.DataFrame], jitter: str = "test_loss_rel") -> pd.DataFrame:
    """One table per seed, stacked with a ``seed`` column; seed k's ``jitter`` column scaled by
    1 + k / 100 (its draw), which leaves every ratio alone."""
    out = []
    for seed, t in enumerate(parts):
        t = t.assign(seed=seed)
        if jitter in t:
            t[jitter] = t[jitter] * (1 + seed / 100)
        out.append(t)
    return pd.concat(out, ignore_index=True)


def case_ok(rule: ClaimRule):
    """A case from ``fn(ok)``, a one-seed table where the rule holds (ok) or fails: three seeds
    of the first (holds), of the second (contradicted), or one seed of the second and two of the
    first (inconclusive: the interval spans both)."""

    def wrap(fn):
        def build(v):
            ok = {"holds": [True] * 3, "contradicted": [False] * 3,
                  "inconclusive": [False, True, True]}[v]  # fmt: skip
            return seeded([fn(k) for k in ok])

        return case(rule)(build)

    return wrap


def case_computed(rule: ClaimRule):
    """A case for a property of a computation: ``fn(ok)``; no rows: inconclusive."""

    def wrap(fn):
        return case(rule)(lambda v: fn(v == "holds") if v != "inconclusive" else fn(True)[:0])

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
SEEDS = (0, 1, 2)


def diag_runs(loss: dict[tuple[str, str, float], Any]) -> pd.DataFrame:
    """Runs from {(setting, method, s): loss}: the loss is the same at every n and seed, a tuple
    (one per n in N), or a dict {seed: loss or tuple} (seeds that disagree). Every run of a seed
    is scaled by 1 + seed / 100 (the seed's draw), which leaves the ratios alone."""
    rows = []
    for (setting, method, s), v in loss.items():
        for seed in SEEDS:
            x = v[seed] if isinstance(v, dict) else v
            vals = x if isinstance(x, tuple) else (x,) * len(N)
            for n, val in zip(N, vals, strict=True):
                rows.append({"setting": setting, "method": method, "rescale": s, "n_main": n,
                             "seed": seed, "test_loss_rel": val * (1 + seed / 100)})  # fmt: skip
    return pd.DataFrame(rows)


def split(a, b):
    """Seed 0 says ``a``, seeds 1 and 2 say ``b``: an interval that straddles any cut
    between them."""
    return {0: a, 1: b, 2: b}


@case(dg.penalty_window)
def _(v):
    w = {"holds": 3.5, "contradicted": 1.5}.get(v, 3.5)  # needs a margin of 1 over MTL's 1
    penalties = ["MTL", "PT+FT s=1"] if v != "inconclusive" else ["PT+FT s=1"]  # nothing to compare
    return pd.DataFrame({"penalty": penalties, "window_decades": [1.0, w][-len(penalties):],
                         "conservation_error": 0.0})  # fmt: skip


@case(dg.penalty_conservation)
def _(v):
    if v == "inconclusive":
        return pd.DataFrame(columns=["penalty", "window_decades", "conservation_error"])
    err = 1e-9 if v == "holds" else 1e-3
    return pd.DataFrame({"penalty": ["MTL"], "window_decades": [1.0], "conservation_error": [err]})


@case(dg.shared_features)
def _(v):
    loss = {}
    for s in dg.SHARED_SETTINGS:
        loss |= {(s, "stl", 1.0): 1.0, (s, "mtl", 1.0): 0.3, (s, "ptft", 1.0): 0.2}
    if v == "contradicted":
        loss[("partial_overlap", "ptft", 1.0)] = 1.2
    if v == "inconclusive":
        loss[("partial_overlap", "ptft", 1.0)] = split(1.2, 0.2)
    return diag_runs(loss)


@case(dg.no_overlap)
def _(v):
    ptft = {"holds": 0.95, "contradicted": 0.8, "inconclusive": split(0.7, 1.1)}[v]
    return diag_runs({("new_dims", "stl", 1.0): 1.0, ("new_dims", "mtl", 1.0): 1.5,
                      ("new_dims", "ptft", 1.0): ptft})  # fmt: skip


@case(dg.mtl_small_n)
def _(v):
    mtl = {"holds": (0.4, 0.2), "contradicted": (0.6, 0.2),  # MTL must win at small n
           "inconclusive": split((0.6, 0.2), (0.4, 0.2))}[v]  # fmt: skip
    loss = {}
    for s in ("nested_subset", "partial_overlap"):
        loss[(s, "ptft", 1.0)] = (0.5, 0.1)
        loss[(s, "mtl", 1.0)] = mtl
    return diag_runs(loss)


@case(dg.rescaling_nested)
def _(v):
    best = {"holds": 0.4, "contradicted": 0.6, "inconclusive": split(0.3, 0.6)}[v]
    return diag_runs({("nested_subset", "ptft", 1.0): 1.0,
                      ("nested_subset", "ptft", 0.1): best,  # needs < 0.5 × s = 1
                      ("nested_subset", "ptft", 0.01): 0.7})  # fmt: skip


@case(dg.rescaling_all_aux)
def _(v):
    strong = {"holds": 1.5, "contradicted": 0.9, "inconclusive": split(0.8, 1.3)}[v]
    return diag_runs({("all_aux", "ptft", 1.0): 1.0,
                      ("all_aux", "ptft", 0.1): 0.5,  # s > 0.01 is not "strong": not checked
                      ("all_aux", "ptft", 0.01): strong})  # fmt: skip


@case(dg.rescaling_new_dims)
def _(v):
    strong = {"holds": 0.5, "contradicted": 2.5, "inconclusive": split(2.5, 0.5)}[v]
    return diag_runs({("new_dims", "stl", 1.0): 1.0, ("new_dims", "ptft", 1.0): 2.0,
                      ("new_dims", "ptft", 0.01): strong})  # fmt: skip


def agreement(med: dict[str, Any], method: dict[str, str] | None = None) -> pd.DataFrame:
    """Agreement rows: per prediction, runs (setting a/b × n 16/64 × seed 0/1) whose distances
    spread around ``v`` (×0.8…×1.25); a pair ``(a, b)``: half the runs at ``a``, half at ``b``."""
    rows = []
    for pred, v in med.items():
        m = (method or {}).get(pred, "ptft" if pred.startswith("PT+FT:") else "stl")
        for k, (setting, n, seed) in enumerate(
                (st, n, sd) for st in "ab" for n in (16, 64) for sd in (0, 1)):
            x = v if not isinstance(v, tuple) else v[k % 2]
            rows.append({"run_id": f"{m}-{setting}-{n}-{seed}", "prediction": pred,
                         "rel_distance": x * (0.8, 0.9, 1.1, 1.25)[k % 4], "method": m,
                         "setting": setting, "n_main": n, "seed": seed,
                         "rescale": 1.0})  # fmt: skip
    return pd.DataFrame(rows)


@case(dg.gd_matches_flow)
def _(v):
    ptft = {"holds": 0.02, "contradicted": 0.08, "inconclusive": (0.01, 0.1)}[v]
    return agreement({"STL: exact flow": 0.01, "PT+FT: exact flow": ptft,
                      "PT+FT (LR): min-norm readout": 1e-5})  # fmt: skip


@case(dg.figure_form)
def _(v):
    fig = {"holds": 0.3, "contradicted": 0.005, "inconclusive": (0.002, 0.05)}[v]
    return agreement({"PT+FT: exact flow": 0.01, "PT+FT: figure form K q(2β/K)": fig})


@case(dg.mtl_l12)
def _(v):
    mtl = {"holds": 0.15, "contradicted": 0.25, "inconclusive": (0.05, 0.6)}[v]
    return agreement({"STL: ℓ1 limit": 0.1, "MTL: ℓ1,2 limit (aux pinned)": mtl},
                     {"MTL: ℓ1,2 limit (aux pinned)": "mtl"})


# ---------------------------------------------------------------------------- subspace

TS = (1, 2, 4, 8, 16, 32)  # r = 4


def per_seed(value: Any, seed: int) -> Any:
    """``value`` as seed ``seed`` sees it: a dict {seed: value} gives seeds that disagree."""
    return value[seed] if isinstance(value, dict) else value


def rec_table(**features: dict[str, Any]) -> pd.DataFrame:
    """Per-seed recovery table from {features: {metric: one value per T in TS, or a dict
    {seed: values}}}; three seeds, each off by ±0.001 (a seed's draw)."""
    rows = []
    for f, metrics in features.items():
        for seed in SEEDS:
            for i, T in enumerate(TS):
                rows.append({"features": f, "T": T, "seed": seed, "r": 4,
                             **{m: per_seed(v, seed)[i] + 0.001 * (seed - 1)
                                for m, v in metrics.items()}})  # fmt: skip
    return pd.DataFrame(rows)


GOOD_MTL = {
    "sin_max": (1.0, 0.99, 0.95, 0.5, 0.3, 0.2),
    "energy": (0.5, 0.6, 0.7, 0.8, 0.9, 0.95),
    "n_dirs": (1, 2, 3.5, 4, 4, 4),
    "theory_cos": (0.4, 0.5, 0.7, 0.8, 0.9, 0.95),
}


def _mtl(v: str, metric: str, bad: tuple[float, ...]) -> pd.DataFrame:
    """GOOD_MTL, with ``metric`` set to ``bad`` (contradicted) or ``bad`` in one seed of three
    (inconclusive)."""
    m = dict(GOOD_MTL)
    if v != "holds":
        m[metric] = bad if v == "contradicted" else split(bad, GOOD_MTL[metric])
    return rec_table(mtl=m)


@case(sr.needs_r_tasks)
def _(v):
    return _mtl(v, "sin_max", (1.0, 0.5, 0.95, 0.5, 0.3, 0.2))  # recovered with 2 < r tasks


@case(sr.error_falls)
def _(v):
    return _mtl(v, "sin_max", (1.0, 0.99, 0.3, 0.5, 0.7, 0.9))  # error grows with T


@case(sr.energy_hides_failure)
def _(v):
    single = {"sin_max": (1.0,) * 6, "n_dirs": (1,) * 6, "energy": (0.5, 0.6, 0.7, 0.8, 0.9, 0.97)}
    several = (1, 1, 1, 2, 3, 4)  # single task finds several directions
    if v != "holds":
        single["n_dirs"] = several if v == "contradicted" else split(several, (1,) * 6)
    return rec_table(mtl=GOOD_MTL, single_task=single)


@case(sr.population_one_step)
def _(v):
    return _mtl(v, "theory_cos", (0.4, 0.5, 0.6, 0.7, 0.8, 0.85))  # below 0.9 at the largest T


def down_table(acc: dict[tuple[str, str], dict[int, Any]], ns=(10, 100, 1000)) -> pd.DataFrame:
    """Per-seed downstream table from {(features, kind): {d: accuracy (same at every n_down; a
    dict {seed: accuracy} for seeds that disagree)}}; seeds off by ±0.001."""
    rows = [
        {"features": f, "downstream_task": k, "d": d, "n_down": n, "seed": seed,
         "test_acc": per_seed(a, seed) + 0.001 * (seed - 1)}
        for (f, k), per_d in acc.items()
        for d, a in per_d.items()
        for n in ns
        for seed in SEEDS
    ]  # fmt: skip
    return pd.DataFrame(rows)


@case(sr.d_independent)
def _(v):
    falling = {25: 0.85, 400: 0.6}
    at_400 = {"holds": 0.93, "contradicted": 0.8, "inconclusive": split(0.8, 0.93)}[v]
    return down_table(
        {
            ("mtl", "halfspace"): {25: 0.92, 400: at_400},
            ("random_features", "halfspace"): falling,
            ("raw_input", "halfspace"): falling,
            ("single_task", "halfspace"): falling,
        }
    )


@case(sr.downstream_worse)
def _(v):
    single = {"holds": 0.85, "contradicted": 0.9, "inconclusive": split(0.9, 0.8)}[v]
    return down_table(
        {
            ("mtl", "halfspace"): {25: 0.92, 400: 0.93},
            ("single_task", "halfspace"): {25: 0.8, 400: single},
        }
    )


@case(sr.xor_separates)
def _(v):
    mtl = {"holds": 0.8, "contradicted": 0.7, "inconclusive": split(0.7, 0.85)}[v]
    return down_table(
        {
            ("mtl", "xor"): {25: 0.85, 400: mtl},
            ("random_features", "xor"): {25: 0.7, 400: 0.5},
        }
    )


@case(sr.shared_head_fails)
def _(v):
    shared = {"sin_max": (1.0,) * 6, "energy": (0.5,) * 6, "n_dirs": (2,) * 6}
    good = (0.5, 0.5, 0.6, 0.7, 0.8, 0.9)  # as good as learned heads
    if v != "holds":
        shared["energy"] = good if v == "contradicted" else split(good, (0.5,) * 6)
    return rec_table(mtl=GOOD_MTL, shared_head=shared)


@case(sr.learned_beat_random)
def _(v):
    last = {"holds": 0.6, "contradicted": 0.8, "inconclusive": split(0.8, 0.6)}[v]
    rand = {"energy": {s: (0.58, 0.6, 0.62, 0.6, 0.59, per_seed(last, s)) for s in SEEDS}}
    return rec_table(mtl=GOOD_MTL, random_heads=rand)


@case(sr.alternating_recovers)
def _(v):
    good, bad = (0.99, 0.98, 0.95, 0.3, 0.25, 0.2), (0.99, 0.98, 0.95, 0.3, 0.25, 0.5)
    s = {"holds": good, "contradicted": bad, "inconclusive": split(bad, good)}[v]
    return pd.DataFrame([{"T": T, "seed": seed, "sin_max": per_seed(s, seed)[i], "r": 4}
                         for seed in SEEDS for i, T in enumerate(TS)])  # fmt: skip


@case(sr.pseudo_contrastive)
def _(v):
    if v == "inconclusive":
        return {}
    return {"rel_diff": 1e-14 if v == "holds" else 1e-6, "margins_below_1": True}


# ---------------------------------------------------------------------------- relu

RN = (16, 64, 256)


def relu_cells(loss: dict[tuple[str, str], tuple[float, ...] | float]) -> pd.DataFrame:
    """{(setting, method): loss per n in RN (or one value for all)} → correlated cells."""
    rows = []
    for (setting, method), v in loss.items():
        vals = v if isinstance(v, tuple) else (v,) * len(RN)
        rows += [{"setting": setting, "method": method, "n_main": n, "test_loss_rel": x}
                 for n, x in zip(RN, vals, strict=True)]  # fmt: skip
    return pd.DataFrame(rows)


@case_ok(rr.shared_features_help)
def _(ok):
    return relu_cells({("identical", "stl"): 1.0, ("identical", "mtl"): 0.1,
                       ("identical", "ptft"): (0.1, 0.1, 0.5 if ok else 1.5)})  # fmt: skip


@case_ok(rr.unrelated_negative)
def _(ok):
    worse = 2.0 if ok else 0.5  # log10 ratio must lie in (0, 1)
    return relu_cells({("unrelated", "stl"): 1.0, ("unrelated", "mtl"): worse,
                       ("unrelated", "ptft"): worse})  # fmt: skip


@case_ok(rr.correlated_favours_ptft)
def _(ok):
    return relu_cells({("correlated_0.9", "stl"): 1.0, ("correlated_0.9", "mtl"): 0.5,
                       ("correlated_0.9", "ptft"): (0.6, 0.3, 0.2 if ok else 0.7)})  # fmt: skip


@case_ok(rr.probe_needs_same)
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


@case_ok(rr.relu_mtl_small_n)
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
                             "test_loss_rel": loss(setting, s, k)})  # fmt: skip
    return pd.DataFrame(rows)


def _nested_loss(setting, s, k, *, sens=100.0, lazy_new=3.0, small_new=1.5):
    if s is None:
        return 0.1
    if setting == "subset":
        return 0.001 * (sens ** ((k - 1) / 5) if s == 0.01 else 1.0)
    if s == 10.0:
        return 0.1 * lazy_new
    return 0.1 * (small_new if s == 0.01 else 1.0)


@case_ok(rr.nested_small_s)
def _(ok):
    return nested_cells(lambda st, s, k: _nested_loss(st, s, k, sens=100.0 if ok else 5.0))


@case_ok(rr.lazy_large_s)
def _(ok):
    return nested_cells(lambda st, s, k: _nested_loss(st, s, k, lazy_new=3.0 if ok else 0.5))


@case_ok(rr.small_s_like_stl)
def _(ok):
    return nested_cells(lambda st, s, k: _nested_loss(st, s, k, small_new=1.5 if ok else 5.0))


@case_ok(rr.nested_signature)
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
                             "test_loss_rel": 1.0})  # fmt: skip
                rows.append({"correlation": c, "magnitude": m, "n_main": n, "method": "ptft",
                             "test_loss_rel": ratio(c, m)})  # fmt: skip
    return pd.DataFrame(rows)


@case_ok(rr.magnitude_or_direction)
def _(ok):
    return magnitude_cells(lambda c, m: 0.01 if (c == 1 or m == 1) else (2.0 if ok else 0.5))


@case_ok(rr.gain_concentrated)
def _(ok):
    return magnitude_cells(lambda c, m: 0.001 if (c == 1 or m == 1) else (0.5 if ok else 0.002))


def penalty_table(cons=1e-9, misaligned_lo=0.5, aligned_lo=1.95) -> pd.DataFrame:
    rows = [{"theta": 1.0, "conservation_error": cons, "l_order_tail": aligned_lo, "fd_tail": -0.9}]
    rows += [{"theta": t, "conservation_error": cons, "l_order_tail": misaligned_lo,
              "fd_tail": 1 - misaligned_lo} for t in (0.99, 0.9, 0.5)]  # fmt: skip
    return pd.DataFrame(rows)


@case_computed(rr.relu_penalty_conservation)
def _(ok):
    return penalty_table(cons=1e-9 if ok else 1e-3)


@case_computed(rr.penalty_misaligned)
def _(ok):
    return penalty_table(misaligned_lo=0.5 if ok else 1.5)


# ---------------------------------------------------------------------------- images


def acc_table(acc) -> pd.DataFrame:
    """acc(trunk, label, n) for labels STL, MTL, PT+FT s ∈ {0.125, 0.25, 1, 2}, n ∈ {10, 200}."""
    labels = ["STL", "MTL"] + [f"PT+FT s={s:g}" for s in (0.125, 0.25, 1.0, 2.0)]
    return pd.DataFrame(
        [{"trunk": t, "label": lab, "n_main": n, "test_acc": acc(t, lab, n)}
         for t in ("mlp", "cnn") for lab in labels for n in (10, 200)]
    )  # fmt: skip


def _acc(t, lab, n, *, small=0.01, large=-0.05, mtl_lead=0.02):
    base = 0.8 if n == 10 else 0.9
    return {
        "PT+FT s=0.125": base + small,
        "PT+FT s=0.25": base + small / 2,
        "PT+FT s=2": base + large,
        "MTL": base + (mtl_lead if n == 10 else -mtl_lead),
    }.get(lab, base)


@case_ok(ir.small_s_helps)
def _(ok):
    return acc_table(lambda t, lab, n: _acc(t, lab, n, small=0.01 if ok else -0.01))


@case_ok(ir.large_s_hurts)
def _(ok):
    return acc_table(lambda t, lab, n: _acc(t, lab, n, large=-0.05 if ok else 0.01))


@case_ok(ir.images_mtl_small_n)
def _(ok):
    return acc_table(lambda t, lab, n: _acc(t, lab, n, mtl_lead=0.02 if ok else -0.02))


@case_ok(ir.images_nested_signature)
def _(ok):
    return pd.DataFrame(
        [{"trunk": t, "s": s, "pr_pre": 2.0, "pr_post": 1.5 if (ok or s > 0.125) else 2.5,
          "ensd": 1.4} for t in ("mlp", "cnn") for s in (0.125, 1.0)]
    )  # fmt: skip


# ---------------------------------------------------------------------------- transference


def tr_affinity(within, cross):
    """Affinity rows: per seed, the within-group and cross-group affinity."""
    return pd.DataFrame([{"dataset": "planted-groups", "seed": seed, "recipient": "a",
                          "source": "b" if same else "c", "same_group": same,
                          "value": (w if same else c)}
                         for seed, (w, c) in enumerate(zip(within, cross, strict=True))
                         for same in (True, False)])  # fmt: skip


def tr_grouping(recovered):
    return pd.DataFrame({"dataset": "planted-groups", "seed": range(len(recovered)),
                         "affinity_kind": "lookahead", "recovered": recovered,
                         "groups": "a,b; c"})  # fmt: skip


def tr_acc(grouped, itmtl):
    idx = pd.MultiIndex.from_tuples([("planted-groups", s) for s in range(len(grouped))],
                                    names=["dataset", "seed"])  # fmt: skip
    return pd.DataFrame({"all_together": 0.85, "grouped": grouped, "stl": 0.88, "sum": 0.85,
                         "itmtl": itmtl}, index=idx)  # fmt: skip


@case(tr.affinity_signs)
def _(v):
    return {"holds": tr_affinity([0.02, 0.03], [-0.01, -0.02]),
            "contradicted": tr_affinity([-0.02, -0.03], [-0.01, -0.02]),
            "inconclusive": tr_affinity([0.02, -0.01], [-0.01, -0.02])}[v]


@case(tr.first_order)
def _(v):
    if v == "inconclusive":
        return pd.DataFrame(columns=["dataset", "seed", "eta", "rel_error"])
    errs = (0.01, 0.03, 0.2) if v == "holds" else (0.08, 0.1, 0.2)
    return pd.DataFrame({"dataset": "planted-groups", "seed": 0, "eta": (0.01, 0.1, 0.3),
                         "rel_error": errs})  # fmt: skip


@case(tr.recovers_planted)
def _(v):
    return tr_grouping({"holds": [True, True, True], "contradicted": [False, False],
                        "inconclusive": [True, False, True]}[v])  # fmt: skip


@case(tr.beats_all_together)
def _(v):
    grouped = {"holds": [0.9, 0.88, 0.87], "contradicted": [0.8, 0.82, 0.84],
               "inconclusive": [0.9, 0.82, 0.87]}[v]  # fmt: skip
    return tr_acc(grouped, [0.86] * 3)


@case(tr.itmtl_vs_sum)
def _(v):
    itmtl = {"holds": [0.86, 0.87, 0.865], "contradicted": [0.85, 0.851, 0.852],
             "inconclusive": [0.84, 0.87, 0.86]}[v]  # fmt: skip
    return tr_acc([0.9] * 3, itmtl)


def test_transference_rules_need_two_seeds():
    assert tr.affinity_signs.verdict(tr_affinity([0.02], [-0.01])) == "inconclusive"
    assert tr.recovers_planted.verdict(tr_grouping([True])) == "inconclusive"


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


def _wide_methods() -> pd.DataFrame:
    """Four MTL runs whose transfer changes disagree: the interval straddles ±0.02."""
    wide = traj_pairs(n=4)
    up = ~wide.baseline & wide.setting.str.endswith("-0")
    wide.loc[up, "final_transfer"] += 0.06
    wide.loc[~wide.baseline & ~up, "final_transfer"] -= 0.05
    return wide


@case(tr2.early_sign)
def _(v):
    return {"holds": traj_pairs, "contradicted": lambda: traj_pairs(gap_sign_ok=False),
            "inconclusive": lambda: traj_pairs(n=2)}[v]()  # too few pairs


@case(tr2.factors_do_not_explain)
def _(v):
    return {"holds": lambda: traj_pairs(n=400),
            "contradicted": lambda: traj_pairs(factor_explains=True),
            "inconclusive": lambda: traj_pairs(n=12)}[v]()  # fmt: skip


@case(tr2.conflict_slowdown)
def _(v):
    return {"holds": lambda: traj_pairs(n=200),
            "contradicted": lambda: traj_pairs(cos_transfer=True),
            "inconclusive": lambda: traj_pairs(n=12)}[v]()  # fmt: skip


@case(tr2.methods_change)
def _(v):
    return {"holds": traj_pairs, "contradicted": lambda: traj_pairs(method_improves=True),
            "inconclusive": _wide_methods}[v]()


def test_trajectory_rules_other_ways_to_be_inconclusive_or_contradicted():
    """Beyond each rule's three tables: a persistence failure, gaps too small to have a sign,
    one kind of setting for a claim about every kind, conflict that does not slow."""
    assert tr2.early_sign.verdict(traj_pairs(persist=False)) == "contradicted"
    # a gap within ±0.01 has no sign: those pairs do not count
    assert tr2.early_sign.verdict(traj_pairs(n=8).assign(early_gap=0.005)) == "inconclusive"
    one_kind = traj_pairs(n=400)
    assert tr2.factors_do_not_explain.verdict(one_kind[one_kind.group == "digits"]) == (
        "inconclusive")  # one kind of setting cannot show "in every kind"
    assert tr2.conflict_slowdown.verdict(traj_pairs(n=200, cos_slow=False)) != "holds"


# ---------------------------------------------------------------------------- tests


def test_every_rule_has_a_hold_and_a_fail_case():
    ids = [r.id for r in _all_rules()]
    assert len(ids) == len(set(ids)), "rule ids must be unique"
    assert set(ids) == set(CASES), f"untested rules: {sorted(set(ids) - set(CASES))}"


@pytest.mark.parametrize("verdict", VERDICTS)
@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_gives_each_verdict(rule_id, verdict):
    """Every rule on a table made for each verdict: where it must hold, where the data
    contradict it, and where they cannot tell (few seeds, an interval across its threshold)."""
    rule, build = CASES[rule_id]
    table = build(verdict)
    assert rule.verdict(table) == verdict, f"{rule_id} should be {verdict}"
    claim = rule.evaluate(table, figure="f.png")
    assert claim.verdict == verdict and claim.figure == "f.png" and claim.text == rule.rendered()
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
