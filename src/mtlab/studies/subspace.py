"""Study ``subspace``: multi-task representation learning in two-layer ReLU networks
(Collins, Hassani, Soltanolkotabi, Mokhtari & Shakkottai, ICML 2024).

Parts (each a figure and verdicts in ``claims.json``):

1. **Recovery vs number of tasks** (the paper's Figure 1): head-first one-step training on
   ``T`` halfspace tasks; no full recovery while ``T < r``, the principal-angle error falls as
   ``T`` grows; single-task training with the same sample budget stays rank one *although its
   energy fraction is high*; the one-step layer approaches the population prediction
   ``W0 Mᵀ Θ̂ M``; the pseudo-contrastive identity holds to floating-point precision.
2. **Downstream sample complexity vs d**: a linear probe on frozen features; multi-task
   features are essentially independent of ``d`` (pretraining budget ``n2·T ∝ d``), random
   features, raw inputs and single-task features degrade as ``d`` grows; an in-subspace XOR task
   separates multi-task from random features.
3. **Heads ablation**: learned heads (head-first) vs one shared head vs fixed random heads.
4. **Alternating SGD** (the paper's Appendix F, reconstructed): subspace error vs rounds for
   several ``T``.

Every reconstructed choice (losses, step sizes, sample sizes, probe) is a config field of
:class:`mtlab.runs.config.SubspaceRunConfig`; the presets below set them and the report lists them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from mtlab.report.analysis import Analysis, Claim, Section
from mtlab.report.plotting import summarise, summarise_wide
from mtlab.runs.config import RunConfig
from mtlab.runs.store import RunStore
from mtlab.runs.sweep import expand
from mtlab.studies import subspace_figures as figures
from mtlab.studies import subspace_rules as rules
from mtlab.studies.base import Pairing, Preset, Study, StudyInputs, register
from mtlab.studies.claims import claims_line, evaluate_all
from mtlab.theory.pseudo_contrastive import identity_check

FEATURE_LABEL = figures.FEATURE_LABEL
SOURCE = rules.SOURCE

PRESETS = {
    "tiny": Preset(
        "tiny",
        "smoke test: r=3, d 12/24, m=32, T 1..8, n1=n2=60, 40 alternating rounds",
        1,
        {
            "r": 3,
            "recovery": {"d": 24, "m": 32, "n": 60, "T": (1, 2, 3, 6, 8)},
            "downstream": {
                "d": (12, 24),
                "T": 8,
                "n_per_d": 3,
                "m": 32,
                "halfspace": (10, 40),
                "xor": (40, 160),
                "down_tasks": 2,
                "n_val": 100,
                "n_test": 200,
            },
            "alternating": {"d": 24, "m": 32, "T": (1, 2, 6), "rounds": 40, "samples": 40},
        },
    ),
    "quick": Preset(
        "quick",
        "r=5; recovery/heads: d=100, m=200, n1=n2=500, T 1..128; downstream: T=100, "
        "n1=n2=5d, m=200, d 25..400, 5 downstream tasks; alternating: d=100, m=100, "
        "300 rounds, T 1..50; 3 seeds",
        3,
        {
            "r": 5,
            "recovery": {"d": 100, "m": 200, "n": 500, "T": (1, 2, 4, 5, 8, 16, 32, 64, 128)},
            "downstream": {
                "d": (25, 50, 100, 200, 400),
                "T": 100,
                "n_per_d": 5,
                "m": 200,
                "halfspace": (20, 50, 100, 200),
                "xor": (100, 400, 1600),
                "down_tasks": 5,
                "n_val": 500,
                "n_test": 4000,
            },
            "alternating": {
                "d": 100,
                "m": 100,
                "T": (1, 3, 5, 10, 25, 50),
                "rounds": 300,
                "samples": 100,
            },
        },
    ),
    "paper": Preset(
        "paper",
        "r=5; recovery/heads: d=200, m=1000, n1=n2=2000, T 1..1024; downstream: T=200, "
        "n1=n2=5d, m=400, d 25..1600; alternating: d=200, m=400, 1000 rounds, T 1..100; 5 seeds",
        5,
        {
            "r": 5,
            "recovery": {
                "d": 200,
                "m": 1000,
                "n": 2000,
                "T": (1, 2, 4, 5, 8, 16, 32, 64, 128, 256, 512, 1024),
            },
            "downstream": {
                "d": (25, 50, 100, 200, 400, 800, 1600),
                "T": 200,
                "n_per_d": 5,
                "m": 400,
                "halfspace": (20, 50, 100, 200, 400),
                "xor": (100, 400, 1600, 3200),
                "down_tasks": 5,
                "n_val": 1000,
                "n_test": 10000,
            },
            "alternating": {
                "d": 200,
                "m": 400,
                "T": (1, 3, 5, 10, 25, 50, 100),
                "rounds": 1000,
                "samples": 200,
            },
        },
    ),
}


RECOVERY_METRICS = ("sin_max", "energy", "coverage", "n_dirs", "theory_cos")


def sweep(preset: Preset, n_seeds: int, study: str = "subspace") -> dict[str, Any]:
    """The preset's grid as sweep data: recovery and heads (features × T), downstream (features
    per d, with n1 = n2 ∝ d) and alternating SGD (T)."""
    k = preset.params
    rec, down, alt = k["recovery"], k["downstream"], k["alternating"]
    seeds = list(range(n_seeds))
    at = {"d": [rec["d"]], "m": [rec["m"]], "n1": [rec["n"]], "n2": [rec["n"]], "T": list(rec["T"])}
    grids: list[dict[str, list[Any]]] = [
        {"seed": seeds, "part": ["recovery"], "features": ["mtl", "single_task"], **at},
        {
            "seed": seeds,
            "part": ["heads"],
            "features": ["mtl", "shared_head", "random_heads"],
            **at,
        },
    ]
    for d in down["d"]:
        n = down["n_per_d"] * d
        grids.append(
            {
                "seed": seeds,
                "part": ["downstream"],
                "features": ["mtl", "single_task", "random_features", "raw_input"],
                "d": [d],
                "T": [down["T"]],
                "m": [down["m"]],
                "n1": [n],
                "n2": [n],
                "down_halfspace": [down["halfspace"]],
                "down_xor": [down["xor"]],
                "down_tasks": [down["down_tasks"]],
                "down_bias_std": [1.0],
                "n_val": [down["n_val"]],
                "n_test": [down["n_test"]],
            }
        )
    grids.append(
        {
            "seed": seeds,
            "part": ["alternating"],
            "method": ["alternating"],
            "features": ["mtl"],
            "d": [alt["d"]],
            "m": [alt["m"]],
            "T": list(alt["T"]),
            "rounds": [alt["rounds"]],
            "samples_per_round": [alt["samples"]],
            "log_every": [max(1, alt["rounds"] // 30)],
        }
    )
    return {"study": study, "family": "subspace", "base": {"r": k["r"]}, "grids": grids}


class SubspaceStudy(Study):
    name = "subspace"
    description = (
        "Two-layer ReLU nets on subspace tasks: head-first MTL recovers the subspace, "
        "d-independent downstream learning, heads ablation, alternating SGD (Collins et al. 2024)"
    )
    paper = (
        "Collins, Hassani, Soltanolkotabi, Mokhtari & Shakkottai, Provable multi-task "
        "representation learning by two-layer ReLU neural networks, ICML 2024"
    )
    pairings = tuple(Pairing({"part": (part,)}, {"part": part, "features": "mtl"}, (*on, "seed"))
                     for part, on in (("recovery", ("T",)), ("heads", ("T",)),
                                      ("downstream", ("d",))))  # fmt: skip
    presets: ClassVar[dict[str, Preset]] = PRESETS

    def configs(
        self, preset: str, seeds: int | None = None, inputs: StudyInputs | None = None
    ) -> list[RunConfig]:
        self.check_inputs(inputs)
        return expand(sweep(self.preset(preset), self.n_seeds(preset, seeds), self.name))

    def analyze(self, store: RunStore, fig_dir: Path, preset: str) -> Analysis:
        df = store.results()
        claims: list[Claim] = []
        sections: list[Section] = []
        if df.empty:
            return Analysis(claims, sections, "No runs finished yet.")
        for col in ("d", "T", "m", "n_down", "round"):  # integers with gaps (None where n/a)
            if col in df:
                df[col] = df[col].astype("Int64")
        r = int(df.r.dropna().iloc[0])
        parts = (
            ("recovery", self._recovery_part),
            ("downstream", self._downstream_part),
            ("heads", self._heads_part),
            ("alternating", self._alternating_part),
        )
        for part, fn in parts:
            sub = df[df.part == part]
            if not sub.empty:
                c, s = fn(sub, r, fig_dir)
                claims += c
                sections.append(s)
        c, s = self._identity_part()
        claims += c
        runs = df.drop_duplicates("run_id")
        sections += [s, self._runs_section(runs, len(df))]
        return Analysis(claims, sections, claims_line(claims, preset, len(runs)) + ").")

    @staticmethod
    def _runs_section(runs: pd.DataFrame, n_rows: int) -> Section:
        per = runs.groupby(["part", "features"]).size().rename("runs").reset_index()
        return Section(
            "Runs",
            f"{len(runs)} runs, {n_rows} evaluation rows; training + probing wall time "
            f"{runs.wall_s.sum():.1f} s (sum over runs).",
            tables=[("runs per part and features", per)],
        )

    @staticmethod
    def _wide(df: pd.DataFrame, r: int) -> pd.DataFrame:
        rec = df[df.evaluation == "recovery"]
        metrics = [m for m in RECOVERY_METRICS if m in rec]
        return summarise_wide(rec, ["features", "T"], metrics).assign(r=r)

    @staticmethod
    def _per_seed(df: pd.DataFrame, r: int) -> pd.DataFrame:
        """The claims' table: one row per (features, T, seed) with the recovery metrics."""
        rec = df[df.evaluation == "recovery"]
        metrics = [m for m in RECOVERY_METRICS if m in rec]
        return rec[["features", "T", "seed", *metrics]].assign(r=r)

    # part 1 -----------------------------------------------------------------
    def _recovery_part(
        self, df: pd.DataFrame, r: int, fig_dir: Path
    ) -> tuple[list[Claim], Section]:
        table = self._wide(df, r)
        metrics = ("sin_max", "energy", "coverage", "n_dirs")
        name = figures.metrics_vs_T(table, metrics, fig_dir, "recovery_vs_T.png", r)
        shown = table.pivot_table(index="features", columns="T", values="sin_max")
        return evaluate_all(rules.RECOVERY, self._per_seed(df, r), name), Section(
            "1. Recovery vs number of tasks",
            "Head-first one-step training (hinge loss, heads from zero, weight decay 1/η_W), "
            "d, m, n1 = n2 as in the preset; metrics of the row-normalised first layer against "
            "the true projection M. Single task: one task with T·n1 and T·n2 samples.",
            [name],
            [("sin_max (mean over seeds)", shown.round(3))],
        )

    # part 2 -----------------------------------------------------------------
    def _downstream_part(
        self, df: pd.DataFrame, r: int, fig_dir: Path
    ) -> tuple[list[Claim], Section]:
        dn = df[df.evaluation == "downstream"]
        # per (features, d, task, n_down, seed): mean over downstream tasks; then over seeds
        keys = ["features", "d", "downstream_task", "n_down"]
        per_seed = dn.groupby([*keys, "seed"]).test_acc.mean().reset_index()
        cells = summarise(per_seed, keys, "test_acc")
        order = ("mtl", "single_task", "random_features", "raw_input")
        feats = [f for f in order if f in set(cells.features)]
        kinds = [k for k in ("halfspace", "xor") if k in set(cells.downstream_task)]
        fixed = {kind: rules.fixed_n(cells, kind) for kind in kinds}
        name = figures.downstream_vs_n(cells, feats, kinds, fig_dir)
        name2 = figures.downstream_vs_d(cells, feats, fixed, fig_dir)
        claims = []
        if "halfspace" in kinds:
            claims += [
                rules.d_independent.evaluate(per_seed, name2),
                rules.downstream_worse.evaluate(per_seed, name),
            ]
        if "xor" in kinds:
            claims.append(rules.xor_separates.evaluate(per_seed, name2))
        table = cells[cells.n_down.isin(list(fixed.values()))].pivot_table(
            index=["downstream_task", "n_down", "features"], columns="d", values="mean"
        )
        lam = dn.groupby(["features", "downstream_task"]).lam.median().rename("median λ")
        return claims, Section(
            "2. Downstream sample complexity vs input dimension",
            "Frozen features σ(Ŵx + b') with unit rows and fresh biases b' ~ N(0, 1); a ridge "
            "probe on ±1 labels with an intercept, λ·n_down chosen on validation data only; "
            "accuracy on fresh test data, averaged over downstream tasks, mean ± s.e. over seeds. "
            "Pretraining uses T tasks with n1 = n2 ∝ d, so n2·T grows with d.",
            [name, name2],
            [
                ("test accuracy at the fixed n_down of the second figure", table.round(3)),
                ("median chosen λ", lam.reset_index()),
            ],
        )

    # part 3 -----------------------------------------------------------------
    def _heads_part(self, df: pd.DataFrame, r: int, fig_dir: Path) -> tuple[list[Claim], Section]:
        table = self._wide(df, r)
        name = figures.metrics_vs_T(
            table, ("energy", "sin_max", "n_dirs"), fig_dir, "heads_ablation.png"
        )
        shown = table.pivot_table(index="features", columns="T", values="energy")
        return evaluate_all(rules.HEADS, self._per_seed(df, r), name), Section(
            "3. Heads ablation",
            "Same setting as part 1. Learned: heads take one step from zero before the "
            "representation step. Shared: one head for all tasks, fitted on the pooled labels. "
            "Random: fixed N(0, 0.02²) per-task heads, no head step.",
            [name],
            [("energy fraction (mean over seeds)", shown.round(3))],
        )

    # part 4 -----------------------------------------------------------------
    def _alternating_part(
        self, df: pd.DataFrame, r: int, fig_dir: Path
    ) -> tuple[list[Claim], Section]:
        rec = df[df.evaluation == "recovery"]
        name = figures.alternating(rec, fig_dir)
        last = rec[rec["round"] == rec.groupby("run_id")["round"].transform("max")]
        final = summarise(last, ["T"], "sin_max").sort_values("T")
        per_seed = last[["T", "seed", "sin_max"]].assign(r=r)
        return evaluate_all(rules.ALTERNATING, per_seed, name), Section(
            "4. Alternating SGD",
            "Rounds of: sample min(T, 10) tasks with fresh samples; one logistic-loss step on each "
            "sampled task's head (η_a = 2); one step on W on the mean loss (η_W = 2, weight "
            "decay 0.01). Heads persist across rounds. Mean ± s.e. over seeds.",
            [name],
            [("final sin_max", final.round(3))],
        )

    # theory check -------------------------------------------------------------
    def _identity_part(self) -> tuple[list[Claim], Section]:
        err = identity_check()
        return evaluate_all(rules.THEORY, err), Section(
            "Theory check: the pseudo-contrastive loss",
            "The multi-task first-layer gradient after the head step, computed by the training "
            "code, against autograd of −(η_a/(T n1 n2)) Σ_t Σ_{i,i'} y y' ⟨sg[σ(Wx)], σ(Wx')⟩ "
            f"on fresh data: relative difference {err['rel_diff']:.2e}.",
        )


register(SubspaceStudy())
