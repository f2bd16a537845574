"""Study ``diagonal``: the diagonal-network claims of Lippl & Lindsey (NeurIPS 2024).

Parts (each a figure and one or more verdicts in ``claims.json``):

1. **Penalty landscapes** (theory): ℓ-order and feature dependence of the MTL and PT+FT penalties
   against the auxiliary coefficient; the nested-feature-selection window is wider for PT+FT.
2. **Generalisation vs n_main** for STL, MTL, PT+FT and PT+FT (LR) in every overlap setting.
3. **Rescaling sweep** s ∈ {1, 0.1, 0.01, 0.001} (γ = α·s): helps in ``nested_subset``, hurts in
   ``all_aux``, restores new sparse features in ``new_dims``.
4. **Theory vs gradient descent**: relative distance between the trained β and the minimum-penalty
   interpolator predicted from the same data and initial weights (exact gradient-flow potential,
   the paper's figure-form PT+FT penalty, and the linear-probe closed form).

Test losses are reported relative to the zero predictor (``test_loss_rel``, exact population risk
``‖β − β*‖²/‖β*‖²``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from mtlab.report.analysis import Analysis, Claim, Section
from mtlab.report.plotting import summarise
from mtlab.runs.config import RunConfig
from mtlab.runs.diagonal_theory import MTL_MAIN_INTERPOLATED, theory_agreement
from mtlab.runs.store import RunStore
from mtlab.runs.sweep import expand
from mtlab.studies import diagonal_figures as figures
from mtlab.studies import diagonal_rules as rules
from mtlab.studies.base import Pairing, Preset, Study, StudyInputs, register
from mtlab.studies.claims import claims_line, completed, evaluate_all, runs_section
from mtlab.tasks.sparse_teacher import SETTINGS

RESCALES_QUICK = (1.0, 0.1, 0.01, 0.001)
METHOD_LABEL = figures.METHOD_LABEL
#: preset fields that go into every run config unchanged
_BASE_FIELDS = (
    "d",
    "k1",
    "n_aux",
    "max_steps",
    "pt_max_steps",
    "threshold",
    "log_every",
    "n_val",
    "n_test",
)

PRESETS = {
    "tiny": Preset(
        "tiny",
        "smoke test: d=60, k1=8, n_aux=128, n_main 8/16, 2k steps",
        1,
        {
            "d": 60,
            "k1": 8,
            "n_aux": 128,
            "n_main": (8, 16),
            "rescale": (1.0, 0.1, 0.01, 0.001),
            "max_steps": 2000,
            "pt_max_steps": 2000,
            "threshold": 1e-8,
            "log_every": 500,
            "n_val": 200,
            "n_test": 200,
        },
    ),
    "quick": Preset(
        "quick",
        "d=1000, k1=40, n_aux=1024 (paper geometry), n_main 16/32/64/128, "
        "20k-step budgets, threshold 1e-8, 2 seeds",
        2,
        {
            "d": 1000,
            "k1": 40,
            "n_aux": 1024,
            "n_main": (16, 32, 64, 128),
            "rescale": RESCALES_QUICK,
            "max_steps": 20_000,
            "pt_max_steps": 20_000,
            "threshold": 1e-8,
            "log_every": 1000,
            "n_val": 1000,
            "n_test": 1000,
        },
    ),
    "paper": Preset(
        "paper",
        "the paper's sizes: d=1000, k1=40, n_aux=1024, n_main 16..512, "
        "α=γ=1e-3, lr 0.5 (PT) / 0.1, up to 1e6 steps, threshold 1e-10, 6 seeds",
        6,
        {
            "d": 1000,
            "k1": 40,
            "n_aux": 1024,
            "n_main": (16, 32, 64, 128, 256, 512),
            "rescale": (1.0, 0.1, 0.01, 0.001, 0.0001),
            "max_steps": 1_000_000,
            "pt_max_steps": 1_000_000,
            "threshold": 1e-10,
            "log_every": 10_000,
            "n_val": 10_000,
            "n_test": 10_000,
        },
    ),
}


def _label(method: str, rescale: float | None) -> str:
    if method == "ptft" and rescale is not None and rescale != 1.0:
        return f"PT+FT s={rescale:g}"
    return METHOD_LABEL.get(method, method)


def sweep(preset: Preset, n_seeds: int, study: str = "diagonal") -> dict[str, Any]:
    """The preset's grid as sweep data (``mtlab.runs.sweep.expand``): every setting × n_main ×
    seed, for STL, MTL and PT+FT (LR), and PT+FT at every rescaling s."""
    k = preset.params
    common = {"seed": list(range(n_seeds)), "setting": list(SETTINGS), "n_main": list(k["n_main"])}
    return {
        "study": study,
        "family": "diagonal",
        "base": {f: k[f] for f in _BASE_FIELDS},
        "grids": [
            {**common, "method": ["stl", "mtl", "ptft_lr"]},
            {**common, "method": ["ptft"], "rescale": list(k["rescale"])},
        ],
    }


def penalty_tables() -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Regime maps of the MTL and PT+FT (s = 1, 0.1, 0.01) penalties and, per curve, the
    nested-window width (decades) and the conservation error |ℓ-order + FD − 1|."""
    from mtlab.theory import nested_window_decades, regime_map

    a = np.logspace(-8, 6, 561)
    maps = {"MTL": regime_map("mtl", a)}
    for sv in (1.0, 0.1, 0.01):
        maps[f"PT+FT s={sv:g}"] = regime_map("ptft", a, s=sv)
    windows = pd.DataFrame(
        {
            "penalty": list(maps),
            "window_decades": [nested_window_decades(v) for v in maps.values()],
            "conservation_error": [float(np.abs(v["l_plus_fd"] - 1).max()) for v in maps.values()],
        }
    )
    return maps, windows


class DiagonalStudy(Study):
    name = "diagonal"
    description = (
        "Diagonal linear networks: implicit penalties, lazy/rich/nested regimes, "
        "MTL vs PT+FT vs STL, weight rescaling (Lippl & Lindsey 2024)"
    )
    paper = "Lippl & Lindsey, Inductive biases of multi-task learning and finetuning, NeurIPS 2024"
    pairings = (
        Pairing({"method": ("mtl", "ptft", "ptft_lr")}, {"method": "stl"},
                ("setting", "n_main", "seed")),
        Pairing({"method": ("ptft",)}, {"method": "ptft", "rescale": 1.0},
                ("setting", "n_main", "seed")),
    )  # fmt: skip
    presets: ClassVar[dict[str, Preset]] = PRESETS

    def configs(
        self, preset: str, seeds: int | None = None, inputs: StudyInputs | None = None
    ) -> list[RunConfig]:
        self.check_inputs(inputs)
        return expand(sweep(self.preset(preset), self.n_seeds(preset, seeds), self.name))

    def analyze(self, store: RunStore, fig_dir: Path, preset: str) -> Analysis:
        df = store.results()
        claims, sections = self._penalty_part(fig_dir)
        if df.empty:
            return Analysis(claims, sections, "No runs finished yet.")
        ft = completed(df[df.method != "pt"]).copy()
        ft["label"] = [_label(m, r) for m, r in zip(ft.method, ft.rescale, strict=True)]
        cells = summarise(ft, ["setting", "method", "rescale", "label", "n_main"], "test_loss_rel")
        runs = ft[["setting", "method", "rescale", "n_main", "seed", "test_loss_rel"]]
        for part in (self._generalisation_part, self._rescaling_part):
            c, s = part(cells, runs, fig_dir)
            claims += c
            sections.append(s)
        c, s = self._theory_part(store, fig_dir)
        claims += c
        sections += [s, runs_section(df)]
        return Analysis(claims, sections, self._summary(claims, df, preset))

    @staticmethod
    def _summary(claims: list[Claim], df: pd.DataFrame, preset: str) -> str:
        n = df.status.value_counts()
        summary = (
            f"{claims_line(claims, preset, len(df))}; {int(n.get('converged', 0))} reached the "
            f"loss threshold, {int(n.get('max_steps', 0))} stopped at the step budget, "
            f"{int(n.get('failed', 0))} failed)."
        )
        budget = df[df.status == "max_steps"].groupby("method").size()
        if not budget.empty:
            summary += (
                " Runs at the step budget, by method: "
                + ", ".join(f"{m} {k}" for m, k in budget.items())
                + ". The implicit-bias theory assumes training to interpolation; part 4 compares "
                "only runs that reached the threshold, and the loss curves (curves.parquet) show "
                "how far the others got."
            )
        return summary

    # part 1 -----------------------------------------------------------------
    def _penalty_part(self, fig_dir: Path) -> tuple[list[Claim], list[Section]]:
        maps, windows = penalty_tables()
        fig_name = figures.penalty_landscape(maps, windows, fig_dir)
        text = (
            "ℓ-order and feature dependence (log-derivatives of the per-coordinate penalty) "
            "against the auxiliary coefficient. Rescaling by s shifts the PT+FT curve by "
            "1/s² in β_aux (K = s²|β_aux| + γ²). Window widths (decades): "
            + ", ".join(
                f"{k}: {v:.2f}"
                for k, v in zip(windows.penalty, windows.window_decades, strict=True)
            )
            + "."
        )
        title = "1. Penalty landscapes and the nested-feature-selection window"
        return evaluate_all(rules.PENALTY, windows, fig_name), [Section(title, text, [fig_name])]

    # part 2 -----------------------------------------------------------------
    def _generalisation_part(
        self, cells: pd.DataFrame, runs: pd.DataFrame, fig_dir: Path
    ) -> tuple[list[Claim], Section]:
        base = rules.base_cells(cells)
        fig_name = figures.generalization(base, fig_dir)
        table = base.pivot_table(index=["setting", "label"], columns="n_main", values="mean")
        text = (
            "Main-task test loss relative to the zero predictor (mean ± s.e. over seeds; failed "
            "runs excluded) against the number of main-task samples. PT+FT uses s = 1, γ = α·s."
        )
        section = Section(
            "2. Generalisation: STL, MTL, PT+FT, PT+FT (LR)",
            text,
            [fig_name],
            [("mean test_loss_rel", table)],
        )
        return evaluate_all(rules.GENERALIZATION, runs, fig_name), section

    # part 3 -----------------------------------------------------------------
    def _rescaling_part(
        self, cells: pd.DataFrame, runs: pd.DataFrame, fig_dir: Path
    ) -> tuple[list[Claim], Section]:
        fig_name = figures.rescaling(cells, fig_dir)
        ptft = cells[cells.method == "ptft"]
        table = ptft.pivot_table(index=["setting", "rescale"], columns="n_main", values="mean")
        text = (
            "PT+FT test loss for each rescaling s (γ = α·s), with STL (dashed) and MTL "
            "(dotted) for reference."
        )
        section = Section(
            "3. Weight rescaling after pretraining",
            text,
            [fig_name],
            [("PT+FT mean test_loss_rel by s", table)],
        )
        return evaluate_all(rules.RESCALING, runs, fig_name), section

    # part 4 -----------------------------------------------------------------
    def _theory_part(self, store: RunStore, fig_dir: Path) -> tuple[list[Claim], Section]:
        agreement = pd.DataFrame(theory_agreement(store))
        if agreement.empty:
            return [], Section("4. Theory vs gradient descent", "No converged runs to compare.")
        fig_name = figures.theory_agreement(agreement, fig_dir)
        med = agreement.groupby("prediction").rel_distance.median().to_dict()
        by_s = (
            agreement[agreement.method == "ptft"]
            .groupby(["prediction", "rescale"])
            .rel_distance.median()
            .unstack()
        )
        text = (
            "MTL runs count as interpolating when their main-task train MSE is below "
            f"{MTL_MAIN_INTERPOLATED:g}; the α → 0 limits (ℓ1, ℓ1,2) are shown next to the exact "
            "finite-α predictions to show how much of the gap is the limit, not the dynamics. "
            "For converged runs, the β found by gradient descent is compared with the "
            "minimum-penalty interpolator computed from the same training data: "
            "`exact flow` uses the potential P e^u − N e^−u of the run's actual initial "
            "weights (STL: w = v = α; PT+FT: pretrained w × s, readout γ); `figure form` uses "
            "the paper's K q(2β/K); the linear probe has a closed form (min-norm readout "
            "change). Median relative distance per prediction: "
            + ", ".join(f"{k}: {v:.2e}" for k, v in med.items())
            + "."
        )
        section = Section(
            "4. Theory vs gradient descent",
            text,
            [fig_name],
            [("median relative distance, PT+FT by s", by_s)],
        )
        return evaluate_all(rules.THEORY, agreement, fig_name), section


register(DiagonalStudy())
