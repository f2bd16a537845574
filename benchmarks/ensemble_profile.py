"""Profile of one ensemble step: where the time of the diagonal and ReLU families' steps goes.

For one group of each quick preset (diagonal: the PT+FT group at n_main 64 and the MTL group;
relu-nested: the PT+FT groups at n_main 64 and 256), the executor's deterministic ensemble size
(``auto_chunk``) is trained for ``--steps`` steps under ``torch.profiler``; reported per step:
wall time, minor page faults, the time inside torch operators (self CPU time summed over ops),
the rest (Python, the loop's bookkeeping, dispatch), the number of operator calls, the largest ops, and the
fraction of the float32 GEMM peak measured in the same process (counted FLOPs: the step's matrix
products). One-by-one timing of the same group gives the ensemble's speed-up.

Each is measured twice, in two processes: with glibc's allocator defaults (``system``) and after
``mtlab.runs.workers.keep_freed_memory()`` (``kept``: what every mtlab process now does).

    python benchmarks/ensemble_profile.py [--steps 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from relu_ensemble import gemm_peak  # benchmarks/: the script's folder
from torch.profiler import ProfilerActivity, profile

from mtlab.runs.family import family_of
from mtlab.studies import get_study


def _pretrained(fam: Any, cfgs: list[Any]) -> Any:
    params: dict[str, dict] = {}
    pts = {c.pretraining().run_id(): c.pretraining() for c in cfgs if c.dependencies()}
    for rid, pt in pts.items():
        short = pt.model_copy(update={"pt_max_steps": 50})
        fam.run_chunk([short], None, sink=lambda row, curve, p, rid=rid: params.update({rid: p}))
    return params.__getitem__


def _flops(study: str, cfg: Any) -> float:
    """Matrix-product FLOPs of one run-step (forward + closed-form gradient)."""
    if study == "diagonal":
        n = cfg.n_main + (cfg.n_aux if cfg.method in ("mtl", "pt") else 0)
        return 4.0 * n * cfg.d  # X β and Xᵀ r
    from mtlab.models.relu_net import ReluNet

    return float(ReluNet(cfg.d, cfg.width).flops_per_step(cfg.n_main))


def profile_group(study: str, method: str, n_main: int, steps: int, peak: float) -> dict[str, Any]:
    cfgs = [c for c in get_study(study).configs("quick", seeds=2) if c.method == method]
    if method != "mtl":
        cfgs = [c for c in cfgs if c.n_main == n_main]
    fam = family_of(cfgs[0])
    groups: dict[Any, list] = defaultdict(list)
    for c in cfgs:
        groups[fam.group_key(c)].append(c)
    group = max(groups.values(), key=len)
    size = fam.auto_chunk(group, "cpu")
    part = group[:size]
    pretrained = _pretrained(fam, part)
    fam.run_chunk(part, pretrained, max_steps=5)  # warm-up
    t0 = time.perf_counter()
    fam.run_chunk(part, pretrained, max_steps=steps)
    wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    for c in part:
        fam.run_chunk([c], pretrained, max_steps=steps)
    one = time.perf_counter() - t0
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fam.run_chunk(part, pretrained, max_steps=steps)
    import resource

    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fam.run_chunk(part, pretrained, max_steps=steps)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps
    events = prof.key_averages()
    op_us = sum(e.self_cpu_time_total for e in events)
    calls = sum(e.count for e in events)
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:8]
    flops = _flops(study, part[0]) * len(part) * steps
    rec = {
        "study": study, "group": f"{method} n_main={n_main if method != 'mtl' else 'all'}",
        "ensemble": len(part), "steps": steps,
        "ms_per_step": wall / steps * 1e3,
        "op_ms_per_step": op_us / steps / 1e3,
        "ops_per_step": calls / steps,
        "page_faults_per_step": faults,
        "one_by_one_ms_per_step": one / steps * 1e3,
        "speedup": one / wall,
        "gflops": flops / wall / 1e9,
        "fraction_of_peak": flops / wall / 1e9 / peak,
        "top_ops": [{"op": e.key, "calls_per_step": e.count / steps,
                     "ms_per_step": e.self_cpu_time_total / steps / 1e3} for e in top],
    }  # fmt: skip
    rec["outside_ops_share"] = 1 - rec["op_ms_per_step"] / rec["ms_per_step"]
    print(f"{study:10s} {rec['group']:18s} E={len(part):3d}: {rec['ms_per_step']:.3f} ms/step "
          f"(ops {rec['op_ms_per_step']:.3f} ms, {rec['ops_per_step']:.0f} op calls, "
          f"{faults:.0f} page faults), "
          f"one by one {rec['one_by_one_ms_per_step']:.3f} ms/step -> {rec['speedup']:.2f}x; "
          f"{rec['gflops']:.1f} GFLOP/s = {100 * rec['fraction_of_peak']:.0f} % of peak",
          flush=True)  # fmt: skip
    for t in rec["top_ops"]:
        print(f"    {t['op']:32s} {t['calls_per_step']:6.1f} calls {t['ms_per_step']:.3f} ms")
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--allocator", choices=("both", "system", "kept"), default="both",
                    help="glibc's defaults, mtlab's keep_freed_memory(), or both (two processes, "
                    "one after the other)")  # fmt: skip
    ap.add_argument(
        "--studies",
        default="diagonal,relu-nested",
        help="comma-separated: which studies' groups to profile",
    )
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.allocator == "both":
        import subprocess
        import sys
        import tempfile

        both = {}
        for kind in ("system", "kept"):
            with tempfile.NamedTemporaryFile(suffix=".json") as f:
                subprocess.run([sys.executable, __file__, "--steps", str(args.steps),
                                "--allocator", kind, "--studies", args.studies,
                                "--json", f.name], check=True)  # fmt: skip
                both[kind] = json.loads(Path(f.name).read_text())
        if args.json:
            Path(args.json).write_text(json.dumps(both, indent=1))
        return
    if args.allocator == "kept":
        from mtlab.runs.workers import keep_freed_memory

        assert keep_freed_memory()
    print(f"allocator: {args.allocator}", flush=True)
    torch.set_num_threads(1)  # what a worker process uses
    peak = gemm_peak(1024)
    out: dict[str, Any] = {"peak_gflops": peak, "threads": 1, "torch": torch.__version__,
                           "machine": platform.machine(), "allocator": args.allocator,
                           "groups": []}  # fmt: skip
    for study, method, n in (("diagonal", "ptft", 64), ("diagonal", "stl", 64),
                             ("diagonal", "mtl", 0), ("relu-nested", "ptft", 64),
                             ("relu-nested", "ptft", 256), ("relu-nested", "stl", 256)):  # fmt: skip
        if study not in args.studies.split(","):
            continue
        out["groups"].append(profile_group(study, method, n, args.steps, peak))
    out["peak_gflops_end"] = gemm_peak(1024)
    print(f"GEMM peak (1 thread): {peak:.0f} / {out['peak_gflops_end']:.0f} GFLOP/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
