"""Study ``benchmark``: "how should I combine my tasks' gradients, and does it beat training them
separately?" — single-task baselines and all-tasks MTL with each multi-task method, over seeds,
on a built-in dataset (family ``mtbench``) or on your own data (``StudyInputs.owndata``: family
``owndata``); ``mtlab benchmark`` is the command line for it.

Outputs besides the usual run folder: ``delta_m.csv`` (one row per method: ``delta_m``,
``delta_m_se``, ``n_seeds``, ``n_failed``; built-in datasets also ``sec_per_step`` and each task's
mean test accuracy), ``per_task.csv`` (per task, metric and method: the test metric's mean and
standard error over seeds), figures of Δm with error bars, of the per-task test metric and (built-in
datasets) of the conflict diagnostics over training. Δm uses accuracy for classification and RMSE
(lower is better) for regression; runs that failed are left out of every mean and counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from mtlab.grad.methods import METHODS
from mtlab.measure.benchmark import delta_m
from mtlab.report.analysis import Analysis, Section
from mtlab.report.plotting import panel_grid, plt, save
from mtlab.runs.config import RunConfig
from mtlab.runs.store import RunStore
from mtlab.runs.sweep import expand
from mtlab.studies.base import Preset, Study, StudyInputs, register
from mtlab.tasks.datasets import dataset_tasks

#: the metrics Δm is taken over (classification, regression)
DELTA_M_METRICS = ("accuracy", "rmse")
#: the methods of ``mtlab benchmark --data`` when none are named
DATA_METHODS = ("mean", "pcgrad", "upgrad", "uw")

PRESETS = {
    "tiny": Preset(
        "tiny",
        "smoke test: mean and pcgrad, 2 epochs, MLP (32), 1 seed",
        1,
        {"methods": ("mean", "pcgrad"), "epochs": 2, "widths": (32,), "diagnostics_every": 5},
    ),
    "quick": Preset(
        "quick",
        "mean, pcgrad, upgrad + STL; MLP 128-128, 30 epochs, batch 64, Adam 1e-3, 2 seeds",
        2,
        {
            "methods": ("mean", "pcgrad", "upgrad"),
            "epochs": 30,
            "widths": (128, 128),
            "diagnostics_every": 20,
        },
    ),
    "full": Preset(
        "full",
        "every method + STL; MLP 256-256, 60 epochs, batch 64, Adam 1e-3, 5 seeds",
        5,
        {
            # every method except IT-MTL (a lookahead per candidate per step)
            "methods": tuple(m for m in METHODS if m != "itmtl"),
            "epochs": 60,
            "widths": (256, 256),
            "diagnostics_every": 20,
        },
    ),
}
DIAGNOSTICS = ("mean_cosine", "conflict_frequency", "magnitude_imbalance")


def long_results(df: pd.DataFrame) -> pd.DataFrame:
    """One row per method × seed × task × split × metric (``mtlab.measure.benchmark.REQUIRED``
    columns and ``failed``), from either family's results table. Own-data runs give the
    task's accuracy or R² and, for regression, its RMSE; their ``method`` is the multi-task
    method, or ``stl``."""
    failed = df.status == "failed" if "status" in df else pd.Series(False, index=df.index)
    if "family" not in df or (df.family != "owndata").all():
        return df.assign(failed=failed)
    rows = []
    for rec in df.assign(failed=failed).to_dict("records"):
        if not isinstance(rec.get("task"), str):
            continue  # a failed run without evaluations
        for split in ("val", "test"):
            base = {"method": rec["method"], "seed": rec["seed"], "task": rec["task"],
                    "split": split, "failed": rec["failed"]}  # fmt: skip
            rows.append({**base, "metric": rec["metric"], "value": rec[f"{split}_metric"],
                         "higher_is_better": True})  # fmt: skip
            if rec["metric"] == "r2":
                rows.append({**base, "metric": "rmse", "value": rec[f"{split}_rmse"],
                             "higher_is_better": False})  # fmt: skip
    return pd.DataFrame(rows)


def summarise(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(Δm per method with its standard error, ``n_seeds`` and ``n_failed``; per task × metric
    × method: the test metric's mean and standard error over seeds) from the long table. Failed
    runs are left out of both and counted; a method with no finished seed has no Δm."""
    ok = results[~results.failed]
    failed = results[results.failed].groupby("method").seed.nunique()
    methods = sorted(set(results.method))
    dm = delta_m(ok, metrics=DELTA_M_METRICS) if (ok.method == "stl").any() else None
    dm = pd.DataFrame({"method": methods}).merge(
        dm if dm is not None else pd.DataFrame(columns=["method"]), on="method", how="left"
    )
    dm["n_failed"] = dm.method.map(failed).fillna(0).astype(int)
    dm = dm.sort_values("delta_m", ascending=False, na_position="last")
    test = ok[(ok.split == "test") & ok.metric.isin(["accuracy", "r2", "rmse"])]
    per = test.groupby(["task", "metric", "method"]).value.agg(["mean", "std", "count"])
    per["se"] = per["std"] / np.sqrt(per["count"])
    return dm.reset_index(drop=True), per.drop(columns="std").reset_index()


def delta_m_figure(dm: pd.DataFrame, fig_dir: Path) -> str:
    s = dm[(dm.method != "stl") & dm.delta_m.notna()]
    fig, ax = plt().subplots(figsize=(max(4, 0.7 * len(s) + 2), 3.4), layout="constrained")
    colors = ["tab:green" if v > 0 else "tab:red" for v in s.delta_m]
    ax.bar(s.method, s.delta_m, yerr=s.delta_m_se, capsize=3, color=colors)
    ax.axhline(0, color="0.3", linewidth=0.8)
    ax.set_ylabel("Δm vs STL (%; mean ± s.e. over seeds)")
    ax.set_title("Multi-task methods vs single-task training")
    ax.tick_params(axis="x", rotation=45)
    return save(fig, fig_dir, "delta_m.png")


def per_task_figure(dm: pd.DataFrame, per: pd.DataFrame, fig_dir: Path) -> str:
    """One panel per task: its test accuracy or R² per method (mean ± s.e. over seeds)."""
    main = per[per.metric.isin(["accuracy", "r2"])]
    tasks = list(dict.fromkeys(main.task))
    fig, axes = panel_grid(len(tasks), size=(4.2, 3.0))
    order = ["stl", *[m for m in dm.method if m != "stl"]]
    for ax, task in zip(axes, tasks, strict=True):
        d = main[main.task == task].set_index("method")
        d = d.loc[[m for m in order if m in d.index]]  # (a method that only failed: none)
        ax.bar(range(len(d)), d["mean"], yerr=d["se"], color="tab:green", alpha=0.75)
        ax.set_xticks(range(len(d)), d.index, rotation=45, ha="right", fontsize=8)
        lo = float((d["mean"] - d["se"].fillna(0)).min())
        hi = float((d["mean"] + d["se"].fillna(0)).max())
        pad = 0.1 * (hi - lo) + 1e-3
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_title(f"{task}: test {d.metric.iloc[0]}")
    return save(fig, fig_dir, "per_task.png")


class BenchmarkStudy(Study):
    name = "benchmark"
    description = (
        "real multi-task data (digits, or your own): STL vs MTL with each gradient-combination "
        "method, Δm (mtlab benchmark)"
    )
    paper = "multi-task optimisers as collected by torchjd; Δm as in Maninis et al. 2019"
    presets: ClassVar[dict[str, Preset]] = PRESETS

    inputs = frozenset({"dataset", "methods", "widths", "lr", "batch_size", "owndata"})

    def configs(
        self, preset: str, seeds: int | None = None, inputs: StudyInputs | None = None
    ) -> list[RunConfig]:
        given = self.check_inputs(inputs)
        p = self.preset(preset)
        n_seeds = self.n_seeds(preset, seeds)
        k = p.params
        methods = list(given.methods) if given.methods is not None else list(k["methods"])
        if not methods:
            raise ValueError("name at least one method")
        seeds_ = list(range(n_seeds))
        others = [m for m in methods if m != "stl"]
        if given.owndata is not None:  # your own data: the settings are the command's
            base = dict(given.owndata)
            targets = list(base["targets"])
            grids = [{"seed": seeds_, "method": ["stl"], "tasks": [[t] for t in targets]}]
            if others:
                grids.append({"seed": seeds_, "method": others, "tasks": [targets]})
            return expand({"study": self.name, "family": "owndata", "base": base,
                           "grids": grids})  # fmt: skip
        dataset = given.dataset or "multi-digits"
        try:
            tasks = dataset_tasks(dataset)
        except ValueError as err:
            from mtlab.runs.config import ConfigError

            raise ConfigError(f"dataset: {err}") from None
        fields = ("epochs", "widths", "diagnostics_every")
        grids = [{"seed": seeds_, "method": ["stl"], "task": list(tasks)}]
        if others:
            grids.append({"seed": seeds_, "method": others})
        chosen = {f: getattr(given, f) for f in ("widths", "lr", "batch_size")}
        overrides = {f: v for f, v in chosen.items() if v is not None}
        spec = {
            "study": self.name,
            "family": "mtbench",
            "base": {"dataset": dataset, **{f: k[f] for f in fields}, **overrides},
            "grids": grids,
        }
        return expand(spec)

    # ------------------------------------------------------------------ analysis
    def analyze(self, store: RunStore, fig_dir: Path, preset: str) -> Analysis:
        df = store.results()
        if df.empty:
            return Analysis([], [], "No runs finished yet.")
        own = "family" in df and (df.family == "owndata").any()
        dm, per = summarise(long_results(df))
        if not own:  # built-in datasets: seconds per step and each task's accuracy too
            dm = self.summary(df, dm)
        dm.to_csv(store.root / "delta_m.csv", index=False)
        per.to_csv(store.root / "per_task.csv", index=False)
        metric = ("accuracy for classification and RMSE (lower is better) for regression"
                  if own else "accuracy")  # fmt: skip
        sections = [
            Section(
                "Δm over single-task training",
                "Δm = 100 · mean over tasks of the relative change of the test metric against "
                f"STL ({metric}), on seed-averaged metrics (positive: better than training each "
                "task alone); ± one standard error over seeds. Model selection used validation "
                "data only. A run that failed is left out of every mean and counted in "
                "n_failed.",
                [delta_m_figure(dm, fig_dir), per_task_figure(dm, per, fig_dir)],
                [("delta_m.csv", dm.round(4)), ("per task (test)", per.round(4))],
            )
        ]
        diag = self._fig_diagnostics(store, df, fig_dir)
        if diag is not None:
            sections.append(
                Section(
                    "Gradient conflict over training",
                    "Diagnostics of the task Gramian G = J Jᵀ of the shared parameters on the "
                    "configured schedule, mean over seeds: mean pairwise cosine, the fraction of "
                    "conflicting task pairs (negative inner product) and the gradient-norm ratio "
                    "max/min. Faint lines: every logged step; bold: a rolling mean over 9 points.",
                    [diag],
                )
            )
        best = dm[(dm.method != "stl") & dm.delta_m.notna()].sort_values(
            "delta_m", ascending=False)  # fmt: skip
        where = df.data.iloc[0] if own else df.dataset.iloc[0]
        text = (
            f"{df.run_id.nunique()} runs on {where}; best Δm: "
            f"{best.method.iloc[0]} {best.delta_m.iloc[0]:+.2f} % "
            f"(± {best.delta_m_se.iloc[0]:.2f}) over STL, {int(best.n_seeds.iloc[0])} seeds"
            if not best.empty
            else f"{df.run_id.nunique()} runs; no method has a Δm."
        )
        n_failed = int(dm.n_failed.sum())
        if n_failed:
            text += f"; {n_failed} training(s) failed and are left out (n_failed)"
        return Analysis([], sections, text)

    @staticmethod
    def summary(df: pd.DataFrame, dm: pd.DataFrame) -> pd.DataFrame:
        """``dm`` with the seconds per training step and the mean test accuracy per task
        (columns named by task), STL first."""
        runs = df.drop_duplicates("run_id")
        sps = runs.groupby("method").sec_per_step.mean().rename("sec_per_step")
        acc = df[(df.split == "test") & (df.metric == "accuracy")].pivot_table(
            index="method", columns="task", values="value", aggfunc="mean"
        )
        out = dm.merge(sps, on="method").merge(acc, left_on="method", right_index=True)
        order = ["stl"] + [m for m in out.method if m != "stl"]
        return out.set_index("method").loc[order].reset_index()

    @staticmethod
    def _fig_diagnostics(store: RunStore, df: pd.DataFrame, fig_dir: Path) -> str | None:
        curves = store.curves()
        if curves.empty or not curves.metric.isin(DIAGNOSTICS).any():
            return None
        runs = df.drop_duplicates("run_id").set_index("run_id")
        curves = curves[curves.metric.isin(DIAGNOSTICS)].copy()
        curves["method"] = curves.run_id.map(runs.method)
        fig, axes = panel_grid(len(DIAGNOSTICS), ncols=3, size=(4.0, 3.1))
        for ax, metric in zip(axes, DIAGNOSTICS, strict=True):
            sub = curves[curves.metric == metric]
            for i, (m, g) in enumerate(sub.groupby("method")):
                mean = g.groupby("step").value.mean()
                color = f"C{i}"
                ax.plot(mean.index, mean.values, color=color, linewidth=0.6, alpha=0.3)
                smooth = mean.rolling(9, center=True, min_periods=1).mean()
                ax.plot(smooth.index, smooth.values, color=color, label=str(m), linewidth=1.5)
            ax.set_xlabel("training step")
            ax.set_title(metric)
        axes[0].legend(fontsize=7)
        return save(fig, fig_dir, "conflict_diagnostics.png")


register(BenchmarkStudy())
