"""Δm: the average relative change of a multi-task method over single-task training
(Maninis et al. 2019; Vandenhende et al. 2021):

    Δm = 100 · (1/T) Σ_t s_t (M_method,t − M_stl,t) / M_stl,t,   s_t = +1 if higher is better else −1,

on seed-averaged test metrics, so a positive Δm is better than STL. ``delta_m_se`` is the standard
error over seeds of the same quantity computed per seed (each seed's method metrics against the
seed-averaged STL metrics).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

REQUIRED = ("method", "seed", "task", "split", "metric", "value", "higher_is_better")


def delta_m(
    table,
    metrics: Sequence[str] = ("accuracy",),
    split: str = "test",
    baseline: str = "stl",
):
    """Per method: ``delta_m``, ``delta_m_se``, ``n_seeds`` (pandas DataFrame, one row per method,
    the baseline included with 0). ``table`` is the long results table (columns ``REQUIRED``)."""
    import pandas as pd

    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"results table lacks column(s) {missing}")
    t = table[(table.split == split) & (table.metric.isin(list(metrics)))]
    base = t[t.method == baseline]
    if base.empty:
        raise ValueError(f"no {baseline!r} rows on split {split!r}: Δm needs the baseline")
    ref = base.groupby(["task", "metric"]).value.mean()
    sign = t.groupby(["task", "metric"]).higher_is_better.first().map(lambda h: 1.0 if h else -1.0)
    keys = list(ref.index)

    def rel(values) -> float:
        return float(np.mean([sign[k] * (values[k] - ref[k]) / ref[k] for k in keys]) * 100)

    rows = []
    for method, g in t.groupby("method"):
        per_seed = g.groupby(["seed", "task", "metric"]).value.mean()
        avg = g.groupby(["task", "metric"]).value.mean()
        lacking = [k for k in keys if k not in avg.index]
        if lacking:
            raise ValueError(f"method {method!r} has no result for {lacking}")
        seeds = sorted(set(g.seed))
        per = [rel(per_seed.loc[s]) for s in seeds if all(k in per_seed.loc[s].index for k in keys)]
        se = float(np.std(per, ddof=1) / np.sqrt(len(per))) if len(per) > 1 else 0.0
        rows.append(
            {"method": method, "delta_m": rel(avg), "delta_m_se": se, "n_seeds": len(seeds)}
        )
    return pd.DataFrame(rows)


__all__ = ["REQUIRED", "delta_m"]
