"""The ReLU students' closed-form step, before and after issue 26's rewrite, and what it does to
ensembles against one run at a time.

Two parts, both on one thread (what a worker process uses):

``forms`` — the closed form alone, in one process, alternating rounds, best of each, at the
studies' sizes (d = 15): *two passes* is the form before (the first-layer factor
``M = 1{h > 0} ⊙ g ⊗ a`` built over the (E, n, m) activations, then ``xᵀM``, and the readout
gradient a separate ``gᵀh``); *one product* computes both gradients from
``C = (g ⊙ x)ᵀ 1{W x > 0}`` (``∂/∂W = a ⊙ Cᵀ``, ``∂/∂a_j = W_jᵀ C_j``) over all E runs at once;
*cache blocks* is the code now — the same, on blocks of runs whose activations fit in
``CACHE_BYTES``. The blocks must give bitwise what one block gives.

``ensembles`` — the whole training step through the family (``run_chunk``: 16 runs of the
relu-nested quick preset's STL group, width and n_main set per cell), µs per run-step from the
difference of the best 100- and the best 300-step chunk (the set-up cancels), one run at a time and 16
together, with the closed form before (kept here as it was) and now, in one process, alternating
rounds, the best of ``--reps``. ``auto`` is the ensemble size each picks: before, one run at a
time above 1 MiB of activations per run; now, 16. The speed-up is over that code's own one by
one; the share of the one-thread GEMM peak counts the step's matrix products
(``ReluNet.flops_per_step``).

    python benchmarks/relu_closed_form.py [--parts forms,ensembles] [--reps 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

CELLS = ((256, 64), (256, 256), (256, 1024), (1000, 256))  # (width, n)


def _two_passes(net, params, xs, ys, outputs, weights, trainable, counts=None):
    """``ReluNet.mse_loss_and_grads`` as it was before issue 26's rewrite (unpadded data)."""
    assert counts is None or all(c is None for c in counts)
    from mtlab.models.base import per_run

    W, A = params["W"], params["A"]
    losses, gA, gW = [], torch.zeros_like(A), torch.zeros_like(W)
    for i, (x, y, t) in enumerate(zip(xs, ys, outputs, strict=True)):
        h = torch.matmul(x, W.transpose(-1, -2)).clamp_(min=0)
        a = A[:, t]
        r = (h * a[:, None, :]).sum(-1) - y
        n = r.shape[-1]
        losses.append((r * r).sum(-1) / n)
        g = r * per_run(weights[i] * (2.0 / n), r)
        gA[:, t] += torch.matmul(g.unsqueeze(-2), h).squeeze(-2)
        M = h.sign_().mul_(g.unsqueeze(-1)).mul_(a[:, None, :])
        gW += torch.matmul(x.transpose(-1, -2), M).transpose(-1, -2)
    return torch.stack(losses), {"W": gW, "A": gA}


def forms(E: int, n: int, m: int, d: int = 15) -> dict[str, Callable[[], tuple]]:
    from mtlab.models import relu_net

    net = relu_net.ReluNet(d, m, 1)
    g0 = torch.Generator().manual_seed(0)
    p = {"W": torch.randn(E, m, d, generator=g0), "A": torch.randn(E, 1, m, generator=g0)}
    xs, ys = [torch.randn(E, n, d, generator=g0)], [torch.randn(E, n, generator=g0)]
    args = (p, xs, ys, (0,), torch.ones(1, E), ("W", "A"))

    def now(cache: int | None = None) -> tuple:
        saved = relu_net.CACHE_BYTES
        relu_net.CACHE_BYTES = cache or saved
        try:
            loss, g = net.mse_loss_and_grads(*args)
        finally:
            relu_net.CACHE_BYTES = saved
        return loss, g["A"], g["W"]

    def before() -> tuple:
        loss, g = _two_passes(net, *args)
        return loss, g["A"], g["W"]

    return {
        "two passes (before)": before,
        "one product": lambda: now(2**62),
        "cache blocks (now)": now,
    }


def part_forms() -> list[dict[str, Any]]:
    from mtlab.models import relu_net

    out = []
    for E, n, m in ((16, 64, 256), (16, 256, 256), (64, 256, 256), (16, 1024, 256),
                    (16, 256, 1000)):  # fmt: skip
        fs = forms(E, n, m)
        res = {k: f() for k, f in fs.items()}
        before, one, now = res.values()
        rel = max(float((u - v).abs().max() / u.abs().max()) for u, v in zip(before, one, strict=True))
        same = all(torch.equal(u, v) for u, v in zip(one, now, strict=True))
        best = {k: float("inf") for k in fs}
        reps = max(3, int(2e6 // (E * n * m)))
        for _ in range(5):
            for k, f in fs.items():
                f()
                t0 = time.perf_counter()
                for _ in range(reps):
                    f()
                best[k] = min(best[k], (time.perf_counter() - t0) / reps * 1e3)
        block = max(1, relu_net.CACHE_BYTES // (n * m * 4))
        rec = {"E": E, "n": n, "width": m, "block": min(block, E), "ms": best,
               "max_rel_diff_vs_before": rel, "blocks_bitwise_equal_one_block": same}  # fmt: skip
        out.append(rec)
        print(f"E = {E:2d}, n = {n:4d}, m = {m:4d} (blocks of {rec['block']:2d}): "
              + ", ".join(f"{k} {v:.2f} ms" for k, v in best.items())
              + f"; now / before {best['cache blocks (now)'] / best['two passes (before)']:.2f}×; "
              f"max rel. diff {rel:.1e}; blocks bitwise = one block: {same}", flush=True)  # fmt: skip
    return out


def _old_auto_chunk(fam: Any, cfgs: list[Any]) -> int:
    """The ReLU family's ensemble size before: one run at a time above 1 MiB of activations."""
    return 1 if fam.bytes_per_run(cfgs[0]) > 2**20 else min(len(cfgs), 16)


def part_ensembles(reps: int) -> list[dict[str, Any]]:
    from mtlab.models import relu_net
    from mtlab.runs.family import family_of
    from mtlab.studies import get_study

    now = relu_net.ReluNet.mse_loss_and_grads
    base = [c for c in get_study("relu-nested").configs("quick", seeds=8)
            if c.method == "stl" and c.n_main == 256]  # fmt: skip
    out = []
    for width, n in CELLS:
        cfgs = [c.model_copy(update={"width": width, "n_main": n}) for c in base[:16]]
        fam = family_of(cfgs[0])
        times: dict[str, list[float]] = {}
        try:
            for _ in range(reps):
                for code, form in (("before", _two_passes), ("now", now)):
                    relu_net.ReluNet.mse_loss_and_grads = form  # type: ignore[method-assign]
                    for E in (1, 16):
                        for steps in (100, 300):  # the loop checks its budget every 100 steps
                            t0 = time.perf_counter()
                            for s in range(0, len(cfgs), E):
                                fam.run_chunk(cfgs[s : s + E], None, max_steps=steps)
                            key = f"{code} E={E} {steps} steps"
                            times.setdefault(key, []).append(time.perf_counter() - t0)
        finally:
            relu_net.ReluNet.mse_loss_and_grads = now  # type: ignore[method-assign]
        rec: dict[str, Any] = {"width": width, "n": n, "seconds": times}
        for code in ("before", "now"):
            for E in (1, 16):  # the best of each length, then their difference: µs per run-step
                t = [min(times[f"{code} E={E} {steps} steps"]) for steps in (100, 300)]
                rec[f"{code} E={E}"] = (t[1] - t[0]) / 200 / len(cfgs) * 1e6
        rec["before auto"], rec["now auto"] = _old_auto_chunk(fam, cfgs), fam.auto_chunk(cfgs)
        flops = relu_net.ReluNet(15, width).flops_per_step(n)
        for code in ("before", "now"):
            auto = rec[f"{code} E={rec[f'{code} auto']}"]
            rec[f"{code} speedup"] = rec[f"{code} E=1"] / auto
            rec[f"{code} gflops"] = flops / auto / 1e3
        rec["now / before"] = rec[f"now E={rec['now auto']}"] / rec[f"before E={rec['before auto']}"]
        out.append(rec)
        print(f"width {width:4d}, n {n:4d} — µs per run-step, one by one / 16 together: "
              + "; ".join(f"{c} {rec[f'{c} E=1']:.0f} / {rec[f'{c} E=16']:.0f} (auto "
                          f"{rec[f'{c} auto']}: {rec[f'{c} speedup']:.2f}× over one by one, "
                          f"{rec[f'{c} gflops']:.1f} GFLOP/s)" for c in ("before", "now"))
              + f"; now / before {rec['now / before']:.2f}×", flush=True)  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="forms,ensembles")
    ap.add_argument("--reps", type=int, default=4, help="alternating rounds (the best is kept)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from relu_ensemble import gemm_peak  # benchmarks/: the script's folder

    from mtlab.runs.workers import keep_freed_memory

    torch.set_num_threads(1)
    keep_freed_memory()
    out: dict[str, Any] = {"threads": 1, "torch": torch.__version__,
                           "machine": platform.machine(), "peak_gflops": gemm_peak(1024)}  # fmt: skip
    print(f"GEMM peak (1 thread): {out['peak_gflops']:.0f} GFLOP/s", flush=True)
    parts = args.parts.split(",")
    if "forms" in parts:
        out["forms"] = part_forms()
    if "ensembles" in parts:
        out["ensembles"] = part_ensembles(args.reps)
        for rec in out["ensembles"]:
            for code in ("before", "now"):
                rec[f"{code} share of peak"] = rec[f"{code} gflops"] / out["peak_gflops"]
    out["peak_gflops_end"] = gemm_peak(1024)
    print(f"GEMM peak at the end: {out['peak_gflops_end']:.0f} GFLOP/s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
