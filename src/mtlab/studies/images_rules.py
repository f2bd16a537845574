"""Claim rules of study ``images-rescaling`` (tested on synthetic tables in
tests/test_claim_rules.py).

Tables: ``acc`` — one row per finished run: ``trunk``, ``label`` (``STL``, ``MTL``,
``PT+FT s=<s>``), ``n_main``, ``seed``, ``test_acc``; ``rep`` — one row per finished PT+FT run:
``trunk``, ``s``, ``seed``, ``pr_pre``, ``pr_post``, ``ensd``.

Each statistic (a worst case over networks and n_main) is computed on the mean over seeds, with
a 95% bootstrap interval that resamples seeds (:func:`~mtlab.studies.claims.seed_interval`): a
part holds when its whole interval lies on the predicted side of its threshold and is
contradicted when the whole interval lies on the other side.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mtlab.studies.claims import above, all_of, below, ci, claim_rule, seed_interval

SOURCE = "Lippl & Lindsey 2024; paper notes §3.2 (CIFAR-100), §4"
KEYS = ["trunk", "label", "n_main"]


def accuracy(m: pd.Series, trunk: str, label: str, n: int) -> float:
    """Mean accuracy over seeds of one cell (NaN if absent)."""
    v = m.get((trunk, label, n), np.nan)
    return float(v) if np.ndim(v) == 0 else np.nan


def _trunks(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table.trunk))


def _ns(table: pd.DataFrame) -> list[int]:
    return sorted(int(n) for n in set(table.n_main))


def _all(values: list[float], fn: Any) -> float:
    """``fn`` of the values, NaN if any is missing (a worst case needs every cell)."""
    return float(fn(values)) if values and np.all(np.isfinite(values)) else np.nan


@claim_rule(
    "images.small_s_helps",
    "Rescaling by a small s ({small_lo:g} or {small_hi:g}) improves PT+FT's test accuracy over "
    "s = 1 at every n_main, for every network: the smallest over networks and n_main of (best "
    "small s − s = 1), on mean accuracies over seeds, has a 95% CI (resampling seeds) above 0 "
    "(wholly below: contradicted).",
    source=SOURCE + " (ResNet-18: s ∈ {0.125, 0.25} helps at all n)",
    small_lo=0.125,
    small_hi=0.25,
)
def small_s_helps(
    acc: pd.DataFrame, *, small_lo: float, small_hi: float
) -> tuple[str, dict[str, Any]]:
    small = [lab for lab in (f"PT+FT s={s:g}" for s in (small_lo, small_hi))
             if lab in set(acc.label)]  # fmt: skip
    cells = [(t, n) for t in _trunks(acc) for n in _ns(acc)]

    def gain(m: pd.Series, t: str, n: int) -> float:
        best = np.nanmax([accuracy(m, t, lab, n) for lab in small]) if small else np.nan
        return float(best - accuracy(m, t, "PT+FT s=1", n))

    iv = seed_interval(acc, KEYS, "test_acc",
                       lambda m: _all([gain(m, t, n) for t, n in cells], np.min))  # fmt: skip
    means = acc.groupby(KEYS).test_acc.mean()
    ev = {"smallest gain": ci(iv),
          **{f"{t} n={n}: best small s − s=1": round(gain(means, t, n), 4) for t, n in cells}}
    return above(iv, 0.0), ev


@claim_rule(
    "images.large_s_hurts",
    "s = {large:g} is worse than s = 1 (test accuracy averaged over n_main), for every network: "
    "the largest over networks of that mean difference, on mean accuracies over seeds, has a "
    "95% CI (resampling seeds) below 0 (wholly above: contradicted).",
    source=SOURCE + " (s = 2 clearly worse)",
    large=2.0,
)
def large_s_hurts(acc: pd.DataFrame, *, large: float) -> tuple[str, dict[str, Any]]:
    ns, trunks = _ns(acc), _trunks(acc)

    def diff(m: pd.Series, t: str) -> float:
        d = [accuracy(m, t, f"PT+FT s={large:g}", n) - accuracy(m, t, "PT+FT s=1", n) for n in ns]
        return _all(d, np.mean)

    iv = seed_interval(acc, KEYS, "test_acc", lambda m: _all([diff(m, t) for t in trunks], np.max))
    means = acc.groupby(KEYS).test_acc.mean()
    ev = {"largest mean difference": ci(iv),
          **{f"{t}: mean over n of acc(s={large:g}) − acc(s=1)": round(diff(means, t), 4)
             for t in trunks}}  # fmt: skip
    return below(iv, 0.0), ev


@claim_rule(
    "images.nested_signature",
    "At the smallest s the finetuned penultimate layer shows the nested-feature-selection "
    "signature for every network: a lower participation ratio than the (rescaled) pretrained "
    "layer (the largest PR_post − PR_pre over networks below 0) and ENSD ≥ {ensd_min:g}·PR "
    "after finetuning (the smallest ENSD / PR_post above {ensd_min:g}); each on means over "
    "seeds with a 95% CI resampling seeds (wholly on the other side: contradicted).",
    source=SOURCE + " (ResNet, small s: lower-dimensional, inside the pretrained subspace)",
    ensd_min=0.8,
)
def images_nested_signature(rep: pd.DataFrame, *, ensd_min: float) -> tuple[str, dict[str, Any]]:
    if rep.empty:
        return all_of([]), {}
    small = rep[rep.s == rep.s.min()]
    small = small.assign(drop=small.pr_post - small.pr_pre, inside=small.ensd / small.pr_post)
    ivs = {"largest PR_post − PR_pre": seed_interval(small, ["trunk"], "drop", lambda m: m.max()),
           "smallest ENSD / PR_post": seed_interval(small, ["trunk"], "inside",
                                                    lambda m: m.min())}  # fmt: skip
    means = small.groupby("trunk")[["pr_pre", "pr_post", "ensd"]].mean().round(3)
    ev = {"s": float(rep.s.min()), **{k: ci(iv) for k, iv in ivs.items()},
          "means": means.to_dict("index")}  # fmt: skip
    return all_of([below(ivs["largest PR_post − PR_pre"], 0.0),
                   above(ivs["smallest ENSD / PR_post"], ensd_min)]), ev  # fmt: skip


@claim_rule(
    "images.mtl_small_n",
    "MTL is at least as accurate as PT+FT (s = 1) at the smallest n_main and PT+FT at least as "
    "accurate as MTL at the largest, for every network — 'at least as accurate' within a "
    "margin of {margin:g} (a non-inferiority test): the smallest over networks of each "
    "difference, on mean accuracies over seeds, has a 95% CI (resampling seeds) above "
    "−{margin:g} (wholly below: contradicted).",
    source=SOURCE + " (§5: ResNet within error at the smallest n, PT+FT ahead beyond). Margin: "
    "one accuracy point, about the standard error of a cell over five seeds",
    margin=0.01,
)
def images_mtl_small_n(acc: pd.DataFrame, *, margin: float) -> tuple[str, dict[str, Any]]:
    ns, trunks = _ns(acc), _trunks(acc)
    if not ns:
        return all_of([]), {}

    def lead(first: str, second: str, n: int) -> Any:
        return lambda m: _all([accuracy(m, t, first, n) - accuracy(m, t, second, n)
                               for t in trunks], np.min)  # fmt: skip

    ivs = {f"MTL − PT+FT at n={ns[0]}": seed_interval(acc, KEYS, "test_acc",
                                                      lead("MTL", "PT+FT s=1", ns[0])),
           f"PT+FT − MTL at n={ns[-1]}": seed_interval(acc, KEYS, "test_acc",
                                                       lead("PT+FT s=1", "MTL", ns[-1]))}
    return all_of([above(iv, -margin) for iv in ivs.values()]), {k: ci(iv) for k, iv in ivs.items()}


PERFORMANCE = (small_s_helps, large_s_hurts)
RULES = (small_s_helps, large_s_hurts, images_nested_signature, images_mtl_small_n)
