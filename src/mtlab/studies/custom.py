"""Study ``custom``: the analysis used for user sweeps (``mtlab run sweep.yaml``).

No claims are checked; the report shows test loss against n_main per setting and method (and s),
the run status and the step counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from mtlab.report.analysis import Analysis, Section
from mtlab.report.plotting import errorline, panel_grid, save, style_loss_vs_n, summarise
from mtlab.runs.config import RunConfig
from mtlab.runs.store import RunStore
from mtlab.studies.base import Preset, Study, StudyInputs, register
from mtlab.studies.claims import completed
from mtlab.studies.summary import varying_fields


class CustomStudy(Study):
    name = "custom"
    description = "any grid of the building blocks, from a YAML sweep file (mtlab run)"
    presets: ClassVar[dict[str, Preset]] = {
        "yaml": Preset("yaml", "the grid given in the sweep file", 1)
    }

    def configs(
        self, preset: str, seeds: int | None = None, inputs: StudyInputs | None = None
    ) -> list[RunConfig]:
        self.check_inputs(inputs)
        raise ValueError("the custom study takes its grid from a sweep file: mtlab run FILE.yaml")

    def analyze(self, store: RunStore, fig_dir: Path, preset: str) -> Analysis:
        df = store.results()
        if df.empty:
            return Analysis([], [], "No runs finished yet.")
        sections = []
        family = df["family"] if "family" in df else pd.Series("diagonal", index=df.index)
        ft = df[family.isin(["diagonal", "relu"]) & (df.method != "pt")].copy()
        if not ft.empty and "n_main" in ft:
            sections.append(_loss_section(ft, fig_dir))
        sub = completed(df[family == "subspace"])
        if not sub.empty:
            sections.extend(_subspace_sections(sub, fig_dir))
        img = completed(df[(family == "images") & (df.method != "pt")])
        if not img.empty:
            sections.append(_images_section(img, fig_dir))
        runs = df.drop_duplicates("run_id")
        counts = runs.groupby(["method", "status"], dropna=False).size().unstack(fill_value=0)
        sections.append(Section("Runs", "", [], [("status counts", counts)]))
        return Analysis([], sections, f"{len(runs)} runs.")


def _loss_section(ft: pd.DataFrame, fig_dir: Path) -> Section:
    """Test loss against n_main, one panel per setting and one line per combination of every
    other field that varies in the sweep (only seeds are averaged; failed runs are excluded and
    counted per line)."""
    ft = ft.copy()
    ft["n_main"] = ft.n_main.astype(int)
    ft["setting"] = ft["setting"].fillna("-")
    if "n_units" in ft:
        ft["setting"] = [
            f"{st} n_units={int(k)}" if st in ("subset", "new") and k == k else st
            for st, k in zip(ft.setting, ft.n_units, strict=True)
        ]
    swept = [f for f in varying_fields(ft) if f not in ("setting", "n_main", "method", "n_units")]
    ft["label"] = _labels(ft, ("setting", "n_main", "method", "n_units"))
    ok = completed(ft)
    cells = summarise(ok, ["setting", "label", "n_main"], "test_loss_rel")
    settings = sorted(set(cells.setting)) or ["-"]
    fig, axes = panel_grid(len(settings))
    for ax, setting in zip(axes, settings, strict=True):
        sub = cells[cells.setting == setting]
        for label, g in sub.groupby("label"):
            errorline(ax, g.n_main, g["mean"], g["se"], str(label))
        style_loss_vs_n(ax, setting)
    axes[0].legend(fontsize=7)
    name = save(fig, fig_dir, "test_loss.png")
    table = cells.pivot_table(index=["setting", "label"], columns="n_main", values="mean")
    runs = ft.drop_duplicates("run_id")
    n_failed = runs.assign(failed=runs.status == "failed").groupby(["setting", "label"]).failed
    counts = pd.DataFrame({"n_runs": n_failed.size(), "n_failed": n_failed.sum().astype(int)})
    text = (
        "Mean ± s.e. over seeds (failed runs excluded, counted in the second table); one line per "
        "combination of the fields that vary in the sweep"
        + (f" ({', '.join(['method', *swept])})." if swept else " (method).")
    )
    return Section(
        "Test loss",
        text,
        [name],
        [("mean test_loss_rel", table), ("runs per line", counts)],
    )


def _images_section(df: pd.DataFrame, fig_dir: Path) -> Section:
    """Images-family runs: main-task test accuracy against n_main per network and regime."""
    df = df.astype({"n_main": int})
    df = df.assign(label=_labels(df, ("trunk", "n_main", "method")))
    cells = summarise(df, ["trunk", "label", "n_main"], "test_acc")
    trunks = sorted(set(cells.trunk))
    fig, axes = panel_grid(len(trunks), ncols=2)
    for ax, trunk in zip(axes, trunks, strict=True):
        for label, g in cells[cells.trunk == trunk].groupby("label"):
            errorline(ax, g.n_main, g["mean"], g["se"], str(label))
        ax.set_xscale("log")
        ax.set_xlabel("n_main")
        ax.set_ylabel("test accuracy")
        ax.set_title(trunk)
    axes[0].legend(fontsize=7)
    name = save(fig, fig_dir, "images_accuracy.png")
    table = cells.pivot_table(index=["trunk", "label"], columns="n_main", values="mean")
    return Section(
        "Main-task accuracy", "Mean ± s.e. over seeds.", [name], [("mean test_acc", table)]
    )


def _subspace_sections(df: pd.DataFrame, fig_dir: Path) -> list[Section]:
    """Subspace-family runs: recovery metrics per configuration and probe accuracy vs n_down."""
    keys = [k for k in varying_fields(df) if k not in ("n_down",)] or ["features"]
    out = []
    df = df.assign(**{k: df[k].map(_short) for k in keys})  # printable keys; None → "-"
    rec = df[df.evaluation == "recovery"]
    if not rec.empty:
        last = rec[
            rec["round"].fillna(0) == rec.groupby("run_id")["round"].transform("max").fillna(0)
        ]
        table = last.groupby(keys, dropna=False)[["energy", "sin_max", "coverage", "n_dirs"]].mean()
        out.append(
            Section(
                "Subspace recovery",
                "Mean over seeds of the final first layer's metrics (alternating SGD: last round).",
                [],
                [("recovery metrics", table.round(3))],
            )
        )
    dn = df[df.evaluation == "downstream"]
    if not dn.empty:
        labels = [
            " ".join(f"{k}={v}" for k, v in zip(keys, vals, strict=True))
            for vals in dn[keys].itertuples(index=False)
        ]
        dn = dn.assign(config=labels)
        kinds = sorted(set(dn.downstream_task))
        fig, axes = panel_grid(len(kinds), ncols=2)
        for ax, kind in zip(axes, kinds, strict=True):
            cells = summarise(dn[dn.downstream_task == kind], ["config", "n_down"], "test_acc")
            for label, g in cells.groupby("config"):
                errorline(ax, g.n_down, g["mean"], g["se"], str(label))
            ax.set_xscale("log")
            ax.set_xlabel("n_down")
            ax.set_ylabel("test accuracy")
            ax.set_title(kind, fontsize=9)
        axes[0].legend(fontsize=7)
        name = save(fig, fig_dir, "downstream_accuracy.png")
        table = dn.pivot_table(
            index=["downstream_task", *keys], columns="n_down", values="test_acc", aggfunc="mean"
        )
        out.append(
            Section(
                "Downstream accuracy",
                "Mean over seeds and downstream tasks.",
                [name],
                [("test accuracy", table.round(3))],
            )
        )
    return out


register(CustomStudy())


def _labels(df: pd.DataFrame, exclude: tuple[str, ...]) -> list[str]:
    """Per row: the method and ``field=value`` for every other field that varies in the sweep
    (fields that do not apply to a row's method — None — stay out of its label)."""
    swept = [f for f in varying_fields(df) if f not in exclude]
    labels = []
    for m, *vals in df[["method", *swept]].itertuples(index=False):
        parts = [f"{k}={_short(v)}" for k, v in zip(swept, vals, strict=True) if _short(v) != "-"]
        labels.append(" ".join([str(m), *parts]))
    return labels


def _short(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)
