"""Figures of study ``subspace`` (each returns the file name under ``fig_dir``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mtlab.report.plotting import errorline, log_ticks, panel_grid, plt, save

FEATURE_LABEL = {
    "mtl": "multi-task (head-first)",
    "single_task": "single task (same budget)",
    "random_features": "random features (W0)",
    "raw_input": "raw input x",
    "shared_head": "one shared head",
    "random_heads": "fixed random heads",
}


def metrics_vs_T(
    table: pd.DataFrame, metrics: Sequence[str], fig_dir: Path, name: str, r: int | None = None
) -> str:
    """One panel per metric against T, a line per feature kind (``table``: summarise_wide)."""
    fig, axes = panel_grid(len(metrics), ncols=len(metrics), size=(3.7, 3.0))
    for ax, metric in zip(axes, metrics, strict=True):
        for f, g in table.groupby("features"):
            errorline(ax, g["T"], g[metric], g[f"{metric}_se"], FEATURE_LABEL[str(f)])
        if r is not None:
            ax.axvline(r, color="0.6", linestyle=":", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("number of pretraining tasks T")
        ax.set_title(metric)
    axes[0].legend(fontsize=7)
    if r is not None:
        fig.suptitle(f"Subspace recovery after one head-first step (dotted: T = r = {r})")
    return save(fig, fig_dir, name)


def downstream_vs_n(cells: pd.DataFrame, feats: list[str], kinds: list[str], fig_dir: Path) -> str:
    """Accuracy against n_down, a panel per (task kind, features), a line per d."""
    fig, axes = panel_grid(len(feats) * len(kinds), ncols=len(feats), size=(3.5, 2.9))
    cmap = plt().get_cmap("viridis")
    ds = sorted(set(cells.d))
    for i, kind in enumerate(kinds):
        for j, f in enumerate(feats):
            ax = axes[i * len(feats) + j]
            sub = cells[(cells.features == f) & (cells.downstream_task == kind)]
            for q, d in enumerate(ds):
                g = sub[sub.d == d]
                color = cmap(q / max(1, len(ds) - 1))
                errorline(ax, g.n_down, g["mean"], g["se"], f"d={d}", color=color)
            ax.set_xscale("log")
            log_ticks(ax, sub.n_down)
            ax.set_ylim(0.45, 1.0)
            ax.axhline(0.5, color="0.7", linewidth=0.8)
            ax.set_title(f"{kind}: {FEATURE_LABEL[f]}", fontsize=9)
            ax.set_xlabel("downstream samples n_down")
            ax.set_ylabel("test accuracy")
    axes[0].legend(fontsize=7)
    return save(fig, fig_dir, "downstream_vs_n.png")


def downstream_vs_d(
    cells: pd.DataFrame, feats: list[str], fixed: dict[str, int], fig_dir: Path
) -> str:
    """Accuracy against d at the fixed n_down of each task kind, a line per feature kind."""
    fig, axes = panel_grid(len(fixed), ncols=2, size=(4.6, 3.4))
    for ax, (kind, n_fix) in zip(axes, fixed.items(), strict=True):
        for f in feats:
            sub = cells[
                (cells.features == f) & (cells.downstream_task == kind) & (cells.n_down == n_fix)
            ]
            errorline(ax, sub.d, sub["mean"], sub["se"], FEATURE_LABEL[f])
        ax.set_xscale("log")
        log_ticks(ax, cells.d)
        ax.set_ylim(0.45, 1.0)
        ax.set_xlabel("input dimension d")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{kind}, n_down = {n_fix}")
    axes[0].legend(fontsize=7)
    return save(fig, fig_dir, "downstream_vs_d.png")


def alternating(rec: pd.DataFrame, fig_dir: Path) -> str:
    """sin_max and energy against the round, a line per T (mean ± s.e. over seeds)."""
    from mtlab.report.plotting import summarise

    fig, axes = panel_grid(2, ncols=2, size=(4.6, 3.4))
    cmap = plt().get_cmap("plasma")
    Ts = sorted(set(rec["T"]))
    for metric, ax in zip(("sin_max", "energy"), axes, strict=True):
        cells = summarise(rec, ["T", "round"], metric)
        for q, T in enumerate(Ts):
            g = cells[cells["T"] == T].sort_values("round")
            color = cmap(q / max(1, len(Ts) - 0.5))
            ax.plot(g["round"], g["mean"], label=f"T={int(T)}", color=color)
            ax.fill_between(
                g["round"], g["mean"] - g["se"], g["mean"] + g["se"], alpha=0.2, color=color
            )
        ax.set_xlabel("round")
        ax.set_title(metric)
    axes[0].legend(fontsize=7)
    return save(fig, fig_dir, "alternating_sgd.png")
