"""Studies ``relu-correlated``, ``relu-nested`` and ``relu-magnitude``: the ReLU teacher–student
claims of Lippl & Lindsey (NeurIPS 2024, §2 and §3.2 of the paper notes).

* ``relu-correlated`` — main-task test loss against n_main for STL, MTL, PT+FT, PT+FT (LR) and NTK
  with main units identical to, correlated with (cosine 0.9), partly new to, or unrelated to the
  auxiliary units.
* ``relu-nested`` — PT+FT with the first layer rescaled by s ∈ {0.01, 0.1, 1, 10} on main tasks
  that use ``n_units`` of the six auxiliary units (``subset``) or as many new units (``new``),
  against STL on the same tasks; the hidden layer's participation ratio before / after
  finetuning, their ENSD, and k-means over the hidden units.
* ``relu-magnitude`` — PT+FT vs STL over a grid of main-unit cosine × main-feature magnitude, with
  the per-unit PT+FT penalty's ℓ-order / feature dependence as the theory behind it.

Test losses are reported relative to the zero predictor on the same test set (``test_loss_rel``)
and averaged over seeds (± standard error).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from mtlab.report.analysis import Analysis, Claim, Section
from mtlab.report.plotting import summarise
from mtlab.runs.config import RunConfig
from mtlab.runs.store import RunStore
from mtlab.runs.sweep import expand
from mtlab.studies import relu_figures as figures
from mtlab.studies import relu_rules as rules
from mtlab.studies.base import Pairing, Preset, Study, StudyInputs, register
from mtlab.studies.claims import claims_line, completed, evaluate_all, runs_section

SOURCE = rules.SOURCE
METHOD_LABEL = figures.METHOD_LABEL
CORRELATED_SETTINGS = ("identical", "correlated_0.9", "partial_new", "unrelated")
RESCALES = (0.01, 0.1, 1.0, 10.0)
CORRELATIONS = (0.8, 0.9, 0.95, 0.99, 1.0)
MAGNITUDES = (1.0, 0.5, 0.1, 0.05, 0.01)

_SIZES = {
    "tiny": {
        "width": 32,
        "n_aux": 128,
        "n_val": 100,
        "n_test": 200,
        "n_rep": 100,
        "max_steps": 300,
        "pt_max_steps": 300,
        "log_every": 100,
        "ridge_alphas": 16,
    },
    "quick": {
        "width": 256,
        "n_aux": 1024,
        "n_val": 500,
        "n_test": 2000,
        "n_rep": 500,
        "max_steps": 20_000,
        "pt_max_steps": 20_000,
        "log_every": 1000,
    },
    "paper": {
        "width": 1000,
        "n_aux": 1024,
        "n_val": 1000,
        "n_test": 10_000,
        "n_rep": 1000,
        "max_steps": 100_000,
        "pt_max_steps": 100_000,
        "log_every": 1000,
    },
}
_SIZE_TEXT = {
    "tiny": "smoke test: width 32, n_aux 128, 300 full-batch GD steps, 1 seed",
    "quick": "width 256 (paper: 1000), n_aux 1024, full-batch GD lr 0.5 (lr/s² for s > 1), "
    "20k-step budgets, threshold 1e-8, n_test 2000",
    "paper": "paper sizes: width 1000, n_aux 1024, n_test 10 000, 1e5-step budgets, 6 seeds "
    "(full-batch GD lr 0.5, not the paper's minibatch SGD lr 1.0)",
}
_N_MAIN = {
    "correlated": {"tiny": (16, 64), "quick": (16, 64, 256), "paper": (16, 32, 64, 128, 256, 512)},
    "nested": {"tiny": (64,), "quick": (64, 256), "paper": (16, 32, 64, 128, 256, 512)},
    "magnitude": {"tiny": (64,), "quick": (64, 256), "paper": (32, 64, 128, 256, 512, 1024)},
}


def _presets(kind: str, extra: dict[str, Any] | None = None, note: str = "") -> dict[str, Preset]:
    seeds = {"tiny": 1, "quick": 2, "paper": 6}
    return {
        name: Preset(
            name,
            f"{_SIZE_TEXT[name]}; n_main {', '.join(map(str, _N_MAIN[kind][name]))}{note}",
            seeds[name],
            {**_SIZES[name], **(extra or {}), "n_main": _N_MAIN[kind][name]},
        )
        for name in ("tiny", "quick", "paper")
    }


def _cells(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return summarise(completed(df), by, "test_loss_rel")


def _per_run(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The claims' table: one row per finished run, its ``keys``, seed and main-task loss."""
    return completed(df)[[*keys, "seed", "test_loss_rel"]]


def _summary(claims: list[Claim], df: pd.DataFrame, preset: str) -> str:
    n = df.status.value_counts()
    return (
        f"{claims_line(claims, preset, len(df))}; {int(n.get('converged', 0))} converged, "
        f"{int(n.get('max_steps', 0))} at the step budget, {int(n.get('failed', 0))} failed)."
    )


def _runs(df: pd.DataFrame) -> Section:
    section = runs_section(df)
    section.text = (
        "Run status and steps per method (kernel baselines are fitted, not trained: 0 steps). "
        "Runs at the step budget did not reach the 1e-8 train-loss threshold; the implicit-bias "
        "theory assumes interpolation."
    )
    return section


class _ReluStudy(Study):
    """The three ReLU studies share presets' sizes, the sweep layout and the report's tail."""

    paper = "Lippl & Lindsey, Inductive biases of multi-task learning and finetuning, NeurIPS 2024"

    def grids(self, n_main: list[int], seeds: list[int]) -> list[dict[str, list[Any]]]:
        raise NotImplementedError

    def sweep(self, preset: Preset, n_seeds: int) -> dict[str, Any]:
        """The preset's grid as sweep data (``mtlab.runs.sweep.expand``)."""
        base = {k: v for k, v in preset.params.items() if k != "n_main"}
        grids = self.grids(list(preset.params["n_main"]), list(range(n_seeds)))
        return {"study": self.name, "family": "relu", "base": base, "grids": grids}

    def configs(
        self, preset: str, seeds: int | None = None, inputs: StudyInputs | None = None
    ) -> list[RunConfig]:
        self.check_inputs(inputs)
        return expand(self.sweep(self.preset(preset), self.n_seeds(preset, seeds)))


# ====================================================================== relu-correlated


class ReluCorrelatedStudy(_ReluStudy):
    name = "relu-correlated"
    description = (
        "ReLU teacher–student: STL / MTL / PT+FT / PT+FT (LR) / NTK vs n_main with identical, "
        "correlated, partly new and unrelated main features (Lippl & Lindsey 2024)"
    )
    pairings = (Pairing({"method": ("mtl", "ptft", "ptft_lr", "ntk")}, {"method": "stl"},
                        ("setting", "correlation", "n_main", "seed")),)  # fmt: skip
    presets: ClassVar[dict[str, Preset]] = _presets("correlated")

    def grids(self, n_main: list[int], seeds: list[int]) -> list[dict[str, list[Any]]]:
        methods = ["stl", "mtl", "ptft", "ptft_lr", "ntk"]
        return [
            {
                "seed": seeds,
                "setting": list(CORRELATED_SETTINGS),
                "n_main": n_main,
                "method": methods,
            }
        ]

    def analyze(self, store: RunStore, fig_dir: Path, preset: str) -> Analysis:
        df = store.results()
        if df.empty:
            return Analysis([], [], "No runs finished yet.")
        ft = df[df.method != "pt"].astype({"n_main": int})
        cells = _cells(ft, ["setting", "method", "n_main"])
        settings = [s for s in CORRELATED_SETTINGS if s in set(cells.setting)]
        fig_name = figures.generalization(cells, settings, fig_dir)
        claims = evaluate_all(rules.CORRELATED, _per_run(ft, rules.CORRELATED_KEYS), fig_name)
        table = cells.pivot_table(index=["setting", "method"], columns="n_main", values="mean")
        n_aux = int(df.n_aux.dropna().iloc[0]) if df.n_aux.notna().any() else "?"
        text = (
            "Main-task test loss / zero predictor (mean ± s.e. over seeds; failed runs excluded). "
            "PT+FT: readout redrawn at scale 1e-3, s = 1; PT+FT (LR): ridge on the pretrained "
            "hidden features; NTK: ridge on the parameter-gradient features at the start of "
            "finetuning; ridge strength chosen on validation data. MTL: the loss weighted by "
            f"sample counts (n_aux = {n_aux})."
        )
        sections = [
            Section(
                "Generalisation against n_main", text, [fig_name], [("mean test_loss_rel", table)]
            ),
            _runs(df),
        ]
        return Analysis(claims, sections, _summary(claims, df, preset))


# ====================================================================== relu-nested


class ReluNestedStudy(_ReluStudy):
    name = "relu-nested"
    description = (
        "ReLU teacher–student: weight rescaling s after pretraining and nested feature selection "
        "(main task = a subset of the pretrained units, or new units), PR / ENSD, k-means"
    )
    pairings = (Pairing({"method": ("ptft",)}, {"method": "stl"},
                        ("setting", "n_units", "n_main", "seed")),)  # fmt: skip
    presets: ClassVar[dict[str, Preset]] = _presets("nested")

    def grids(self, n_main: list[int], seeds: list[int]) -> list[dict[str, list[Any]]]:
        common: dict[str, list[Any]] = {
            "seed": seeds,
            "setting": ["subset", "new"],
            "n_units": list(range(1, 7)),
            "n_main": n_main,
        }
        return [
            {**common, "method": ["stl"]},
            {**common, "method": ["ptft"], "rescale": list(RESCALES)},
        ]

    def analyze(self, store: RunStore, fig_dir: Path, preset: str) -> Analysis:
        df = store.results()
        if df.empty:
            return Analysis([], [], "No runs finished yet.")
        ft = df[df.method != "pt"].astype({"n_main": int, "n_units": int})
        ft["s"] = ft.rescale.fillna(0.0)  # STL: s = 0 in the tables
        cells = _cells(ft, ["setting", "method", "s", "n_units", "n_main"])
        loss_fig = figures.nested_loss(cells, RESCALES, fig_dir)
        rep = completed(ft[(ft.method == "ptft") & (ft.setting == "subset")])
        pr = rep.groupby(["s", "n_units"])[["pr_pre", "pr_post", "ensd"]].mean().reset_index()
        pr_fig = figures.pr_ensd(pr, RESCALES, fig_dir)
        claims = evaluate_all(rules.NESTED_LOSS, _per_run(ft, rules.NESTED_KEYS), loss_fig)
        pr_runs = rep[["s", "n_units", "seed", "pr_pre", "pr_post", "ensd"]]
        claims += evaluate_all(rules.NESTED_GEOMETRY, pr_runs, pr_fig)
        km_figs, km_tables = self._kmeans(store, df, fig_dir)
        tables = [
            (f"{setting}: mean test_loss_rel", cells[cells.setting == setting].pivot_table(
                index=["method", "s", "n_units"], columns="n_main", values="mean"))
            for setting in ("subset", "new")
        ]  # fmt: skip
        sections = [
            Section(
                "Rescaling and nested feature selection",
                "PT+FT with the pretrained first layer × s (readout redrawn at scale 1e-3; "
                "learning rate lr/s² for s > 1), against STL on the same main task (s = 0 in the "
                "tables). Test loss / zero predictor, mean ± s.e. over seeds.",
                [loss_fig],
                tables,
            ),
            Section(
                "Representation geometry",
                "Participation ratio of the hidden layer on main-task inputs after finetuning, and "
                "ENSD between the rescaled pretrained layer and the finetuned one (uncentred, "
                "trace-normalised second moments). k-means over the hidden units' input weights "
                "(directions, weighted by each unit's coefficient ‖w‖·|a|): the fraction of "
                "weighted inertia left with k clusters and how well the cluster centres align "
                "with the main teacher's units.",
                [pr_fig, *km_figs],
                km_tables,
            ),
            _runs(df),
        ]
        return Analysis(claims, sections, _summary(claims, df, preset))

    @staticmethod
    def _kmeans(
        store: RunStore, df: pd.DataFrame, fig_dir: Path
    ) -> tuple[list[str], list[tuple[str, Any]]]:
        """k-means profiles of seed 0's two-unit tasks at the largest n_main (STL, s = 0.01, 10)."""
        from mtlab.runs.relu_analysis import kmeans_profiles

        n = df[df.method == "ptft"].n_main.max()
        pick = df[
            (df.method.isin(["ptft", "stl"]))
            & (df.n_units == 2)
            & (df.seed == 0)
            & (df.n_main == n)
            & (df.rescale.isna() | df.rescale.isin([0.01, 10.0]))
        ]
        pick = pd.concat([pick[pick.setting == s] for s in ("subset", "new")])
        profiles = kmeans_profiles(store, pick) if not pick.empty else []
        if not profiles:
            return [], []
        fig = figures.kmeans(profiles, int(n), fig_dir)
        return [fig], [("k-means", figures.kmeans_table(profiles))]


# ====================================================================== relu-magnitude


def penalty_curves() -> tuple[dict[float, tuple[Any, Any, Any]], pd.DataFrame]:
    """ℓ-order and FD of the per-unit PT+FT penalty against β_aux for θ ∈ {1, …, 0.5}, and per θ
    the conservation error and the values at the largest β_aux."""
    import torch

    from mtlab.theory.penalties import feature_dependence, l_order
    from mtlab.theory.relu_penalties import relu_ptft_fn

    a = torch.logspace(-4, 4, 161, dtype=torch.float64)
    b = torch.ones_like(a)
    curves, rows = {}, []
    for th in (1.0, 0.99, 0.95, 0.9, 0.5):
        fn = relu_ptft_fn(th)
        lo, fd = l_order(fn, b, a), feature_dependence(fn, b, a)
        curves[th] = (a, lo, fd)
        rows.append(
            {
                "theta": th,
                "conservation_error": float((lo + fd - 1).abs().max()),
                "l_order_tail": float(lo[-1]),
                "fd_tail": float(fd[-1]),
            }
        )
    return curves, pd.DataFrame(rows)


class ReluMagnitudeStudy(_ReluStudy):
    name = "relu-magnitude"
    description = (
        "ReLU teacher–student: PT+FT vs STL over main-unit cosine × main-feature magnitude, and "
        "the per-unit PT+FT penalty (ℓ-order / feature dependence)"
    )
    pairings = (Pairing({"method": ("ptft",)}, {"method": "stl"},
                        ("correlation", "magnitude", "n_main", "seed")),)  # fmt: skip
    presets: ClassVar[dict[str, Preset]] = _presets(
        "magnitude",
        {"init_scale": 1e-6, "readout_init": 1e-6},
        "; init and readout re-init scale 1e-6 (the paper's Fig. 4b)",
    )

    def grids(self, n_main: list[int], seeds: list[int]) -> list[dict[str, list[Any]]]:
        return [
            {
                "seed": seeds,
                "setting": ["uniform"],
                "correlation": list(CORRELATIONS),
                "magnitude": list(MAGNITUDES),
                "n_main": n_main,
                "method": ["stl", "ptft"],
            }
        ]

    def analyze(self, store: RunStore, fig_dir: Path, preset: str) -> Analysis:
        curves, penalty = penalty_curves()
        cons = float(penalty.conservation_error.max())
        pen_fig = figures.penalty_landscape(curves, cons, fig_dir)
        claims = evaluate_all(rules.MAGNITUDE_PENALTY, penalty, pen_fig)
        pen_section = Section(
            "Theory: the per-unit PT+FT penalty",
            "R_FT(β; m0, θ) = min_m (β/m − v0)² + m² + m0² − 2·m·m0·θ: ℓ-order and feature "
            "dependence against the pretrained coefficient m0², for main directions at cosine θ.",
            [pen_fig],
        )
        df = store.results()
        if df.empty:
            return Analysis(claims, [pen_section], "No runs finished yet.")
        ft = df[df.method != "pt"].astype({"n_main": int})
        cells = _cells(ft, ["correlation", "magnitude", "method", "n_main"])
        grid = rules.log_ratios(cells)
        grid_fig = figures.magnitude_grid(cells, grid, CORRELATIONS, MAGNITUDES, fig_dir)
        claims += evaluate_all(rules.MAGNITUDE, _per_run(ft, rules.MAGNITUDE_KEYS), grid_fig)
        table = cells.pivot_table(
            index=["correlation", "magnitude"], columns=["method", "n_main"], values="mean"
        )
        grid_section = Section(
            "PT+FT vs STL over cosine × magnitude",
            "Each cell: log10 of PT+FT's (s = 1) over STL's main-task test loss (mean over "
            "seeds); blue = PT+FT better. ‘magnitude’ multiplies the main teacher's output "
            "(our reading of the paper's undefined knob, notes §8). Students start at init "
            "scale 1e-6 and PT+FT readouts are redrawn at 1e-6, as in the paper's Fig. 4b.",
            [grid_fig],
            [("mean test_loss_rel", table)],
        )
        return Analysis(
            claims, [pen_section, grid_section, _runs(df)], _summary(claims, df, preset)
        )


register(ReluCorrelatedStudy())
register(ReluNestedStudy())
register(ReluMagnitudeStudy())
