"""Projected time of the ReLU studies' ``paper`` presets on this machine.

For every ensemble group of ``mtlab reproduce relu-{correlated,nested,magnitude} --preset paper``
(width 1000, n_aux 1024, 1e5-step budgets, 6 seeds), the executor's chosen ensemble size is timed
for ``--steps`` steps and the cost per run-step is multiplied by the group's runs × step budget —
an upper bound, as if no run stopped at the 1e-8 threshold. Kernel baselines (PT+FT (LR), NTK) are
timed by fitting one run per n_main. Pretraining runs are timed like any group.

    python benchmarks/relu_paper_projection.py [--steps 100] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from functools import partial

import torch

from mtlab.runs.executor import plan_chunk
from mtlab.runs.family import family_of
from mtlab.studies import get_study


def _short_pretraining(fam, pts: dict, cache: dict, run_id: str) -> dict:
    """Parameters of a 50-step pretraining (enough to time finetuning from it)."""
    if run_id not in cache:
        cfg = pts[run_id].model_copy(update={"pt_max_steps": 50})
        fam.run_chunk([cfg], None, sink=lambda row, curve, p: cache.update({run_id: p}))
    return cache[run_id]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    out: dict[str, dict] = {}
    fam = None
    pt_params: dict = {}
    for study in ("relu-correlated", "relu-nested", "relu-magnitude"):
        cfgs = get_study(study).configs("paper")
        fam = family_of(cfgs[0])
        pts = {c.pretraining().run_id(): c.pretraining() for c in cfgs if c.dependencies()}
        groups: dict[tuple, list] = defaultdict(list)
        for c in [*cfgs, *pts.values()]:
            groups[fam.group_key(c)].append(c)

        pretrained = partial(_short_pretraining, fam, pts, pt_params)

        total = 0.0
        rows = []
        for group in groups.values():
            c0 = group[0]
            if c0.method in ("ptft_lr", "ntk"):
                by_n: dict[int, list] = defaultdict(list)
                for c in group:
                    by_n[c.n_main].append(c)
                secs = 0.0
                for cs in by_n.values():
                    t0 = time.perf_counter()
                    fam.run_chunk(cs[:1], pretrained)
                    secs += (time.perf_counter() - t0) * len(cs)
                rows.append(
                    {"group": f"{c0.method} (fits)", "runs": len(group), "hours": secs / 3600}
                )
                total += secs
                continue
            size = plan_chunk(fam, group, pretrained, "cpu", timing_steps=20)
            fam.run_chunk(group[:size], pretrained, max_steps=3)
            t0 = time.perf_counter()
            fam.run_chunk(group[:size], pretrained, max_steps=args.steps)
            per = (time.perf_counter() - t0) / (size * args.steps)
            budget = c0.pt_max_steps if c0.method == "pt" else c0.max_steps
            secs = per * budget * len(group)
            total += secs
            rows.append(
                {
                    "group": (
                        f"{c0.method} seed={c0.seed} (all n_main)"
                        if c0.method in ("pt", "mtl")
                        else f"{c0.method} n_main={c0.n_main}"
                    ),
                    "runs": len(group),
                    "chunk": size,
                    "us_per_run_step": per * 1e6,
                    "hours": secs / 3600,
                }
            )
        out[study] = {"runs": len(cfgs) + len(pts), "hours": total / 3600, "groups": rows}
        print(f"{study}: {len(cfgs) + len(pts)} runs, at most {total / 3600:.1f} h", flush=True)
        for r in rows:
            extra = (
                f" chunk {r['chunk']:3d}, {r['us_per_run_step']:7.1f} µs/run-step"
                if "chunk" in r
                else ""
            )
            print(f"  {r['group']:28s} {r['runs']:5d} runs{extra}: {r['hours']:.2f} h")
    out["machine"] = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
