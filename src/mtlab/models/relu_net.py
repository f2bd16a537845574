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

#: bytes of hidden activations one block of runs works on in the closed form (an L2/L3 cache)
CACHE_BYTES = 2 * 2**20


def _rows(t: Tensor, block: slice | None, shared: bool = False) -> Tensor:
    """The runs ``block`` of ``t: (E, ...)`` (``None``: all of them, no view); ``shared``
    tensors with one row serve every run."""
    return t if block is None or (shared and t.shape[0] == 1) else t[block]


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
        e, m = W.shape[0], W.shape[1]
        for i, (x, y, t, c) in enumerate(zip(xs, ys, outputs, counts, strict=True)):
            n = x.shape[-2] if c is None else c
            scale = (weights[i] * (2.0 / n)).reshape(-1, 1)  # (E, 1)
            # runs in blocks whose (runs, n, m) activations stay in cache: bitwise the same as
            # one block, as every product is per run; one block takes no views (small steps are
            # bound by op calls)
            block = max(1, CACHE_BYTES // (x.shape[-2] * m * W.element_size()))
            blocks = [None] if block >= e else [slice(s, s + block) for s in range(0, e, block)]
            parts = []
            for b in blocks:
                r, gAi, gWi = self._closed_form(
                    _rows(x, b, shared=True),
                    _rows(y, b, shared=True),
                    _rows(W, b),
                    _rows(A, b)[:, t],
                    _rows(scale, b),
                    gW is not None,
                )
                parts.append((r * r).sum(-1) / (n if c is None else _rows(c, b)))
                if gA is not None:
                    _rows(gA, b)[:, t] += gAi
                if gW is not None and gWi is not None:
                    _rows(gW, b).add_(gWi)
            losses.append(parts[0] if len(parts) == 1 else torch.cat(parts))
        grads: dict[str, Tensor] = {}
        if gW is not None:
            grads["W"] = gW
        if gA is not None:
            grads["A"] = gA
        return torch.stack(losses), grads

    @staticmethod
    def _closed_form(
        x: Tensor, y: Tensor, W: Tensor, a: Tensor, scale: Tensor, first_layer: bool
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Residuals ``(E, n)``, ``∂/∂a`` ``(E, m)`` and ``∂/∂W`` ``(E, m, d)`` (or None) of
        one task's data ``x: (E or 1, n, d)`` for the runs of ``W: (E, m, d)``, ``a: (E, m)``;
        ``scale: (E, 1)`` is ``2 w / n``.

        Memory-bound on CPU at the studies' sizes; each form was timed against the obvious one
        (E = 16, n = m = 256, d = 15): the readout as multiply + sum (5× faster than a batched
        mat-vec), the ReLU mask as sign(ReLU) in h's own memory once h is used (3× faster than a
        comparison), and both gradients from one product ``C = (g ⊙ x)ᵀ 1{W x > 0}`` with the
        wide side last: ``∂/∂W = a ⊙ Cᵀ`` and, as ``ReLU(W_j x) = 1{W_j x > 0} W_jᵀx``,
        ``∂/∂a_j = W_jᵀ C_j`` — no pass over the (E, n, m) activations scales the mask
        (benchmarks/relu_closed_form.py)."""
        h = _pre(x, W).clamp_(min=0)  # (E, n, m) hidden activations
        r = (h * a[:, None, :]).sum(-1) - y  # (E, n)
        g = r * scale
        if not first_layer:
            return r, torch.matmul(g.unsqueeze(-2), h).squeeze(-2), None
        gx = (x * g.unsqueeze(-1)).transpose(-1, -2)  # (E, d, n)
        C = torch.matmul(gx, h.sign_()).transpose(-1, -2)  # (E, m, d): Σ_n g_n 1{·} x_n
        return r, (C * W).sum(-1), C * a[:, :, None]

    def flops_per_step(self, n: int) -> int:
        """Multiply-adds ×2 of one closed-form step on ``n`` samples of one task (one run)."""
        return 2 * n * self.m * self.d * 2 + 2 * n * self.m * 2


def unit_contributions(W: Tensor, A: Tensor) -> Tensor:
    """Per-unit coefficients ``‖w_j‖·‖A[:, j]‖`` (``W: (m, d)``, ``A: (T, m)``) → ``(m,)``: the
    F1-norm terms (one task) or the group-norm terms (several tasks)."""
    return W.norm(dim=-1) * A.norm(dim=0)


__all__ = ["ReluNet", "unit_contributions"]
