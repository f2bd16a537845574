"""Measurement hooks for :func:`mtlab.train.ensemble.train_ensemble`.

:func:`conflict_hook` logs the gradient-conflict diagnostics of every run of an ensemble on the
loop's schedule: per task ``t`` one backward pass of ``Σ_runs L_t`` gives every run's own task
gradient at once (runs are independent), so the per-run Gramians ``(E, T, T)`` cost ``T``
backward passes whatever the ensemble size. Parameters are never modified.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtlab.measure.conflict import conflict_summary
from mtlab.models.base import EnsembleModel, Params
from mtlab.train.ensemble import Hook, TrainData, _mse_losses


def ensemble_gramians(
    model: EnsembleModel, params: Params, data: TrainData, names: Sequence[str]
) -> Tensor:
    """Per-run task Gramians ``(E, T, T)`` of the parameters ``names`` (full-batch MSE losses)."""
    with torch.enable_grad():
        p = {k: v.detach().requires_grad_(k in names) for k, v in params.items()}
        losses = _mse_losses(model, data, data.x, data.y)(p)  # (T, E)
        targets = [p[n] for n in names]
        rows = []
        for t in range(losses.shape[0]):
            grads = torch.autograd.grad(
                losses[t].sum(), targets, retain_graph=True, allow_unused=True
            )
            rows.append(
                torch.cat(
                    [
                        (g if g is not None else torch.zeros_like(x)).reshape(x.shape[0], -1)
                        for g, x in zip(grads, targets, strict=True)
                    ],
                    dim=1,
                )
            )
    J = torch.stack(rows, dim=1).detach()  # (E, T, P)
    return J @ J.transpose(1, 2)


def conflict_hook(
    model: EnsembleModel, data: TrainData, names: Sequence[str] | None = None, every: int = 100
) -> Hook:
    """A :class:`Hook` logging, per run, ``mean_cosine``, ``min_cosine``, ``mean_cos_to_rest``,
    ``conflict_frequency``, ``magnitude_imbalance`` and ``condition_number`` of the task
    gradients of the shared parameters (``names``; default the model's shared names)."""
    shared = tuple(names) if names is not None else tuple(model.shared_names)

    def fn(params: Params, run_ids: Tensor) -> dict[str, Tensor]:
        G = ensemble_gramians(model, params, data.index(run_ids), shared)
        rows = [conflict_summary(g) for g in G]
        return {
            k: torch.tensor([r[k] for r in rows], dtype=G.dtype, device=G.device) for k in rows[0]
        }

    return Hook(every=every, fn=fn)


__all__ = ["conflict_hook", "ensemble_gramians"]
