"""Study ``affinity``: the lookahead affinity of a data set's tasks (TAG, Fifty et al. 2021) — all
tasks trained together with probes, per seed, as probed runs of the own-data family on a built-in
dataset or on your own data; ``mtlab affinity`` is its command line.

The folder holds ``affinity.json`` (the mean over probes and seeds, recipient × source, with the
standard error over seeds and, per budget, whether each seed's own matrix picks the mean's grouping
— what ``mtlab group`` reads) and the figures ``affinity_heatmap.png`` and
``affinity_over_training.png``. No claims: this is a measurement.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mtlab.report.analysis import Analysis, Section
from mtlab.report.plotting import heatmap, plt, save
from mtlab.runs.affinity import AffinityResult, combine_seeds, results_from_rows
from mtlab.runs.config import RunConfig
from mtlab.runs.store import RunStore
from mtlab.runs.sweep import expand
from mtlab.studies.base import Preset, Study, StudyInputs, register

PRESETS = {
    "tiny": Preset("tiny", "smoke test: digit-attributes, 40 steps, MLP 32, probes every 10 steps",
                   1, {"epochs": 2, "widths": (32,), "probe_every": 10}),
    "quick": Preset("quick", "digit-attributes, 50 epochs, MLP 128-64, Adam 1e-3, batch 64, the "
                    "optimiser's update as the probe every 100 steps", 1,
                    {"epochs": 50, "widths": (128, 64), "probe_every": 100}),
}


def dataset_base(dataset: str, epochs: int, batch_size: int = 64, **settings: Any) -> dict[str, Any]:
    """The own-data fields of probed runs on a built-in dataset: every task, ``epochs`` passes over
    its training split (in steps of ``batch_size``), the optimiser's update as the probe unless
    ``settings`` say otherwise."""
    import math

    from mtlab.runs.owndata import load_data

    prep = load_data({"dataset": dataset})
    tasks = tuple(t.name for t in prep.tasks)
    steps = epochs * math.ceil(prep.tasks[0]["train"].n / batch_size)
    return {"family": "owndata", "study": "affinity", "dataset": dataset, "targets": tasks,
            "tasks": tasks, "probe": True, "probe_rule": "optimizer", "steps": steps,
            "batch_size": batch_size, **settings}  # fmt: skip


def affinity_text(result: AffinityResult, out: Path) -> str:
    """The affinity as text: what was measured, the matrix, its standard error over seeds and
    the grouping stability."""
    tasks, A, meta = result.tasks, result.affinity, result.meta
    overhead = meta["probe_seconds"] / max(meta["train_seconds"], 1e-9)
    lines = [
        f"affinity of {len(tasks)} tasks from {meta['probes']} probes "
        f"(every {meta['probe_every']} steps, rule {meta['rule']}); probing cost "
        f"{100 * overhead:.1f} % of training time; first-order estimate vs lookahead: correlation "
        f"{meta['first_order_corr']:.3f} -> {out / 'affinity.json'}",
        "recipient \\ source: " + " ".join(f"{t[:8]:>8}" for t in tasks),
    ]
    for i, t in enumerate(tasks):
        lines.append(f"{t[:18]:>18}: " + " ".join(f"{v:8.4f}" for v in A[i]))
    if "se" in meta:  # several seeds: the standard error of each entry, and grouping stability
        se = np.asarray(meta["se"])
        lines.append(f"standard error over {len(meta['seeds'])} seeds:")
        for i, t in enumerate(tasks):
            lines.append(f"{t[:18]:>18}: " + " ".join(f"{v:8.4f}" for v in se[i]))
        for b, st in meta.get("grouping_stability", {}).items():
            groups = " | ".join(",".join(g) for g in st["groups"])
            lines.append(f"budget {b}: {groups} — chosen by {st['seeds_agree']:.0%} of the seeds "
                         "alone" + ("" if st["stable"] else
                                    " (not distinguishable from the alternatives)"))  # fmt: skip
    return "\n".join(lines)


def folder_result(store: RunStore) -> AffinityResult | None:
    """The folder's affinity over its finished runs (None if none measured one)."""
    results = results_from_rows(store.rows())
    return combine_seeds(results) if results else None


def figures(result: AffinityResult, fig_dir: Path) -> list[str]:
    tasks, A, meta = result.tasks, result.affinity, result.meta
    fig, ax = plt().subplots(figsize=(6, 5), layout="constrained")
    heatmap(ax, A, tasks, f"lookahead affinity, {Path(str(meta['dataset'])).name} "
            f"(mean over {meta['probes']})")  # fmt: skip
    first = save(fig, fig_dir, "affinity_heatmap.png")
    fig, ax = plt().subplots(figsize=(6.5, 3.5), layout="constrained")
    off = ~np.eye(len(tasks), dtype=bool)
    Z = result.per_probe
    ax.plot(result.steps, Z[:, off].mean(1), label="mean off-diagonal", linewidth=1.5)
    for i, t in enumerate(tasks):
        ax.plot(result.steps, Z[:, i, off[i]].mean(1), linewidth=0.7, alpha=0.6, label=f"onto {t}")
    ax.axhline(0, color="0.5", linewidth=0.8)
    ax.set_xlabel("training step")
    ax.set_ylabel("affinity")
    ax.legend(fontsize=6, ncol=2)
    return [first, save(fig, fig_dir, "affinity_over_training.png")]


class AffinityStudy(Study):
    name = "affinity"
    description = "lookahead affinity of a dataset's tasks (TAG): heatmap, grouping stability over "
    description += "seeds, affinity.json for `mtlab group` (mtlab affinity)"
    paper = "Fifty et al. 2021 (TAG)"
    presets: ClassVar[dict[str, Preset]] = PRESETS
    inputs = frozenset({"dataset", "methods"})

    def configs(
        self, preset: str, seeds: int | None = None, inputs: StudyInputs | None = None
    ) -> list[RunConfig]:
        given = self.check_inputs(inputs)
        k = dict(self.preset(preset).params)
        base = dataset_base(given.dataset or "digit-attributes", k.pop("epochs"), **k)
        grid = {"seed": list(range(self.n_seeds(preset, seeds))),
                "method": list(given.methods or ["mean"])}  # fmt: skip
        return expand({"study": self.name, "family": "owndata", "base": base, "grid": grid})

    def analyze(self, store: RunStore, fig_dir: Path, preset: str) -> Analysis:
        from mtlab.grouping import write_affinity

        result = folder_result(store)
        if result is None:
            return Analysis([], [], "No run measured a finite affinity (every run failed?).")
        write_affinity(store.root / "affinity.json", result.tasks, result.affinity, result.meta)
        text = affinity_text(result, store.root)
        stability = result.meta.get("grouping_stability", {})
        table: list[tuple[str, Any]] = []
        if stability:
            import pandas as pd

            table = [("the mean's grouping per budget, and the share of seeds choosing it alone",
                      pd.DataFrame([{"budget": int(b), "groups": " | ".join(",".join(g)
                                     for g in st["groups"]), "seeds_agree": st["seeds_agree"]}
                                    for b, st in stability.items()]))]  # fmt: skip
        section = Section(
            "Lookahead affinity",
            "Z[recipient, source] = 1 − L_recipient(after a step on the source) / "
            "L_recipient(before), on the probe batches, averaged over probes (and seeds). "
            "affinity.json holds it for `mtlab group`.\n\n" + text.split("\n")[0],
            figures(result, fig_dir), table,
        )  # fmt: skip
        summary = (f"{len(result.tasks)} tasks, {result.meta['probes']} probes over "
                   f"{len(result.meta.get('seeds', [result.meta.get('seed')]))} seed(s).")  # fmt: skip
        return Analysis([], [section], summary)


register(AffinityStudy())
