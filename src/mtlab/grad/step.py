"""Step rules: how one update direction is formed from the per-task losses.

The training loop (:mod:`mtlab.train.ensemble`) calls a step rule once per step with a closure that
computes the per-task losses ``(T, E)`` of the current parameters. The default,
:class:`WeightedSum`, differentiates ``Σ_t w_t L_t`` — the ordinary multi-task objective. Rules
that aggregate per-task Jacobians (PCGrad, UPGrad, …) plug in here without touching the loop.

Because the ``E`` runs of an ensemble are independent, the gradient of the *sum over runs* of
their losses is exactly each run's own gradient, so one backward pass serves the whole ensemble.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

if TYPE_CHECKING:
    from mtlab.grad.methods import JacobianAggregation

LossFn = Callable[[dict[str, Tensor]], Tensor]


@dataclass
class StepOutput:
    """Per-task losses ``(T, E)`` (detached), the gradients of the trainable parameters, and the
    per-run task weights used ``(T, E)`` (recorded by the loop)."""

    task_losses: Tensor
    grads: dict[str, Tensor]
    task_weights: Tensor


class StepRule(Protocol):
    """``rule(loss_fn, params, trainable, weights, run_ids)`` → :class:`StepOutput`.

    ``run_ids: (E,)`` names the run in each slot (slots move when the loop compacts the
    ensemble); a rule that keeps state between steps keys it by run id, and the loop calls
    :meth:`reset` with the ids of runs that restart from their initial parameters.
    """

    def __call__(
        self,
        loss_fn: LossFn,
        params: dict[str, Tensor],
        trainable: Sequence[str],
        weights: Tensor,
        run_ids: Tensor | None = None,
    ) -> StepOutput: ...

    def reset(self, run_ids: Sequence[int]) -> None: ...


class WeightedSum:
    """Gradient of ``Σ_t w_t L_t`` with fixed weights ``w: (T,)`` or ``(T, E)``.

    If the loss closure carries a ``closed_form`` attribute (the loop attaches one when the model
    provides ``mse_loss_and_grads``), it is used instead of autograd: same numbers, fewer kernels.
    """

    def __init__(self, use_closed_form: bool = True) -> None:
        self.use_closed_form = use_closed_form

    def reset(self, run_ids: Sequence[int]) -> None:
        """Stateless: nothing to reset."""

    def __call__(
        self,
        loss_fn: LossFn,
        params: dict[str, Tensor],
        trainable: Sequence[str],
        weights: Tensor,
        run_ids: Tensor | None = None,
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


class AggregatedStep:
    """A step rule that combines per-task gradients with a Jacobian aggregator from
    :mod:`mtlab.grad.methods` (``upgrad``, ``mgda``, ``pcgrad``, …), run by run.

    Per task, one backward pass of ``Σ_runs L_t`` gives every run's own task gradient (runs are
    independent), so the per-run Jacobians ``(E, T, P)`` of the ``shared`` parameters cost ``T``
    backward passes; each run's aggregator (its own instance: some keep state) turns its ``T × P``
    Jacobian into the update and the task weights. Other trainable parameters (readouts) get the
    gradient of ``Σ_t L_t``.
    """

    def __init__(self, method: str, shared: Sequence[str]) -> None:
        from mtlab.grad.methods import check_methods, jacobian_methods

        check_methods([method])
        if method not in jacobian_methods():
            raise ValueError(
                f"AggregatedStep takes a Jacobian aggregator ({', '.join(jacobian_methods())}); "
                f"for fixed loss weights use WeightedSum (got {method!r})"
            )
        self.method = method
        self.shared = tuple(shared)
        self._per_run: dict[int, JacobianAggregation] = {}

    def _method(self, run: int, n_tasks: int) -> JacobianAggregation:
        from mtlab.grad.methods import JacobianAggregation, make_method

        if run not in self._per_run:
            agg = make_method(self.method, n_tasks)
            assert isinstance(agg, JacobianAggregation)
            self._per_run[run] = agg
        return self._per_run[run]

    def reset(self, run_ids: Sequence[int]) -> None:
        """Runs that restart get a fresh aggregator (no state from before the restart)."""
        for r in run_ids:
            self._per_run.pop(int(r), None)

    def __call__(
        self,
        loss_fn: LossFn,
        params: dict[str, Tensor],
        trainable: Sequence[str],
        weights: Tensor,
        run_ids: Tensor | None = None,
    ) -> StepOutput:
        losses = loss_fn(params)  # (T, E)
        T, E = losses.shape
        ids = list(range(E)) if run_ids is None else [int(r) for r in run_ids.tolist()]
        shared = [n for n in trainable if n in self.shared]
        other = [n for n in trainable if n not in self.shared]
        rows = []
        for t in range(T):
            gs = torch.autograd.grad(
                losses[t].sum(), [params[n] for n in shared], retain_graph=True, allow_unused=True
            )
            rows.append(
                torch.cat(
                    [
                        (g if g is not None else torch.zeros_like(params[n])).reshape(E, -1)
                        for g, n in zip(gs, shared, strict=True)
                    ],
                    dim=1,
                )
            )
        J = torch.stack(rows, dim=1).detach()  # (E, T, P)
        updates, w = [], []
        for e in range(E):
            v, we, _ = self._method(ids[e], T).combine(J[e])
            updates.append(v)
            w.append(we)
        V = torch.stack(updates)  # (E, P)
        grads: dict[str, Tensor] = {}
        offset = 0
        for n in shared:
            size = params[n][0].numel()
            grads[n] = V[:, offset : offset + size].reshape(params[n].shape)
            offset += size
        if other:
            gs = torch.autograd.grad(losses.sum(), [params[n] for n in other], allow_unused=True)
            grads.update(
                {
                    n: (g if g is not None else torch.zeros_like(params[n]))
                    for n, g in zip(other, gs, strict=True)
                }
            )
        return StepOutput(losses.detach(), grads, torch.stack(w, dim=1).detach())
