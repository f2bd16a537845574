"""Benchmark: ReLU teacher–student runs one by one vs vectorised ensembles, with achieved GFLOP/s.

The grid is the PT+FT part of ``mtlab reproduce relu-nested --preset quick`` at one seed (s ×
n_units × setting × n_main = 96 runs), each given a fixed budget of ``--steps`` full-batch GD steps
(threshold off, so every path does identical work). Paths, timed in the same process:

(a) one run at a time through mtlab's loop (``chunk = 1``);
(b) the executor's measured choice of ensemble size per group (``plan_chunk``; planning time is
    reported separately and included in the ratio);
(c) naive batching: every run of a group in one ensemble.

Achieved GFLOP/s counts the closed-form step's matrix products (forward ``2·n·m·d``, gradient
``2·n·m·d`` for W, ``2·n·m`` twice for the readout) per run-step; the peak is a square float32
GEMM (``--peak-size``³) measured in the same run. ``--width 1000`` repeats it at the paper's width,
where the issue measured naive batching of 64 runs 3× slower than one by one.

    python benchmarks/relu_ensemble.py [--steps 2000] [--width 256] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import defaultdict

import torch

from mtlab.models.relu_net import ReluNet
from mtlab.runs.executor import _chunk_cache, plan_chunk
from mtlab.runs.family import family_of
from mtlab.studies import get_study


def gemm_peak(size: int, reps: int = 5, trials: int = 5) -> float:
    """The best of ``trials`` timings of ``reps`` square float32 GEMMs, in GFLOP/s."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = 0.0
    for _ in range(trials):
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * size**3 * reps / (time.perf_counter() - t0) / 1e9)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--peak-size", type=int, default=1024)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    cfgs = [
        c.model_copy(update={"width": args.width})
        for c in get_study("relu-nested").configs("quick", seeds=1)
        if c.method == "ptft"
    ]
    fam = family_of(cfgs[0])
    # one short pretraining run to start from (its quality does not matter for timing)
    pt_cfg = cfgs[0].pretraining().model_copy(update={"pt_max_steps": 200})
    params: dict[str, dict] = {}
    fam.run_chunk([pt_cfg], None, sink=lambda row, curve, p: params.update({"pt": p}))
    pretrained = lambda run_id: params["pt"]  # noqa: E731
    groups: dict[tuple, list] = defaultdict(list)
    for c in cfgs:
        groups[fam.group_key(c)].append(c)
    peak = gemm_peak(args.peak_size)  # measured again at the end; the higher one is reported
    net = ReluNet(cfgs[0].d, args.width)
    flops = {k: net.flops_per_step(g[0].n_main) for k, g in groups.items()}
    out = {"steps": args.steps, "width": args.width, "runs": len(cfgs), "peak_gflops": peak}
    out["groups"] = []
    totals = defaultdict(float)
    for key, group in groups.items():
        n = group[0].n_main
        fam.run_chunk(group[:1], pretrained, max_steps=5)  # warm-up
        t0 = time.perf_counter()
        for c in group:
            fam.run_chunk([c], pretrained, max_steps=args.steps)
        one = time.perf_counter() - t0
        _chunk_cache.clear()
        t0 = time.perf_counter()
        size = plan_chunk(fam, group, pretrained, "cpu")
        plan = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(0, len(group), size):
            fam.run_chunk(group[i : i + size], pretrained, max_steps=args.steps)
        ens = time.perf_counter() - t0
        t0 = time.perf_counter()
        fam.run_chunk(group, pretrained, max_steps=args.steps)
        naive = time.perf_counter() - t0
        run_steps = len(group) * args.steps
        rec = {
            "n_main": n,
            "runs": len(group),
            "chosen_chunk": size,
            "one_by_one_s": one,
            "planning_s": plan,
            "ensemble_s": ens,
            "naive_all_s": naive,
            "steps_per_s_one": run_steps / one,
            "steps_per_s_ensemble": run_steps / ens,
            "steps_per_s_naive": run_steps / naive,
            "gflops_one": flops[key] * run_steps / one / 1e9,
            "gflops_ensemble": flops[key] * run_steps / ens / 1e9,
            "gflops_naive": flops[key] * run_steps / naive / 1e9,
        }
        out["groups"].append(rec)
        for k in ("one_by_one_s", "planning_s", "ensemble_s", "naive_all_s"):
            totals[k] += rec[k]
        print(
            f"n_main={n:4d} runs={len(group):3d} chunk={size:3d}: "
            f"run-steps/s one {rec['steps_per_s_one']:9.0f}"
            f"  ensemble {rec['steps_per_s_ensemble']:9.0f}  naive {rec['steps_per_s_naive']:9.0f}"
            f"  | GFLOP/s {rec['gflops_one']:.1f} / {rec['gflops_ensemble']:.1f} / "
            f"{rec['gflops_naive']:.1f}",
            flush=True,
        )
    peak = max(peak, gemm_peak(args.peak_size))
    out["peak_gflops"] = peak
    for rec in out["groups"]:
        for k in ("one", "ensemble", "naive"):
            rec[f"fraction_of_peak_{k}"] = rec[f"gflops_{k}"] / peak
    out["totals"] = dict(totals)
    speed = totals["one_by_one_s"] / (totals["ensemble_s"] + totals["planning_s"])
    out["speedup_ensemble_incl_planning"] = speed
    out["speedup_naive"] = totals["one_by_one_s"] / totals["naive_all_s"]
    out["machine"] = (
        f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(
        f"total: one by one {totals['one_by_one_s']:.1f} s, ensembles {totals['ensemble_s']:.1f} s "
        f"+ planning {totals['planning_s']:.1f} s ({speed:.2f}x), naive all-in-one "
        f"{totals['naive_all_s']:.1f} s ({out['speedup_naive']:.2f}x); GEMM peak {peak:.0f} GFLOP/s"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
