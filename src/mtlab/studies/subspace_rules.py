"""Claim rules of study ``subspace`` (tested on synthetic tables in tests/test_claim_rules.py).

Tables (one row per seed: every statistic is computed on the mean over seeds, with a 95%
bootstrap interval that resamples seeds — :func:`~mtlab.studies.claims.seed_interval`):

* ``rec`` (recovery, heads) — one row per (``features``, ``T``, ``seed``): ``sin_max``,
  ``energy``, ``n_dirs`` (and ``theory_cos``), with the subspace dimension in column ``r``;
* ``down`` — one row per (``features``, ``d``, ``downstream_task``, ``n_down``, ``seed``):
  ``test_acc``, the mean over downstream tasks;
* ``final`` — one row per (``T``, ``seed``): the final ``sin_max`` of alternating SGD, and ``r``;
* ``identity`` — the dict of :func:`mtlab.theory.pseudo_contrastive.identity_check`.

A part of a claim holds when its statistic's whole interval lies on the predicted side of its
threshold and is contradicted when the whole interval lies on the other side; a claim holds when
every part does and is contradicted when any part is (:func:`~mtlab.studies.claims.all_of`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from mtlab.measure.stats import Interval
from mtlab.report.analysis import CONTRADICTED, HOLDS, INCONCLUSIVE
from mtlab.studies.claims import above, all_of, below, ci, claim_rule, equivalent, seed_interval
from mtlab.studies.claims import spearman as _spearman

SOURCE = "Collins et al. 2024; paper notes §7"
METRIC_KEYS = ["features", "T"]


def _r_of(table: pd.DataFrame) -> int:
    return int(table["r"].iloc[0])


def curve(mean: pd.Series, features: str) -> pd.Series:
    """One curve of a mean over seeds indexed by (features, T): the values by T, sorted."""
    return mean.xs(features, level="features").dropna().sort_index()


def on_curves(rec: pd.DataFrame, metric: str, fn: Callable[[pd.Series], float]) -> Any:
    """``fn`` of the (features, T) mean of ``metric`` over seeds, with its seed interval."""
    if rec.empty or metric not in rec:
        return Interval(np.nan, np.nan, np.nan, 0, 0, 0.95)
    return seed_interval(rec, METRIC_KEYS, metric, fn)


def spearman_T(c: pd.Series) -> float:
    """Spearman ρ between T and a curve."""
    return _spearman(c.index.to_numpy(float), c.to_numpy(float))


def _ivs(ivs: dict[str, Any]) -> dict[str, Any]:
    return {k: ci(iv) for k, iv in ivs.items()}


# ---------------------------------------------------------------------------- recovery


@claim_rule(
    "recovery.needs_r_tasks",
    "With fewer than r tasks the subspace is not recovered: at every T < r the mean sin of the "
    "largest principal angle has a 95% CI (resampling seeds) above {sin_min:g} and the mean "
    "number of learned directions one below T + 0.5 (either wholly on the other side: "
    "contradicted).",
    source=SOURCE + " target 2",
    sin_min=0.9,
)
def needs_r_tasks(rec: pd.DataFrame, *, sin_min: float) -> tuple[str, dict[str, Any]]:
    k = _r_of(rec)

    def few(c: pd.Series) -> pd.Series:
        return c[c.index < k]

    ivs = {"min sin_max, T < r": on_curves(rec, "sin_max", lambda m: few(curve(m, "mtl")).min()),
           "max (n_dirs − T), T < r": on_curves(
               rec, "n_dirs", lambda m: (few(curve(m, "mtl")) - few(curve(m, "mtl")).index).max())}
    verdict = all_of([above(ivs["min sin_max, T < r"], sin_min),
                      below(ivs["max (n_dirs − T), T < r"], 0.5)])  # fmt: skip
    return verdict, {"r": k, **_ivs(ivs)}


@claim_rule(
    "recovery.error_falls_with_T",
    "Once T ≥ r the recovery error falls as T grows and the energy fraction rises: on the mean "
    "curves over seeds, Spearman ρ(T, sin_max) over T ≥ r has a 95% CI (resampling seeds) below "
    "−{rho:g}, ρ(T, energy) one above {rho:g}, and the fewest directions found at T ≥ 2r one "
    "above r − 0.5 (either wholly on the other side: contradicted).",
    source=SOURCE + " target 2 (Figure 1)",
    rho=0.8,
)
def error_falls(rec: pd.DataFrame, *, rho: float) -> tuple[str, dict[str, Any]]:
    k = _r_of(rec)

    def at_least(c: pd.Series, t: int) -> pd.Series:
        return c[c.index >= t]

    ivs = {
        "rho(T, sin_max), T >= r": on_curves(
            rec, "sin_max", lambda m: spearman_T(at_least(curve(m, "mtl"), k))),
        "rho(T, energy)": on_curves(rec, "energy", lambda m: spearman_T(curve(m, "mtl"))),
        "min n_dirs, T >= 2r": on_curves(
            rec, "n_dirs", lambda m: at_least(curve(m, "mtl"), 2 * k).min()),
    }
    verdict = all_of([below(ivs["rho(T, sin_max), T >= r"], -rho),
                      above(ivs["rho(T, energy)"], rho),
                      above(ivs["min n_dirs, T >= 2r"], k - 0.5)])  # fmt: skip
    return verdict, {"r": k, **_ivs(ivs)}


@claim_rule(
    "single_task.energy_hides_failure",
    "Single-task pretraining with the same total sample budget learns one direction although its "
    "energy fraction is as high as multi-task training's: its largest mean n_dirs over budgets "
    "has a 95% CI (resampling seeds) below {max_dirs:g}, its smallest mean sin_max one above "
    "{sin_min:g}, and its energy minus multi-task energy at the largest budget one above "
    "−{energy_tol:g} (either wholly on the other side: contradicted) — energy alone does not "
    "expose the failure.",
    source=SOURCE + " target 3, pitfall 1",
    max_dirs=1.5,
    sin_min=0.9,
    energy_tol=0.1,
)
def energy_hides_failure(
    rec: pd.DataFrame, *, max_dirs: float, sin_min: float, energy_tol: float
) -> tuple[str, dict[str, Any]]:
    def last_gap(m: pd.Series) -> float:
        one, many = curve(m, "single_task"), curve(m, "mtl")
        return float(one.iloc[-1] - many.iloc[-1]) if len(one) and len(many) else np.nan

    ivs = {"max single n_dirs": on_curves(rec, "n_dirs", lambda m: curve(m, "single_task").max()),
           "min single sin_max": on_curves(rec, "sin_max",
                                           lambda m: curve(m, "single_task").min()),
           "single − mtl energy, largest T": on_curves(rec, "energy", last_gap)}  # fmt: skip
    verdict = all_of([below(ivs["max single n_dirs"], max_dirs),
                      above(ivs["min single sin_max"], sin_min),
                      above(ivs["single − mtl energy, largest T"], -energy_tol)])  # fmt: skip
    return verdict, _ivs(ivs)


@claim_rule(
    "theory.population_one_step",
    "The one-step first layer approaches the population prediction W0 Mᵀ Θ̂ M as the task count "
    "grows: on the mean curve over seeds of the mean row cosine, Spearman ρ(T, cosine) has a 95% "
    "CI (resampling seeds) above {rho:g} and the cosine at the largest T one above {cos_min:g} "
    "(either wholly below: contradicted).",
    source="paper notes §4.3 (reconstructed closed form)",
    rho=0.8,
    cos_min=0.9,
)
def population_one_step(
    rec: pd.DataFrame, *, rho: float, cos_min: float
) -> tuple[str, dict[str, Any]]:
    ivs = {"rho(T, cosine)": on_curves(rec, "theory_cos", lambda m: spearman_T(curve(m, "mtl"))),
           "cosine at largest T": on_curves(rec, "theory_cos",
                                            lambda m: curve(m, "mtl").iloc[-1])}  # fmt: skip
    verdict = all_of([above(ivs["rho(T, cosine)"], rho),
                      above(ivs["cosine at largest T"], cos_min)])  # fmt: skip
    return verdict, _ivs(ivs)


# ---------------------------------------------------------------------------- downstream

DOWN_KEYS = ["features", "downstream_task", "n_down", "d"]


def fixed_n(down: pd.DataFrame, kind: str) -> int:
    """The n_down at which a kind is compared across d: the middle value for halfspaces, the
    largest for XOR."""
    ns = sorted(set(down[down.downstream_task == kind].n_down))
    return int(ns[len(ns) // 2] if kind == "halfspace" else ns[-1])


def by_d(mean: pd.Series, features: str, kind: str, n: int) -> pd.Series:
    """Mean accuracy over seeds of ``features`` on ``kind`` at ``n_down = n``, by d."""
    try:
        return mean.loc[(features, kind, n)].dropna().sort_index()
    except KeyError:
        return pd.Series(dtype=float)


def on_down(down: pd.DataFrame, fn: Callable[[pd.Series], float]) -> Any:
    return seed_interval(down, DOWN_KEYS, "test_acc", fn)


@claim_rule(
    "downstream.d_independent",
    "At the middle n_down, multi-task features give halfspace accuracy independent of d — a "
    "claim of absence, tested for equivalence: the range over d of the mean accuracy has a 95% "
    "CI (resampling seeds) below δ = {max_range:g} (wholly above: contradicted) — while random "
    "features, raw inputs and single-task features lose more than {min_drop:g} from the smallest "
    "to the largest d (CI above {min_drop:g}; wholly below: contradicted).",
    source=SOURCE + " target 4. δ = 0.05 accuracy: half the smallest loss the claim requires of "
    "the baselines, so 'independent' and 'dependent' are separated by at least that much",
    max_range=0.05,
    min_drop=0.1,
)
def d_independent(
    down: pd.DataFrame, *, max_range: float, min_drop: float
) -> tuple[str, dict[str, Any]]:
    n = fixed_n(down, "halfspace")

    def drop(f: str) -> Callable[[pd.Series], float]:
        def fn(m: pd.Series) -> float:
            a = by_d(m, f, "halfspace", n)
            return float(a.iloc[0] - a.iloc[-1]) if len(a) else np.nan
        return fn

    spread = on_down(down, lambda m: float(np.ptp(by_d(m, "mtl", "halfspace", n)))
                     if len(by_d(m, "mtl", "halfspace", n)) else np.nan)  # fmt: skip
    drops = {f: on_down(down, drop(f)) for f in ("random_features", "raw_input", "single_task")}
    verdict = all_of([equivalent(spread.lo, spread.hi, max_range),
                      *(above(iv, min_drop) for iv in drops.values())])  # fmt: skip
    return verdict, {"n_down": n, "mtl_range_over_d": ci(spread),
                     "drop_smallest_to_largest_d": _ivs(drops)}  # fmt: skip


@claim_rule(
    "single_task.downstream_worse",
    "Downstream (fresh halfspaces, the largest n_down) single-task features are clearly worse "
    "than multi-task features at every d: the smallest gap over d of the mean accuracies has a "
    "95% CI (resampling seeds) above {min_gap:g} (wholly below: contradicted).",
    source=SOURCE + " target 3",
    min_gap=0.05,
)
def downstream_worse(down: pd.DataFrame, *, min_gap: float) -> tuple[str, dict[str, Any]]:
    half = down[down.downstream_task == "halfspace"]
    if half.empty:
        return INCONCLUSIVE, {}
    n_max = int(half.n_down.max())

    def gap(m: pd.Series) -> float:
        g = (by_d(m, "mtl", "halfspace", n_max) - by_d(m, "single_task", "halfspace", n_max))
        return float(g.dropna().min()) if g.notna().any() else np.nan

    iv = on_down(down, gap)
    return above(iv, min_gap), {"n_down": n_max, "min_gap_mtl_minus_single": ci(iv)}


@claim_rule(
    "downstream.xor_separates",
    "On the in-subspace XOR task (largest n_down) multi-task features reach more than "
    "{mtl_min:g} accuracy at every d while random features are near chance (below {rf_max:g}) "
    "once d ≥ {d_big:g}: the worst mean accuracy of each has a 95% CI (resampling seeds) on "
    "its side (wholly on the other: contradicted).",
    source=SOURCE + " target 5",
    mtl_min=0.75,
    rf_max=0.6,
    d_big=100,
)
def xor_separates(
    down: pd.DataFrame, *, mtl_min: float, rf_max: float, d_big: int
) -> tuple[str, dict[str, Any]]:
    if not (down.downstream_task == "xor").any():
        return INCONCLUSIVE, {}
    n = fixed_n(down, "xor")

    def rf_big(m: pd.Series) -> float:
        a = by_d(m, "random_features", "xor", n)
        a = a[a.index >= d_big]
        return float(a.max()) if len(a) else np.nan

    ivs = {"min mtl accuracy": on_down(down, lambda m: by_d(m, "mtl", "xor", n).min()),
           "max random-features accuracy, d >= d_big": on_down(down, rf_big)}  # fmt: skip
    verdict = all_of([above(ivs["min mtl accuracy"], mtl_min),
                      below(ivs["max random-features accuracy, d >= d_big"], rf_max)])
    return verdict, {"n_down": n, **_ivs(ivs)}


# ---------------------------------------------------------------------------- heads


@claim_rule(
    "heads.shared_head_fails",
    "One head shared by all tasks never recovers the subspace and its energy fraction stays far "
    "below that of learned heads: the smallest mean sin_max over T has a 95% CI (resampling "
    "seeds) above {sin_min:g} — within 0.1 of no recovery at all, so a claim of absence with "
    "its margin — and learned minus shared energy at the largest T one above {min_gap:g} "
    "(either wholly on the other side: contradicted). The pooled odd labels average the signal "
    "away. (The paper notes' 'about 2 directions' is reported, not checked: with the signal "
    "gone, n_dirs counts noise directions.)",
    source=SOURCE + " target 6. The margin: sin_max = 1 is a subspace orthogonal to the true one; "
    "learned heads reach ≤ 0.5 at the largest T, so 0.9 is far from any recovery",
    sin_min=0.9,
    min_gap=0.3,
)
def shared_head_fails(
    heads: pd.DataFrame, *, sin_min: float, min_gap: float
) -> tuple[str, dict[str, Any]]:
    def gap(m: pd.Series) -> float:
        a, b = curve(m, "mtl"), curve(m, "shared_head")
        return float(a.iloc[-1] - b.iloc[-1]) if len(a) and len(b) else np.nan

    ivs = {"min shared sin_max": on_curves(heads, "sin_max",
                                           lambda m: curve(m, "shared_head").min()),
           "learned − shared energy, largest T": on_curves(heads, "energy", gap),
           "shared n_dirs, largest T (reported)": on_curves(
               heads, "n_dirs", lambda m: curve(m, "shared_head").iloc[-1])}  # fmt: skip
    verdict = all_of([above(ivs["min shared sin_max"], sin_min),
                      above(ivs["learned − shared energy, largest T"], min_gap)])
    return verdict, _ivs(ivs)


@claim_rule(
    "heads.learned_beat_random",
    "With fixed random per-task heads the energy fraction stays flat in T — a claim of absence, "
    "tested for equivalence: its range over T has a 95% CI (resampling seeds) below δ = "
    "{max_range:g} — while head-first learned heads raise it by more than {min_rise:g} from "
    "T = 1 to the largest T (CI above; either wholly on the other side: contradicted): "
    "learning the heads first makes the tasks' signals add coherently.",
    source=SOURCE + " target 6. δ = 0.1: half the rise the claim requires of learned heads",
    max_range=0.1,
    min_rise=0.2,
)
def learned_beat_random(
    heads: pd.DataFrame, *, max_range: float, min_rise: float
) -> tuple[str, dict[str, Any]]:
    def rise(m: pd.Series) -> float:
        c = curve(m, "mtl")
        return float(c.iloc[-1] - c.iloc[0]) if len(c) else np.nan

    def flat(m: pd.Series) -> float:
        c = curve(m, "random_heads")
        return float(np.ptp(c)) if len(c) else np.nan

    ivs = {"random heads energy range": on_curves(heads, "energy", flat),
           "learned energy rise": on_curves(heads, "energy", rise)}  # fmt: skip
    rng = ivs["random heads energy range"]
    verdict = all_of([equivalent(rng.lo, rng.hi, max_range),
                      above(ivs["learned energy rise"], min_rise)])  # fmt: skip
    return verdict, _ivs(ivs)


# ---------------------------------------------------------------------------- alternating


@claim_rule(
    "alternating.recovers_with_enough_tasks",
    "Alternating SGD with persistent heads never recovers the subspace with T < r tasks, reaches "
    "a small principal angle with T ≥ 2r, and more tasks do better: the smallest mean final "
    "sin_max at T < r has a 95% CI (resampling seeds) above {sin_fail:g}, the largest at "
    "T ≥ 2r one below {sin_ok:g}, and the largest T's minus the smallest T ≥ 2r's one below 0 "
    "(either wholly on the other side: contradicted).",
    source=SOURCE + " target 7 (Appendix F, reconstructed)",
    sin_fail=0.9,
    sin_ok=0.4,
)
def alternating_recovers(
    final: pd.DataFrame, *, sin_fail: float, sin_ok: float
) -> tuple[str, dict[str, Any]]:
    k = _r_of(final)

    def on(fn: Callable[[pd.Series], float]) -> Any:
        return seed_interval(final, ["T"], "sin_max", lambda m: fn(m.dropna().sort_index()))

    def trend(c: pd.Series) -> float:
        many = c[c.index >= 2 * k]
        return float(many.iloc[-1] - many.iloc[0]) if len(many) > 1 else np.nan

    ivs = {"min sin_max, T < r": on(lambda c: c[c.index < k].min()),
           "max sin_max, T >= 2r": on(lambda c: c[c.index >= 2 * k].max()),
           "largest T − smallest T >= 2r": on(trend)}  # fmt: skip
    verdict = all_of([above(ivs["min sin_max, T < r"], sin_fail),
                      below(ivs["max sin_max, T >= 2r"], sin_ok),
                      below(ivs["largest T − smallest T >= 2r"], 0.0)])  # fmt: skip
    return verdict, {"r": k, **_ivs(ivs)}


# ---------------------------------------------------------------------------- theory


@claim_rule(
    "theory.pseudo_contrastive_identity",
    "After the zero-initialised head step (hinge, all margins < 1) the multi-task first-layer "
    "gradient equals the gradient of the pseudo-contrastive loss (relative difference ≤ "
    "{tol:g} in float64; a property of the computation: it holds or is contradicted).",
    source=SOURCE + " target 1 (d=100, m=200, T=3, n1=n2=50, η_a=0.01)",
    tol=1e-10,
)
def pseudo_contrastive(identity: dict[str, Any], *, tol: float) -> tuple[str, dict[str, Any]]:
    if not identity:
        return INCONCLUSIVE, {}
    ok = bool(identity["rel_diff"] <= tol and identity["margins_below_1"])
    return (HOLDS if ok else CONTRADICTED), dict(identity)


RECOVERY = (needs_r_tasks, error_falls, energy_hides_failure, population_one_step)
DOWNSTREAM = (d_independent, downstream_worse, xor_separates)
HEADS = (shared_head_fails, learned_beat_random)
ALTERNATING = (alternating_recovers,)
THEORY = (pseudo_contrastive,)
RULES = (*RECOVERY, *DOWNSTREAM, *HEADS, *ALTERNATING, *THEORY)
