"""Study ``benchmark``: "how should I combine my tasks' gradients, and does it beat training them
separately?" — single-task baselines and all-tasks MTL with each multi-task method, over seeds,
on a real multi-task dataset (``mtlab benchmark`` is the command line for it).

Outputs besides the usual run folder: ``delta_m.csv`` (one row per method: ``delta_m``,
``delta_m_se``, ``sec_per_step`` and each task's mean test accuracy), figures of the per-task
test accuracy, of Δm with error bars and of the conflict diagnostics over training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

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


class BenchmarkStudy(Study):
    name = "benchmark"
    description = (
        "real multi-task data (digits): STL vs MTL with each gradient-combination method, Δm "
        "(mtlab benchmark)"
    )
    paper = "multi-task optimisers as collected by torchjd; Δm as in Maninis et al. 2019"
    presets: ClassVar[dict[str, Preset]] = PRESETS

    inputs = frozenset({"dataset", "methods", "widths", "lr", "batch_size"})

    def configs(
        self, preset: str, seeds: int | None = None, inputs: StudyInputs | None = None
    ) -> list[RunConfig]:
        given = self.check_inputs(inputs)
        dataset = given.dataset or "multi-digits"
        p = self.preset(preset)
        n_seeds = self.n_seeds(preset, seeds)
        k = p.params
        methods = list(given.methods) if given.methods is not None else list(k["methods"])
        if not methods:
            raise ValueError("name at least one method")
        try:
            tasks = dataset_tasks(dataset)
        except ValueError as err:
            from mtlab.runs.config import ConfigError

            raise ConfigError(f"dataset: {err}") from None
        fields = ("epochs", "widths", "diagnostics_every")
        seeds_ = list(range(n_seeds))
        grids = [{"seed": seeds_, "method": ["stl"], "task": list(tasks)}]
        others = [m for m in methods if m != "stl"]
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
        summary = self.summary(df)
        summary.to_csv(store.root / "delta_m.csv", index=False)
        sections = [
            Section(
                "Δm over single-task training",
                "Δm = 100 · mean over tasks of (M_method − M_stl) / M_stl on seed-averaged test "
                "accuracy (positive: better than training each task alone); ± one standard error "
                "over seeds. Model selection (best epoch) used validation accuracy only.",
                [self._fig_delta(summary, fig_dir), self._fig_tasks(df, fig_dir)],
                [("delta_m.csv", summary.round(4))],
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
        best = summary[summary.method != "stl"].sort_values("delta_m", ascending=False)
        text = (
            f"{df.run_id.nunique()} runs on {df.dataset.iloc[0]}; best Δm: "
            f"{best.method.iloc[0]} {best.delta_m.iloc[0]:+.2f} % "
            f"(± {best.delta_m_se.iloc[0]:.2f})"
            if not best.empty
            else f"{df.run_id.nunique()} runs."
        )
        return Analysis([], sections, text)

    @staticmethod
    def summary(df: pd.DataFrame) -> pd.DataFrame:
        """One row per method: Δm, its s.e., seconds per training step, mean test accuracy per
        task (columns named by task)."""
        dm = delta_m(df)
        runs = df.drop_duplicates("run_id")
        sps = runs.groupby("method").sec_per_step.mean().rename("sec_per_step")
        acc = df[(df.split == "test") & (df.metric == "accuracy")].pivot_table(
            index="method", columns="task", values="value", aggfunc="mean"
        )
        out = dm.merge(sps, on="method").merge(acc, left_on="method", right_index=True)
        order = ["stl"] + [m for m in out.method if m != "stl"]
        return out.set_index("method").loc[order].reset_index()

    @staticmethod
    def _fig_delta(summary: pd.DataFrame, fig_dir: Path) -> str:
        p = plt()
        s = summary[summary.method != "stl"]
        fig, ax = p.subplots(figsize=(max(4, 0.7 * len(s) + 2), 3.4), layout="constrained")
        colors = ["tab:green" if v > 0 else "tab:red" for v in s.delta_m]
        ax.bar(s.method, s.delta_m, yerr=s.delta_m_se, capsize=3, color=colors)
        ax.axhline(0, color="0.3", linewidth=0.8)
        ax.set_ylabel("Δm vs STL (%)")
        ax.set_title("Multi-task methods vs single-task training")
        ax.tick_params(axis="x", rotation=45)
        return save(fig, fig_dir, "delta_m.png")

    @staticmethod
    def _fig_tasks(df: pd.DataFrame, fig_dir: Path) -> str:
        p = plt()
        t = df[(df.split == "test") & (df.metric == "accuracy")]
        per_seed = t.groupby(["method", "task", "seed"]).value.mean().reset_index()
        cells = (
            per_seed.groupby(["method", "task"]).value.agg(["mean", "std", "count"]).reset_index()
        )
        cells["se"] = (cells["std"] / np.sqrt(cells["count"])).fillna(0.0)
        tasks = list(dict.fromkeys(t.task))
        methods = ["stl"] + [m for m in dict.fromkeys(t.method) if m != "stl"]
        fig, ax = p.subplots(
            figsize=(max(5, 0.9 * len(tasks) * len(methods) / 3 + 2), 3.6), layout="constrained"
        )
        width = 0.8 / len(methods)
        for i, m in enumerate(methods):
            c = cells[cells.method == m].set_index("task").reindex(tasks)
            ax.bar(
                np.arange(len(tasks)) + i * width,
                c["mean"],
                width,
                yerr=c["se"],
                capsize=2,
                label=m,
            )
        ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2, tasks, rotation=30)
        lo = float(cells["mean"].min())
        ax.set_ylim(max(0.0, lo - 0.1), 1.0)
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=7, ncol=min(len(methods), 4))
        return save(fig, fig_dir, "task_accuracy.png")

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


def summary_table(root: Path) -> Any:
    """The ``delta_m.csv`` of a benchmark folder as a DataFrame."""
    import pandas as pd

    return pd.read_csv(Path(root) / "delta_m.csv")


register(BenchmarkStudy())
