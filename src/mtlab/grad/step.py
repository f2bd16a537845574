"""Step rules: how one update direction is formed from the per-task losses.

The training loop (:mod:`mtlab.train.loop`) calls a step rule once per step with a closure that
computes the per-task losses ``(T, E)`` of the current parameters. The default,
:class:`WeightedSum`, differentiates ``Σ_t w_t L_t`` — the ordinary multi-task objective. Rules
that aggregate per-task Jacobians (PCGrad, UPGrad, …) plug in here without touching the loop.

Because the ``E`` runs of an ensemble are independent, the gradient of the *sum over runs* of
their losses is exactly each run's own gradient, so one backward pass serves the whole ensemble.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

LossFn = Callable[[dict[str, Tensor]], Tensor]


@dataclass
class StepOutput:
    """Per-task losses ``(T, E)`` (detached), the gradients of the trainable parameters, and the
    per-run task weights used ``(T, E)`` (recorded by the loop)."""

    task_losses: Tensor
    grads: dict[str, Tensor]
    task_weights: Tensor


class StepRule(Protocol):
    def __call__(
        self, loss_fn: LossFn, params: dict[str, Tensor], trainable: Sequence[str], weights: Tensor
    ) -> StepOutput: ...


class WeightedSum:
    """Gradient of ``Σ_t w_t L_t`` with fixed weights ``w: (T,)`` or ``(T, E)``.

    If the loss closure carries a ``closed_form`` attribute (the loop attaches one when the model
    provides ``mse_loss_and_grads``), it is used instead of autograd: same numbers, fewer kernels.
    """

    def __init__(self, use_closed_form: bool = True) -> None:
        self.use_closed_form = use_closed_form

    def __call__(
        self, loss_fn: LossFn, params: dict[str, Tensor], trainable: Sequence[str], weights: Tensor
    ) -> StepOutput:
        closed = getattr(loss_fn, "closed_form", None)
        if self.use_closed_form and closed is not None:
            e = next(iter(params.values())).shape[0]
            w = weights if weights.ndim == 2 else weights[:, None].expand(-1, e)
            with torch.no_grad():
                losses, grads = closed(params, w, tuple(trainable))
            return StepOutput(losses, grads, w)
        losses = loss_fn(params)  # (T, E)
        w = weights if weights.ndim == 2 else weights[:, None].expand_as(losses)
        total = (w * losses).sum()
        grads = torch.autograd.grad(total, [params[n] for n in trainable])
        return StepOutput(losses.detach(), dict(zip(trainable, grads, strict=True)), w)
