"""Benchmark: the cost of lookahead transference and of the exact grouping search.

(1) Probing cost per probed step, relative to one training step (forward + backward + Adam), on
    ``digit-attributes`` (9 tasks, MLP 128-64, batch 64):
    * naive — per source task: a deep copy of the model, the update applied in place, a forward;
    * loop — mtlab's probe with one functional forward per source (no copies);
    * batched — mtlab's probe with all sources' forwards in one ``vmap``;
    * first-order — only the per-task gradients and η⟨g_i, u_j⟩/L_i (no lookahead forwards);
    and the total overhead of probing every 50 and every 100 steps (``mtlab affinity``'s
    default), measured on full training runs.
(2) Grouping search time vs number of tasks and budget: exhaustive enumeration vs mtlab's
    branch-and-bound, on random affinity matrices (the hardest case: no structure to exploit),
    enumeration only where it finishes in reasonable time.

    python benchmarks/transference_cost.py [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np
import torch
from torch import nn

from mtlab.grad.lookahead import LookaheadProbe, optimizer_update
from mtlab.grad.methods import make_method
from mtlab.grouping import best_grouping, brute_force_grouping
from mtlab.models.multitask import MultiTaskNet, init_seeded
from mtlab.tasks.datasets import load_dataset
from mtlab.train.multitask import MTTrainConfig, train_multitask


def best(fn, repeats=7):
    t = float("inf")
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        fn()
        t = min(t, time.perf_counter() - t0)
    return t


def probe_costs() -> dict:
    ds = load_dataset("digit-attributes", 0)
    T = ds.n_tasks
    model = init_seeded(MultiTaskNet(ds.input_shape, ds.num_classes, "mlp", (128, 64)), 0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = ds.x["train"][:64], ds.y["train"][:64]

    def lf(out):
        return torch.stack([nn.functional.cross_entropy(out[1][t], y[:, t]) for t in range(T)])

    def train_step():
        opt.zero_grad()
        lf(model(x)).mean().backward()
        opt.step()

    for _ in range(3):
        train_step()
    shared = [n for n, _ in model.named_parameters() if n.startswith("trunk.")]
    real = [p for n, p in model.named_parameters() if n in shared]

    def naive():
        L = lf(model(x))
        grads = [torch.autograd.grad(L[t], real, retain_graph=True) for t in range(T)]
        out = []
        for g in grads:
            m2 = copy.deepcopy(model)
            u = optimizer_update(opt, real, list(g))
            with torch.no_grad():
                for p, uu in zip(
                    [p for n, p in m2.named_parameters() if n in shared], u, strict=True
                ):
                    p -= uu
                out.append(lf(m2(x)))
        return torch.stack(out)

    loop = LookaheadProbe(model, shared, opt, batched=False)
    vm = LookaheadProbe(model, shared, opt, batched=True)

    def first_order():
        L = lf(model(x))
        J = torch.stack(
            [
                torch.cat(
                    [g.reshape(-1) for g in torch.autograd.grad(L[t], real, retain_graph=True)]
                )
                for t in range(T)
            ]
        )
        U = torch.stack(
            [
                torch.cat(
                    [
                        u.reshape(-1)
                        for u in optimizer_update(
                            opt,
                            real,
                            [
                                J[t, o : o + p.numel()].view_as(p)
                                for o, p in zip(
                                    np.cumsum([0] + [p.numel() for p in real])[:-1],
                                    real,
                                    strict=True,
                                )
                            ],
                        )
                    ]
                )
                for t in range(T)
            ]
        )
        return (J @ U.T) / L.detach()[:, None]

    step = best(lambda: (opt.zero_grad(), lf(model(x)).mean().backward()))
    times = {
        "naive": best(naive),
        "loop": best(lambda: loop(x, lf)),
        "batched": best(lambda: vm(x, lf)),
        "first_order": best(first_order),
    }
    # total overhead at two intervals (100 is mtlab affinity's default), on a real training run
    runs = {}
    for every in (50, 100):
        m = init_seeded(MultiTaskNet(ds.input_shape, ds.num_classes, "mlp", (128, 64)), 0)
        res = train_multitask(
            m,
            ds,
            make_method("mean", T),
            MTTrainConfig(epochs=50, batch_size=64, probe_every=every),
        )
        runs[every] = res
    overhead = {e: r.probe_seconds / (r.sec_per_step * r.steps) for e, r in runs.items()}
    return {
        "train_step_s": step,
        **{f"{k}_s": v for k, v in times.items()},
        **{f"{k}_x_step": v / step for k, v in times.items()},
        "probes_at_50": len(runs[50].probes),
        "probes_at_100": len(runs[100].probes),
        "overhead_at_50": overhead[50],
        "overhead_at_100": overhead[100],
    }


def grouping_times(cap_s: float = 60.0) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for T in (5, 6, 7, 8, 9, 10, 11, 12):
        for b in (2, 3, 4):
            A = rng.normal(size=(T, T))
            t0 = time.perf_counter()
            try:
                g = best_grouping(A, b, time_limit=cap_s)
            except TimeoutError:
                print(f"T={T:2d} b={b}  branch-and-bound > {cap_s:.0f} s", flush=True)
                rows.append({"tasks": T, "budget": b, "branch_and_bound_s": None, "over_s": cap_s})
                break
            bb = time.perf_counter() - t0
            n_groups = 2**T - T - 1
            combos = sum(
                int(np.prod([n_groups - i for i in range(k)]) // np.prod(range(1, k + 1)))
                for k in range(1, b + 1)
            )
            ex = None
            if combos <= 3_000_000 or (T, b) == (9, 3):  # (9, 3): the reference case
                t0 = time.perf_counter()
                ref = brute_force_grouping(A, b)
                ex = time.perf_counter() - t0
                assert abs(ref.value - g.value) < 1e-9
            rows.append(
                {
                    "tasks": T,
                    "budget": b,
                    "branch_and_bound_s": bb,
                    "nodes": g.nodes,
                    "combinations": combos,
                    "exhaustive_s": ex,
                }
            )
            print(
                f"T={T:2d} b={b}  branch-and-bound {bb:8.3f} s ({g.nodes} nodes)  exhaustive "
                + (f"{ex:8.2f} s" if ex is not None else f"skipped ({combos:.2e} combos)"),
                flush=True,
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--skip-grouping", action="store_true", help="only the probing costs")
    args = ap.parse_args()
    torch.manual_seed(0)
    probe = probe_costs()
    print(
        "probe cost per probed step (× one training step): "
        + ", ".join(f"{k[:-7]} {v:.2f}" for k, v in probe.items() if k.endswith("_x_step"))
    )
    for every in (50, 100):
        print(
            f"overhead of probing every {every} steps: "
            f"{100 * probe[f'overhead_at_{every}']:.1f} % ({probe[f'probes_at_{every}']} probes)"
        )
    groups = [] if args.skip_grouping else grouping_times()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "probe": probe,
                    "grouping": groups,
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
