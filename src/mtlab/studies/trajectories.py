"""Study ``trajectories``: can optimisation trajectories explain multi-task transfer? (Mueller,
Dredze & Andrews, TMLR 2024).

For every task, an STL run (the MTL network with one head) and MTL runs with the same trunk
initialisation, optimiser, schedule and per-task batches are recorded at checkpoints dense early.
Settings: two linear-regression teachers at an angle through a linear trunk (a one-unit
bottleneck or a wider one; equal or unequal sample sizes), and the digit tasks through an MLP;
a second pass trains a few multi-task methods on some of the same settings. The analysis pairs
runs, matches them at equal own-task training loss (``gap.csv``) and checks four claims: an
early gap with the sign of the final transfer; single-task factors do not explain it; conflict
goes with slowdown, not with generalisation; methods change optimisation more than transfer.

``mtlab trajectories`` runs the same study on a chosen dataset or a user's table: the first
method named is the baseline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from mtlab.measure.gap import Match
from mtlab.report.analysis import Analysis, Section
from mtlab.report.plotting import summarise_wide
from mtlab.runs.config import RunConfig, TrajectoryRunConfig
from mtlab.runs.store import RunStore
from mtlab.runs.sweep import expand
from mtlab.runs.trajectory_analysis import (
    FACTOR_COLUMNS,
    correlation_table,
    gap_tables,
    trajectories_table,
)
from mtlab.studies import trajectories_figures as figs
from mtlab.studies.base import Pairing, Preset, Study, StudyInputs, register
from mtlab.studies.claims import claims_line, completed, r, runs_section, spearman
from mtlab.studies.trajectories_rules import RULES

_TINY = {
    "angles": (0.0, 180.0),
    "widths": (1,),
    "sizes": ((25, 200),),
    "method_angles": (0.0,),
    "methods": ("pcgrad",),
    "datasets": {},
    "teacher": {"steps": 60, "n_early": 6, "n_late": 3, "probe_size": 32},
    "digits": {"steps": 40, "n_early": 6, "n_late": 3, "probe_size": 32, "widths": (16,)},
    "variant_angles": (0.0,),
}
_QUICK = {
    "angles": (0.0, 45.0, 90.0, 135.0, 180.0),
    "widths": (1, 4),
    "sizes": ((25, 200), (100, 100)),
    "method_angles": (0.0, 90.0, 180.0),
    "methods": ("pcgrad", "upgrad", "uw"),
    "datasets": {"digit-attributes": ("odd", "ge5", "prime", "closed_loop"), "multi-digits": None},
    "teacher": {"steps": 1500},
    "digits": {"steps": 600},
    "variant_angles": (0.0, 90.0, 180.0),
}
_PAPER = {
    "angles": (0.0, 30.0, 60.0, 90.0, 120.0, 150.0, 180.0),
    "widths": (1, 2, 8),
    "sizes": ((25, 200), (100, 100), (200, 25)),
    "method_angles": (0.0, 60.0, 90.0, 120.0, 180.0),  # angles with STL and baseline runs
    "methods": ("pcgrad", "upgrad", "uw", "mgda", "imtl_g", "aligned_mtl"),
    "datasets": {"digit-attributes": None, "multi-digits": None},
    "teacher": {"steps": 5000},
    "digits": {"steps": 3000, "widths": (128, 128)},
    "variant_angles": (0.0, 60.0, 90.0, 120.0, 180.0),
}
PRESETS = {
    "tiny": Preset("tiny", "smoke test: 2 angles, bottleneck, 60 steps, pcgrad", 1, _TINY),
    "quick": Preset(
        "quick",
        "teachers at 5 angles × widths 1/4 × 2 sample splits (1500 SGD steps); 4 digit-attribute "
        "tasks and multi-digits (MLP 64, 600 steps); pcgrad/upgrad/uw on 3 angles and the digits",
        3,
        _QUICK,
    ),
    "paper": Preset(
        "paper",
        "7 angles × widths 1/2/8 × 3 sample splits, 5000 steps; all digit tasks (MLP 128-128); "
        "6 methods",
        10,
        _PAPER,
    ),
}
BASELINE = "sum"
TEACHER = {"setting": "teacher", "trunk": "linear", "lr": 0.02, "batch_size": 32}
DIGITS = {"setting": "dataset", "trunk": "mlp", "widths": (64,), "lr": 0.05, "batch_size": 64}
MATCH: Match = "interpolated"
N_LEVELS = 20


class TrajectoriesStudy(Study):
    name = "trajectories"
    description = (
        "STL vs MTL trajectories at matched training loss: gap, trajectory factors, gradient "
        "conflict, methods (Mueller et al. 2024)"
    )
    paper = "Mueller, Dredze & Andrews, Can Optimization Trajectories Explain Multi-Task Transfer? TMLR 2024"
    pairings = tuple(Pairing({}, {"method": m}, ("setting", "angle", "dataset", "seed"))
                     for m in ("stl", BASELINE))  # fmt: skip
    presets: ClassVar[dict[str, Preset]] = PRESETS
    inputs = frozenset({"dataset", "methods", "tasks", "data_path"})

    def configs(
        self, preset: str, seeds: int | None = None, inputs: StudyInputs | None = None
    ) -> list[RunConfig]:
        given = self.check_inputs(inputs)
        p = self.preset(preset).params
        seeds_ = list(range(self.n_seeds(preset, seeds)))
        methods = list(given.methods) if given.methods else [BASELINE, *p["methods"]]
        if not methods or "stl" in methods:
            raise ValueError("--methods: name multi-task methods (the first is the baseline)")
        if given.dataset or given.data_path:
            return expand(self._user_spec(given, p, methods, seeds_))
        grids: list[dict[str, Any]] = []
        for n1, n2 in p["sizes"]:
            common = {"seed": seeds_, "n1": [n1], "n2": [n2], **_teacher(p)}
            ws = [(w,) for w in p["widths"]]
            grids.append(
                {
                    **common,
                    "angle": list(p["angles"]),
                    "widths": ws,
                    "method": ["stl"],
                    "task": ["t1", "t2"],
                }
            )
            grids.append(
                {**common, "angle": list(p["angles"]), "widths": ws, "method": [methods[0]]}
            )
        n1, n2 = p["sizes"][0]
        grids.append(
            {
                "seed": seeds_,
                "n1": [n1],
                "n2": [n2],
                **_teacher(p),
                "angle": list(p["method_angles"]),
                "widths": [(1,)],
                "method": methods[1:],
            }
            if methods[1:]
            else {}
        )
        for dataset, tasks in p["datasets"].items():
            grids += _dataset_grids(dataset, tasks, p, methods, seeds_)
        grids += _variant_grids(p, methods[0], seeds_)
        spec = {"study": self.name, "family": "trajectory", "grids": [g for g in grids if g]}
        return expand(spec)

    def _user_spec(
        self, given: StudyInputs, p: dict[str, Any], methods: list[str], seeds: list[int]
    ) -> dict[str, Any]:
        from mtlab.tasks.datasets import dataset_tasks

        tasks = list(given.tasks) if given.tasks else None
        if given.data_path:
            if not tasks:
                raise ValueError("--tasks: name the label columns of --data")
            base: dict[str, Any] = {
                **DIGITS,
                **p["digits"],
                "setting": "file",
                "data_path": given.data_path,
                "tasks": tuple(tasks),
            }
        else:
            assert given.dataset is not None
            tasks = tasks or dataset_tasks(given.dataset)
            base = {**DIGITS, **p["digits"], "dataset": given.dataset, "tasks": tuple(tasks)}
        grids = [
            {"seed": seeds, "method": ["stl"], "task": tasks},
            {"seed": seeds, "method": methods},
        ]
        return {"study": self.name, "family": "trajectory", "base": base, "grids": grids}

    # ------------------------------------------------------------------ analysis
    def analyze(self, store: RunStore, fig_dir: Path, preset: str) -> Analysis:
        baseline = _baseline(store, preset)
        every = trajectories_table(store.results())
        if len(every):
            every.to_parquet(store.root / "trajectories.parquet", index=False)
        # runs measured the preset's way; the measurement variants enter only the sensitivity
        main = every.variant.mode().iloc[0] if len(every) else ""
        traj = every[every.variant == main]
        gaps, pairs = gap_tables(completed(traj), baseline, match=MATCH, n_levels=N_LEVELS)
        gaps.to_csv(store.root / "gap.csv", index=False)
        corr = correlation_table(pairs) if len(pairs) else pd.DataFrame()
        if len(corr):
            corr.to_csv(store.root / "correlations.csv", index=False)
        figures = {
            "val": figs.val_vs_train(traj, baseline, fig_dir) if len(traj) else None,
            "gap": figs.gap_vs_level(gaps, baseline, fig_dir) if len(gaps) else None,
            "factors": figs.factors_vs_gap(pairs, fig_dir) if len(pairs) else None,
            "conflict": figs.conflict(pairs, fig_dir) if len(pairs) else None,
            "methods": figs.methods(pairs, fig_dir) if len(pairs) else None,
        }
        claims = [
            rule.evaluate(pairs, figures[key])
            for rule, key in zip(RULES, ("gap", "factors", "conflict", "methods"), strict=True)
        ]
        runs = store.results().drop_duplicates("run_id") if len(traj) else pd.DataFrame()
        sections = _sections(corr, pairs, figures, baseline, store)
        if len(pairs):
            sections.append(_definitions(completed(traj), pairs, baseline,
                                         completed(every[every.variant != main]), main))
        if len(runs):
            sections.append(runs_section(runs, by="method"))
        n_runs = int(runs.run_id.nunique()) if len(runs) else 0
        n_failed = int((runs.status == "failed").sum()) if len(runs) else 0
        summary = claims_line(claims, preset, n_runs) + f", {n_failed} failed)."
        return Analysis(claims, sections, summary)


#: the analysis-time choices the sensitivity table varies, each beside the default
SENSITIVITY: tuple[tuple[str, dict[str, Any]], ...] = (
    ("default", {}),
    ("early fraction 0.2", {"early_frac": 0.2}),
    ("early fraction 0.5", {"early_frac": 0.5}),
    ("10 levels", {"n_levels": 10}),
    ("40 levels", {"n_levels": 40}),
    ("matching: first passage", {"match": "first_passage"}),
)


def _variant_rows(traj: pd.DataFrame, variants: pd.DataFrame, baseline: str, main: str
                  ) -> list[dict[str, Any]]:  # fmt: skip
    """Per measurement variant: on the settings and seeds it was run on, each factor's Spearman
    ρ with the early gap (baseline pairs) measured the preset's way and the variant's way."""
    rows = []
    for v, sub in variants.groupby("variant"):
        same = traj[traj.setting.isin(set(sub.setting)) & traj.seed.isin(set(sub.seed))]
        for label, t in ((f"{main} (preset)", same), (str(v), sub)):
            _, p = gap_tables(t, baseline, match=MATCH, n_levels=N_LEVELS)
            b = p[p.baseline.astype(bool)] if len(p) else p
            row: dict[str, Any] = {"variant": str(v), "measured": label, "pairs": len(b)}
            for f in FACTOR_COLUMNS:
                x = b.get(f"d_{f}")
                row[f"ρ(d_{f}, early gap)"] = (
                    None if x is None else r(spearman(x.to_numpy(float),
                                                      b.early_gap.to_numpy(float)), 3))
            rows.append(row)
    return rows


def _definitions(traj: pd.DataFrame, pairs: pd.DataFrame, baseline: str,
                 variants: pd.DataFrame, main: str) -> Section:  # fmt: skip
    """How much the verdicts and the numbers hang on the definitions: one checkpoint per MTL run
    against per-task selection, the gap in loss and in metric units, conflict over the early
    steps and at the matched levels, and every claim re-decided under other analysis choices."""
    b = pairs[pairs.baseline.astype(bool)]
    by = b.groupby("group")
    compare = pd.DataFrame({
        "pairs": by.size(),
        "transfer, one checkpoint per run": by.final_transfer.mean(),
        "transfer, per-task checkpoints": by.final_transfer_per_task.mean(),
        "early gap (loss)": by.early_gap.mean(),
        "early gap (metric, MTL − STL)": by.early_gap_metric.mean(),
        "early cos (first steps)": by.early_cos.mean(),
        "early cos (matched levels)": by.early_cos_matched.mean(),
    }).reset_index()  # fmt: skip
    rows = []
    for label, kwargs in SENSITIVITY:
        opts = {"match": MATCH, "n_levels": N_LEVELS, **kwargs}
        _, p = gap_tables(traj, baseline, **opts) if kwargs else (None, pairs)
        row: dict[str, Any] = {"analysis": label, **{r.id: r.verdict(p) for r in RULES}}
        pb = p[p.baseline.astype(bool)]
        row["sign agreement (−early gap, transfer)"] = round(float(
            (np.sign(-pb.early_gap) == np.sign(pb.final_transfer)).mean()), 3) if len(pb) else None
        rows.append(row)
    return Section(
        "Definitions and their sensitivity",
        "The comparison takes each MTL run at one checkpoint for all its tasks (lowest mean "
        "validation loss over its tasks); letting each task pick its own checkpoint flatters "
        "MTL and is shown beside it. The early gap is also given in the task's metric at the "
        "same matched loss levels (positive: MTL better), and the early conflict both over the "
        "first steps and at the matched levels. The second table re-decides every claim with "
        "other analysis choices (the early fraction, the number of loss levels, the matching). "
        "The third varies how the factors are measured — half the probe, all parameters "
        "instead of the shared trunk — on runs that train the same trajectories (measuring "
        "does not change training) at a few teacher angles, and compares each factor's "
        "correlation with the early gap there with the preset's measurement on the same runs. "
        f"Means over the baseline ({baseline}) pairs.",
        tables=[("per kind of setting (baseline pairs)", compare.round(4)),
                ("every claim under other analysis choices", pd.DataFrame(rows)),
                ("factor correlations under other measurements",
                 pd.DataFrame(_variant_rows(traj, variants, baseline, main)))],
    )


def measurement_variants(p: dict[str, Any]) -> list[dict[str, Any]]:
    """The training-time measurement choices the sensitivity table varies, one at a time: half
    the probe, and the factors on all parameters (task heads included) instead of the shared
    trunk."""
    probe = int(p["teacher"].get("probe_size", TrajectoryRunConfig.model_fields["probe_size"]
                                 .default))  # fmt: skip
    return [{"probe_size": max(2, probe // 2)}, {"factor_params": "all"}]


def _variant_grids(p: dict[str, Any], baseline: str, seeds: list[int]) -> list[dict[str, Any]]:
    """STL and baseline runs of the first teacher setting (bottleneck, first sample split) at
    ``variant_angles``, once per measurement variant: the same trajectories, measured
    differently."""
    n1, n2 = p["sizes"][0]
    common = {"seed": seeds, "n1": [n1], "n2": [n2], **_teacher(p),
              "angle": list(p["variant_angles"]), "widths": [(1,)]}  # fmt: skip
    grids = []
    for v in measurement_variants(p):
        over = {k: [x] for k, x in v.items()}
        grids += [{**common, **over, "method": ["stl"], "task": ["t1", "t2"]},
                  {**common, **over, "method": [baseline]}]  # fmt: skip
    return grids


def _teacher(p: dict[str, Any]) -> dict[str, list[Any]]:
    return {k: [v] for k, v in {**TEACHER, **p["teacher"]}.items()}


def _dataset_grids(
    dataset: str, tasks: Any, p: dict[str, Any], methods: list[str], seeds: list[int]
) -> list[dict[str, Any]]:
    from mtlab.tasks.datasets import dataset_tasks

    names = list(tasks) if tasks else dataset_tasks(dataset)
    common = {
        k: [v]
        for k, v in {**DIGITS, **p["digits"], "dataset": dataset, "tasks": tuple(names)}.items()
    }
    return [
        {**common, "seed": seeds, "method": ["stl"], "task": names},
        {**common, "seed": seeds, "method": methods},
    ]


def _baseline(store: RunStore, preset: str) -> str:
    try:
        cfg = store.read_config()
    except FileNotFoundError:
        return BASELINE
    methods = cfg.get("methods")
    return str(methods[0]) if methods else BASELINE


TEXTS = {
    "gap": (
        "Claim 1 — the gap at matched training loss",
        "gap = validation loss of MTL − of STL at the same own-task training loss (on the fixed "
        "training subset); negative: MTL generalises better at equal training loss. Final "
        "transfer = MTL − STL test metric (R² for regression, accuracy for classification) at "
        "each run's best-validation checkpoint; positive: MTL better. Early / late gap: mean over "
        "the levels the STL run reached within / after the early share of its steps. Mean ± s.e. "
        "over seeds per setting, task and method; `gap.csv` holds every level of both matchings.",
    ),
    "factors": (
        "Claim 2 — trajectory factors",
        "Early factor differences (mean over the early matched levels of MTL − STL, "
        "interpolated at each level) against the early gap.",
    ),
    "conflict": (
        "Claim 3 — conflict, slowdown and transfer",
        "Early conflict = the task's mean cos to the sum of the other tasks' training-subset gradients "
        "(shared parameters) over the MTL run's early checkpoints; slowdown = MTL ÷ STL steps to "
        "reach a level. Note on the estimator: at a stationary point of the summed loss the "
        "tasks' training-subset gradients on the trunk cancel (cos → −1 for two tasks) whatever the tasks' "
        "relation, so when a run converges inside the early window its early conflict partly "
        "measures that.",
    ),
    "methods": (
        "Claim 4 — multi-task methods",
        "Each method against the baseline ({baseline}) on the same (setting, task, seed).",
    ),
}


def _sections(
    corr: pd.DataFrame,
    pairs: pd.DataFrame,
    figures: dict[str, str | None],
    baseline: str,
    store: RunStore,
) -> list[Section]:
    """Setup (estimator choices), gap and transfer per setting, factors, conflict, methods."""

    def fig(key: str) -> list[str]:
        name = figures[key]
        return [name] if name else []

    tables: dict[str, list[tuple[str, Any]]] = {k: [] for k in TEXTS}
    setup_tables: list[tuple[str, Any]] = []
    if len(pairs):
        means = summarise_wide(
            pairs,
            ["group", "setting", "task", "method"],
            ["early_gap", "late_gap", "final_transfer", "early_cos", "early_slowdown"],
        )
        caption = "per setting, task and method: mean ± s.e. over seeds"
        tables["gap"] = [(caption, means.round(4))]
        cols = ["group", "x", "y", "n", "spearman", "spearman_lo", "spearman_hi", "pearson",
                "pearson_lo", "pearson_hi", "sign_agreement"]  # fmt: skip
        shown = corr[cols].round(3)
        factor_rows = shown[shown.x.str.startswith("d_") & (shown.y == "early_gap")]
        tables["factors"] = [("baseline pairs; 95 % paired-bootstrap CIs (correlations.csv)",
                              factor_rows)]  # fmt: skip
        tables["conflict"] = [("baseline pairs (conflict over the first steps, and at the "
                               "matched early levels)",
                               shown[shown.x.isin(["early_cos", "early_cos_matched"])])]
        counts = pairs.groupby(["group", "method"]).size().rename("pairs").reset_index()
        setup_tables = [("pairs per kind of setting and method", counts)]
    out = [Section("Setup and estimators", _setup_text(store, baseline), fig("val"), setup_tables)]
    for key, (title, text) in TEXTS.items():
        out.append(Section(title, text.format(baseline=baseline), fig(key), tables[key]))
    return out


def _setup_text(store: RunStore, baseline: str) -> str:
    try:
        runs = store.read_config().get("runs", [])
    except FileNotFoundError:
        runs = []
    first = runs[0] if runs else {}
    keys = (
        "probe_size",
        "factor_params",
        "lanczos_tol",
        "fisher_samples",
        "noise_batch",
        "n_early",
        "early_frac",
        "n_late",
        "optimizer",
        "lr",
        "batch_size",
    )
    chosen = ", ".join(f"{k} = {first[k]}" for k in keys if k in first)
    return (
        f"Baseline MTL method: **{baseline}** (equal task weights, each task's gradient at its "
        "STL scale). STL runs are the same network with one head; the trunk's initialisation "
        "depends on the seed only and each head's on the seed and its task; every task draws its "
        "batches from its own seeded stream, the same in STL and MTL. Gaps are matched by the "
        f"running minimum of the training loss with linear interpolation ({MATCH}; gap.csv also "
        f"has first passage) at {N_LEVELS} geometric levels inside the overlap of the two runs' "
        "training-loss ranges, never extrapolated; a level is early when the STL run reached it "
        "within the early share of its steps. Factors on each task's own training-subset loss, on the "
        "shared parameters (or all: the trunk and the task's head): sharpness = top Hessian "
        "eigenvalue by Lanczos on torch.func HVPs; Fisher trace with labels sampled from the "
        "model (Gaussian unit variance for regression); coherence ‖mean gᵢ‖²/mean‖gᵢ‖² over "
        "per-example gradients; noise scale B_simple from micro-batches vs the training subset. "
        f"Estimator choices of these runs: {chosen}. Thresholds of the claims were fixed "
        "before any result was looked at (studies/trajectories_rules.py)."
    )


register(TrajectoriesStudy())

__all__ = ["PRESETS", "TrajectoriesStudy"]
