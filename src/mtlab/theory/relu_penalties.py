"""Implicit-regularisation penalties of two-layer ReLU networks (Lippl & Lindsey 2024, §2.2).

* :func:`f1_norm` — ``Σ_j ‖w_j‖·|a_j|``, the single-task (rich, small-init) penalty.
* :func:`group_norm` — ``Σ_j ‖w_j‖·‖(a_aux,j, a_main,j)‖₂``, the MTL penalty of a shared hidden
  layer with one readout per task (with one task it is the F1 norm).
* :func:`ptft_unit_penalty` — the per-unit finetuning penalty: reaching coefficient ``β`` (the
  unit's ``‖w‖·a``) in a direction at cosine ``θ`` to a pretrained unit of norm ``m0`` whose readout
  starts at ``v0`` costs the least squared parameter change

      R_FT(β; m0, θ, v0) = min_{m>0} (β/m − v0)² + m² + m0² − 2·m·m0·θ.

  The minimiser is the positive root of ``m⁴ − m0θ·m³ + v0β·m − β² = 0`` that gives the smallest
  value (roots found from the companion matrix, float64). With ``v0 = 0`` the penalty is
  1-homogeneous in ``(β, m0²)`` — so ℓ-order + FD = 1 with ``β_aux = m0²`` (tested) — and for
  ``θ < 1`` it is ``m0²(1 − θ²)`` at ``β = 0``: the cost of turning the unit.

ℓ-order and feature dependence are the log-derivatives of :mod:`mtlab.theory.penalties`
(``β_aux = m0²``); :func:`relu_ptft_fn` gives the ``fn(β_main, β_aux)`` they take.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor


def _t(x: object) -> Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


def f1_norm(W: Tensor, a: Tensor) -> Tensor:
    """``Σ_j ‖w_j‖·|a_j|`` for ``W: (..., m, d)``, ``a: (..., m)``."""
    return (_t(W).norm(dim=-1) * _t(a).abs()).sum(-1)


def group_norm(W: Tensor, A: Tensor) -> Tensor:
    """``Σ_j ‖w_j‖·‖A[:, j]‖₂`` for ``W: (..., m, d)`` and readouts ``A: (..., T, m)``."""
    return (_t(W).norm(dim=-1) * _t(A).norm(dim=-2)).sum(-1)


def _objective(m: Tensor, beta: Tensor, m0: Tensor, theta: Tensor, v0: Tensor) -> Tensor:
    return (beta / m - v0) ** 2 + m * m + m0 * m0 - 2 * m * m0 * theta


def optimal_norm(beta: Tensor, m0: Tensor, theta: Tensor, v0: Tensor | float = 0.0) -> Tensor:
    """The minimiser ``m* > 0`` of the per-unit objective (broadcast inputs, float64, no grad)."""
    b, m0_, th, v = torch.broadcast_tensors(_t(beta), _t(m0), _t(theta), _t(v0))
    shape = b.shape
    b, m0_, th, v = (t.detach().reshape(-1).numpy() for t in (b, m0_, th, v))
    n = b.size
    # companion matrix of m⁴ + c3 m³ + c2 m² + c1 m + c0 with c3 = −m0θ, c2 = 0, c1 = v0β, c0 = −β²
    comp = np.zeros((n, 4, 4))
    comp[:, 1, 0] = comp[:, 2, 1] = comp[:, 3, 2] = 1.0
    comp[:, 0, 3], comp[:, 1, 3], comp[:, 2, 3], comp[:, 3, 3] = b * b, -v * b, 0.0, m0_ * th
    roots = np.linalg.eigvals(comp) if n else np.zeros((0, 4), complex)
    best = np.full(n, np.nan)
    best_val = np.full(n, np.inf)
    for k in range(4):
        r = roots[:, k]
        ok = (np.abs(r.imag) <= 1e-9 * np.maximum(1.0, np.abs(r.real))) & (r.real > 0)
        m = np.where(ok, r.real, 1.0)
        val = (b / m - v) ** 2 + m * m + m0_ * m0_ - 2 * m * m0_ * th
        better = ok & (val < best_val)
        best = np.where(better, m, best)
        best_val = np.where(better, val, best_val)
    # β = 0 (no positive root of the quartic): the infimum is at m = max(m0θ, 0)
    zero = ~np.isfinite(best_val)
    best = np.where(zero, np.maximum(m0_ * th, 0.0), best)
    return torch.from_numpy(best.reshape(shape))


def ptft_unit_penalty(
    beta: Tensor, m0: Tensor, theta: Tensor | float, v0: Tensor | float = 0.0
) -> Tensor:
    """``R_FT(β; m0, θ, v0)`` elementwise over broadcast inputs (float64).

    Differentiable in every argument: the minimiser is found without gradients and the objective
    evaluated there (envelope theorem), so ℓ-order / FD by autograd are exact.
    """
    b, m0_, th, v = torch.broadcast_tensors(_t(beta), _t(m0), _t(theta), _t(v0))
    m = optimal_norm(b, m0_, th, v)
    val_at_zero = (m0_ * m0_ - (m0_ * th).clamp_min(0) ** 2).clamp_min(0) + v * v
    safe = torch.where(m > 0, m, torch.ones_like(m))
    return torch.where(b != 0, _objective(safe, b, m0_, th, v), val_at_zero)


def relu_ptft_fn(theta: float, v0: float = 0.0) -> Callable[[Tensor, Tensor], Tensor]:
    """``fn(β_main, β_aux)`` for :func:`mtlab.theory.penalties.l_order` /
    :func:`~mtlab.theory.penalties.feature_dependence`: the per-unit penalty with ``m0 = √β_aux``
    (the pretrained coefficient ``β_aux ≈ m0²`` of a balanced unit), summed over the last axis."""

    def fn(b: Tensor, a: Tensor) -> Tensor:
        return ptft_unit_penalty(b, torch.sqrt(a.abs()), theta, v0).sum(-1)

    return fn


__all__ = ["f1_norm", "group_norm", "optimal_norm", "ptft_unit_penalty", "relu_ptft_fn"]
