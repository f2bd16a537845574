"""Would own-data runs that share an architecture train faster as an ensemble? The training step
of ``mtlab advise``'s runs (an MLP trunk + heads, per-task minibatches, Adam; the planted table's
20 features, 128-128, batch 128) for E runs — the seeds of one spec — one after another, as the
own-data family trains them, against the same E runs stacked into one ensemble (parameters with a
leading run axis through ``torch.func.functional_call`` + ``vmap``, one Adam over the stacked
tensors), measured in the same process, one thread (what each run gets in ``mtlab advise``).

    .venv/bin/python benchmarks/owndata_ensemble.py --json benchmarks/results/owndata_ensemble.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.func import functional_call, stack_module_state, vmap

from mtlab.models.multitask import seeded_network


def _nets(E: int, d: int, T: int, widths: tuple[int, ...]) -> list[torch.nn.Module]:
    return [seeded_network((d,), [(f"t{i}", 1) for i in range(T)], "mlp", widths, seed)
            for seed in range(E)]  # fmt: skip


def one_by_one(E: int, d: int, T: int, widths: tuple[int, ...], steps: int, b: int) -> float:
    nets = _nets(E, d, T, widths)
    opts = [torch.optim.Adam(n.parameters(), lr=1e-3) for n in nets]
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(steps, T, b, d, generator=g)
    ys = torch.randn(steps, T, b, 1, generator=g)
    t0 = time.perf_counter()
    for net, opt in zip(nets, opts, strict=True):
        for s in range(steps):
            losses = [((net.heads[t](net.trunk(xs[s, t])) - ys[s, t]) ** 2).mean()
                      for t in range(T)]  # fmt: skip
            opt.zero_grad(set_to_none=True)
            torch.stack(losses).mean().backward()
            opt.step()
    return (time.perf_counter() - t0) / (E * steps)


def ensemble(E: int, d: int, T: int, widths: tuple[int, ...], steps: int, b: int) -> float:
    nets = _nets(E, d, T, widths)
    params, _ = stack_module_state(nets)
    leaves = list(params.values())
    opt = torch.optim.Adam(leaves, lr=1e-3)
    base = nets[0]

    def loss(p: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        def head(t: int, xt: torch.Tensor) -> torch.Tensor:
            z = functional_call(base.trunk, {k[6:]: v for k, v in p.items()
                                             if k.startswith("trunk.")}, (xt,))  # fmt: skip
            h = functional_call(base.heads[t], {k[len(f"heads.{t}."):]: v for k, v in p.items()
                                                if k.startswith(f"heads.{t}.")}, (z,))  # fmt: skip
            return ((h - y[t]) ** 2).mean()

        return torch.stack([head(t, x[t]) for t in range(T)]).mean()

    batched = vmap(loss, in_dims=(0, 0, 0))
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(steps, E, T, b, d, generator=g)
    ys = torch.randn(steps, E, T, b, 1, generator=g)
    t0 = time.perf_counter()
    for s in range(steps):
        opt.zero_grad(set_to_none=True)
        batched(params, xs[s], ys[s]).sum().backward()
        opt.step()
    return (time.perf_counter() - t0) / (E * steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = []
    for T in (1, 2, 6):
        for E in (3, 8):
            row = {"tasks": T, "runs": E}
            for name, fn in (("one_by_one", one_by_one), ("ensemble", ensemble)):
                fn(E, 20, T, (128, 128), 10, 128)  # warm-up
                row[f"{name}_ms_per_run_step"] = 1e3 * min(
                    fn(E, 20, T, (128, 128), args.steps, 128) for _ in range(3))
            row["ensemble_speedup"] = row["one_by_one_ms_per_run_step"] / row[
                "ensemble_ms_per_run_step"]  # fmt: skip
            print(row, flush=True)
            out.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
