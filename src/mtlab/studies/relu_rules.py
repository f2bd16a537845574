"""Claim rules of studies ``relu-correlated``, ``relu-nested`` and ``relu-magnitude`` (tested on
synthetic tables in tests/test_claim_rules.py).

Tables (mean main-task ``test_loss_rel`` over seeds in column ``mean``, failed runs excluded):

* correlated ``cells`` — per (``setting``, ``method``, ``n_main``);
* nested ``cells`` — per (``setting``, ``method``, ``s``, ``n_units``, ``n_main``) with s = 0 for STL;
  ``pr`` — per (``s``, ``n_units``) of PT+FT on subset tasks: ``pr_pre``, ``pr_post``, ``ensd``;
* magnitude ``cells`` — per (``correlation``, ``magnitude``, ``method``, ``n_main``);
  ``penalty`` — per θ: ``theta``, ``conservation_error``, ``l_order_tail``, ``fd_tail`` (at the
  largest β_aux).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mtlab.studies.claims import cell, claim_rule, r, ratio

SOURCE = "Lippl & Lindsey 2024; paper notes §2, §3.2"


def _m(cells: pd.DataFrame, **where: Any) -> float | None:
    v = cell(cells, **where)
    return v if v is not None and np.isfinite(v) else None


def _ns(cells: pd.DataFrame) -> list[int]:
    return sorted(int(n) for n in set(cells.n_main))


def _vs(cells: pd.DataFrame, setting: str, method: str, ref: str, n: int) -> float | None:
    return ratio(
        _m(cells, setting=setting, method=method, n_main=n),
        _m(cells, setting=setting, method=ref, n_main=n),
    )


# ---------------------------------------------------------------------------- correlated


@claim_rule(
    "relu.shared_features_help",
    "With main units identical to the auxiliary ones, MTL and PT+FT both reach a lower main-task "
    "test loss than STL at every n_main (loss ratio below {max_ratio:g}).",
    source=SOURCE,
    max_ratio=1.0,
)
def shared_features_help(cells: pd.DataFrame, *, max_ratio: float) -> tuple[bool, dict[str, Any]]:
    ev, ok = {}, True
    for n in _ns(cells):
        for method in ("mtl", "ptft"):
            x = _vs(cells, "identical", method, "stl", n)
            ev[f"identical n={n}: {method}/stl"] = r(x)
            ok &= x is not None and x < max_ratio
    return ok, ev


@claim_rule(
    "relu.unrelated_negative_transfer",
    "With unrelated main units, MTL and PT+FT transfer slightly negatively: their loss relative "
    "to STL is above 1 on average (mean log10 ratio between {lo:g} and {hi:g}).",
    source=SOURCE,
    lo=0.0,
    hi=1.0,
)
def unrelated_negative(cells: pd.DataFrame, *, lo: float, hi: float) -> tuple[bool, dict[str, Any]]:
    ev: dict[str, Any] = {}
    logs = []
    for n in _ns(cells):
        for method in ("mtl", "ptft"):
            x = _vs(cells, "unrelated", method, "stl", n)
            ev[f"unrelated n={n}: {method}/stl"] = r(x)
            if x is not None:
                logs.append(np.log10(x))
    mean_log = float(np.mean(logs)) if logs else float("nan")
    ev["mean log10 ratio"] = r(mean_log)
    return bool(lo < mean_log < hi), ev


@claim_rule(
    "relu.correlated_favours_ptft",
    "With correlated but different main units (cosine 0.9), PT+FT beats MTL once n_main is "
    "moderate (every n_main ≥ {n_min:g}).",
    source=SOURCE + " (Fig. 4a)",
    n_min=64,
)
def correlated_favours_ptft(cells: pd.DataFrame, *, n_min: int) -> tuple[bool, dict[str, Any]]:
    moderate = [n for n in _ns(cells) if n >= n_min]
    ev, ok = {}, bool(moderate)
    for n in moderate:
        x = _vs(cells, "correlated_0.9", "ptft", "mtl", n)
        ev[f"correlated_0.9 n={n}: ptft/mtl"] = r(x)
        ok &= x is not None and x < 1
    for n in moderate:
        ev[f"correlated_0.9 n={n}: ptft/stl"] = r(_vs(cells, "correlated_0.9", "ptft", "stl", n))
    return ok, ev


@claim_rule(
    "relu.linear_probe_needs_same_features",
    "The linear probe and the NTK excel with identical units (below STL at every n_main) but fail "
    "whenever new or rotated features are needed (above STL at the largest n_main for "
    "correlated_0.9, partial_new and unrelated).",
    source=SOURCE,
)
def probe_needs_same(cells: pd.DataFrame) -> tuple[bool, dict[str, Any]]:
    ns = _ns(cells)
    ev, ok = {}, bool(ns)
    for method in ("ptft_lr", "ntk"):
        for setting in ("correlated_0.9", "partial_new", "unrelated"):
            x = _vs(cells, setting, method, "stl", ns[-1]) if ns else None
            ev[f"{setting} n={ns[-1] if ns else None}: {method}/stl"] = r(x)
            ok &= x is not None and x > 1
        for n in ns:
            x = _vs(cells, "identical", method, "stl", n)
            ev[f"identical n={n}: {method}/stl"] = r(x)
            ok &= x is not None and x < 1
    return ok, ev


@claim_rule(
    "relu.mtl_small_n",
    "MTL is competitive with PT+FT only at the smallest n_main: MTL/PT+FT ≤ {max_ratio:g} at the "
    "smallest n_main and larger at the largest (identical and correlated_0.9).",
    source=SOURCE + " (§5)",
    max_ratio=1.5,
)
def relu_mtl_small_n(cells: pd.DataFrame, *, max_ratio: float) -> tuple[bool, dict[str, Any]]:
    ns = _ns(cells)
    ev, ok = {}, bool(ns)
    for setting in ("identical", "correlated_0.9"):
        r0 = _vs(cells, setting, "mtl", "ptft", ns[0]) if ns else None
        r1 = _vs(cells, setting, "mtl", "ptft", ns[-1]) if ns else None
        ev[f"{setting}: mtl/ptft n={ns[0] if ns else None}"] = r(r0)
        ev[f"{setting}: mtl/ptft n={ns[-1] if ns else None}"] = r(r1)
        ok &= r0 is not None and r1 is not None and r0 <= max_ratio and r1 > r0
    return ok, ev


# ---------------------------------------------------------------------------- nested


def nested_loss(cells: pd.DataFrame, setting: str, s: float | None, k: int, n: int) -> float | None:
    """Mean loss of PT+FT at rescaling ``s`` (STL when None) on ``setting`` with ``k`` units."""
    if s is None:
        return _m(cells, setting=setting, method="stl", n_units=k, n_main=n)
    return _m(cells, setting=setting, method="ptft", s=float(s), n_units=k, n_main=n)


def _sensitivity(cells: pd.DataFrame, s: float, n: int) -> float | None:
    return ratio(nested_loss(cells, "subset", s, 6, n), nested_loss(cells, "subset", s, 1, n))


@claim_rule(
    "relu.nested_small_s",
    "Small rescaling (s = 0.01) makes PT+FT strongly sensitive to how many pretrained units the "
    "main task uses (subset): the loss with 6 units is ≥ {factor:g}× that with 1 unit, and this "
    "sensitivity is ≥ {factor:g}× larger than at s = 10.",
    source=SOURCE + " (§3.2 ReLU)",
    factor=10.0,
)
def nested_small_s(cells: pd.DataFrame, *, factor: float) -> tuple[bool, dict[str, Any]]:
    ev, ok = {}, bool(_ns(cells))
    for n in _ns(cells):
        small, large = _sensitivity(cells, 0.01, n), _sensitivity(cells, 10.0, n)
        ev[f"n={n}: loss(6 units)/loss(1 unit), s=0.01"] = r(small)
        ev[f"n={n}: loss(6 units)/loss(1 unit), s=10"] = r(large)
        ev[f"n={n}: same, s=0.1"] = r(_sensitivity(cells, 0.1, n))
        ev[f"n={n}: same, s=1"] = r(_sensitivity(cells, 1.0, n))
        ok &= (
            small is not None and large is not None and small >= factor and small >= factor * large
        )
    return ok, ev


@claim_rule(
    "relu.lazy_large_s",
    "Large rescaling (s = 10) is lazy: it beats STL on every subset task and is worse than STL on "
    "every task with new units.",
    source=SOURCE + " (§3.2 ReLU)",
)
def lazy_large_s(cells: pd.DataFrame) -> tuple[bool, dict[str, Any]]:
    ev, ok = {}, bool(_ns(cells))
    for n in _ns(cells):
        for k in range(1, 7):
            sub_r = ratio(
                nested_loss(cells, "subset", 10.0, k, n), nested_loss(cells, "subset", None, k, n)
            )
            new_r = ratio(
                nested_loss(cells, "new", 10.0, k, n), nested_loss(cells, "new", None, k, n)
            )
            ev[f"n={n} k={k}: subset s=10/STL"] = r(sub_r, 3)
            ev[f"n={n} k={k}: new s=10/STL"] = r(new_r, 3)
            ok &= sub_r is not None and new_r is not None and sub_r < 1 < new_r
    return ok, ev


@claim_rule(
    "relu.small_s_like_stl_on_new",
    "With new units, small rescaling (s = 0.01) behaves like STL: every loss within a factor "
    "{factor:g} of STL's.",
    source=SOURCE + " (§3.2: c = 0, s ≤ 0.1 ≈ STL)",
    factor=3.0,
)
def small_s_like_stl(cells: pd.DataFrame, *, factor: float) -> tuple[bool, dict[str, Any]]:
    ev: dict[str, Any] = {}
    logs = []
    for n in _ns(cells):
        for k in range(1, 7):
            x = ratio(nested_loss(cells, "new", 0.01, k, n), nested_loss(cells, "new", None, k, n))
            ev[f"n={n} k={k}: new s=0.01/STL"] = r(x, 3)
            if x is not None:
                logs.append(abs(np.log10(x)))
    worst = float(max(logs)) if logs else float("nan")
    ev["max |log10 ratio|"] = r(worst, 3)
    return bool(logs) and worst <= np.log10(factor), ev


@claim_rule(
    "relu.nested_signature",
    "Nested-feature-selection signature: at s = 0.01 (subset tasks with ≤ 3 units) finetuning "
    "lowers the hidden layer's participation ratio and the new representation lies inside the "
    "pretrained one (ENSD ≥ {ensd_min:g}·PR_post); at s = 10 PR_post stays within {lazy_tol:.0%} "
    "of PR_pre (lazy).",
    source=SOURCE + " (§3.2 CIFAR signature, checked here on the ReLU lab)",
    ensd_min=0.8,
    lazy_tol=0.05,
)
def nested_signature(
    pr: pd.DataFrame, *, ensd_min: float, lazy_tol: float
) -> tuple[bool, dict[str, Any]]:
    small = pr[np.isclose(pr.s, 0.01) & (pr.n_units <= 3)]
    large = pr[np.isclose(pr.s, 10.0)]
    ok = (
        len(small) > 0
        and len(large) > 0
        and bool((small.pr_post < small.pr_pre).all())
        and bool((small.ensd / small.pr_post >= ensd_min).all())
        and bool((np.abs(large.pr_post / large.pr_pre - 1) <= lazy_tol).all())
    )
    ev = {
        "s=0.01": small.round(3).to_dict("records"),
        "s=10 PR_post/PR_pre": r((large.pr_post / large.pr_pre).tolist()),
    }
    return ok, ev


# ---------------------------------------------------------------------------- magnitude


def log_ratios(cells: pd.DataFrame) -> list[tuple[int, float, float, float]]:
    """(n_main, cosine, magnitude, log10 PT+FT/STL loss) for every cell with both methods."""
    out = []
    for n in _ns(cells):
        for c in sorted(set(cells.correlation), reverse=True):
            for mag in sorted(set(cells.magnitude), reverse=True):
                key = {"correlation": float(c), "magnitude": float(mag), "n_main": n}
                x = ratio(_m(cells, method="ptft", **key), _m(cells, method="stl", **key))
                if x:
                    out.append((n, float(c), float(mag), float(np.log10(x))))
    return out


def _split(
    cells: pd.DataFrame,
) -> tuple[list[tuple[int, float, float, float]], list[tuple[int, float, float, float]]]:
    """Cells with identical direction or magnitude, and the others."""
    helps: list[tuple[int, float, float, float]] = []
    other: list[tuple[int, float, float, float]] = []
    for n, c, mag, g in log_ratios(cells):
        (helps if (c == 1.0 or mag == 1.0) else other).append((n, c, mag, g))
    return helps, other


@claim_rule(
    "relu.magnitude_or_direction",
    "PT+FT beats STL when the main features are identical in direction (cosine 1) or in "
    "magnitude (magnitude 1) — every such cell — and not otherwise: PT+FT is no better than STL "
    "in most (> {min_frac:.0%}) of the remaining cells.",
    source=SOURCE + " (Fig. 4b)",
    min_frac=0.5,
)
def magnitude_or_direction(cells: pd.DataFrame, *, min_frac: float) -> tuple[bool, dict[str, Any]]:
    helps, other = _split(cells)
    ok_help = bool(helps) and all(g < 0 for *_, g in helps)
    frac_other = float(np.mean([g >= 0 for *_, g in other])) if other else float("nan")
    ev = {
        "identical direction or magnitude: cells where PT+FT beats STL": (
            f"{sum(g < 0 for *_, g in helps)} of {len(helps)}"
        ),
        "other cells where PT+FT is no better than STL": (
            f"{sum(g >= 0 for *_, g in other)} of {len(other)}"
        ),
        "log10 ratios (n, cosine, magnitude)": {
            f"n={n} c={c:g} m={mag:g}": round(g, 2) for n, c, mag, g in helps + other
        },
    }
    return ok_help and frac_other > min_frac, ev


@claim_rule(
    "relu.magnitude_gain_concentrated",
    "PT+FT's advantage over STL is concentrated where the main features match the pretrained "
    "ones in direction or magnitude: at the largest n_main the mean log10 loss ratio over those "
    "cells is at least {min_gap:g} decade below the mean over the other cells.",
    source=SOURCE + " (Fig. 4b, the direction of the effect)",
    min_gap=0.5,
)
def gain_concentrated(cells: pd.DataFrame, *, min_gap: float) -> tuple[bool, dict[str, Any]]:
    helps, other = _split(cells)
    n_max = max((n for n, *_ in helps + other), default=None)
    h = [g for n, *_, g in helps if n == n_max]
    o = [g for n, *_, g in other if n == n_max]
    gap = float(np.mean(o) - np.mean(h)) if h and o else float("nan")
    ev = {
        "n_main": n_max,
        "mean log10 ratio, identical direction or magnitude": r(np.mean(h) if h else None, 3),
        "mean log10 ratio, other cells": r(np.mean(o) if o else None, 3),
        "gap (decades)": r(gap, 3),
    }
    return bool(gap >= min_gap), ev


@claim_rule(
    "relu.penalty_conservation",
    "The per-unit PT+FT penalty satisfies ℓ-order + FD = 1 (v0 = 0), up to {tol:g}.",
    source="Euler's theorem (reconstructed), notes §2.2",
    tol=1e-6,
)
def relu_penalty_conservation(penalty: pd.DataFrame, *, tol: float) -> tuple[bool, dict[str, Any]]:
    err = float(penalty.conservation_error.max())
    return err < tol, {"max_abs_error": err}


@claim_rule(
    "relu.penalty_misaligned",
    "For θ < 1 and a large pretrained unit the ℓ-order falls below 1 and the feature dependence "
    "turns positive (large but misaligned features are costly to adjust); for θ = 1 the ℓ-order "
    "approaches 2 (above {aligned_min:g}).",
    source="notes §2.2 (reconstructed behaviour)",
    aligned_min=1.9,
)
def penalty_misaligned(penalty: pd.DataFrame, *, aligned_min: float) -> tuple[bool, dict[str, Any]]:
    mis = penalty[penalty.theta < 1]
    aligned = penalty[penalty.theta == 1]
    ok = (
        len(mis) > 0
        and len(aligned) > 0
        and bool((mis.l_order_tail < 1).all() and (mis.fd_tail > 0).all())
        and bool((aligned.l_order_tail > aligned_min).all())
    )
    ev = {
        f"θ={t:g}: (ℓ-order, FD) at β_aux=1e4": (round(lo, 4), round(fd, 4))
        for t, lo, fd in zip(penalty.theta, penalty.l_order_tail, penalty.fd_tail, strict=True)
    }
    return ok, ev


CORRELATED = (
    shared_features_help,
    unrelated_negative,
    correlated_favours_ptft,
    probe_needs_same,
    relu_mtl_small_n,
)
NESTED_LOSS = (nested_small_s, lazy_large_s, small_s_like_stl)
NESTED_GEOMETRY = (nested_signature,)
MAGNITUDE_PENALTY = (relu_penalty_conservation, penalty_misaligned)
MAGNITUDE = (magnitude_or_direction, gain_concentrated)
RULES = (*CORRELATED, *NESTED_LOSS, *NESTED_GEOMETRY, *MAGNITUDE_PENALTY, *MAGNITUDE)
