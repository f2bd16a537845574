"""From stored trajectory runs to the tables of the trajectories lab.

* :func:`trajectories_table` — one row per (run, task, checkpoint): ``trajectories.parquet``.
* :func:`pair_runs` — every finished MTL run's task paired with the finished STL run of that
  task (same setting and seed).
* :func:`gap_tables` — per pair, the matched-loss gap at each level (both matchings) →
  ``gap.csv``, and one summary row per pair (early / late gap, final transfer, slowdown, early
  conflict, factor differences) → the claims' ``pairs`` table.

Final transfer is measured on the test split, ``test_metric_MTL − test_metric_STL``, positive when
MTL is better (the metric is accuracy or R², higher is better); selection never sees test data.
The STL run is taken at its best-validation-loss checkpoint. The MTL run is taken at **one**
checkpoint for all its tasks — the one with the lowest mean validation loss over its tasks
(``final_transfer``): one network, as a user would deploy it. The per-task selection, which lets
each task of one MTL run pick its own checkpoint and so flatters MTL, is reported beside it
(``final_transfer_per_task``).

At the matched loss levels the pair table also carries the early gap in the task's metric
(``early_gap_metric``: validation metric, MTL − STL — positive when MTL is *better*, the opposite
sign to the loss gap) and the early conflict at those levels (``early_cos_matched``: the mean
``cos_to_rest`` of the MTL run where it reached the early levels), beside ``early_cos`` (the
first ``early_frac`` of the MTL run's steps).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mtlab.measure.gap import MATCHES, Match, gap_summary, matched_gap

FACTOR_COLUMNS = ("sharpness", "fisher_trace", "coherence", "noise_scale", "grad_norm")
TRAJ_COLUMNS = (
    "run_id",
    "status",
    "regime",
    "method",
    "setting",
    "group",
    "task",
    "seed",
    "step",
    "epoch_frac",
    "train_loss",
    "train_metric",
    "val_loss",
    "val_metric",
    "test_loss",
    "test_metric",
    *FACTOR_COLUMNS,
    "weight_norm",
    "dist_init",
    "cos_to_rest",
    "mean_cosine",
    "directional",
)
PAIR_COLUMNS = (
    "group",
    "setting",
    "method",
    "baseline",
    "task",
    "seed",
    "early_gap",
    "late_gap",
    "n_early",
    "n_late",
    "early_slowdown",
    "max_mismatch",
    "final_transfer",
    "final_transfer_per_task",
    "early_gap_metric",
    "early_cos",
    "early_cos_matched",
    *(f"d_{f}" for f in FACTOR_COLUMNS),
)


def setting_group(row: pd.Series) -> str:
    """The kind of setting a run belongs to (what claim 2 compares across)."""
    if row.get("setting") == "teacher":
        widths = list(row.get("widths") or [])  # a list: rows come from the store's JSON
        return "teacher, bottleneck" if widths and min(widths) == 1 else "teacher, wide"
    if row.get("setting") == "dataset":
        return str(row.get("dataset"))
    return "file"


def measurement_variant(df: pd.DataFrame) -> pd.Series:
    """How a run measured its factors — ``probe <size>, <shared|all> parameters`` — from the
    config columns (``""`` where they are absent). Runs that differ only in this train the same
    trajectory (measuring does not change training), so they are compared within a variant."""
    if "probe_size" not in df or "factor_params" not in df:
        return pd.Series("", index=df.index)
    return ("probe " + df.probe_size.astype("Int64").astype(str) + ", "
            + df.factor_params.astype(str) + " parameters")  # fmt: skip


def trajectories_table(results: pd.DataFrame) -> pd.DataFrame:
    """The long table (see module doc) from the store's results (one row per evaluation)."""
    if results.empty or "step" not in results:
        return pd.DataFrame(columns=[*TRAJ_COLUMNS, "variant"])
    df = results.copy()
    df["group"] = df.apply(setting_group, axis=1)
    df["setting"] = df["setting_id"]
    df["variant"] = measurement_variant(df)
    for c in TRAJ_COLUMNS:
        if c not in df:
            df[c] = np.nan
    extra = [c for c in ("angle", "widths", "n1", "n2", "dataset", "variant") if c in df]
    return (
        df[[*TRAJ_COLUMNS, *extra]].sort_values(["run_id", "task", "step"]).reset_index(drop=True)
    )


def selected(curve: pd.DataFrame) -> pd.Series:
    """The checkpoint with the lowest validation loss (the first, on ties)."""
    return curve.iloc[int(np.argmin(curve.val_loss.to_numpy(dtype=float)))]


def run_checkpoints(traj: pd.DataFrame) -> dict[tuple[Any, ...], float]:
    """Per MTL run (setting, method, seed): the step with the lowest mean validation loss over
    its tasks (the first, on ties) — the one checkpoint the comparison uses."""
    mtl = traj[(traj.regime == "mtl") & (traj.status != "failed")]
    if mtl.empty:
        return {}
    mean = mtl.groupby(["setting", "method", "seed", "step"]).val_loss.mean().reset_index()
    out = {}
    for key, g in mean.groupby(["setting", "method", "seed"]):
        out[key] = float(g.step.iloc[int(np.argmin(g.val_loss.to_numpy(dtype=float)))])
    return out


def pair_runs(traj: pd.DataFrame) -> list[tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]]:
    """``(stl_curve, mtl_curve, keys)`` for every finished MTL run's task with a finished STL run."""
    ok = traj[traj.status != "failed"]
    stl = ok[ok.regime == "stl"]
    stl_by = {k: g for k, g in stl.groupby(["setting", "seed", "task"])}
    out = []
    for (setting, method, seed, task), m in ok[ok.regime == "mtl"].groupby(
        ["setting", "method", "seed", "task"]
    ):
        s = stl_by.get((setting, seed, task))
        if s is None:
            continue
        keys = {"group": m.group.iloc[0], "setting": setting, "method": method, "task": task,
                "seed": seed}  # fmt: skip
        out.append((s.sort_values("step"), m.sort_values("step"), keys))
    return out


def gap_tables(
    traj: pd.DataFrame,
    baseline: str,
    *,
    match: Match = "interpolated",
    n_levels: int = 20,
    early_frac: float = 0.3,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(gaps, pairs)``: the gap at every level for both matchings (``gap.csv``) and one summary
    row per pair from the ``match`` matching (the claims' table)."""
    factors = [c for c in FACTOR_COLUMNS if c in traj]
    extra = [c for c in ("val_metric", "cos_to_rest") if c in traj]
    gap_rows, pair_rows = [], []
    checkpoints = run_checkpoints(traj)
    for s, m, keys in pair_runs(traj):
        stl_test = float(selected(s).test_metric)
        at = checkpoints.get((keys["setting"], keys["method"], keys["seed"]))
        one = m[m.step == at]
        transfer = (float(one.test_metric.iloc[0]) if len(one) else np.nan) - stl_test
        per_task = float(selected(m).test_metric) - stl_test
        last = float(m.step.max())
        early_m = m[(m.step > 0) & (m.step <= early_frac * last)]
        for how in MATCHES:
            g = matched_gap(
                s, m, match=how, columns=[*factors, *extra], n_levels=n_levels,
                early_frac=early_frac,
            )
            for k, v in keys.items():
                g[k] = v
            g["final_transfer"] = transfer
            g["level_rel"] = g.level / float(s.train_loss.iloc[0])
            gap_rows.append(g)
            if how != match:
                continue
            summ = gap_summary(g)
            early = g[g.phase == "early"]
            row = {**keys, "baseline": keys["method"] == baseline, **summ,
                   "final_transfer": transfer, "final_transfer_per_task": per_task,
                   "early_gap_metric": _mean(early, "val_metric_mtl", "val_metric_stl"),
                   "early_cos": float(early_m.cos_to_rest.mean()) if len(early_m) else np.nan,
                   "early_cos_matched": _mean(early, "cos_to_rest_mtl")}  # fmt: skip
            for f in factors:
                d = early[f"{f}_mtl"] - early[f"{f}_stl"]
                row[f"d_{f}"] = float(d.mean()) if len(d.dropna()) else np.nan
            pair_rows.append(row)
    keep = ["group", "setting", "method", "task", "seed", "level", "level_rel", "gap", "match",
            "mismatch", "phase", "slowdown", "step_stl", "step_mtl", "val_loss_stl",
            "val_loss_mtl", "final_transfer"]  # fmt: skip
    gaps = pd.concat(gap_rows, ignore_index=True)[keep] if gap_rows else pd.DataFrame(columns=keep)
    pairs = pd.DataFrame(pair_rows)
    for c in PAIR_COLUMNS:
        if c not in pairs:
            pairs[c] = np.nan
    return gaps, pairs[list(PAIR_COLUMNS)]


def _mean(table: pd.DataFrame, col: str, minus: str | None = None) -> float:
    """Mean of a column (minus another) over the rows where it is defined; NaN if none."""
    if col not in table or (minus is not None and minus not in table):
        return float("nan")
    v = table[col] - (table[minus] if minus else 0.0)
    v = v.dropna()
    return float(v.mean()) if len(v) else float("nan")


CORRELATIONS = (
    *((f"d_{f}", "early_gap") for f in FACTOR_COLUMNS),
    *((f"d_{f}", "final_transfer") for f in FACTOR_COLUMNS),
    ("early_cos", "log_early_slowdown"),
    ("early_cos", "final_transfer"),
    ("early_cos_matched", "log_early_slowdown"),
    ("early_cos_matched", "final_transfer"),
    ("early_gap", "final_transfer"),
    ("early_gap_metric", "final_transfer"),
    ("early_gap", "final_transfer_per_task"),
)


def correlation_table(pairs: pd.DataFrame, baseline_only: bool = True) -> pd.DataFrame:
    """Spearman / Pearson with 95 % bootstrap CIs and sign agreement for each pair of
    :data:`CORRELATIONS`, per kind of setting and over all of them (``correlations.csv``)."""
    from mtlab.measure.stats import correlate

    p = pairs[pairs.baseline.astype(bool)] if baseline_only and len(pairs) else pairs
    p = p.assign(log_early_slowdown=np.log(p.early_slowdown.astype(float)))
    rows = []
    for group, d in [("all", p), *((str(g), g_d) for g, g_d in p.groupby("group"))]:
        for x, y in CORRELATIONS:
            c = correlate(d[x].to_numpy(float), d[y].to_numpy(float))
            rows.append({"group": group, "x": x, "y": y, **c.as_dict()})
    return pd.DataFrame(rows)


__all__ = [
    "CORRELATIONS",
    "FACTOR_COLUMNS",
    "PAIR_COLUMNS",
    "TRAJ_COLUMNS",
    "correlation_table",
    "gap_tables",
    "measurement_variant",
    "pair_runs",
    "run_checkpoints",
    "selected",
    "setting_group",
    "trajectories_table",
]
