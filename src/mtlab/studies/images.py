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

import numpy as np

from mtlab.runs.config import RunConfig, make_config
from mtlab.runs.store import RunStore
from mtlab.studies.base import Analysis, Claim, Preset, Section, Study, StudyInputs, register
from mtlab.studies.plotting import errorline, log_ticks, panel_grid, save, summarise

SOURCE = "Lippl & Lindsey 2024; paper notes §3.2 (CIFAR-100), §4"
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


class ImagesRescalingStudy(Study):
    name = "images-rescaling"
    description = (
        "Deep-network check: weight rescaling after pretraining on real images (digits; "
        "CIFAR-100 + ResNet-18 with --data-dir), accuracy, PR / ENSD signature"
    )
    paper = "Lippl & Lindsey, Inductive biases of multi-task learning and finetuning, NeurIPS 2024"
    presets: ClassVar[dict[str, Preset]] = PRESETS
    inputs = frozenset({"data_dir"})

    def configs(
        self, preset: str, seeds: int | None = None, inputs: StudyInputs | None = None
    ) -> list[RunConfig]:
        data_dir = self.check_inputs(inputs).data_dir
        p = self.preset(preset)
        k = p.params
        if k["source"] == "cifar100" and not data_dir:
            raise ValueError(
                f"preset {preset!r} trains on CIFAR-100: pass --data-dir with the CIFAR-100 "
                "python files (cifar-100-python/train, test, meta); nothing is downloaded"
            )
        if k["source"] == "digits" and data_dir:
            raise ValueError(f"preset {preset!r} uses scikit-learn's digits; drop --data-dir")
        out = []
        for seed in range(self.n_seeds(preset, seeds)):
            for trunk, widths in k["trunks"].items():
                base = {
                    "family": "images",
                    "study": self.name,
                    "seed": seed,
                    "source": k["source"],
                    "data_dir": str(data_dir) if data_dir else None,
                    "trunk": trunk,
                    "widths": widths,
                    "lr": k["lr"],
                    "max_epochs": k["max_epochs"],
                    "pt_max_epochs": k["pt_max_epochs"],
                }
                for n in k["n_main"]:
                    out.append(make_config({**base, "method": "stl", "n_main": n}))
                    out.append(make_config({**base, "method": "mtl", "n_main": n}))
                    for s in k["rescale"]:
                        out.append(
                            make_config({**base, "method": "ptft", "n_main": n, "rescale": s})
                        )
        return out

    def analyze(self, store: RunStore, fig_dir: Path, preset: str) -> Analysis:
        df = store.results()
        if df.empty:
            return Analysis([], [], "No runs finished yet.")
        ft = df[df.method != "pt"].astype({"n_main": int})
        ft["label"] = [_label(m, s) for m, s in zip(ft.method, ft.rescale, strict=True)]
        ft["s"] = ft.rescale.fillna(0.0)
        acc = summarise(ft, ["trunk", "method", "s", "label", "n_main"], "test_acc")
        loss = summarise(ft, ["trunk", "method", "s", "label", "n_main"], "test_loss")
        trunks = list(dict.fromkeys(ft.trunk))
        ns = sorted(set(ft.n_main))
        labels = ["STL", "MTL"] + [f"PT+FT s={s:g}" for s in sorted(set(ft.s)) if s > 0]
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
        perf_fig = save(fig, fig_dir, "images_rescaling.png")

        pf = ft[ft.method == "ptft"]
        rep = pf.groupby(["trunk", "s"])[["pr_pre", "pr_post", "ensd"]].mean().reset_index()
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
        rep_fig = save(fig, fig_dir, "images_pr_ensd.png")

        claims = []

        def a(trunk, label, n):
            g = acc[(acc.trunk == trunk) & (acc.label == label) & (acc.n_main == n)]
            return None if g.empty else float(g["mean"].iloc[0])

        ev: dict[str, Any] = {}
        ok = True
        small = [lab for lab in ("PT+FT s=0.125", "PT+FT s=0.25") if lab in set(acc.label)]
        for trunk in trunks:
            for n in ns:
                base = a(trunk, "PT+FT s=1", n)
                best = max((a(trunk, lab, n) or -1.0 for lab in small), default=None)
                ev[f"{trunk} n={int(n)}: best small s − s=1"] = (
                    None if base is None or best is None else round(best - base, 4)
                )
                ok &= base is not None and best is not None and best > base
        claims.append(
            Claim(
                "images.small_s_helps",
                "Rescaling by a small s (0.125 or 0.25) improves PT+FT's test accuracy over s = 1 "
                "at every n_main, for every network.",
                ok and bool(small),
                ev,
                perf_fig,
                SOURCE + " (ResNet-18: s ∈ {0.125, 0.25} helps at all n)",
            )
        )
        ev = {}
        ok = True
        for trunk in trunks:
            d = [
                a(trunk, "PT+FT s=2", n) - a(trunk, "PT+FT s=1", n)
                for n in ns
                if a(trunk, "PT+FT s=2", n) is not None and a(trunk, "PT+FT s=1", n) is not None
            ]
            ev[f"{trunk}: mean over n of acc(s=2) − acc(s=1)"] = (
                round(float(np.mean(d)), 4) if d else None
            )
            ok &= bool(d) and float(np.mean(d)) < 0
        claims.append(
            Claim(
                "images.large_s_hurts",
                "s = 2 is worse than s = 1 (test accuracy averaged over n_main), for every network.",
                ok,
                ev,
                perf_fig,
                SOURCE + " (s = 2 clearly worse)",
            )
        )
        ev = {}
        ok = True
        for trunk in trunks:
            g = rep[(rep.trunk == trunk) & (rep.s == rep.s.min())]
            if g.empty:
                ok = False
                continue
            r = g.iloc[0]
            ev[f"{trunk} s={r.s:g}"] = {
                "pr_pre": round(float(r.pr_pre), 3),
                "pr_post": round(float(r.pr_post), 3),
                "ensd": round(float(r.ensd), 3),
            }
            ok &= bool(r.pr_post < r.pr_pre and r.ensd >= 0.8 * r.pr_post)
        claims.append(
            Claim(
                "images.nested_signature",
                "At the smallest s the finetuned penultimate layer shows the nested-feature-"
                "selection signature: a lower participation ratio than the (rescaled) pretrained "
                "layer, and ENSD ≥ 0.8·PR after finetuning — for every network.",
                ok,
                ev,
                rep_fig,
                SOURCE + " (ResNet, small s: lower-dimensional, inside the pretrained subspace)",
            )
        )
        ev = {}
        ok = True
        for trunk in trunks:
            lo = (a(trunk, "MTL", ns[0]), a(trunk, "PT+FT s=1", ns[0]))
            hi = (a(trunk, "MTL", ns[-1]), a(trunk, "PT+FT s=1", ns[-1]))
            ev[f"{trunk} n={int(ns[0])}: MTL, PT+FT"] = lo
            ev[f"{trunk} n={int(ns[-1])}: MTL, PT+FT"] = hi
            ok &= None not in lo + hi and lo[0] >= lo[1] and hi[1] >= hi[0]
        claims.append(
            Claim(
                "images.mtl_small_n",
                "MTL is at least as accurate as PT+FT (s = 1) at the smallest n_main and PT+FT at "
                "least as accurate as MTL at the largest, for every network.",
                ok,
                ev,
                perf_fig,
                SOURCE + " (§5: ResNet within error at the smallest n, PT+FT ahead beyond)",
            )
        )
        table = acc.pivot_table(index=["trunk", "label"], columns="n_main", values="mean")
        table_se = acc.pivot_table(index=["trunk", "label"], columns="n_main", values="se")
        status = df.groupby(["trunk", "method", "status"]).size().unstack(fill_value=0)
        pt = df[df.method == "pt"][["trunk", "seed", "status", "epochs", "test_acc"]]
        n_true = sum(c.verdict for c in claims)
        summary = (
            f"{n_true} of {len(claims)} checked claims hold at preset `{preset}` "
            f"({len(df)} runs). Whether rescaling helps on this data, and whether the signature "
            "appears, is read off the claims below — a claim that does not hold is a finding "
            "about this data set and these networks, not hidden."
        )
        sections = [
            Section(
                "Accuracy against n_main",
                "Main task: the two held-out classes (chosen by the seed). PT+FT: every "
                "pretrained parameter × s (BatchNorm affines and both heads included; the main "
                "head is never trained during pretraining, as the paper's shared head's main "
                "logits), then all parameters trained on the main task. Mean ± s.e. over seeds.",
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
        return Analysis(claims, sections, summary)


register(ImagesRescalingStudy())
