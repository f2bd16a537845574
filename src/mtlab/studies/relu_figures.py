"""Figures of the ReLU studies (each returns the file name under ``fig_dir``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtlab.report.plotting import errorline, log_ticks, panel_grid, plt, save, style_loss_vs_n

METHOD_LABEL = {
    "stl": "STL",
    "mtl": "MTL",
    "ptft": "PT+FT",
    "ptft_lr": "PT+FT (LR)",
    "ntk": "NTK",
}


def generalization(cells: pd.DataFrame, settings: Sequence[str], fig_dir: Path) -> str:
    """Loss against n_main per setting, a line per method."""
    ns = sorted(set(cells.n_main))
    fig, axes = panel_grid(len(settings), ncols=4, size=(3.8, 3.2))
    for ax, setting in zip(axes, settings, strict=True):
        sub = cells[cells.setting == setting]
        for method, label in METHOD_LABEL.items():
            g = sub[sub.method == method]
            if len(g):
                errorline(ax, g.n_main, g["mean"], g["se"], label)
        style_loss_vs_n(ax, setting)
        log_ticks(ax, ns)
    axes[0].legend(fontsize=7)
    return save(fig, fig_dir, "relu_generalization.png")


def nested_loss(cells: pd.DataFrame, rescales: Sequence[float], fig_dir: Path) -> str:
    """Loss against n_units per (n_main, subset/new), a line per s and STL (dashed)."""
    ns = sorted(set(cells.n_main))
    fig, axes = panel_grid(2 * len(ns), ncols=2, size=(4.4, 3.3))
    for i, n in enumerate(ns):
        for j, setting in enumerate(("subset", "new")):
            ax = axes[2 * i + j]
            sub = cells[(cells.setting == setting) & (cells.n_main == n)]
            for s in rescales:
                g = sub[(sub.method == "ptft") & np.isclose(sub.s, s)]
                if len(g):
                    errorline(ax, g.n_units, g["mean"], g["se"], f"PT+FT s={s:g}")
            g = sub[sub.method == "stl"]
            if len(g):
                errorline(ax, g.n_units, g["mean"], g["se"], "STL", color="k", linestyle="--")
            ax.set_yscale("log")
            ax.set_xlabel("n_units (main-task teacher units)")
            ax.set_ylabel("test loss / zero predictor")
            ax.set_title(f"{setting}, n_main = {int(n)}")
    axes[0].legend(fontsize=7)
    return save(fig, fig_dir, "relu_nested_loss.png")


def pr_ensd(pr: pd.DataFrame, rescales: Sequence[float], fig_dir: Path) -> str:
    """Participation ratio after finetuning and ENSD / PR_post against n_units, a line per s."""
    fig, (ax1, ax2) = plt().subplots(1, 2, figsize=(9.5, 3.5), layout="constrained")
    for s in rescales:
        g = pr[np.isclose(pr.s, s)]
        ax1.plot(g.n_units, g.pr_post, marker="o", label=f"s={s:g}")
        ax2.plot(g.n_units, g.ensd / g.pr_post, marker="o", label=f"s={s:g}")
    if len(pr):
        ax1.axhline(float(pr.pr_pre.mean()), color="k", linestyle=":", label="pretrained")
    ax1.set_xlabel("n_units (subset)")
    ax1.set_ylabel("participation ratio after FT")
    ax2.set_xlabel("n_units (subset)")
    ax2.set_ylabel("ENSD(pre, post) / PR(post)")
    ax1.legend(fontsize=7)
    ax1.set_title("hidden-layer dimension after finetuning")
    ax2.set_title("post representation inside the pretrained one")
    return save(fig, fig_dir, "relu_nested_pr_ensd.png")


def _model(p: dict[str, Any]) -> str:
    return "STL" if p["method"] == "stl" else f"PT+FT s={p['rescale']:g}"


def kmeans(profiles: list[dict[str, Any]], n_main: int, fig_dir: Path) -> str:
    """Weighted inertia and centre alignment against k, per setting, a line per model."""
    fig, axes = panel_grid(4, ncols=2, size=(4.6, 3.1))
    for row_i, setting in enumerate(("subset", "new")):
        ax1, ax2 = axes[2 * row_i], axes[2 * row_i + 1]
        for p in (p for p in profiles if p["setting"] == setting):
            ax1.plot(p["k"], p["inertia"], marker="o", label=_model(p))
            ax2.plot(p["k"], p["alignment"], marker="o", label=_model(p))
        ax1.set_xlabel("clusters k")
        ax1.set_ylabel("weighted inertia / inertia at k = 1")
        ax2.set_xlabel("clusters k")
        ax2.set_ylabel("best |cos| of centres to teacher units")
        ax1.set_title(f"{setting}, 2 units, n_main = {n_main}: inertia")
        ax2.set_title(f"{setting}: alignment with the main teacher")
        ax1.legend(fontsize=7)
    return save(fig, fig_dir, "relu_nested_kmeans.png")


def kmeans_table(profiles: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for p in profiles:
        row: dict[str, Any] = {"setting": p["setting"], "model": _model(p)}
        for key in ("inertia", "alignment"):
            row |= {
                f"{key} k={k}": float(v)
                for k, v in zip(p["k"], p[key], strict=True)
                if k in (2, 3, 6)
            }
        rows.append(row)
    return pd.DataFrame(rows)


def magnitude_grid(
    cells: pd.DataFrame,
    grid: list[tuple[int, float, float, float]],
    correlations: Sequence[float],
    magnitudes: Sequence[float],
    fig_dir: Path,
) -> str:
    """Heat maps of log10 PT+FT/STL loss over cosine × magnitude, one per n_main."""
    ns = sorted(set(cells.n_main))
    fig, axes = panel_grid(len(ns), ncols=len(ns), size=(4.4, 3.6))
    for ax, n in zip(axes, ns, strict=True):
        G = np.full((len(correlations), len(magnitudes)), np.nan)
        for nn, c, mag, g in grid:
            if nn == n and c in correlations and mag in magnitudes:
                G[list(correlations).index(c), list(magnitudes).index(mag)] = g
        lim = float(np.nanmax(np.abs(G))) if np.isfinite(G).any() else 1.0
        im = ax.imshow(G, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_xticks(range(len(magnitudes)), [f"{v:g}" for v in magnitudes])
        ax.set_yticks(range(len(correlations)), [f"{v:g}" for v in correlations])
        ax.set_xlabel("main-feature magnitude")
        ax.set_ylabel("main-unit cosine")
        ax.set_title(f"log10 PT+FT/STL loss, n_main = {int(n)}")
        for i, j in zip(*np.nonzero(np.isfinite(G)), strict=True):
            ax.text(j, i, f"{G[i, j]:.1f}", ha="center", va="center", fontsize=7)
        fig.colorbar(im, ax=ax, shrink=0.8)
    return save(fig, fig_dir, "relu_magnitude_grid.png")


def penalty_landscape(curves: dict[float, tuple[Any, Any, Any]], cons: float, fig_dir: Path) -> str:
    """ℓ-order and FD of the per-unit PT+FT penalty against β_aux, a line per θ."""
    fig, (ax1, ax2) = plt().subplots(1, 2, figsize=(10, 3.5), layout="constrained")
    for th, (a, lo, fd) in curves.items():
        ax1.semilogx(a, lo, label=f"θ = {th:g}")
        ax2.semilogx(a, fd, label=f"θ = {th:g}")
    for ax in (ax1, ax2):
        ax.set_xlabel("pretrained unit coefficient β_aux = m0²  (β = 1, v0 = 0)")
    ax1.set_ylabel("ℓ-order")
    ax2.set_ylabel("feature dependence")
    ax1.legend(fontsize=7)
    ax2.set_title(f"ℓ-order + FD = 1 (max error {cons:.1e})")
    return save(fig, fig_dir, "relu_penalty_landscape.png")
