"""Claim rules of study ``images-rescaling`` (tested on synthetic tables in
tests/test_claim_rules.py).

Tables: ``acc`` — mean test accuracy per (``trunk``, ``label``, ``n_main``) in column ``mean``,
labels ``STL``, ``MTL``, ``PT+FT s=<s>``; ``rep`` — per (``trunk``, ``s``) of PT+FT runs: mean
``pr_pre``, ``pr_post``, ``ensd``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mtlab.studies.claims import claim_rule

SOURCE = "Lippl & Lindsey 2024; paper notes §3.2 (CIFAR-100), §4"


def accuracy(acc: pd.DataFrame, trunk: str, label: str, n: int) -> float | None:
    g = acc[(acc.trunk == trunk) & (acc.label == label) & (acc.n_main == n)]
    return None if g.empty else float(g["mean"].iloc[0])


def _trunks(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table.trunk))


@claim_rule(
    "images.small_s_helps",
    "Rescaling by a small s ({small_lo:g} or {small_hi:g}) improves PT+FT's test accuracy over "
    "s = 1 at every n_main, for every network.",
    source=SOURCE + " (ResNet-18: s ∈ {0.125, 0.25} helps at all n)",
    small_lo=0.125,
    small_hi=0.25,
)
def small_s_helps(
    acc: pd.DataFrame, *, small_lo: float, small_hi: float
) -> tuple[bool, dict[str, Any]]:
    labels = [f"PT+FT s={s:g}" for s in (small_lo, small_hi)]
    small = [lab for lab in labels if lab in set(acc.label)]
    ev: dict[str, Any] = {}
    ok = bool(small)
    for trunk in _trunks(acc):
        for n in sorted(set(acc.n_main)):
            base = accuracy(acc, trunk, "PT+FT s=1", n)
            best = max((accuracy(acc, trunk, lab, n) or -1.0 for lab in small), default=None)
            gain = None if base is None or best is None else round(best - base, 4)
            ev[f"{trunk} n={int(n)}: best small s − s=1"] = gain
            ok &= gain is not None and best > base  # type: ignore[operator]
    return ok, ev


@claim_rule(
    "images.large_s_hurts",
    "s = {large:g} is worse than s = 1 (test accuracy averaged over n_main), for every network.",
    source=SOURCE + " (s = 2 clearly worse)",
    large=2.0,
)
def large_s_hurts(acc: pd.DataFrame, *, large: float) -> tuple[bool, dict[str, Any]]:
    ev: dict[str, Any] = {}
    ok = bool(len(acc))
    for trunk in _trunks(acc):
        d = []
        for n in sorted(set(acc.n_main)):
            hi, one = (
                accuracy(acc, trunk, f"PT+FT s={large:g}", n),
                accuracy(acc, trunk, "PT+FT s=1", n),
            )
            if hi is not None and one is not None:
                d.append(hi - one)
        ev[f"{trunk}: mean over n of acc(s={large:g}) − acc(s=1)"] = (
            round(float(np.mean(d)), 4) if d else None
        )
        ok &= bool(d) and float(np.mean(d)) < 0
    return ok, ev


@claim_rule(
    "images.nested_signature",
    "At the smallest s the finetuned penultimate layer shows the nested-feature-selection "
    "signature: a lower participation ratio than the (rescaled) pretrained layer, and ENSD ≥ "
    "{ensd_min:g}·PR after finetuning — for every network.",
    source=SOURCE + " (ResNet, small s: lower-dimensional, inside the pretrained subspace)",
    ensd_min=0.8,
)
def images_nested_signature(rep: pd.DataFrame, *, ensd_min: float) -> tuple[bool, dict[str, Any]]:
    ev: dict[str, Any] = {}
    ok = bool(len(rep))
    for trunk in _trunks(rep):
        g = rep[(rep.trunk == trunk) & (rep.s == rep.s.min())]
        if g.empty:
            ok = False
            continue
        r = g.iloc[0]
        ev[f"{trunk} s={r.s:g}"] = {
            "pr_pre": round(float(r.pr_pre), 3),
            "pr_post": round(float(r.pr_post), 3),
            "ensd": round(float(r.ensd), 3),
        }
        ok &= bool(r.pr_post < r.pr_pre and r.ensd >= ensd_min * r.pr_post)
    return ok, ev


@claim_rule(
    "images.mtl_small_n",
    "MTL is at least as accurate as PT+FT (s = 1) at the smallest n_main and PT+FT at least as "
    "accurate as MTL at the largest, for every network.",
    source=SOURCE + " (§5: ResNet within error at the smallest n, PT+FT ahead beyond)",
)
def images_mtl_small_n(acc: pd.DataFrame) -> tuple[bool, dict[str, Any]]:
    ns = sorted(set(acc.n_main))
    ev: dict[str, Any] = {}
    ok = bool(ns)
    for trunk in _trunks(acc):
        lo = (accuracy(acc, trunk, "MTL", ns[0]), accuracy(acc, trunk, "PT+FT s=1", ns[0]))
        hi = (accuracy(acc, trunk, "MTL", ns[-1]), accuracy(acc, trunk, "PT+FT s=1", ns[-1]))
        ev[f"{trunk} n={int(ns[0])}: MTL, PT+FT"] = lo
        ev[f"{trunk} n={int(ns[-1])}: MTL, PT+FT"] = hi
        ok &= None not in lo + hi and lo[0] >= lo[1] and hi[1] >= hi[0]  # type: ignore[operator]
    return ok, ev


PERFORMANCE = (small_s_helps, large_s_hurts)
RULES = (small_s_helps, large_s_hurts, images_nested_signature, images_mtl_small_n)
