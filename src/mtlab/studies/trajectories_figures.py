"""Figures of study ``trajectories``: tables in, a file name out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtlab.measure.stats import correlate
from mtlab.report.plotting import panel_grid, save
from mtlab.studies.trajectories_rules import FACTORS, method_effects

COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _groups(pairs: pd.DataFrame) -> dict[Any, str]:
    return {g: COLORS[i % len(COLORS)] for i, g in enumerate(sorted(pairs.group.unique()))}


def val_vs_train(traj: pd.DataFrame, baseline: str, fig_dir: Path, max_panels: int = 9) -> str:
    """Validation loss against training loss (fixed training subset), STL dashed and MTL solid, seed 0."""
    ok = traj[(traj.status != "failed") & (traj.seed == traj.seed.min())]
    settings = list(dict.fromkeys(ok[ok.method == baseline].setting))[:max_panels]
    fig, axes = panel_grid(max(len(settings), 1), ncols=3)
    for ax, setting in zip(axes, settings, strict=False):
        sub = ok[ok.setting == setting]
        for i, task in enumerate(sorted(sub.task.unique())[:6]):
            c = COLORS[i % len(COLORS)]
            for regime, style in (("stl", "--"), ("mtl", "-")):
                d = sub[(sub.task == task) & (sub.regime == regime)]
                d = d[(d.method == baseline) | (d.regime == "stl")].sort_values("step")
                if len(d):
                    ax.plot(d.train_loss, d.val_loss, style, color=c, lw=1.2,
                            label=f"{task} {regime}")  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.invert_xaxis()
        ax.set_title(f"{setting} (seed {int(ok.seed.min())}, {baseline})", fontsize=8)
        ax.set_xlabel("training loss (fixed training subset) →")
        ax.set_ylabel("validation loss")
        ax.legend(fontsize=6)
    return save(fig, fig_dir, "val_vs_train.png")


def gap_vs_level(gaps: pd.DataFrame, baseline: str, fig_dir: Path) -> str:
    """The matched-loss gap against the relative level ℓ / L₀ per kind of setting."""
    g = gaps[(gaps.method == baseline) & (gaps.match == "interpolated")]
    groups = sorted(g.group.unique()) or ["(none)"]
    fig, axes = panel_grid(len(groups), ncols=3)
    for ax, group in zip(axes, groups, strict=True):
        sub = g[g.group == group]
        for _, d in sub.groupby(["setting", "task", "seed"]):
            sign = np.sign(d.final_transfer.iloc[0])
            color = "tab:green" if sign > 0 else "tab:red" if sign < 0 else "grey"
            ax.plot(d.level_rel, d.gap, color=color, alpha=0.35, lw=0.9)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_title(f"{group}: green = positive final transfer", fontsize=8)
        ax.set_xlabel("training-loss level ℓ / L₀ (training proceeds →)")
        ax.set_ylabel("gap = val_MTL − val_STL")
    return save(fig, fig_dir, "gap_vs_level.png")


def factors_vs_gap(pairs: pd.DataFrame, fig_dir: Path) -> str:
    """Early factor differences (MTL − STL) against the early gap, ρ and CI per kind of setting."""
    b = pairs[pairs.baseline.astype(bool)]
    colors = _groups(b) if len(b) else {}
    fig, axes = panel_grid(len(FACTORS), ncols=3)
    for ax, f in zip(axes, FACTORS, strict=True):
        lines = []
        for group, d in b.groupby("group"):
            ax.scatter(d[f"d_{f}"], d.early_gap, s=10, color=colors[group], label=group, alpha=0.7)
            c = correlate(d[f"d_{f}"].to_numpy(float), d.early_gap.to_numpy(float))
            lines.append(f"{group}: ρ={c.spearman:.2f} [{c.spearman_lo:.2f}, {c.spearman_hi:.2f}]")
        ax.axhline(0, color="k", lw=0.5)
        ax.axvline(0, color="k", lw=0.5)
        ax.set_xscale("symlog", linthresh=1e-3)
        ax.set_xlabel(f"early Δ{f} (MTL − STL)")
        ax.set_ylabel("early gap")
        ax.set_title("\n".join(lines), fontsize=6)
        ax.legend(fontsize=6)
    return save(fig, fig_dir, "factors_vs_gap.png")


def conflict(pairs: pd.DataFrame, fig_dir: Path) -> str:
    """Early conflict against optimisation slowdown and against final transfer."""
    b = pairs[pairs.baseline.astype(bool)]
    colors = _groups(b) if len(b) else {}
    fig, axes = panel_grid(2, ncols=2)
    for ax, (col, label) in zip(
        axes, (("early_slowdown", "early slowdown (MTL ÷ STL steps)"),
               ("final_transfer", "final transfer (MTL − STL metric)")), strict=True
    ):  # fmt: skip
        for group, d in b.groupby("group"):
            ax.scatter(d.early_cos, d[col], s=10, color=colors[group], label=group, alpha=0.7)
        y = b[col].to_numpy(float)
        c = correlate(b.early_cos.to_numpy(float), np.log(y) if col == "early_slowdown" else y)
        ax.set_title(f"ρ = {c.spearman:.2f} [{c.spearman_lo:.2f}, {c.spearman_hi:.2f}]", fontsize=8)
        if col == "early_slowdown":
            ax.set_yscale("log")
        ax.axvline(0, color="k", lw=0.5)
        ax.set_xlabel("early cos(g_task, Σ other tasks' g)")
        ax.set_ylabel(label)
        ax.legend(fontsize=6)
    return save(fig, fig_dir, "conflict.png")


def methods(pairs: pd.DataFrame, fig_dir: Path) -> str:
    """Per method against the baseline: change of conflict / log slowdown vs change of transfer."""
    eff = method_effects(pairs)
    fig, axes = panel_grid(2, ncols=2)
    for ax, col in zip(axes, ("d_cos", "d_log_slowdown"), strict=True):
        for i, (m, d) in enumerate(eff.groupby("method")):
            ax.scatter(d[col], d.d_transfer, s=12, color=COLORS[i % len(COLORS)], label=m)
        ax.axhline(0, color="k", lw=0.5)
        ax.axvline(0, color="k", lw=0.5)
        ax.set_xlabel(f"{col} (method − baseline)")
        ax.set_ylabel("Δ final transfer (method − baseline)")
        ax.legend(fontsize=7)
    return save(fig, fig_dir, "methods.png")


__all__ = ["conflict", "factors_vs_gap", "gap_vs_level", "methods", "val_vs_train"]
