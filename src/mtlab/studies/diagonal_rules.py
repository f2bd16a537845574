"""Claim rules of study ``diagonal`` (each tested on synthetic tables in tests/test_claim_rules.py).

Tables:

* ``windows`` — one row per penalty curve: ``penalty`` (``MTL``, ``PT+FT s=1``, …),
  ``window_decades``, ``conservation_error`` (max |ℓ-order + FD − 1|);
* ``cells`` — mean main-task test loss per (``setting``, ``method``, ``rescale``, ``n_main``):
  column ``mean`` (failed runs excluded upstream);
* ``agreement`` — one row per (run, prediction): ``prediction``, ``method``, ``n_main``,
  ``rescale``, ``rel_distance`` (:func:`mtlab.runs.diagonal_theory.theory_agreement`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mtlab.studies.claims import claim_rule, geo_mean, ratio

SHARED_SETTINGS = ("identical", "nested_subset", "partial_overlap")


def base_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """Cells without rescaling: every method, PT+FT at s = 1."""
    return cells[(cells.method != "ptft") | np.isclose(cells.rescale.astype(float), 1.0)]


def loss_ratio(cells: pd.DataFrame, setting: str, method: str, ref: str) -> float | None:
    """Geometric mean over n_main of mean-loss(method) / mean-loss(ref) in ``setting`` (s = 1)."""
    sub = base_cells(cells)
    sub = sub[sub.setting == setting]
    a = sub[sub.method == method].set_index("n_main")["mean"]
    b = sub[sub.method == ref].set_index("n_main")["mean"]
    common = sorted(set(a.index) & set(b.index))
    return geo_mean([a[n] / b[n] for n in common if b[n] > 0])


def rescale_ratio(cells: pd.DataFrame, setting: str, s: float, s_ref: float = 1.0) -> float | None:
    """Geometric mean over n_main of PT+FT loss at s / at ``s_ref`` in ``setting``."""
    sub = cells[(cells.method == "ptft") & (cells.setting == setting)]
    a = sub[np.isclose(sub.rescale.astype(float), s)].set_index("n_main")["mean"]
    b = sub[np.isclose(sub.rescale.astype(float), s_ref)].set_index("n_main")["mean"]
    common = sorted(set(a.index) & set(b.index))
    return geo_mean([a[n] / b[n] for n in common if b[n] > 0])


def _at(cells: pd.DataFrame, setting: str, n: int, method: str) -> float | None:
    sub = base_cells(cells)
    v = sub[(sub.setting == setting) & (sub.method == method) & (sub.n_main == n)]["mean"]
    return None if v.empty else float(v.iloc[0])


def rescale_ratios(cells: pd.DataFrame, setting: str, at_most: float) -> dict[str, float | None]:
    """``{"s=<s>/s=1": rescale_ratio}`` for every PT+FT rescaling s ≤ ``at_most`` other than 1."""
    s = cells[cells.method == "ptft"].rescale.astype(float)
    small = sorted(v for v in set(s) if v <= at_most and not np.isclose(v, 1.0))
    return {f"s={v:g}/s=1": rescale_ratio(cells, setting, v) for v in small}


# ---------------------------------------------------------------------------- part 1


@claim_rule(
    "penalty.window",
    "The nested-feature-selection window (ℓ-order strictly between 1.1 and 1.9 at β_main = 1) "
    "spans more than {margin:g} decade(s) of β_aux more for PT+FT (s = 1) than for MTL.",
    source="paper: 'This regime is much narrower for MTL'",
    margin=1.0,
)
def penalty_window(windows: pd.DataFrame, *, margin: float) -> tuple[bool, dict[str, Any]]:
    w = dict(zip(windows.penalty, windows.window_decades, strict=True))
    ok = "MTL" in w and "PT+FT s=1" in w and w["PT+FT s=1"] > w["MTL"] + margin
    return ok, {"window_decades": {k: round(float(v), 3) for k, v in w.items()}}


@claim_rule(
    "penalty.conservation",
    "ℓ-order + feature dependence = 1 for the MTL and PT+FT penalties (γ = 0), up to {tol:g}.",
    source="Euler's theorem (reconstructed)",
    tol=1e-6,
)
def penalty_conservation(windows: pd.DataFrame, *, tol: float) -> tuple[bool, dict[str, Any]]:
    err = float(windows.conservation_error.max())
    return err < tol, {"max_abs_error": err}


# ---------------------------------------------------------------------------- part 2


@claim_rule(
    "generalization.shared_features",
    "When the main task shares features with the auxiliary task (identical, nested_subset, "
    "partial_overlap), MTL and PT+FT (s = 1) both reach lower main-task test loss than STL "
    "(geometric mean over n_main of the loss ratio below {max_ratio:g}).",
    source="paper §6.4: identical/partial overlap: PT+FT, MTL ≪ STL",
    max_ratio=1.0,
)
def shared_features(cells: pd.DataFrame, *, max_ratio: float) -> tuple[bool, dict[str, Any]]:
    ev = {
        f"{s}:{m}/stl": loss_ratio(cells, s, m, "stl")
        for s in SHARED_SETTINGS
        for m in ("mtl", "ptft")
    }
    ok = all(v is not None and v < max_ratio for v in ev.values())
    return ok, {"geo_mean_loss_ratio_over_n_main": ev}


@claim_rule(
    "generalization.no_overlap",
    "With a disjoint support (new_dims) neither MTL nor PT+FT (s = 1) beats STL (geometric mean "
    "over n_main of the loss ratio at least {min_ratio:g}).",
    source="paper §6.4: none: STL best",
    min_ratio=1.0,
)
def no_overlap(cells: pd.DataFrame, *, min_ratio: float) -> tuple[bool, dict[str, Any]]:
    ev = {f"new_dims:{m}/stl": loss_ratio(cells, "new_dims", m, "stl") for m in ("mtl", "ptft")}
    ok = all(v is not None and v >= min_ratio for v in ev.values())
    return ok, {"geo_mean_loss_ratio_over_n_main": ev}


@claim_rule(
    "generalization.mtl_small_n",
    "MTL is at least as good as PT+FT (s = 1) at the smallest n_main (loss ratio ≤ {cut:g}) "
    "and PT+FT is better at the largest (ratio > {cut:g}), in nested_subset and "
    "partial_overlap.",
    source="paper v1: MTL better with little main data, PT+FT with more",
    cut=1.0,
)
def mtl_small_n(cells: pd.DataFrame, *, cut: float) -> tuple[bool, dict[str, Any]]:
    ev: dict[str, Any] = {}
    base = base_cells(cells)
    for setting in ("nested_subset", "partial_overlap"):
        ns = sorted(set(base[base.setting == setting].n_main))
        if ns:
            lo, hi = ns[0], ns[-1]
            ev[setting] = {
                "n_min": lo,
                "mtl/ptft_at_n_min": ratio(_at(cells, setting, lo, "mtl"), _at(cells, setting, lo, "ptft")),
                "n_max": hi,
                "mtl/ptft_at_n_max": ratio(_at(cells, setting, hi, "mtl"), _at(cells, setting, hi, "ptft")),
            }  # fmt: skip
    ok = bool(ev) and all(
        v["mtl/ptft_at_n_min"] is not None
        and v["mtl/ptft_at_n_max"] is not None
        and v["mtl/ptft_at_n_min"] <= cut < v["mtl/ptft_at_n_max"]
        for v in ev.values()
    )
    return ok, ev


# ---------------------------------------------------------------------------- part 3


@claim_rule(
    "rescaling.nested_subset",
    "When the main task uses a sparse subset of the pretrained features (nested_subset), "
    "rescaling (some s < 1) strongly helps PT+FT: test loss at most {max_ratio:g} × that at s = 1.",
    source="paper §3.2: s <= 0.1 makes PT+FT sensitive to sparsity within pretrained features",
    max_ratio=0.5,
)
def rescaling_nested(cells: pd.DataFrame, *, max_ratio: float) -> tuple[bool, dict[str, Any]]:
    ev = rescale_ratios(cells, "nested_subset", 1.0)
    best = min((x for x in ev.values() if x is not None), default=None)
    return best is not None and best < max_ratio, {"geo_mean_loss_ratio_over_n_main": ev}


@claim_rule(
    "rescaling.all_aux",
    "When the main task uses all pretrained features (all_aux), strong rescaling "
    "(s ≤ {strong:g}) hurts PT+FT relative to s = 1.",
    source="paper §3.2: s = 1 is best when the main task uses all pretrained features",
    strong=0.01,
)
def rescaling_all_aux(cells: pd.DataFrame, *, strong: float) -> tuple[bool, dict[str, Any]]:
    ev = rescale_ratios(cells, "all_aux", strong)
    ok = bool(ev) and all(x is not None and x > 1.0 for x in ev.values())
    return ok, {"geo_mean_loss_ratio_over_n_main": ev}


@claim_rule(
    "rescaling.new_dims",
    "With new (disjoint) features, unrescaled PT+FT is worse than STL and rescaling "
    "(s ≤ {strong:g}) restores learning of the new sparse features (lower loss than s = 1).",
    source="paper §3.2: rescaling restores learning of new sparse features",
    strong=0.01,
)
def rescaling_new_dims(cells: pd.DataFrame, *, strong: float) -> tuple[bool, dict[str, Any]]:
    ev = rescale_ratios(cells, "new_dims", strong)
    r_stl = loss_ratio(cells, "new_dims", "ptft", "stl")
    ok = (
        bool(ev)
        and all(x is not None and x < 1.0 for x in ev.values())
        and (r_stl is not None and r_stl > 1.0)
    )
    return ok, {"geo_mean_loss_ratio_over_n_main": ev, "ptft_s1/stl": r_stl}


# ---------------------------------------------------------------------------- part 4


def _median(agreement: pd.DataFrame) -> dict[str, float]:
    med = agreement.groupby("prediction").rel_distance.median()
    return {str(k): float(v) for k, v in med.items()}


@claim_rule(
    "theory.gd_matches_exact_flow",
    "Gradient descent reaches the interpolator predicted by the exact gradient-flow potential of "
    "its initial weights (median relative distance < {tol:g} for STL and PT+FT, < {tol_lr:g} for "
    "the linear probe).",
    source="paper §6.2; Woodworth et al. 2020; Azulay et al. 2021",
    tol=0.05,
    tol_lr=1e-3,
)
def gd_matches_flow(
    agreement: pd.DataFrame, *, tol: float, tol_lr: float
) -> tuple[bool, dict[str, Any]]:
    med = _median(agreement)
    ok = (
        med.get("STL: exact flow", 1) < tol
        and med.get("PT+FT: exact flow", 1) < tol
        and med.get("PT+FT (LR): min-norm readout", 1) < tol_lr
    )
    n = {k: int(v) for k, v in agreement.groupby("prediction").size().items()}
    return ok, {"median_rel_distance": med, "n_runs": n}


@claim_rule(
    "theory.figure_form_is_approximate",
    "The paper's figure-form PT+FT penalty Σ K q(2β/K), K = s²|β_aux| + γ², predicts the "
    "finetuned solution less accurately than the exact flow potential (median relative distance "
    "larger by a factor above {factor:g}).",
    source="notes §7: factor 2 inside q and the sign tilt are approximations",
    factor=1.0,
)
def figure_form(agreement: pd.DataFrame, *, factor: float) -> tuple[bool, dict[str, Any]]:
    med = _median(agreement)
    fig, exact = med.get("PT+FT: figure form K q(2β/K)"), med.get("PT+FT: exact flow")
    by_s = (
        agreement[agreement.method == "ptft"]
        .groupby(["prediction", "rescale"])
        .rel_distance.median()
        .unstack()
    )
    ev = {str(k): {str(s): float(v) for s, v in row.items()} for k, row in by_s.iterrows()}
    ok = fig is not None and exact is not None and fig > factor * exact
    return ok, {"median_rel_distance_by_s": ev}


@claim_rule(
    "theory.mtl_l12_bias",
    "Small-init MTL is biased towards the ℓ1,2 norm: its main-task solution is as close to the "
    "ℓ1,2 interpolator (auxiliary coefficients pinned to the trained ones) as STL's solution is "
    "to the ℓ1 interpolator, the matching α → 0 limit (median relative distance at most "
    "{factor:g}× STL's; tolerance set after a first quick-preset run).",
    source="paper v1 abstract: MTL is 'biased to minimize an ℓ1,2 mixed norm'",
    factor=2.0,
)
def mtl_l12(agreement: pd.DataFrame, *, factor: float) -> tuple[bool, dict[str, Any]]:
    med = _median(agreement)
    stl, mtl = med.get("STL: ℓ1 limit"), med.get("MTL: ℓ1,2 limit (aux pinned)")
    pair = agreement[agreement.prediction.isin(["STL: ℓ1 limit", "MTL: ℓ1,2 limit (aux pinned)"])]
    by_n = pair.groupby(["prediction", "n_main"]).rel_distance.median().unstack()
    ev = {
        "median_rel_distance": {"MTL vs l1,2": mtl, "STL vs l1": stl},
        "median_by_n_main": {
            str(k): {str(n): float(v) for n, v in row.items()} for k, row in by_n.iterrows()
        },
        "mtl_runs_compared": int((agreement.method == "mtl").sum()),
    }
    return stl is not None and mtl is not None and mtl <= factor * stl, ev


PENALTY = (penalty_window, penalty_conservation)
GENERALIZATION = (shared_features, no_overlap, mtl_small_n)
RESCALING = (rescaling_nested, rescaling_all_aux, rescaling_new_dims)
THEORY = (gd_matches_flow, figure_form, mtl_l12)
RULES = (*PENALTY, *GENERALIZATION, *RESCALING, *THEORY)

__all__ = ["GENERALIZATION", "PENALTY", "RESCALING", "RULES", "THEORY", "loss_ratio"]
