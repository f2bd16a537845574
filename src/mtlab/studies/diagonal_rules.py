"""Claim rules of study ``diagonal`` (each tested on synthetic tables in tests/test_claim_rules.py).

Tables:

* ``windows`` — one row per penalty curve: ``penalty`` (``MTL``, ``PT+FT s=1``, …),
  ``window_decades``, ``conservation_error`` (max |ℓ-order + FD − 1|);
* ``runs`` — one row per finished run (failed runs excluded upstream): ``setting``, ``method``,
  ``rescale``, ``n_main``, ``seed``, ``test_loss_rel`` (main-task test loss relative to the zero
  predictor);
* ``agreement`` — one row per (run, prediction): ``run_id``, ``prediction``, ``method``,
  ``setting``, ``seed``, ``n_main``, ``rescale``, ``rel_distance``
  (:func:`mtlab.runs.diagonal_theory.theory_agreement`).

Every comparison of losses is a ratio on the same (setting, n_main, seed), summarised as the
geometric mean over n_main and seeds with a 95% bootstrap interval that resamples seeds
(:func:`~mtlab.studies.claims.ratio_interval`); a claim holds when the whole interval lies on its
predicted side of the threshold, is contradicted when it lies wholly on the other side, and is
inconclusive otherwise — also with a single seed. The penalty claims are properties of a
computation (no seeds): they hold or are contradicted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mtlab.measure.stats import cluster_bootstrap
from mtlab.report.analysis import INCONCLUSIVE
from mtlab.studies.claims import above, all_of, below, ci, claim_rule, computed, ratio_interval

SHARED_SETTINGS = ("identical", "nested_subset", "partial_overlap")
LOSS = "test_loss_rel"


def base_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """Rows without rescaling: every method, PT+FT at s = 1."""
    return cells[(cells.method != "ptft") | np.isclose(cells.rescale.astype(float), 1.0)]


def losses(runs: pd.DataFrame, setting: str, method: str, rescale: float = 1.0,
           n_main: int | None = None) -> pd.Series:  # fmt: skip
    """The test losses of ``method`` in ``setting`` (PT+FT at ``rescale``), indexed by
    ``(n_main, seed)``; only ``n_main`` if given."""
    sub = runs[(runs.setting == setting) & (runs.method == method)]
    if method == "ptft":
        sub = sub[np.isclose(sub.rescale.astype(float), rescale)]
    if n_main is not None:
        sub = sub[sub.n_main == n_main]
    return sub.groupby(["n_main", "seed"])[LOSS].mean()


def loss_ratio(runs: pd.DataFrame, setting: str, method: str, ref: str) -> Any:
    """Geometric mean over (n_main, seed) of loss(method) / loss(ref) in ``setting`` (s = 1),
    with its interval (resampling seeds)."""
    return ratio_interval(losses(runs, setting, method), losses(runs, setting, ref))


def rescale_ratios(runs: pd.DataFrame, setting: str, at_most: float) -> dict[str, Any]:
    """``{"s=<s>/s=1": interval}`` of the PT+FT loss at s over that at s = 1, for every
    rescaling s ≤ ``at_most`` other than 1."""
    s = runs[runs.method == "ptft"].rescale.astype(float)
    small = sorted(v for v in set(s) if v <= at_most and not np.isclose(v, 1.0))
    return {f"s={v:g}/s=1": ratio_interval(losses(runs, setting, "ptft", v),
                                           losses(runs, setting, "ptft", 1.0))
            for v in small}  # fmt: skip


# ---------------------------------------------------------------------------- part 1


@claim_rule(
    "penalty.window",
    "The nested-feature-selection window (ℓ-order strictly between 1.1 and 1.9 at β_main = 1) "
    "spans more than {margin:g} decade(s) of β_aux more for PT+FT (s = 1) than for MTL (a "
    "property of the two penalties: it holds or is contradicted).",
    source="paper: 'This regime is much narrower for MTL'",
    margin=1.0,
)
def penalty_window(windows: pd.DataFrame, *, margin: float) -> tuple[str, dict[str, Any]]:
    w = dict(zip(windows.penalty, windows.window_decades, strict=True))
    present = "MTL" in w and "PT+FT s=1" in w
    ok = present and w["PT+FT s=1"] > w["MTL"] + margin
    return computed(ok, present), {"window_decades": {k: round(float(v), 3)
                                                       for k, v in w.items()}}  # fmt: skip


@claim_rule(
    "penalty.conservation",
    "ℓ-order + feature dependence = 1 for the MTL and PT+FT penalties (γ = 0), up to {tol:g} "
    "(a property of the penalties: it holds or is contradicted).",
    source="Euler's theorem (reconstructed)",
    tol=1e-6,
)
def penalty_conservation(windows: pd.DataFrame, *, tol: float) -> tuple[str, dict[str, Any]]:
    err = float(windows.conservation_error.max()) if len(windows) else float("nan")
    return computed(err < tol, len(windows) > 0), {"max_abs_error": err}


# ---------------------------------------------------------------------------- part 2


@claim_rule(
    "generalization.shared_features",
    "When the main task shares features with the auxiliary task (identical, nested_subset, "
    "partial_overlap), MTL and PT+FT (s = 1) both reach lower main-task test loss than STL: in "
    "each setting the geometric mean over n_main and seeds of the loss ratio to STL has a 95% "
    "bootstrap CI (resampling seeds) below {max_ratio:g} (wholly above: contradicted).",
    source="paper §6.4: identical/partial overlap: PT+FT, MTL ≪ STL",
    max_ratio=1.0,
)
def shared_features(runs: pd.DataFrame, *, max_ratio: float) -> tuple[str, dict[str, Any]]:
    ivs = {f"{s}:{m}/stl": loss_ratio(runs, s, m, "stl")
           for s in SHARED_SETTINGS for m in ("mtl", "ptft")}  # fmt: skip
    verdict = all_of([below(iv, max_ratio) for iv in ivs.values()])
    return verdict, {"loss_ratio": {k: ci(iv) for k, iv in ivs.items()}}


@claim_rule(
    "generalization.no_overlap",
    "With a disjoint support (new_dims) neither MTL nor PT+FT (s = 1) beats STL by more than "
    "{delta:.0%}: the geometric mean over n_main and seeds of each one's loss ratio to STL has a "
    "95% bootstrap CI (resampling seeds) above 1 − {delta:g} (a claim of absence, tested as "
    "non-superiority; wholly below: contradicted; straddling: inconclusive).",
    source="paper §6.4: none: STL best. δ = 10 % of STL's loss: where features are shared, "
    "sharing cuts the loss by a factor of 2 or more (generalization.shared_features), so a gain "
    "under 10 % would be a small fraction of the effect the study is about",
    delta=0.1,
)
def no_overlap(runs: pd.DataFrame, *, delta: float) -> tuple[str, dict[str, Any]]:
    ivs = {f"new_dims:{m}/stl": loss_ratio(runs, "new_dims", m, "stl") for m in ("mtl", "ptft")}
    verdict = all_of([above(iv, 1 - delta) for iv in ivs.values()])
    return verdict, {"loss_ratio": {k: ci(iv) for k, iv in ivs.items()}}


@claim_rule(
    "generalization.mtl_small_n",
    "MTL beats PT+FT (s = 1) at the smallest n_main and PT+FT beats MTL at the largest, in "
    "nested_subset and partial_overlap: the MTL / PT+FT loss ratio over seeds has a 95% "
    "bootstrap CI below {cut:g} at the smallest n_main and above {cut:g} at the largest (either "
    "wholly on the other side: contradicted).",
    source="paper v1: MTL better with little main data, PT+FT with more",
    cut=1.0,
)
def mtl_small_n(runs: pd.DataFrame, *, cut: float) -> tuple[str, dict[str, Any]]:
    ev: dict[str, Any] = {}
    verdicts = []
    base = base_cells(runs)
    for setting in ("nested_subset", "partial_overlap"):
        ns = sorted(set(base[base.setting == setting].n_main))
        if not ns:
            verdicts.append(INCONCLUSIVE)
            continue
        lo, hi = ns[0], ns[-1]
        at_lo, at_hi = (ratio_interval(losses(runs, setting, "mtl", n_main=n),
                                       losses(runs, setting, "ptft", n_main=n))
                        for n in (lo, hi))  # fmt: skip
        verdicts += [below(at_lo, cut), above(at_hi, cut)]
        ev[setting] = {"n_min": int(lo), "mtl/ptft_at_n_min": ci(at_lo),
                       "n_max": int(hi), "mtl/ptft_at_n_max": ci(at_hi)}  # fmt: skip
    return all_of(verdicts), ev


# ---------------------------------------------------------------------------- part 3


@claim_rule(
    "rescaling.nested_subset",
    "When the main task uses a sparse subset of the pretrained features (nested_subset), "
    "rescaling (some s < 1) strongly helps PT+FT: at the s with the lowest loss, the loss ratio "
    "to s = 1 (geometric mean over n_main and seeds) has a 95% bootstrap CI below {max_ratio:g} "
    "(wholly above: contradicted).",
    source="paper §3.2: s <= 0.1 makes PT+FT sensitive to sparsity within pretrained features",
    max_ratio=0.5,
)
def rescaling_nested(runs: pd.DataFrame, *, max_ratio: float) -> tuple[str, dict[str, Any]]:
    ivs = rescale_ratios(runs, "nested_subset", 1.0)
    ev = {"loss_ratio": {k: ci(iv) for k, iv in ivs.items()}}
    finite = {k: iv for k, iv in ivs.items() if np.isfinite(iv.point)}
    if not finite:
        return INCONCLUSIVE, ev
    best = min(finite, key=lambda k: finite[k].point)
    return below(finite[best], max_ratio), {**ev, "best": best}


@claim_rule(
    "rescaling.all_aux",
    "When the main task uses all pretrained features (all_aux), strong rescaling "
    "(s ≤ {strong:g}) hurts PT+FT relative to s = 1: at every such s the loss ratio to s = 1 "
    "has a 95% bootstrap CI above 1 (wholly below: contradicted).",
    source="paper §3.2: s = 1 is best when the main task uses all pretrained features",
    strong=0.01,
)
def rescaling_all_aux(runs: pd.DataFrame, *, strong: float) -> tuple[str, dict[str, Any]]:
    ivs = rescale_ratios(runs, "all_aux", strong)
    return all_of([above(iv, 1.0) for iv in ivs.values()]), {
        "loss_ratio": {k: ci(iv) for k, iv in ivs.items()}}


@claim_rule(
    "rescaling.new_dims",
    "With new (disjoint) features, unrescaled PT+FT is worse than STL and rescaling "
    "(s ≤ {strong:g}) restores learning of the new sparse features: the PT+FT (s = 1) / STL "
    "loss ratio has a 95% bootstrap CI above 1 and, at every such s, the ratio to s = 1 one "
    "below 1 (either wholly on the other side: contradicted).",
    source="paper §3.2: rescaling restores learning of new sparse features",
    strong=0.01,
)
def rescaling_new_dims(runs: pd.DataFrame, *, strong: float) -> tuple[str, dict[str, Any]]:
    ivs = rescale_ratios(runs, "new_dims", strong)
    r_stl = loss_ratio(runs, "new_dims", "ptft", "stl")
    verdicts = [below(iv, 1.0) for iv in ivs.values()] if ivs else [INCONCLUSIVE]
    return all_of([*verdicts, above(r_stl, 1.0)]), {
        "loss_ratio": {k: ci(iv) for k, iv in ivs.items()}, "ptft_s1/stl": ci(r_stl)}


# ---------------------------------------------------------------------------- part 4


def _median(agreement: pd.DataFrame, prediction: str) -> Any:
    """The median relative distance of ``prediction`` over runs, with its bootstrap interval
    (each run its own unit: its own draw of the data, its own training)."""
    v = agreement[agreement.prediction == prediction].rel_distance.to_numpy(float)
    return cluster_bootstrap([v], np.median)


def _paired(agreement: pd.DataFrame, a: str, b: str, on: list[str]) -> Any:
    """The median over units (rows matched on ``on``) of the ratio of prediction ``a``'s
    distance to ``b``'s, with its bootstrap interval (each unit resampled on its own)."""
    def side(p: str) -> pd.Series:
        return agreement[agreement.prediction == p].groupby(on).rel_distance.mean()

    return ratio_interval(side(a), side(b), np.median, cluster=None)


@claim_rule(
    "theory.gd_matches_exact_flow",
    "Gradient descent reaches the interpolator predicted by the exact gradient-flow potential of "
    "its initial weights: the median relative distance over runs has a 95% bootstrap CI below "
    "{tol:g} for STL and PT+FT and below {tol_lr:g} for the linear probe (wholly above: "
    "contradicted).",
    source="paper §6.2; Woodworth et al. 2020; Azulay et al. 2021",
    tol=0.05,
    tol_lr=1e-3,
)
def gd_matches_flow(
    agreement: pd.DataFrame, *, tol: float, tol_lr: float
) -> tuple[str, dict[str, Any]]:
    checks = {"STL: exact flow": tol, "PT+FT: exact flow": tol,
              "PT+FT (LR): min-norm readout": tol_lr}  # fmt: skip
    ivs = {p: _median(agreement, p) for p in checks}
    n = {k: int(v) for k, v in agreement.groupby("prediction").size().items()}
    return all_of([below(ivs[p], t) for p, t in checks.items()]), {
        "median_rel_distance": {p: ci(iv) for p, iv in ivs.items()}, "n_runs": n}
@claim_rule(
    "theory.figure_form_is_approximate",
    "The paper's figure-form PT+FT penalty Σ K q(2β/K), K = s²|β_aux| + γ², predicts the "
    "finetuned solution less accurately than the exact flow potential: the median over PT+FT "
    "runs of the ratio of their relative distances (figure form / exact) has a 95% bootstrap "
    "CI above {factor:g} (wholly below: contradicted).",
    source="notes §7: factor 2 inside q and the sign tilt are approximations",
    factor=1.0,
)
def figure_form(agreement: pd.DataFrame, *, factor: float) -> tuple[str, dict[str, Any]]:
    iv = _paired(agreement, "PT+FT: figure form K q(2β/K)", "PT+FT: exact flow", ["run_id"])
    by_s = (
        agreement[agreement.method == "ptft"]
        .groupby(["prediction", "rescale"])
        .rel_distance.median()
        .unstack()
    )
    ev = {str(k): {str(s): float(v) for s, v in row.items()} for k, row in by_s.iterrows()}
    return above(iv, factor), {"figure/exact": ci(iv), "median_rel_distance_by_s": ev}


@claim_rule(
    "theory.mtl_l12_bias",
    "Small-init MTL is biased towards the ℓ1,2 norm: its main-task solution is as close to the "
    "ℓ1,2 interpolator (auxiliary coefficients pinned to the trained ones) as STL's solution is "
    "to the ℓ1 interpolator, the matching α → 0 limit: over (setting, n_main, seed) where both "
    "runs interpolate, the median ratio of MTL's distance to STL's has a 95% bootstrap CI below "
    "{factor:g} (wholly above: contradicted; tolerance set after a first quick-preset run).",
    source="paper v1 abstract: MTL is 'biased to minimize an ℓ1,2 mixed norm'",
    factor=2.0,
)
def mtl_l12(agreement: pd.DataFrame, *, factor: float) -> tuple[str, dict[str, Any]]:
    stl_p, mtl_p = "STL: ℓ1 limit", "MTL: ℓ1,2 limit (aux pinned)"
    iv = _paired(agreement, mtl_p, stl_p, ["setting", "n_main", "seed"])
    pair = agreement[agreement.prediction.isin([stl_p, mtl_p])]
    by_n = pair.groupby(["prediction", "n_main"]).rel_distance.median().unstack()
    ev = {
        "mtl/stl": ci(iv),
        "median_by_n_main": {
            str(k): {str(n): float(v) for n, v in row.items()} for k, row in by_n.iterrows()
        },
        "mtl_runs_compared": int((agreement.method == "mtl").sum()),
    }
    return below(iv, factor), ev


PENALTY = (penalty_window, penalty_conservation)
GENERALIZATION = (shared_features, no_overlap, mtl_small_n)
RESCALING = (rescaling_nested, rescaling_all_aux, rescaling_new_dims)
THEORY = (gd_matches_flow, figure_form, mtl_l12)
RULES = (*PENALTY, *GENERALIZATION, *RESCALING, *THEORY)

__all__ = ["GENERALIZATION", "PENALTY", "RESCALING", "RULES", "THEORY", "base_cells", "loss_ratio",
           "losses"]
