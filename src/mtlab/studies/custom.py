"""Study ``custom``: the analysis used for user sweeps (``mtlab run sweep.yaml``).

No claims are checked; the report shows test loss against n_main per setting and method (and s),
the run status and the step counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from mtlab.runs.store import RunStore
from mtlab.studies.base import Analysis, Preset, Section, Study, register
from mtlab.studies.plotting import errorline, panel_grid, save, style_loss_vs_n, summarise


class CustomStudy(Study):
    name = "custom"
    description = "any grid of the building blocks, from a YAML sweep file (mtlab run)"
    presets: ClassVar[dict[str, Preset]] = {
        "yaml": Preset("yaml", "the grid given in the sweep file", 1)
    }

    def configs(self, preset: str, seeds: int | None = None):
        raise ValueError("the custom study takes its grid from a sweep file: mtlab run FILE.yaml")

    def analyze(self, store: RunStore, fig_dir: Path, preset: str) -> Analysis:
        df = store.results()
        if df.empty:
            return Analysis([], [], "No runs finished yet.")
        sections = []
        ft = df[df.method != "pt"].copy()
        if not ft.empty and "n_main" in ft:
            ft["label"] = [
                m if m != "ptft" else f"ptft s={r:g}"
                for m, r in zip(ft.method, ft.rescale.fillna(1.0), strict=True)
            ]
            ft["setting"] = ft["setting"].fillna("-")
            cells = summarise(ft, ["setting", "label", "n_main"], "test_loss_rel")
            settings = sorted(set(cells.setting))
            fig, axes = panel_grid(len(settings))
            for ax, setting in zip(axes, settings, strict=True):
                sub = cells[cells.setting == setting]
                for label, g in sub.groupby("label"):
                    errorline(ax, g.n_main, g["mean"], g["se"], str(label))
                style_loss_vs_n(ax, setting)
            axes[0].legend(fontsize=7)
            name = save(fig, fig_dir, "test_loss.png")
            table = cells.pivot_table(index=["setting", "label"], columns="n_main", values="mean")
            sections.append(
                Section(
                    "Test loss", "Mean ± s.e. over seeds.", [name], [("mean test_loss_rel", table)]
                )
            )
        counts = df.groupby(["method", "status"]).size().unstack(fill_value=0)
        sections.append(Section("Runs", "", [], [("status counts", counts)]))
        return Analysis([], sections, f"{len(df)} runs.")


register(CustomStudy())
