"""Benchmark: the diagonal study's quick-preset grid, one run at a time vs vectorised ensembles.

(a) a plain PyTorch script per run, as the paper's own code does it: leaf tensors, autograd,
    ``torch.optim.SGD``, ``loss.item()`` every step for the threshold / divergence checks, restart
    with lr/10 (``--no-plain`` skips it);
(a') ``chunk=1``: every run alone through mtlab's training loop (a stronger baseline: closed-form
    gradients, no per-step host sync);
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
from mtlab.runs.executor import expand_dependencies, plan_chunk
from mtlab.runs.family import family_of
from mtlab.studies import get_study

PRESET = "quick"


def run_grid(seeds: int, chunk, root: Path):
    cfgs = get_study("diagonal").configs(PRESET, seeds)
    store = RunStore(root)
    t0 = time.perf_counter()
    stats = execute(cfgs, store, chunk=chunk, progress=False)
    return time.perf_counter() - t0, stats, store.results().set_index("run_id").sort_index()


def plain_run(cfg, pretrained: dict) -> dict:
    """One run as a plain PyTorch training script would do it (the baseline (a))."""
    from mtlab.runs.diagonal import DTYPES, split_data

    dtype = DTYPES[cfg.dtype]
    tasks = {"pt": ["aux"], "mtl": ["aux", "main"]}.get(cfg.method, ["main"])
    data = [split_data(cfg, t, "train") for t in tasks]
    n_tot = sum(x.shape[0] for x, _ in data)
    weights = [x.shape[0] / n_tot for x, _ in data] if cfg.method == "mtl" else [1.0]
    lr = cfg.pt_lr if cfg.method == "pt" else cfg.lr
    budget = cfg.pt_max_steps if cfg.method == "pt" else cfg.max_steps
    for _ in range(cfg.max_restarts + 1):
        if cfg.method in ("ptft", "ptft_lr"):
            pt = pretrained[cfg.pretraining().run_id()]
            w = [pt["w_pos"][0].to(dtype) * cfg.rescale, pt["w_neg"][0].to(dtype) * cfg.rescale]
            v = [torch.full((1, cfg.d), cfg.readout_init, dtype=dtype) for _ in range(2)]
        else:
            w = [torch.full((cfg.d,), cfg.init_scale, dtype=dtype) for _ in range(2)]
            v = [torch.full((len(tasks), cfg.d), cfg.init_scale, dtype=dtype) for _ in range(2)]
        train = v if cfg.method == "ptft_lr" else w + v
        for p in train:
            p.requires_grad_(True)
        opt = torch.optim.SGD(train, lr=lr)
        status, steps = "max_steps", 0
        for steps in range(budget + 1):
            loss = sum(
                wt * ((x @ (w[0] * v[0][t] - w[1] * v[1][t]) - y) ** 2).mean()
                for t, (wt, (x, y)) in enumerate(zip(weights, data, strict=True))
            )
            value = loss.item()
            if not value <= cfg.divergence_loss:
                status = "failed"
                break
            if value < cfg.threshold:
                status = "converged"
                break
            if steps == budget:
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
        if status != "failed":
            break
        lr /= 10
    with torch.no_grad():
        out = len(tasks) - 1
        beta = (w[0] * v[0][out] - w[1] * v[1][out]).double()
        params = {
            "w_pos": w[0][None].detach(),
            "w_neg": w[1][None].detach(),
            "v_pos": v[0][None].detach(),
            "v_neg": v[1][None].detach(),
        }
    return {"status": status, "steps": steps, "beta": beta, "params": params}


def run_plain(seeds: int):
    from mtlab.runs.diagonal import teacher_pair

    cfgs = get_study("diagonal").configs(PRESET, seeds)
    phases = expand_dependencies(cfgs)
    pretrained: dict[str, dict] = {}
    rows = {}
    t0 = time.perf_counter()
    for phase in phases:
        for c in phase:
            r = plain_run(c, pretrained)
            if c.method == "pt":
                pretrained[c.run_id()] = r["params"]
            tp = teacher_pair(c)
            truth = tp.beta_aux if c.method == "pt" else tp.beta_main
            rows[c.run_id()] = {
                "steps": r["steps"],
                "status": r["status"],
                "test_risk": float(((r["beta"] - truth) ** 2).sum()),
            }
    return time.perf_counter() - t0, rows


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
                "v_pos": torch.full((1, 1, d), 0.1),
                "v_neg": torch.full((1, 1, d), 0.01),
            }
        return fake_pt[run_id]

    rows, total = {}, 0.0
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
        n_main = sorted({c.n_main for c in group}) if key[0] != "pt" else [0]
        r = rows.setdefault(
            (key[0], tuple(n_main)),
            {
                "method": key[0],
                "n_main": "/".join(map(str, n_main)),
                "runs": 0,
                "chunk": size,
                "us_per_run_step": [],
                "budget_steps": budget,
                "upper_bound_hours": 0.0,
            },
        )
        r["runs"] += len(group)
        r["us_per_run_step"].append(per_run_step * 1e6)
        r["upper_bound_hours"] += seconds / 3600
    rows = {
        k: {**v, "us_per_run_step": float(np.mean(v["us_per_run_step"]))} for k, v in rows.items()
    }
    return {
        "groups": list(rows.values()),
        "total_upper_bound_hours": total / 3600,
        "runs": len(cfgs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=1, help="seeds of the quick grid (preset: 2)")
    ap.add_argument("--paper", action="store_true", help="also project the paper preset's time")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    ap.add_argument("--preset", default="quick", help="grid of the diagonal study to time")
    ap.add_argument("--skip-quick", action="store_true", help="only the paper projection")
    ap.add_argument("--no-plain", action="store_true", help="skip the plain-script baseline")
    args = ap.parse_args()
    global PRESET
    PRESET = args.preset
    torch.set_num_threads(torch.get_num_threads())
    out: dict = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "seeds": args.seeds,
    }
    if not args.skip_quick:
        with tempfile.TemporaryDirectory() as tmp:
            tb, sb, rb = run_grid(args.seeds, "auto", Path(tmp) / "ensemble")
            ta, sa, ra = run_grid(args.seeds, 1, Path(tmp) / "sequential")
        same_runs = list(ra.index) == list(rb.index)
        dsteps = (ra.steps - rb.steps).abs() if same_runs else None
        rel = np.abs(ra.test_risk - rb.test_risk) / np.maximum(np.abs(ra.test_risk), 1e-12)
        sizes = sorted({c["size"] for c in sb["chunks"]})
        out.update(
            {
                "runs": int(sa["trained"]),
                "mtlab_one_by_one_s": ta,
                "ensemble_s": tb,
                "speedup_vs_one_by_one": ta / tb,
                "same_runs": same_runs,
                "runs_with_different_steps": int((dsteps > 0).sum()) if same_runs else None,
                "max_step_difference": int(dsteps.max()) if same_runs else None,
                "median_rel_diff_test_risk": float(np.median(rel)) if same_runs else None,
                "max_rel_diff_test_risk": float(rel.max()) if same_runs else None,
                "ensemble_chunk_sizes": sizes,
            }
        )
        by_method: dict[str, dict] = {}
        for key, stats in (("one_by_one_s", sa), ("ensemble_s", sb)):
            for c in stats["chunks"]:
                m = by_method.setdefault(
                    c["method"], {"runs": 0, "one_by_one_s": 0.0, "ensemble_s": 0.0}
                )
                m[key] += c["seconds"]
                m["runs"] += c["size"] if key == "ensemble_s" else 0
        out["by_method"] = by_method
        print(f"{PRESET} grid, {args.seeds} seed(s): {sa['trained']} runs")
        if not args.no_plain:
            tp, rp = run_plain(args.seeds)
            prel = np.array(
                [
                    abs(rp[i]["test_risk"] - ra.test_risk[i]) / max(abs(ra.test_risk[i]), 1e-12)
                    for i in ra.index
                ]
            )
            out.update(
                {
                    "plain_script_s": tp,
                    "speedup_vs_plain": tp / tb,
                    "plain_median_rel_diff_test_risk": float(np.median(prel)),
                    "plain_same_status": int(
                        sum(rp[i]["status"] == ra.status[i] for i in ra.index)
                    ),
                }
            )
            print(
                f"  (a)  plain script per run : {tp:8.1f} s   speed-up {tp / tb:5.1f} x   "
                f"(same status {out['plain_same_status']}/{len(ra)}, test risk median relative "
                f"difference {out['plain_median_rel_diff_test_risk']:.1e})"
            )
        print(f"  (a') mtlab, one at a time : {ta:8.1f} s   speed-up {ta / tb:5.1f} x")
        print(f"  (b)  ensembles            : {tb:8.1f} s   (chunk sizes chosen: {sizes})")
        for m, v in by_method.items():
            print(
                f"      {m:8s} runs={v['runs']:3d}  one-by-one {v['one_by_one_s']:7.1f} s  "
                f"ensembles {v['ensemble_s']:7.1f} s  ({v['one_by_one_s'] / v['ensemble_s']:4.1f} x)"
            )
        print(
            f"  agreement (a') vs (b): same runs {same_runs}; {out['runs_with_different_steps']} runs "
            f"differ in step count (max {out['max_step_difference']}); test risk relative "
            f"difference median {out['median_rel_diff_test_risk']:.1e}, max "
            f"{out['max_rel_diff_test_risk']:.1e}"
        )
    if args.paper:
        proj = paper_projection()
        out["paper"] = proj
        print(f"paper preset: {proj['runs']} runs (+ PT); per-run-step cost by group:")
        for r in proj["groups"]:
            print(
                f"  {r['method']:8s} n_main={r['n_main']:>24s} runs={r['runs']:4d} "
                f"chunk={r['chunk']:3d} {r['us_per_run_step']:8.1f} us/run-step  "
                f"<= {r['upper_bound_hours']:7.2f} h at {r['budget_steps']:.0e} steps"
            )
        print(f"  projected upper bound: {proj['total_upper_bound_hours']:.1f} h")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
