"""Benchmark: per-task Jacobians of the shared parameters, each backend vs the loop of T backward
passes that most MTL frameworks use, relative to one plain backward of the summed loss.

Baseline ``framework loop``: for each task ``zero_grad(); L_t.backward(retain_graph=True)`` and a
flattened copy of every ``.grad`` (as LibMTL-style trainers do). mtlab's backends: ``loop``
(``torch.autograd.grad`` per task, no ``.grad`` accumulation), ``batched`` (one vectorised
backward), ``representation`` (gradients at the shared representation only — cheaper, not the
parameter Jacobian), ``auto`` (measures loop and batched once, keeps the faster).

Trunks: an MLP 256-512-512 (inputs of 256 features, batch 256) and a CNN (3×32×32 inputs,
channels 32-64-64, batch 64); one linear 10-class head per task; T ∈ {2, 8, 32}. For each backend
the time of computing the Jacobian on a fresh forward graph is divided by the time of one
``backward()`` of Σ_t L_t on the same graph (best of ``--repeats``). ``auto`` is reported at its
steady state (the backend it picked) with its one-off measurement cost alongside.

    python benchmarks/jacobian_engine.py [--T 2 8 32] [--device cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from torch import nn

from mtlab.grad.jacobian import (
    JacobianEngine,
    jacobian_batched,
    jacobian_loop,
    jacobian_representation,
)
from mtlab.models.multitask import MultiTaskNet, init_seeded

TRUNKS = {
    "mlp": {"input": (256,), "widths": (256, 512, 512), "batch": 256},
    "cnn": {"input": (3, 32, 32), "widths": (32, 64, 64), "batch": 64},
}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def setup(trunk: str, T: int, device: str):
    spec = TRUNKS[trunk]
    model = init_seeded(MultiTaskNet(spec["input"], [10] * T, trunk, spec["widths"]), 0).to(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(spec["batch"], *spec["input"], generator=g).to(device)
    y = torch.randint(0, 10, (spec["batch"], T), generator=g).to(device)

    def forward():
        z, logits = model(x)
        losses = torch.stack([nn.functional.cross_entropy(logits[t], y[:, t]) for t in range(T)])
        return losses, z

    return model, forward


def framework_loop(losses, model) -> torch.Tensor:
    shared = model.shared_parameters()
    rows = []
    for t in range(losses.shape[0]):
        model.zero_grad()
        losses[t].backward(retain_graph=True)
        rows.append(torch.cat([p.grad.reshape(-1).clone() for p in shared]))
    return torch.stack(rows)


def best_time(fn, forward, repeats: int, device: str) -> float:
    best = float("inf")
    for _ in range(repeats + 1):  # the first one warms up
        losses, z = forward()
        _sync(device)
        t0 = time.perf_counter()
        fn(losses, z)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def measure(model, forward, repeats: int, device: str):
    """Times (s) per backend, the plain backward, auto's choice and its first-call cost."""
    shared = model.shared_parameters()
    plain = best_time(lambda losses, z: losses.sum().backward(), forward, repeats, device)
    times = {
        "framework_loop": best_time(
            lambda l, z: framework_loop(l, model), forward, repeats, device
        ),
        "loop": best_time(lambda l, z: jacobian_loop(l, shared), forward, repeats, device),
        "batched": best_time(lambda l, z: jacobian_batched(l, shared), forward, repeats, device),
        "representation": best_time(
            lambda l, z: jacobian_representation(l, z), forward, repeats, device
        ),
    }
    engine = JacobianEngine("auto")
    losses, _ = forward()
    _sync(device)
    t0 = time.perf_counter()
    engine(losses, shared)
    _sync(device)
    first_call = time.perf_counter() - t0
    choice = next(iter(engine.choices.values()))
    times["auto"] = best_time(lambda l, z: engine(l, shared), forward, repeats, device)
    return times, plain, choice, first_call


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, nargs="+", default=[2, 8, 32])
    ap.add_argument("--trunks", nargs="+", default=["mlp", "cnn"])
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    for trunk in args.trunks:
        for T in args.T:
            model, forward = setup(trunk, T, args.device)
            times, plain, choice, first_call = measure(model, forward, args.repeats, args.device)
            row = {
                "trunk": trunk,
                "T": T,
                "plain_backward_s": plain,
                **{f"{k}_x": v / plain for k, v in times.items()},
                "auto_choice": choice,
                "auto_first_call_x": first_call / plain,
                "auto_vs_loop": times["loop"] / times["auto"],
                "auto_vs_framework_loop": times["framework_loop"] / times["auto"],
            }
            rows.append(row)
            print(
                f"{trunk} T={T:3d}  plain backward {plain * 1e3:7.2f} ms | × plain: "
                + "  ".join(f"{k} {v / plain:6.1f}" for k, v in times.items())
                + f" | auto → {choice}: {times['framework_loop'] / times['auto']:.2f}× faster than "
                f"the framework loop, {times['loop'] / times['auto']:.2f}× mtlab's loop (first "
                f"call {first_call / plain:.0f}×)",
                flush=True,
            )
    meta = {
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "repeats": args.repeats,
        "trunks": TRUNKS,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
