"""Claim rules of study ``subspace`` (tested on synthetic tables in tests/test_claim_rules.py).

Tables:

* ``recovery`` / ``heads`` — one row per (``features``, ``T``): mean over seeds of ``sin_max``,
  ``energy``, ``n_dirs`` (and ``theory_cos``), with the subspace dimension in column ``r``;
* ``downstream`` — one row per (``features``, ``d``, ``downstream_task``, ``n_down``): mean
  test accuracy ``mean``;
* ``final`` — one row per ``T``: mean final ``sin_max`` of alternating SGD, and ``r``;
* ``identity`` — the dict of :func:`mtlab.theory.pseudo_contrastive.identity_check`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mtlab.studies.claims import claim_rule, r, spearman

SOURCE = "Collins et al. 2024; paper notes §7"


def series(
    table: pd.DataFrame, metric: str, features: str = "mtl"
) -> tuple[np.ndarray, np.ndarray]:
    """(T, mean metric) of ``features``, sorted by T."""
    c = table[table.features == features].sort_values("T")
    return c["T"].to_numpy(int), c[metric].to_numpy(float)


def _r_of(table: pd.DataFrame) -> int:
    return int(table["r"].iloc[0])


# ---------------------------------------------------------------------------- recovery


@claim_rule(
    "recovery.needs_r_tasks",
    "With fewer than r tasks the subspace is not recovered: sin of the largest principal angle "
    "stays at least {sin_min:g} and at most T directions are learned.",
    source=SOURCE + " target 2",
    sin_min=0.9,
)
def needs_r_tasks(rec: pd.DataFrame, *, sin_min: float) -> tuple[bool, dict[str, Any]]:
    T, sin = series(rec, "sin_max")
    _, nd = series(rec, "n_dirs")
    below = T < _r_of(rec)
    ok = bool(below.any() and (sin[below] >= sin_min).all() and (nd[below] <= T[below]).all())
    ev = {"r": _r_of(rec), "T": T[below].tolist(), "sin_max": r(sin[below]), "n_dirs": r(nd[below])}
    return ok, ev


@claim_rule(
    "recovery.error_falls_with_T",
    "Once T ≥ r the recovery error falls as T grows (Spearman ρ(T, sin_max) ≤ −{rho:g} over "
    "T ≥ r, all r directions found for T ≥ 2r) and the energy fraction rises toward 1 "
    "(ρ ≥ {rho:g}).",
    source=SOURCE + " target 2 (Figure 1)",
    rho=0.8,
)
def error_falls(rec: pd.DataFrame, *, rho: float) -> tuple[bool, dict[str, Any]]:
    T, sin = series(rec, "sin_max")
    _, en = series(rec, "energy")
    _, nd = series(rec, "n_dirs")
    k = _r_of(rec)
    rho_sin, rho_en = spearman(T[T >= k], sin[T >= k]), spearman(T, en)
    ok = bool(rho_sin <= -rho and rho_en >= rho and (nd[T >= 2 * k] >= k - 0.5).all())
    ev = {"T": T.tolist(), "sin_max": r(sin), "energy": r(en), "rho_sin": r(rho_sin),
          "rho_energy": r(rho_en)}  # fmt: skip
    return ok, ev


@claim_rule(
    "single_task.energy_hides_failure",
    "Single-task pretraining with the same total sample budget learns one direction "
    "(n_dirs ≤ {max_dirs:g}, sin_max ≥ {sin_min:g} at every budget) although its energy fraction "
    "is as high as multi-task training's at the largest budget (within {energy_tol:g}) — energy "
    "alone does not expose the failure.",
    source=SOURCE + " target 3, pitfall 1",
    max_dirs=1.5,
    sin_min=0.9,
    energy_tol=0.1,
)
def energy_hides_failure(
    rec: pd.DataFrame, *, max_dirs: float, sin_min: float, energy_tol: float
) -> tuple[bool, dict[str, Any]]:
    T, en = series(rec, "energy")
    _, en1 = series(rec, "energy", "single_task")
    _, nd1 = series(rec, "n_dirs", "single_task")
    _, sin1 = series(rec, "sin_max", "single_task")
    ok = bool(
        len(nd1) > 0
        and len(en) > 0
        and (nd1 <= max_dirs).all()
        and (sin1 >= sin_min).all()
        and en1[-1] >= en[-1] - energy_tol
    )
    ev = {"T_budget": T.tolist(), "single_energy": r(en1), "single_n_dirs": r(nd1),
          "single_sin_max": r(sin1), "mtl_energy": r(en)}  # fmt: skip
    return ok, ev


@claim_rule(
    "theory.population_one_step",
    "The one-step first layer approaches the population prediction W0 Mᵀ Θ̂ M as the task count "
    "grows (mean row cosine rising with T: Spearman ρ ≥ {rho:g}; at least {cos_min:g} at the "
    "largest T).",
    source="paper notes §4.3 (reconstructed closed form)",
    rho=0.8,
    cos_min=0.9,
)
def population_one_step(
    rec: pd.DataFrame, *, rho: float, cos_min: float
) -> tuple[bool, dict[str, Any]]:
    T, c = series(rec, "theory_cos")
    ok = bool(len(c) and spearman(T, c) >= rho and c[-1] >= cos_min)
    return ok, {"T": T.tolist(), "mean_row_cosine": r(c)}


# ---------------------------------------------------------------------------- downstream


def fixed_n(down: pd.DataFrame, kind: str) -> int:
    """The n_down at which a kind is compared across d: the middle value for halfspaces, the
    largest for XOR."""
    ns = sorted(set(down[down.downstream_task == kind].n_down))
    return int(ns[len(ns) // 2] if kind == "halfspace" else ns[-1])


def accuracy(down: pd.DataFrame, features: str, kind: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(d, mean accuracy) of ``features`` on ``kind`` at ``n_down = n``, sorted by d."""
    sub = down[(down.features == features) & (down.downstream_task == kind) & (down.n_down == n)]
    sub = sub.sort_values("d")
    return sub.d.to_numpy(int), sub["mean"].to_numpy(float)


@claim_rule(
    "downstream.d_independent",
    "At the middle n_down, multi-task features give halfspace accuracy essentially independent "
    "of d (range over d ≤ {max_range:g}) while random features, raw inputs and single-task "
    "features lose ≥ {min_drop:g} from the smallest to the largest d.",
    source=SOURCE + " target 4",
    max_range=0.05,
    min_drop=0.1,
)
def d_independent(
    down: pd.DataFrame, *, max_range: float, min_drop: float
) -> tuple[bool, dict[str, Any]]:
    n = fixed_n(down, "halfspace")
    d, a_mtl = accuracy(down, "mtl", "halfspace", n)
    drops = {}
    for f in ("random_features", "raw_input", "single_task"):
        _, a = accuracy(down, f, "halfspace", n)
        drops[f] = float(a[0] - a[-1]) if len(a) else float("nan")
    spread = float(np.ptp(a_mtl)) if len(a_mtl) else float("nan")
    ok = bool(spread <= max_range and all(v >= min_drop for v in drops.values()))
    ev = {"n_down": n, "d": d.tolist(), "mtl_acc": r(a_mtl), "mtl_range": r(spread),
          "drop_smallest_to_largest_d": {k: r(v) for k, v in drops.items()}}  # fmt: skip
    return ok, ev


@claim_rule(
    "single_task.downstream_worse",
    "Downstream (fresh halfspaces, the largest n_down) single-task features are clearly worse "
    "than multi-task features at every d (gap ≥ {min_gap:g}).",
    source=SOURCE + " target 3",
    min_gap=0.05,
)
def downstream_worse(down: pd.DataFrame, *, min_gap: float) -> tuple[bool, dict[str, Any]]:
    half = down[down.downstream_task == "halfspace"]
    n_max = int(half.n_down.max())
    d, a_mtl = accuracy(down, "mtl", "halfspace", n_max)
    d1, a_single = accuracy(down, "single_task", "halfspace", n_max)
    common = sorted(set(d) & set(d1))
    gaps = [float(a_mtl[list(d).index(x)] - a_single[list(d1).index(x)]) for x in common]
    ok = bool(gaps and min(gaps) >= min_gap)
    return ok, {"n_down": n_max, "d": common, "mtl_minus_single": r(gaps)}


@claim_rule(
    "downstream.xor_separates",
    "On the in-subspace XOR task (largest n_down) multi-task features reach ≥ {mtl_min:g} "
    "accuracy at every d while random features are near chance (≤ {rf_max:g}) once "
    "d ≥ {d_big:g}.",
    source=SOURCE + " target 5",
    mtl_min=0.75,
    rf_max=0.6,
    d_big=100,
)
def xor_separates(
    down: pd.DataFrame, *, mtl_min: float, rf_max: float, d_big: int
) -> tuple[bool, dict[str, Any]]:
    n = fixed_n(down, "xor")
    d, a_mtl = accuracy(down, "mtl", "xor", n)
    d_rf, a_rf = accuracy(down, "random_features", "xor", n)
    big = d_rf >= d_big
    ok = bool(len(a_mtl) and (a_mtl >= mtl_min).all() and big.any() and (a_rf[big] <= rf_max).all())
    ev = {"n_down": n, "d": d.tolist(), "mtl_acc": r(a_mtl), "random_features_acc": r(a_rf)}
    return ok, ev


# ---------------------------------------------------------------------------- heads


@claim_rule(
    "heads.shared_head_fails",
    "One head shared by all tasks never recovers the subspace (sin_max ≥ {sin_min:g} at every T) "
    "and its energy fraction stays far below that of learned heads at the largest T (gap ≥ "
    "{min_gap:g}): the pooled odd labels average the signal away. (The paper notes' 'about 2 "
    "directions' is reported, not checked: with the signal gone, n_dirs counts noise directions.)",
    source=SOURCE + " target 6",
    sin_min=0.9,
    min_gap=0.3,
)
def shared_head_fails(
    heads: pd.DataFrame, *, sin_min: float, min_gap: float
) -> tuple[bool, dict[str, Any]]:
    T, sin_sh = series(heads, "sin_max", "shared_head")
    _, nd_sh = series(heads, "n_dirs", "shared_head")
    _, en_sh = series(heads, "energy", "shared_head")
    _, en_mtl = series(heads, "energy", "mtl")
    ok = bool(
        len(T) and (sin_sh >= sin_min).all() and len(en_mtl) and en_mtl[-1] - en_sh[-1] >= min_gap
    )
    ev = {"T": T.tolist(), "sin_max": r(sin_sh), "energy": r(en_sh), "learned_energy": r(en_mtl),
          "n_dirs": r(nd_sh)}  # fmt: skip
    return ok, ev


@claim_rule(
    "heads.learned_beat_random",
    "With fixed random per-task heads the energy fraction stays flat in T (range ≤ "
    "{max_range:g}), while head-first learned heads raise it by ≥ {min_rise:g} from T = 1 to the "
    "largest T: learning the heads first makes the tasks' signals add coherently.",
    source=SOURCE + " target 6",
    max_range=0.1,
    min_rise=0.2,
)
def learned_beat_random(
    heads: pd.DataFrame, *, max_range: float, min_rise: float
) -> tuple[bool, dict[str, Any]]:
    T, en_rand = series(heads, "energy", "random_heads")
    _, en_mtl = series(heads, "energy", "mtl")
    ok = bool(
        len(en_rand)
        and np.ptp(en_rand) <= max_range
        and len(en_mtl)
        and en_mtl[-1] - en_mtl[0] >= min_rise
    )
    return ok, {"T": T.tolist(), "random_heads_energy": r(en_rand), "learned_energy": r(en_mtl)}


# ---------------------------------------------------------------------------- alternating


@claim_rule(
    "alternating.recovers_with_enough_tasks",
    "Alternating SGD with persistent heads never recovers the subspace with T < r tasks (final "
    "sin_max ≥ {sin_fail:g}), reaches a small principal angle with T ≥ 2r (≤ {sin_ok:g}), and "
    "more tasks do better (final sin_max at the largest T below that at the smallest T ≥ 2r).",
    source=SOURCE + " target 7 (Appendix F, reconstructed)",
    sin_fail=0.9,
    sin_ok=0.4,
)
def alternating_recovers(
    final: pd.DataFrame, *, sin_fail: float, sin_ok: float
) -> tuple[bool, dict[str, Any]]:
    final = final.sort_values("T")
    T, s = final["T"].to_numpy(int), final["sin_max"].to_numpy(float)
    k = _r_of(final)
    few, many = T < k, T >= 2 * k
    ok = bool(
        few.any()
        and many.any()
        and (s[few] >= sin_fail).all()
        and (s[many] <= sin_ok).all()
        and s[many][-1] < s[many][0]
    )
    return ok, {"T": T.tolist(), "final_sin_max": r(s)}


# ---------------------------------------------------------------------------- theory


@claim_rule(
    "theory.pseudo_contrastive_identity",
    "After the zero-initialised head step (hinge, all margins < 1) the multi-task first-layer "
    "gradient equals the gradient of the pseudo-contrastive loss (relative difference ≤ "
    "{tol:g} in float64).",
    source=SOURCE + " target 1 (d=100, m=200, T=3, n1=n2=50, η_a=0.01)",
    tol=1e-10,
)
def pseudo_contrastive(identity: dict[str, Any], *, tol: float) -> tuple[bool, dict[str, Any]]:
    return bool(identity["rel_diff"] <= tol and identity["margins_below_1"]), dict(identity)


RECOVERY = (needs_r_tasks, error_falls, energy_hides_failure, population_one_step)
DOWNSTREAM = (d_independent, downstream_worse, xor_separates)
HEADS = (shared_head_fails, learned_beat_random)
ALTERNATING = (alternating_recovers,)
THEORY = (pseudo_contrastive,)
RULES = (*RECOVERY, *DOWNSTREAM, *HEADS, *ALTERNATING, *THEORY)
