"""Study ``images-rescaling``: the deep-network check of weight rescaling after pretraining
(Lippl & Lindsey 2024, §3.2 "CIFAR-100" and §4 of the paper notes) on real images.

The paper pretrains a ResNet-18 on 98 CIFAR-100 classes, finetunes on the other two with 10 … 1000
images after multiplying every pretrained parameter by s ∈ {0.125 … 2}, and finds that rescaling
helps when it produces the nested-feature-selection signature: a lower participation ratio (PR) of
the penultimate layer after finetuning, lying inside the pretrained representation (ENSD ≈ PR
after finetuning).

Here: scikit-learn's handwritten digits (offline) — auxiliary task = 8 digit classes, main task =
the two held-out digits (which two varies with the seed), n_main ∈ {10, 20, 50, 100, 200}; an MLP
and a small CNN; STL, MTL and PT+FT × s; mean test accuracy (and cross-entropy) ± s.e. over
seeds; PR before / after finetuning and their ENSD. The ``paper`` preset runs the same study on
CIFAR-100 with a CIFAR-style ResNet-18 given ``--data-dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from mtlab.report.analysis import Analysis, Section
from mtlab.report.plotting import errorline, log_ticks, panel_grid, save, summarise
from mtlab.runs.config import RunConfig
from mtlab.runs.store import RunStore
from mtlab.runs.sweep import expand
from mtlab.studies import images_rules as rules
from mtlab.studies.base import Pairing, Preset, Study, StudyInputs, register
from mtlab.studies.claims import claims_line, completed, evaluate_all

SOURCE = rules.SOURCE
RESCALES = (0.125, 0.25, 0.5, 1.0, 2.0)

PRESETS = {
    "tiny": Preset(
        "tiny",
        "smoke test: digits, MLP 32 + CNN 8-16, n_main 10/50, s 0.25/1, ≤ 20 epochs, 1 seed",
        1,
        {
            "source": "digits",
            "trunks": {"mlp": (32,), "cnn": (8, 16)},
            "n_main": (10, 50),
            "rescale": (0.25, 1.0),
            "max_epochs": 20,
            "pt_max_epochs": 10,
            "lr": 1e-2,
        },
    ),
    "quick": Preset(
        "quick",
        "digits (aux: 8 classes, main: 2 held-out digits per seed), MLP 256-256 and CNN 32-64, "
        "n_main 10/20/50/100/200, s 0.125…2, SGD lr 0.01 momentum 0.9, batch ≤ 128, stop at "
        "train loss < 1e-2 (≤ 1000 epochs as in the paper; PT ≤ 300), 5 seeds",
        5,
        {
            "source": "digits",
            "trunks": {"mlp": (256, 256), "cnn": (32, 64)},
            "n_main": (10, 20, 50, 100, 200),
            "rescale": RESCALES,
            "max_epochs": 1000,
            "pt_max_epochs": 300,
            "lr": 1e-2,
        },
    ),
    "paper": Preset(
        "paper",
        "CIFAR-100 (--data-dir; aux: 98 classes, main: 2), CIFAR-style ResNet-18, n_main "
        "10…1000, s 0.125…2, SGD lr 1e-3 momentum 0.9, batch ≤ 128, stop at train loss < 1e-2 "
        "(≤ 1000 epochs), 5 seeds (paper: 50); GPU-sized",
        5,
        {
            "source": "cifar100",
            "trunks": {"resnet18": (64,)},
            "n_main": (10, 20, 50, 100, 200, 500, 1000),
            "rescale": RESCALES,
            "max_epochs": 1000,
            "pt_max_epochs": 1000,
            "lr": 1e-3,
        },
    ),
}


def _label(method: str, s: float | None) -> str:
    if method == "ptft":
        return f"PT+FT s={s:g}"
    return {"stl": "STL", "mtl": "MTL"}[method]


def performance_figure(acc: pd.DataFrame, loss: pd.DataFrame, fig_dir: Path) -> str:
    """Accuracy and cross-entropy against n_main per network, a line per regime."""
    trunks = list(dict.fromkeys(acc.trunk))
    ns = sorted(set(acc.n_main))
    labels = ["STL", "MTL"] + [f"PT+FT s={s:g}" for s in sorted(set(acc.s)) if s > 0]
    fig, axes = panel_grid(2 * len(trunks), ncols=2, size=(4.8, 3.4))
    for i, trunk in enumerate(trunks):
        for j, (table, ylabel) in enumerate(((acc, "test accuracy"), (loss, "test loss (CE)"))):
            ax = axes[2 * i + j]
            sub = table[table.trunk == trunk]
            for lab in labels:
                g = sub[sub.label == lab]
                if len(g):
                    style = {"color": "k", "linestyle": "--"} if lab == "STL" else {}
                    errorline(ax, g.n_main, g["mean"], g["se"], lab, **style)
            ax.set_xscale("log")
            log_ticks(ax, ns)
            if j == 1:
                ax.set_yscale("log")
            ax.set_xlabel("n_main (main-task training images)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{trunk}: {ylabel}")
    axes[0].legend(fontsize=6)
    return save(fig, fig_dir, "images_rescaling.png")


def representation_figure(rep: pd.DataFrame, fig_dir: Path) -> str:
    """PR before / after finetuning and their ENSD against s, per network."""
    trunks = list(dict.fromkeys(rep.trunk))
    fig, axes = panel_grid(len(trunks), ncols=len(trunks), size=(4.6, 3.4))
    for ax, trunk in zip(axes, trunks, strict=True):
        g = rep[rep.trunk == trunk]
        ax.plot(g.s, g.pr_pre, marker="o", label="PR before FT (rescaled)")
        ax.plot(g.s, g.pr_post, marker="o", label="PR after FT")
        ax.plot(g.s, g.ensd, marker="o", label="ENSD(before, after)")
        ax.set_xscale("log", base=2)
        log_ticks(ax, g.s)
        ax.set_xlabel("rescaling s")
        ax.set_title(f"{trunk}: penultimate layer")
    axes[0].legend(fontsize=7)
    return save(fig, fig_dir, "images_pr_ensd.png")


class ImagesRescalingStudy(Study):
    name = "images-rescaling"
    description = (
        "Deep-network check: weight rescaling after pretraining on real images (digits; "
        "CIFAR-100 + ResNet-18 with --data-dir), accuracy, PR / ENSD signature"
    )
    paper = "Lippl & Lindsey, Inductive biases of multi-task learning and finetuning, NeurIPS 2024"
    pairings = (Pairing({"method": ("ptft", "mtl")}, {"method": "ptft", "rescale": 1.0},
                        ("trunk", "n_main", "seed")),)  # fmt: skip
    presets: ClassVar[dict[str, Preset]] = PRESETS
    inputs = frozenset({"data_dir"})

    def sweep(self, preset: str, n_seeds: int, data_dir: str | None) -> dict[str, Any]:
        """The preset's grid as sweep data: per network, STL, MTL and PT+FT × s at every
        n_main and seed."""
        k = self.preset(preset).params
        if k["source"] == "cifar100" and not data_dir:
            raise ValueError(
                f"preset {preset!r} trains on CIFAR-100: pass --data-dir with the CIFAR-100 "
                "python files (cifar-100-python/train, test, meta); nothing is downloaded"
            )
        if k["source"] == "digits" and data_dir:
            raise ValueError(f"preset {preset!r} uses scikit-learn's digits; drop --data-dir")
        base = {f: k[f] for f in ("source", "lr", "max_epochs", "pt_max_epochs")}
        grids = []
        for trunk, widths in k["trunks"].items():
            common = {"seed": list(range(n_seeds)), "trunk": [trunk], "widths": [widths],
                      "n_main": list(k["n_main"])}  # fmt: skip
            grids += [
                {**common, "method": ["stl", "mtl"]},
                {**common, "method": ["ptft"], "rescale": list(k["rescale"])},
            ]
        base["data_dir"] = str(data_dir) if data_dir else None
        return {"study": self.name, "family": "images", "base": base, "grids": grids}

    def configs(
        self, preset: str, seeds: int | None = None, inputs: StudyInputs | None = None
    ) -> list[RunConfig]:
        data_dir = self.check_inputs(inputs).data_dir
        return expand(self.sweep(preset, self.n_seeds(preset, seeds), data_dir))

    def analyze(self, store: RunStore, fig_dir: Path, preset: str) -> Analysis:
        df = store.results()
        if df.empty:
            return Analysis([], [], "No runs finished yet.")
        ft = completed(df[df.method != "pt"]).astype({"n_main": int})
        ft["label"] = [_label(m, s) for m, s in zip(ft.method, ft.rescale, strict=True)]
        ft["s"] = ft.rescale.fillna(0.0)
        by = ["trunk", "method", "s", "label", "n_main"]
        acc, loss = summarise(ft, by, "test_acc"), summarise(ft, by, "test_loss")
        perf_fig = performance_figure(acc, loss, fig_dir)
        pf = ft[ft.method == "ptft"]
        rep = pf.groupby(["trunk", "s"])[["pr_pre", "pr_post", "ensd"]].mean().reset_index()
        rep_fig = representation_figure(rep, fig_dir)
        runs = ft[[*rules.KEYS, "seed", "test_acc"]]
        claims = evaluate_all(rules.PERFORMANCE, runs, perf_fig)
        pf_runs = pf[["trunk", "s", "seed", "pr_pre", "pr_post", "ensd"]]
        claims.append(rules.images_nested_signature.evaluate(pf_runs, rep_fig))
        claims.append(rules.images_mtl_small_n.evaluate(runs, perf_fig))
        summary = (
            f"{claims_line(claims, preset, len(df))}). Whether rescaling helps on this data, and "
            "whether the signature appears, is read off the claims below — a claim that does not "
            "hold is a finding about this data set and these networks, not hidden."
        )
        return Analysis(claims, self._sections(df, acc, rep, perf_fig, rep_fig), summary)

    @staticmethod
    def _sections(
        df: pd.DataFrame, acc: pd.DataFrame, rep: pd.DataFrame, perf_fig: str, rep_fig: str
    ) -> list[Section]:
        table = acc.pivot_table(index=["trunk", "label"], columns="n_main", values="mean")
        table_se = acc.pivot_table(index=["trunk", "label"], columns="n_main", values="se")
        status = df.groupby(["trunk", "method", "status"]).size().unstack(fill_value=0)
        pt = df[df.method == "pt"][["trunk", "seed", "status", "epochs", "test_acc"]]
        return [
            Section(
                "Accuracy against n_main",
                "Main task: the two held-out classes (chosen by the seed). PT+FT: every "
                "pretrained parameter × s (BatchNorm affines and both heads included; the main "
                "head is never trained during pretraining, as the paper's shared head's main "
                "logits), then all parameters trained on the main task. Mean ± s.e. over seeds "
                "(failed runs excluded).",
                [perf_fig],
                [("mean test accuracy", table), ("s.e.", table_se)],
            ),
            Section(
                "Representation: PR and ENSD",
                "Participation ratio (uncentred) of the penultimate layer on the main task's "
                "training pool, before finetuning (after rescaling) and after, and their ENSD; "
                "means over seeds and n_main. Features are extracted in eval mode (BatchNorm "
                "running statistics).",
                [rep_fig],
                [("PR / ENSD by s", rep.round(3))],
            ),
            Section("Runs", "", [], [("status", status), ("pretraining", pt)]),
        ]


register(ImagesRescalingStudy())
