"""Benchmark: the head-first step over T tasks as one batched computation vs a loop over tasks.

One head step (every task's head from zero, ``W`` fixed) plus one representation step (the
first-layer gradient summed over tasks), on data already in memory:

(a) per-task loop — what a straightforward implementation does: for each task, its head gradient
    on its ``n1`` samples, then its contribution to the first-layer gradient on its ``n2`` samples;
(b) mtlab's batched path — ``head_grads`` and ``shared_grad_sum`` over all tasks at once (two
    batched products and one ``m × (T·n) × d`` GEMM), in blocks of tasks sized by
    :func:`mtlab.train.headfirst.auto_task_block` (32 MiB on CPU, 1 GiB on a GPU).

Both results are checked to agree (float32, relative difference printed). Sizes default to the
subspace study's recovery part (d = 100, m = 200, n1 = n2 = 500), plus n1 = n2 = 50, where each
task's own work is small and per-task overhead dominates the loop.

    python benchmarks/headfirst_batched.py [--T 10 100 1000] [--device cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from mtlab._seeding import generator
from mtlab.models.relu import head_grads, init_first_layer, shared_grad_sum
from mtlab.tasks.subspace import (
    SubspaceSpec,
    projection,
    sample_tasks,
    task_offsets,
    unit_directions,
)
from mtlab.train.headfirst import auto_task_block


def make_data(T: int, d: int, r: int, n: int, device: str):
    spec = SubspaceSpec(d, r)
    M = projection(d, r, 0, device=device)
    theta = unit_directions(T, r, 0, "theta")
    off = task_offsets(T, 0.0, 0)
    X1, Y1 = sample_tasks(spec, M, theta, off, n, 0, "head")
    X2, Y2 = sample_tasks(spec, M, theta, off, n, 0, "rep")
    return X1, Y1, X2, Y2


def looped(W, X1, Y1, X2, Y2, eta_a=0.01):
    T, m = X1.shape[0], W.shape[0]
    A = torch.zeros(T, m, dtype=W.dtype, device=W.device)
    for t in range(T):
        A[t : t + 1] = -eta_a * head_grads(W, A[t : t + 1], X1[t : t + 1], Y1[t : t + 1], "hinge")
    G = torch.zeros_like(W)
    for t in range(T):
        G += shared_grad_sum(W, A[t : t + 1], X2[t : t + 1], Y2[t : t + 1], "hinge")
    return G / T


def batched(W, X1, Y1, X2, Y2, eta_a=0.01):
    T, n, d = X2.shape
    m = W.shape[0]
    block = auto_task_block(n, d, m, itemsize=W.element_size(), device=W.device)
    A = torch.zeros(T, m, dtype=W.dtype, device=W.device)
    G = torch.zeros_like(W)
    for s in range(0, T, block):
        sl = slice(s, min(s + block, T))
        A[sl] = -eta_a * head_grads(W, A[sl], X1[sl], Y1[sl], "hinge")
    for s in range(0, T, block):
        sl = slice(s, min(s + block, T))
        G += shared_grad_sum(W, A[sl], X2[sl], Y2[sl], "hinge")
    return G / T


def timed(fn, *args, repeats: int, device: str):
    best = float("inf")
    out = None
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn(*args)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--d", type=int, default=100)
    ap.add_argument("--m", type=int, default=200)
    ap.add_argument("--n", type=int, nargs="+", default=[500, 50], help="n1 = n2 per task")
    ap.add_argument("--r", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    W = init_first_layer(args.m, args.d, generator(0, "W0")).to(args.device)
    rows = []
    for n, T in [(n, T) for n in args.n for T in args.T]:
        data = make_data(T, args.d, args.r, n, args.device)
        reps = max(1, args.repeats if T < 1000 else args.repeats // 2)
        timed(batched, W, *data, repeats=1, device=args.device)  # warm-up
        t_loop, g_loop = timed(looped, W, *data, repeats=reps, device=args.device)
        t_batch, g_batch = timed(batched, W, *data, repeats=reps, device=args.device)
        rel = float((g_loop - g_batch).norm() / g_loop.norm())
        row = {
            "n": n,
            "T": T,
            "loop_s": t_loop,
            "batched_s": t_batch,
            "speedup": t_loop / t_batch,
            "rel_diff": rel,
        }
        rows.append(row)
        print(
            f"n={n:4d} T={T:5d}  loop {t_loop * 1e3:9.1f} ms  batched {t_batch * 1e3:9.1f} ms  "
            f"speed-up {t_loop / t_batch:5.1f}x  (agreement: rel. diff {rel:.1e})",
            flush=True,
        )
        del data
    meta = {
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "sizes": {"d": args.d, "m": args.m, "r": args.r},
        "repeats": args.repeats,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
