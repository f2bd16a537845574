"""Small plotting helpers shared by the studies (matplotlib, Agg backend, loaded lazily)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def mean_se(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, standard error (0 for one value) and count of the finite values."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if v.size == 0:
        return float("nan"), float("nan"), 0
    se = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.0
    return float(v.mean()), se, int(v.size)


def summarise(df: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Per group of ``by``: ``mean``, ``se`` and ``n`` of ``value`` (a pandas DataFrame)."""
    import pandas as pd

    rows = []
    for key, g in df.groupby(by, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        m, se, n = mean_se(g[value].tolist())
        rows.append({**dict(zip(by, key, strict=True)), "mean": m, "se": se, "n": n})
    return pd.DataFrame(rows)


def summarise_wide(df: pd.DataFrame, by: list[str], values: Sequence[str]) -> pd.DataFrame:
    """Per group of ``by``: the mean of each of ``values`` (column ``value``) and its standard
    error (column ``value_se``) — :func:`summarise` for several values at once."""
    out: pd.DataFrame | None = None
    for v in values:
        s = summarise(df, by, v).rename(columns={"mean": v, "se": f"{v}_se"}).drop(columns="n")
        out = s if out is None else out.merge(s, on=by, how="outer")
    if out is None:
        raise ValueError("summarise_wide needs at least one value column")
    return out


def save(fig: Any, fig_dir: Path, name: str) -> str:
    fig_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(fig_dir / name, dpi=110)
    plt().close(fig)
    return name


def panel_grid(
    n: int, ncols: int = 3, size: tuple[float, float] = (4.2, 3.3)
) -> tuple[Any, list[Any]]:
    p = plt()
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = p.subplots(
        nrows,
        ncols,
        figsize=(size[0] * ncols, size[1] * nrows),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def heatmap(
    ax: Any,
    A: Any,
    tasks: Sequence[str],
    title: str,
    se: Any = None,
    xlabel: str = "source (step on this task)",
) -> None:
    """A recipient × source affinity matrix, diverging colours symmetric about 0 (scaled to the
    off-diagonal entries); with ``se`` every cell is annotated mean ± s.e."""
    A = np.asarray(A, float)
    n = len(tasks)
    lim = float(np.nanmax(np.abs(A[~np.eye(n, dtype=bool)]))) if n > 1 else 0.0
    lim = lim or 1.0
    im = ax.imshow(A, cmap="RdBu", vmin=-lim, vmax=lim)
    if se is not None:
        for i in range(n):
            for j in range(n):
                dark = abs(A[i, j]) > 0.6 * lim  # white text on the darkest cells
                ax.text(j, i, f"{A[i, j]:.3f}\n±{se[i][j]:.3f}", ha="center", va="center",
                        fontsize=7, color="white" if dark else "black")  # fmt: skip
    ax.set_xticks(range(n), tasks, rotation=45 if se is not None else 90, ha="right", fontsize=7)
    ax.set_yticks(range(n), tasks, fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("recipient (loss measured)")
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(im, ax=ax, shrink=0.8)


def errorline(ax: Any, x: Any, mean: Any, se: Any, label: str, **kw: Any) -> None:
    x, mean, se = (np.asarray(a, float) for a in (x, mean, se))
    order = np.argsort(x)
    ax.errorbar(
        x[order],
        mean[order],
        yerr=se[order],
        label=label,
        capsize=2,
        marker="o",
        markersize=3,
        linewidth=1.3,
        **kw,
    )


def style_loss_vs_n(ax: Any, title: str) -> None:
    """Log-log axes of a test-loss-against-n_main panel."""
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel("n_main")
    ax.set_ylabel("test loss / zero predictor")


def log_ticks(ax: Any, values: Any, axis: str = "x") -> None:
    """A log axis labelled exactly at ``values`` (plain numbers, no minor ticks)."""
    vals = sorted({float(v) for v in values})
    setter = ax.set_xticks if axis == "x" else ax.set_yticks
    setter(vals, [f"{v:g}" for v in vals])
    (ax.xaxis if axis == "x" else ax.yaxis).set_minor_locator(plt().NullLocator())
