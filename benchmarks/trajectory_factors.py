"""Benchmark: the cost of the trajectory factors (Mueller et al. 2024) on the trajectories study's
networks, measured in one run.

(a) per-example gradients at batch 256: ``torch.func.vmap`` of ``grad`` (mtlab) against a loop of
    one autograd backward per example (the naive baseline); both are checked to agree;
(b) one full factor evaluation of a task at a checkpoint (sharpness by Lanczos, Fisher trace,
    per-example gradients → coherence, noise scale, gradient norm), relative to one training
    step of the MTL network on the same setting.

Networks: the study's digit-attributes MLP (64 → 64, four heads) and its teacher network (a
linear trunk of width 4 on d = 20, two heads; 300 samples per task so that the probe holds 256).
Times are medians of ``--repeat`` calls.

    python benchmarks/trajectory_factors.py [--repeat 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch

from mtlab.grad.jacobian import JacobianEngine
from mtlab.grad.methods import make_method
from mtlab.measure.curvature import per_example_grads, per_example_grads_loop
from mtlab.measure.trajectory import CheckpointMeter, FactorOptions
from mtlab.runs.config import TrajectoryRunConfig
from mtlab.runs.trajectory import build_network, setting_tasks
from mtlab.train.minibatch import task_output

SETTINGS = {
    "digit-attributes MLP 64": dict(
        setting="dataset",
        dataset="digit-attributes",
        tasks=("odd", "ge5", "prime", "closed_loop"),
        trunk="mlp",
        widths=(64,),
        batch_size=64,
    ),
    "teacher, linear width 4": dict(setting="teacher", widths=(4,), n1=300, n2=300),
}


def median_time(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up (torch.func traces, allocator)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(name: str, fields: dict, repeat: int) -> dict:
    cfg = TrajectoryRunConfig(method="sum", probe_size=256, **fields)
    tasks = setting_tasks(cfg)
    model = build_network(cfg, tasks)
    meter = CheckpointMeter(model, tasks, FactorOptions(probe_size=256))
    x, y = meter.probes[0]
    names = meter.names(0)

    def loss_fn(out, yy):
        return tasks[0].loss(out[1][0], yy)

    fast = per_example_grads(model, loss_fn, (x, y), names)
    slow = per_example_grads_loop(model, loss_fn, (x, y), names)
    rel = float((fast - slow).norm() / slow.norm())
    t_fast = median_time(lambda: per_example_grads(model, loss_fn, (x, y), names), repeat)
    t_loop = median_time(lambda: per_example_grads_loop(model, loss_fn, (x, y), names), repeat)
    t_factors = median_time(lambda: meter._factors(model, 0, 1), repeat)
    t_checkpoint = median_time(lambda: meter(1, model), repeat)

    method = make_method("sum", len(tasks))
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)
    engine = JacobianEngine("loop")
    shared, specific = model.shared_parameters(), model.task_parameters()
    batches = [(t["train"].x[: cfg.batch_size], t["train"].y[: cfg.batch_size]) for t in tasks]

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        losses = torch.stack(
            [
                t.loss(task_output(model, bx, i), by)
                for i, (t, (bx, by)) in enumerate(zip(tasks, batches, strict=True))
            ]
        )
        method.backward(losses, shared, specific, None, engine)
        opt.step()

    t_step = median_time(step, repeat)
    n_params = sum(model.get_parameter(n).numel() for n in names)
    return {
        "network": name,
        "params_measured": n_params,
        "tasks": len(tasks),
        "batch": int(x.shape[0]),
        "per_example_vmap_ms": 1e3 * t_fast,
        "per_example_loop_ms": 1e3 * t_loop,
        "vmap_speedup": t_loop / t_fast,
        "max_rel_diff": rel,
        "factors_one_task_ms": 1e3 * t_factors,
        "checkpoint_all_tasks_ms": 1e3 * t_checkpoint,
        "train_step_ms": 1e3 * t_step,
        "factors_per_step": t_factors / t_step,
        "checkpoint_per_step": t_checkpoint / t_step,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = [bench(name, fields, args.repeat) for name, fields in SETTINGS.items()]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}")
    for r in rows:
        print(
            f"{r['network']:26s} P={r['params_measured']:6d} batch {r['batch']}: per-example "
            f"vmap {r['per_example_vmap_ms']:.2f} ms vs loop {r['per_example_loop_ms']:.1f} ms "
            f"= {r['vmap_speedup']:.1f}x (rel diff {r['max_rel_diff']:.1e}); factors of one task "
            f"{r['factors_one_task_ms']:.1f} ms = {r['factors_per_step']:.0f} training steps "
            f"({r['train_step_ms']:.2f} ms); a whole checkpoint ({r['tasks']} tasks) "
            f"{r['checkpoint_all_tasks_ms']:.1f} ms = {r['checkpoint_per_step']:.0f} steps"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
