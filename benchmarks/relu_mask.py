"""The ReLU closed form's first-layer gradient factor ``M = 1{h > 0} ⊙ g ⊗ a``: built in a new
tensor (``torch.sign(h)``, the form before) against built in the hidden activations' own memory
once they are used (``h.sign_()``, the form now), at the ensemble sizes of the ReLU studies — in
one process, one thread, alternating rounds, best of each; both forms must give bitwise the same
results.

    python benchmarks/relu_mask.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from mtlab.runs.workers import keep_freed_memory

Step = Callable[[], tuple[torch.Tensor, ...]]


def forms(E: int, n: int, m: int = 256, d: int = 15) -> dict[str, Step]:
    g0 = torch.Generator().manual_seed(0)
    W, a = torch.randn(E, m, d, generator=g0), torch.randn(E, m, generator=g0)
    x, y = torch.randn(n, d, generator=g0), torch.randn(E, n, generator=g0)
    scale = torch.full((E, 1), 2.0 / n)

    def step(in_place: bool) -> tuple[torch.Tensor, ...]:
        h = torch.matmul(x, W.transpose(-1, -2)).clamp_(min=0)
        r = (h * a[:, None, :]).sum(-1) - y
        g = r * scale
        gA = torch.matmul(g.unsqueeze(-2), h).squeeze(-2)
        mask = h.sign_() if in_place else torch.sign(h)
        M = mask.mul_(g.unsqueeze(-1)).mul_(a[:, None, :])
        gW = torch.matmul(x.T, M).transpose(-1, -2)
        return r, gA, gW

    return {"new tensor": lambda: step(False), "in place": lambda: step(True)}


def main() -> None:
    torch.set_num_threads(1)
    keep_freed_memory()
    for E, n in ((16, 64), (16, 256), (64, 256)):
        fs = forms(E, n)
        same = all(torch.equal(u, v) for u, v in zip(*(f() for f in fs.values()), strict=True))
        best = {k: float("inf") for k in fs}
        for _ in range(5):
            for k, f in fs.items():
                for _ in range(5):
                    f()
                t0 = time.perf_counter()
                for _ in range(200):
                    f()
                best[k] = min(best[k], (time.perf_counter() - t0) / 200 * 1e3)
        print(f"E = {E}, n = {n}: new tensor {best['new tensor']:.2f} ms, in place "
              f"{best['in place']:.2f} ms ({best['in place'] / best['new tensor']:.2f}×); "
              f"bitwise equal: {same}")  # fmt: skip


if __name__ == "__main__":
    main()
