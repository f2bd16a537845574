"""Benchmark: the diagonal study's quick-preset grid, one run at a time vs vectorised ensembles.

(a) ``chunk=1``: every run alone through the same training loop (the paper's scripts also run
    one network per process; ours is a stronger baseline: no process start-up, closed-form
    gradients, no per-step host sync).
(b) ``chunk="auto"``: the executor measures the best ensemble size per group and batches.

Both write a full results store; the script checks that they agree (same runs, same step
counts, test risk within float tolerance) and prints the wall-time ratio. With ``--paper`` it
also measures the per-run-step cost of every group of the paper preset and projects that
preset's time on this machine (an upper bound: every run at its full step budget).

    python benchmarks/sweep_diagonal.py [--seeds 1] [--paper] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from mtlab.runs import RunStore, execute
from mtlab.runs.executor import expand_dependencies, family_of, plan_chunk
from mtlab.studies import get_study


def run_grid(seeds: int, chunk, root: Path):
    cfgs = get_study("diagonal").configs("quick", seeds)
    store = RunStore(root)
    t0 = time.perf_counter()
    stats = execute(cfgs, store, chunk=chunk, progress=False)
    return time.perf_counter() - t0, stats, store.results().set_index("run_id").sort_index()


def paper_projection(probe_steps: int = 300) -> dict:
    study = get_study("diagonal")
    cfgs = study.configs("paper")
    phases = expand_dependencies(cfgs)
    groups: dict[tuple, list] = defaultdict(list)
    for phase in phases:
        for c in phase:
            groups[family_of(c).group_key(c)].append(c)
    # PT parameters for the finetuning probes: any pretrained-like weights will do for timing
    fam = family_of(cfgs[0])
    fake_pt: dict[str, dict[str, torch.Tensor]] = {}

    def pretrained(run_id: str):
        if run_id not in fake_pt:
            d = cfgs[0].d
            fake_pt[run_id] = {
                "w_pos": torch.full((1, d), 0.1),
                "w_neg": torch.full((1, d), 0.01),
                "v_pos": torch.full((1, d, 1), 0.1),
                "v_neg": torch.full((1, d, 1), 0.01),
            }
        return fake_pt[run_id]

    rows, total = [], 0.0
    for key, group in groups.items():
        size = plan_chunk(fam, group, pretrained, "cpu")
        part = group[:size]
        fam.run_chunk(part, pretrained, max_steps=5)
        t0 = time.perf_counter()
        fam.run_chunk(part, pretrained, max_steps=probe_steps)
        per_run_step = (time.perf_counter() - t0) / (probe_steps * len(part))
        budget = group[0].pt_max_steps if group[0].method == "pt" else group[0].max_steps
        seconds = per_run_step * budget * len(group)
        total += seconds
        rows.append(
            {
                "method": key[0],
                "n_main": key[5],
                "runs": len(group),
                "chunk": size,
                "us_per_run_step": per_run_step * 1e6,
                "budget_steps": budget,
                "upper_bound_hours": seconds / 3600,
            }
        )
    return {"groups": rows, "total_upper_bound_hours": total / 3600, "runs": len(cfgs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=1, help="seeds of the quick grid (preset: 2)")
    ap.add_argument("--paper", action="store_true", help="also project the paper preset's time")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    out: dict = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "seeds": args.seeds,
    }
    with tempfile.TemporaryDirectory() as tmp:
        tb, sb, rb = run_grid(args.seeds, "auto", Path(tmp) / "ensemble")
        ta, sa, ra = run_grid(args.seeds, 1, Path(tmp) / "sequential")
    same_runs = list(ra.index) == list(rb.index)
    same_steps = bool((ra.steps == rb.steps).all()) if same_runs else False
    rel = np.abs(ra.test_risk - rb.test_risk) / np.maximum(np.abs(ra.test_risk), 1e-12)
    sizes = sorted({c["size"] for c in sb["chunks"]})
    out.update(
        {
            "runs": int(sa["trained"]),
            "sequential_s": ta,
            "ensemble_s": tb,
            "speedup": ta / tb,
            "same_runs": same_runs,
            "same_steps": same_steps,
            "max_rel_diff_test_risk": float(rel.max()) if same_runs else None,
            "ensemble_chunk_sizes": sizes,
        }
    )
    print(f"quick grid, {args.seeds} seed(s): {sa['trained']} runs")
    print(f"  (a) one at a time : {ta:8.1f} s")
    print(f"  (b) ensembles     : {tb:8.1f} s   (chunk sizes chosen: {sizes})")
    print(f"  speed-up (a)/(b)  : {ta / tb:8.1f} x")
    print(
        f"  same runs: {same_runs}, same step counts: {same_steps}, "
        f"max relative difference of test risk: {out['max_rel_diff_test_risk']:.2e}"
    )
    if args.paper:
        proj = paper_projection()
        out["paper"] = proj
        print(f"paper preset: {proj['runs']} runs (+ PT); per-run-step cost by group:")
        for r in proj["groups"]:
            print(
                f"  {r['method']:8s} n_main={r['n_main']:4d} runs={r['runs']:4d} "
                f"chunk={r['chunk']:3d} {r['us_per_run_step']:8.1f} us/run-step  "
                f"<= {r['upper_bound_hours']:7.2f} h at {r['budget_steps']:.0e} steps"
            )
        print(f"  projected upper bound: {proj['total_upper_bound_hours']:.1f} h")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
