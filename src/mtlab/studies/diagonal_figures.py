"""Figures of study ``diagonal`` (each returns the file name under ``fig_dir``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mtlab.report.plotting import errorline, panel_grid, plt, save, style_loss_vs_n
from mtlab.tasks.sparse_teacher import SETTINGS

METHOD_LABEL = {"stl": "STL", "mtl": "MTL", "ptft": "PT+FT", "ptft_lr": "PT+FT (LR)"}


def penalty_landscape(maps: dict[str, pd.DataFrame], windows: pd.DataFrame, fig_dir: Path) -> str:
    """ℓ-order and feature dependence against β_aux for each penalty curve."""
    widths = dict(zip(windows.penalty, windows.window_decades, strict=True))
    cons = float(windows.conservation_error.max())
    fig, (ax1, ax2) = plt().subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    for k, v in maps.items():
        ax1.semilogx(v.beta_aux, v.l_order, label=f"{k} (window {widths[k]:.1f} dec.)")
        ax2.semilogx(v.beta_aux, v.fd, label=k)
    for ax in (ax1, ax2):
        ax.set_xlabel("auxiliary coefficient |β_aux|  (β_main = 1, γ = 0)")
    ax1.axhspan(1.1, 1.9, color="0.9", zorder=0)
    ax1.set_ylabel("ℓ-order  ∂log R/∂log|β_main|")
    ax2.set_ylabel("feature dependence  ∂log R/∂log|β_aux|")
    ax1.legend(fontsize=7)
    ax1.set_title("rich (1) – nested (shaded) – lazy (2)")
    ax2.set_title(f"ℓ-order + FD = 1 (max error {cons:.1e})")
    return save(fig, fig_dir, "penalty_landscape.png")


def generalization(base: pd.DataFrame, fig_dir: Path) -> str:
    """Test loss against n_main per setting, one line per method (PT+FT at s = 1)."""
    settings = [s for s in SETTINGS if s in set(base.setting)]
    fig, axes = panel_grid(len(settings))
    for ax, setting in zip(axes, settings, strict=True):
        sub = base[base.setting == setting]
        for method in ("stl", "mtl", "ptft", "ptft_lr"):
            g = sub[sub.method == method]
            if len(g):
                errorline(ax, g.n_main, g["mean"], g["se"], METHOD_LABEL[method])
        style_loss_vs_n(ax, setting)
    axes[0].legend(fontsize=7)
    return save(fig, fig_dir, "generalization.png")


def rescaling(cells: pd.DataFrame, fig_dir: Path) -> str:
    """PT+FT test loss for each s, with STL (dashed) and MTL (dotted), per setting."""
    order = ("nested_subset", "all_aux", "new_dims", "identical", "partial_overlap")
    settings = [s for s in order if s in set(cells.setting)]
    fig, axes = panel_grid(len(settings))
    for ax, setting in zip(axes, settings, strict=True):
        sub = cells[cells.setting == setting]
        ptft = sub[sub.method == "ptft"]
        for sv in sorted(set(ptft.rescale), reverse=True):
            g = ptft[ptft.rescale == sv]
            errorline(ax, g.n_main, g["mean"], g["se"], f"PT+FT s={sv:g}")
        for method, style in (("stl", "--"), ("mtl", ":")):
            g = sub[sub.method == method]
            if len(g):
                color = "k" if method == "stl" else "0.5"
                errorline(
                    ax, g.n_main, g["mean"], g["se"], METHOD_LABEL[method],
                    linestyle=style, color=color,
                )  # fmt: skip
        style_loss_vs_n(ax, setting)
    axes[0].legend(fontsize=7)
    return save(fig, fig_dir, "rescaling.png")


def theory_agreement(agreement: pd.DataFrame, fig_dir: Path) -> str:
    """Box plot of the relative distance per prediction."""
    fig, ax = plt().subplots(figsize=(9, 3.8), layout="constrained")
    groups = [(k, g.rel_distance.to_numpy()) for k, g in agreement.groupby("prediction")]
    ax.boxplot([g for _, g in groups], showfliers=True)
    ax.set_xticks(np.arange(1, len(groups) + 1), [k for k, _ in groups], rotation=15, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("‖β_GD − β_theory‖ / ‖β_theory‖")
    ax.set_title("gradient descent vs minimum-penalty interpolators (interpolating runs)")
    return save(fig, fig_dir, "theory_agreement.png")
