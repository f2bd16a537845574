"""``mtlab benchmark --data``: multi-task methods on a user's own data (a table, images with a
label table, or IDX): STL per task and MTL on all tasks with each method, over seeds, each task
scored at its best validation checkpoint; Δm over STL (accuracy for classification, RMSE for
regression; :func:`mtlab.measure.benchmark.delta_m`), per-task metrics with standard errors,
tables, figures and a report. Trainings are those of ``mtlab advise`` (:mod:`mtlab.advise.engine`),
cached in the folder, so an interrupted benchmark resumes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtlab.advise.engine import Cache, Outcome, Settings, Spec, run
from mtlab.advise.pipeline import describe
from mtlab.tasks.tables import Prepared

DELTA_M_METRICS = ("accuracy", "rmse")  # per kind: classification, regression


def results_rows(method: str, seed: int, outcome: Outcome, prep: Prepared) -> list[dict]:
    """The long results rows of one training (``mtlab.measure.benchmark.REQUIRED`` columns)."""
    kinds = {t.name: t.kind for t in prep.tasks}
    rows = []
    for task, m in outcome.metrics.items():
        for split in ("val", "test"):
            metric = "r2" if kinds[task] == "regression" else "accuracy"
            base = {"method": method, "seed": seed, "task": task, "split": split,
                    "failed": outcome.diverged}  # fmt: skip
            rows.append({**base, "metric": metric, "value": m[f"{split}_metric"],
                         "higher_is_better": True})  # fmt: skip
            if kinds[task] == "regression":
                rows.append({**base, "metric": "rmse", "value": m[f"{split}_rmse"],
                             "higher_is_better": False})  # fmt: skip
    return rows


def benchmark_table(
    prep: Prepared,
    settings: Settings,
    methods: Sequence[str],
    seeds: int,
    out: Path,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Train STL per task and MTL with each method (every seed) into ``out``; the long results
    table (one row per method × seed × task × split × metric)."""
    cache = Cache(out)
    tasks = [t.name for t in prep.tasks]
    plan: list[tuple[str, Spec]] = []
    for s in range(seeds):
        plan += [("stl", Spec((t,), seed=s)) for t in tasks]
        plan += [(m, Spec(tuple(tasks), m, s)) for m in methods]
    rows: list[dict] = []
    for k, (label, spec) in enumerate(plan, 1):
        cached = cache.get(spec) is not None
        outcome = run(spec, prep, settings, cache)
        if progress is not None and not cached:
            progress(f"[{k}/{len(plan)}] {describe(spec)}, seed {spec.seed} "
                     f"({outcome.seconds:.1f} s)")  # fmt: skip
        rows += results_rows(label, spec.seed, outcome, prep)
    return pd.DataFrame(rows)


def summarise(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(Δm per method with its standard error; per task × method: the test metric's mean and
    standard error over seeds). Trainings that diverged are left out of both and counted
    (``n_failed``); a method with no finished seed has no Δm."""
    from mtlab.measure.benchmark import delta_m

    ok = results[~results.failed]
    failed = results[results.failed].groupby("method").seed.nunique()
    methods = sorted(set(results.method))
    dm = delta_m(ok, metrics=DELTA_M_METRICS) if (ok.method == "stl").any() else None
    dm = pd.DataFrame({"method": methods}).merge(
        dm if dm is not None else pd.DataFrame(columns=["method"]), on="method", how="left"
    )
    dm["n_failed"] = dm.method.map(failed).fillna(0).astype(int)
    dm = dm.sort_values("delta_m", ascending=False, na_position="last")
    test = ok[ok.split == "test"]
    per = test.groupby(["task", "metric", "method"]).value.agg(["mean", "std", "count"])
    per["se"] = per["std"] / np.sqrt(per["count"])
    return dm.reset_index(drop=True), per.drop(columns="std").reset_index()


def _figures(dm: pd.DataFrame, per: pd.DataFrame, fig_dir: Path) -> list[str]:
    from mtlab.report.plotting import panel_grid, plt, save

    fig_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt().subplots(figsize=(5.5, 0.45 * len(dm) + 1.5))
    ax.barh(range(len(dm)), dm.delta_m, xerr=dm.delta_m_se, color="tab:blue", alpha=0.75)
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_yticks(range(len(dm)), dm.method)
    ax.invert_yaxis()
    ax.set_xlabel("Δm over STL (%; mean ± s.e. over seeds)")
    fig.tight_layout()
    save(fig, fig_dir, "delta_m.png")

    main = per[per.metric.isin(["accuracy", "r2"])]
    tasks = list(dict.fromkeys(main.task))
    fig, axes = panel_grid(len(tasks), size=(4.2, 3.0))
    for ax, task in zip(axes, tasks, strict=True):
        d = main[main.task == task].set_index("method")
        d = d.loc[[m for m in dm.method if m in d.index]]  # (a method that only failed: none)
        ax.bar(range(len(d)), d["mean"], yerr=d["se"], color="tab:green", alpha=0.75)
        ax.set_xticks(range(len(d)), d.index, rotation=45, ha="right", fontsize=8)
        lo = float((d["mean"] - d["se"].fillna(0)).min())
        hi = float((d["mean"] + d["se"].fillna(0)).max())
        pad = 0.1 * (hi - lo) + 1e-3
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_title(f"{task}: test {d.metric.iloc[0]}")
    return ["delta_m.png", save(fig, fig_dir, "per_task.png")]


def write_benchmark(results: pd.DataFrame, out: Path, meta: dict[str, Any]) -> dict[str, Path]:
    """``results.parquet/csv``, ``delta_m.csv``, ``per_task.csv``, figures and the report."""
    from mtlab.report.analysis import Analysis, Section
    from mtlab.report.document import write_report

    results.to_parquet(out / "results.parquet", index=False)
    results.to_csv(out / "results.csv", index=False)
    dm, per = summarise(results)
    dm.to_csv(out / "delta_m.csv", index=False)
    per.to_csv(out / "per_task.csv", index=False)
    figures = _figures(dm, per, out / "figures")
    finite = dm[(dm.method != "stl") & dm.delta_m.notna()]
    best = finite.iloc[0] if len(finite) else None
    summary = (
        f"best Δm: {best.method} {best.delta_m:+.2f} % (± {best.delta_m_se:.2f}) over STL, "
        f"{int(best.n_seeds)} seeds" if best is not None else "no method has a Δm"
    )  # fmt: skip
    n_failed = int(dm.n_failed.sum())
    if n_failed:
        summary += f"; {n_failed} training(s) diverged and are left out (n_failed)"
    sections = [
        Section(
            "Δm over single-task training",
            "Δm = 100 · mean over tasks of the relative change of the test metric against STL "
            "(accuracy for classification, RMSE — lower is better — for regression), on "
            "seed-averaged metrics; its standard error over seeds. Every training has the same "
            "steps; each task is scored at its best validation checkpoint. A training that "
            "diverged is left out of every mean and counted in n_failed.",
            figures=figures[:1],
            tables=[("Δm per method", dm.round(4))],
        ),
        Section(
            "Per task",
            "Test metric per task and method (mean ± s.e. over seeds).",
            figures=figures[1:],
            tables=[("per task", per.round(4))],
        ),
    ]
    paths = write_report(out, study="benchmark", preset="custom", meta=meta,
                         analysis=Analysis([], sections, summary))  # fmt: skip
    return {"delta_m": out / "delta_m.csv", **paths}


__all__ = ["DELTA_M_METRICS", "benchmark_table", "results_rows", "summarise", "write_benchmark"]
