"""Bias-free one-hidden-layer ReLU students as an :class:`~mtlab.models.base.EnsembleModel`
(Lippl & Lindsey 2024, §2.1).

Task ``t`` predicts ``f_t(x) = Σ_j A[t, j]·ReLU(W_jᵀx)``. The first layer ``W`` is **shared**; the
readouts ``A`` (one row per task) are **task-specific**. Initialisation ``N(0, (scale·√(2/fan_in))²)``
for both layers (He scaling times ``scale``: 1e-3 is the rich regime, 1 the lazy one).

Parameter shapes (ensemble of ``E`` runs): ``W: (E, m, d)``, ``A: (E, T, m)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mtlab.models.base import Params, per_run


def _pre(x: Tensor, W: Tensor) -> Tensor:
    """Pre-activations ``(E, n, m)`` of ``x: (E or 1, n, d)`` under ``W: (E, m, d)``."""
    if x.shape[0] == 1:
        return torch.matmul(x[0], W.transpose(-1, -2))  # one (n, d) × (E, d, m) broadcast
    return torch.matmul(x, W.transpose(-1, -2))


class ReluNet:
    """Two-layer bias-free ReLU network spec: ``d`` inputs, width ``m``, ``n_tasks`` outputs."""

    shared_names = ("W",)
    task_specific_names = ("A",)

    def __init__(self, d: int, m: int, n_tasks: int = 1) -> None:
        if d < 1 or m < 1 or n_tasks < 1:
            raise ValueError(
                f"ReluNet needs d, m, n_tasks >= 1; got d={d}, m={m}, n_tasks={n_tasks}"
            )
        self.d, self.m, self.n_tasks = d, m, n_tasks

    def init(
        self,
        scale: Tensor,
        generators: list[torch.Generator],
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> Params:
        """Fresh parameters: per-run init ``scale: (E,)`` and one generator per run."""
        scale = torch.as_tensor(scale, dtype=torch.float64).reshape(-1)
        if len(generators) != scale.shape[0]:
            raise ValueError("ReluNet.init needs one generator per run")
        ws, as_ = [], []
        for s, g in zip(scale.tolist(), generators, strict=True):
            ws.append(torch.randn(self.m, self.d, generator=g, dtype=torch.float64))
            ws[-1] *= s * math.sqrt(2.0 / self.d)
            as_.append(torch.randn(self.n_tasks, self.m, generator=g, dtype=torch.float64))
            as_[-1] *= s * math.sqrt(2.0 / self.m)
        return {
            "W": torch.stack(ws).to(dtype=dtype, device=device),
            "A": torch.stack(as_).to(dtype=dtype, device=device),
        }

    def hidden(self, params: Params, x: Tensor) -> Tensor:
        """Hidden features ``ReLU(W x)``: ``(E, n, m)``."""
        return torch.relu(_pre(x, params["W"]))

    def forward(self, params: Params, x: Tensor, task: int) -> Tensor:
        """``x: (E or 1, n, d)`` → ``(E, n)``."""
        return (self.hidden(params, x) * params["A"][:, task, None, :]).sum(-1)

    def reset_readout(
        self, params: Params, scale: Tensor, generator: torch.Generator | None = None
    ) -> Params:
        """Readouts redrawn ``N(0, (scale·√(2/m))²)`` with ``n_tasks`` rows; ``scale: (E,)``.

        ``generator`` draws every run's readout in turn (pass one run at a time for per-run
        streams)."""
        W = params["W"]
        e = W.shape[0]
        a = torch.randn(e, self.n_tasks, self.m, generator=generator, dtype=torch.float64)
        a = a.to(W) * per_run(scale.to(W), a) * math.sqrt(2.0 / self.m)
        return {**params, "A": a}

    def scale_shared(self, params: Params, s: Tensor) -> Params:
        """First layer ``W ← s·W`` with per-run ``s: (E,)``."""
        W = params["W"]
        return {**params, "W": W * per_run(s.to(W), W)}

    def mse_loss_and_grads(
        self,
        params: Params,
        xs: list[Tensor],
        ys: list[Tensor],
        outputs: tuple[int, ...],
        weights: Tensor,
        trainable: tuple[str, ...] | list[str],
        counts: list[Tensor | None] | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Closed-form gradients of ``Σ_i w_i · MSE_i`` (the loop's fast path; = autograd, tested).

        For entry ``i`` scored by output ``t`` with residuals ``r = f_t(X_i) − y_i`` and
        ``g = 2 w_i r / n_i``: ``∂/∂A[t] = Σ_n g_n ReLU(W x_n)`` and
        ``∂/∂W = Σ_n g_n (A[t] ⊙ 1{W x_n > 0}) x_nᵀ``. ``weights: (T, E)``.
        """
        W, A = params["W"], params["A"]
        counts = counts or [None] * len(xs)
        losses: list[Tensor] = []
        gA = torch.zeros_like(A) if "A" in trainable else None
        gW = torch.zeros_like(W) if "W" in trainable else None
        for i, (x, y, t, c) in enumerate(zip(xs, ys, outputs, counts, strict=True)):
            # Memory-bound on CPU at the study's sizes; each form below was timed against the
            # obvious one (E = 16, n = m = 256, d = 15): the readout as multiply + sum (5× faster
            # than a batched mat-vec), the ReLU mask as sign(ReLU) (3× faster than a comparison),
            # the first-layer gradient as xᵀM with the wide side last (2.8× faster than Mᵀx),
            # M built in h's own memory once h is used (0.75–0.91× at n = 256, bitwise the same:
            # benchmarks/relu_mask.py).
            h = _pre(x, W).clamp_(min=0)  # (E, n, m) hidden activations
            a = A[:, t]  # (E, m)
            r = (h * a[:, None, :]).sum(-1) - y  # (E, n)
            n = r.shape[-1] if c is None else c
            losses.append((r * r).sum(-1) / n)
            g = r * per_run(weights[i] * (2.0 / n), r)  # (E, n)
            if gA is not None:
                gA[:, t] += torch.matmul(g.unsqueeze(-2), h).squeeze(-2)
            if gW is not None:
                # ∂/∂W_j = Σ_n g_n A[t, j] 1{W_j x_n > 0} x_n
                M = h.sign_().mul_(g.unsqueeze(-1)).mul_(a[:, None, :])  # (E, n, m), in h
                xt = x[0].T if x.shape[0] == 1 else x.transpose(-1, -2)  # (d, n) / (E, d, n)
                gW += torch.matmul(xt, M).transpose(-1, -2)
        grads: dict[str, Tensor] = {}
        if gW is not None:
            grads["W"] = gW
        if gA is not None:
            grads["A"] = gA
        return torch.stack(losses), grads

    def flops_per_step(self, n: int) -> int:
        """Multiply-adds ×2 of one closed-form step on ``n`` samples of one task (one run)."""
        return 2 * n * self.m * self.d * 2 + 2 * n * self.m * 2


def unit_contributions(W: Tensor, A: Tensor) -> Tensor:
    """Per-unit coefficients ``‖w_j‖·‖A[:, j]‖`` (``W: (m, d)``, ``A: (T, m)``) → ``(m,)``: the
    F1-norm terms (one task) or the group-norm terms (several tasks)."""
    return W.norm(dim=-1) * A.norm(dim=0)


__all__ = ["ReluNet", "unit_contributions"]
