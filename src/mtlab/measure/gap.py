"""The matched-training-loss generalisation gap between two trajectories of one task (Mueller,
Dredze & Andrews 2024): validation loss as a function of the task's own training loss, compared
between an MTL and an STL run at equal training-loss levels.

A trajectory is a table of checkpoints with ``step``, ``train_loss`` (on a fixed training
subset) and any other columns (``val_loss``, factors, …). Training loss is not monotone, so a
level ℓ is matched in one of two ways:

* ``first_passage`` — the first checkpoint with ``train_loss ≤ ℓ``; the residual ``mismatch`` is
  the difference of the two runs' training losses at their matched checkpoints;
* ``interpolated`` — the running minimum of the training loss; every other column (and the step)
  is interpolated linearly between the two record checkpoints that bracket ℓ; ``mismatch`` is
  the difference of the raw training losses (interpolated at the matched steps) — zero when both
  curves are monotone.

Levels lie only inside the overlap of the two runs' training-loss ranges (below both starting
losses, above the lower of the two minima): nothing is extrapolated, and two trajectories without
overlap give an empty table (not an error). ``gap = val_mtl − val_stl`` (negative: the MTL run
generalises better at the same training loss). ``slowdown = step_mtl / step_stl``: how many times
longer the MTL run took to reach the level. A level is ``early`` when the STL run reached it
within the first ``early_frac`` of its steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

Match = Literal["first_passage", "interpolated"]
MATCHES: tuple[Match, ...] = ("first_passage", "interpolated")


def _arrays(curve: pd.DataFrame, columns: Sequence[str]) -> dict[str, np.ndarray]:
    missing = [c for c in ("step", "train_loss", *columns) if c not in curve.columns]
    if missing:
        raise ValueError(f"trajectory has no column(s) {missing}; it has {list(curve.columns)}")
    c = curve.sort_values("step")
    out = {k: c[k].to_numpy(np.float64) for k in ("step", "train_loss", *columns)}
    if not np.all(np.isfinite(out["train_loss"])):
        keep = np.isfinite(out["train_loss"])
        out = {k: v[keep] for k, v in out.items()}
    return out


def level_grid(stl: pd.DataFrame, mtl: pd.DataFrame, n_levels: int = 20) -> np.ndarray:
    """``n_levels`` geometrically spaced levels inside the overlap, from just below the lower
    starting loss down to the higher of the two minima (empty if the ranges do not overlap)."""
    span = _overlap(_arrays(stl, ()), _arrays(mtl, ()))
    if span is None or span[0] <= 0:
        return np.zeros(0)
    lo, hi = span
    return np.geomspace(hi, lo, n_levels + 1)[1:]


def _overlap(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[float, float] | None:
    """``(lo, hi)``: below both starting losses, at or above both minima (None: no overlap)."""
    if not len(a["train_loss"]) or not len(b["train_loss"]):
        return None
    hi = min(a["train_loss"][0], b["train_loss"][0])
    lo = max(a["train_loss"].min(), b["train_loss"].min())
    return (float(lo), float(hi)) if lo < hi else None


def _at_levels(
    c: dict[str, np.ndarray], levels: np.ndarray, match: Match, columns: Sequence[str]
) -> dict[str, np.ndarray]:
    """Step, raw training loss and ``columns`` of one trajectory at each level."""
    train, step = c["train_loss"], c["step"]
    if match == "first_passage":
        below = train[None, :] <= levels[:, None]
        ok = below.any(1)
        idx = np.where(ok, below.argmax(1), 0)
        out = {k: np.where(ok, c[k][idx], np.nan) for k in ("step", "train_loss", *columns)}
        return out
    if match != "interpolated":
        raise ValueError(f"match must be one of {MATCHES} (got {match!r})")
    run_min = np.minimum.accumulate(train)
    rec = np.flatnonzero(np.r_[True, run_min[1:] < run_min[:-1]])
    xp = run_min[rec][::-1]  # increasing
    inside = (levels >= xp[0]) & (levels <= xp[-1])
    out = {}
    for k in ("step", *columns):
        out[k] = np.where(inside, np.interp(levels, xp, c[k][rec][::-1]), np.nan)
    out["train_loss"] = np.where(inside, np.interp(out["step"], step, train), np.nan)
    return out


def match_levels(
    stl: pd.DataFrame,
    mtl: pd.DataFrame,
    levels: Sequence[float] | np.ndarray | None = None,
    *,
    match: Match = "interpolated",
    columns: Sequence[str] = ("val_loss",),
    n_levels: int = 20,
) -> pd.DataFrame:
    """Both trajectories at each training-loss level inside their overlap: ``level``,
    ``step_stl``/``step_mtl``, ``train_stl``/``train_mtl`` (raw losses at the matched points),
    ``mismatch`` = ``train_mtl − train_stl``, ``slowdown``, and ``<col>_stl``/``<col>_mtl``."""
    a, b = _arrays(stl, columns), _arrays(mtl, columns)
    grid = level_grid(stl, mtl, n_levels) if levels is None else np.asarray(levels, np.float64)
    span = _overlap(a, b)
    grid = grid[(grid < span[1]) & (grid >= span[0])] if span else np.zeros(0)  # never outside
    sa, sb = _at_levels(a, grid, match, columns), _at_levels(b, grid, match, columns)
    df = pd.DataFrame({"level": grid, "match": match})
    df["step_stl"], df["step_mtl"] = sa["step"], sb["step"]
    df["train_stl"], df["train_mtl"] = sa["train_loss"], sb["train_loss"]
    df["mismatch"] = df.train_mtl - df.train_stl
    with np.errstate(divide="ignore", invalid="ignore"):
        df["slowdown"] = df.step_mtl / df.step_stl
    for col in columns:
        df[f"{col}_stl"], df[f"{col}_mtl"] = sa[col], sb[col]
    return df.dropna(subset=["step_stl", "step_mtl"]).reset_index(drop=True)


def matched_gap(
    stl: pd.DataFrame,
    mtl: pd.DataFrame,
    levels: Sequence[float] | np.ndarray | None = None,
    *,
    match: Match = "interpolated",
    columns: Sequence[str] = ("val_loss",),
    n_levels: int = 20,
    early_frac: float = 0.3,
) -> pd.DataFrame:
    """:func:`match_levels` plus ``gap`` = ``val_loss_mtl − val_loss_stl`` and ``phase``
    (``early`` when the STL run reached the level within ``early_frac`` of its steps)."""
    if not 0 < early_frac < 1:
        raise ValueError(f"early_frac must be in (0, 1) (got {early_frac})")
    cols = list(dict.fromkeys(["val_loss", *columns]))
    df = match_levels(stl, mtl, levels, match=match, columns=cols, n_levels=n_levels)
    df["gap"] = df.val_loss_mtl - df.val_loss_stl
    last = float(stl["step"].max()) if len(stl) else 0.0
    df["phase"] = np.where(df.step_stl <= early_frac * last, "early", "late")
    return df


def gap_summary(gaps: pd.DataFrame) -> dict[str, float]:
    """One trajectory pair's gap table in a few numbers: mean gap of the early and late levels,
    their counts, the geometric-mean slowdown over the early levels, and the largest
    ``|mismatch|``. NaN where a phase has no level."""

    def mean(x: pd.Series) -> float:
        return float(x.mean()) if len(x) else float("nan")

    early, late = gaps[gaps.phase == "early"], gaps[gaps.phase == "late"]
    slow = early.slowdown[np.isfinite(early.slowdown) & (early.slowdown > 0)]
    return {
        "early_gap": mean(early.gap),
        "late_gap": mean(late.gap),
        "n_early": float(len(early)),
        "n_late": float(len(late)),
        "early_slowdown": float(np.exp(np.log(slow).mean())) if len(slow) else float("nan"),
        "max_mismatch": float(gaps.mismatch.abs().max()) if len(gaps) else float("nan"),
    }


__all__ = ["MATCHES", "gap_summary", "level_grid", "match_levels", "matched_gap"]
