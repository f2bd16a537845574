"""Gradient-conflict diagnostics from the task Gramian ``G = J Jᵀ`` (``G_st = ⟨g_s, g_t⟩``).

Everything here needs only the ``T × T`` Gramian, never the ``T × P`` Jacobian:

* ``pairwise_cosines`` — ``G_st / √(G_ss G_tt)``;
* ``cos_to_rest`` — ``cos(g_t, Σ_{s≠t} g_s)`` with ``‖Σ_{s≠t} g_s‖² = 1ᵀG1 − 2(G1)_t + G_tt``;
* ``conflict_frequency`` — the fraction of task pairs with a negative inner product;
* ``magnitude_imbalance`` — ``max_t ‖g_t‖ / min_t ‖g_t‖``;
* ``directional_conflict`` — ``‖(1/T) Σ_t ĝ_t‖`` of the unit gradients, which equals
  ``√(1/T + (T−1)/T · mean pairwise cosine)`` (Mueller et al.'s directional measure);
* ``condition_number`` — ``λ_max(G) / λ_min(G)`` (``inf`` when the gradients are linearly
  dependent).

References: Yu et al. 2020 (PCGrad: conflicting gradients, magnitude differences); Mueller, Dredze
& Andrews 2024 (gradient conflict vs optimisation and generalisation).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _check(G: Tensor) -> Tensor:
    if G.ndim != 2 or G.shape[0] != G.shape[1]:
        raise ValueError(f"expected a square Gramian (T, T); got shape {tuple(G.shape)}")
    return G.to(torch.float64)


def pairwise_cosines(G: Tensor, eps: float = 1e-30) -> Tensor:
    """``(T, T)`` cosine similarities between task gradients."""
    G = _check(G)
    n = torch.sqrt(torch.clamp(torch.diagonal(G), min=0.0))
    return G / torch.clamp(n[:, None] * n[None, :], min=eps)


def cos_to_rest(G: Tensor, eps: float = 1e-30) -> Tensor:
    """``(T,)``: cosine between each task's gradient and the sum of the others'."""
    G = _check(G)
    row = G.sum(1)
    diag = torch.diagonal(G)
    rest_sq = torch.clamp(G.sum() - 2 * row + diag, min=0.0)
    return (row - diag) / torch.clamp(torch.sqrt(torch.clamp(diag, min=0.0) * rest_sq), min=eps)


def conflict_frequency(G: Tensor) -> float:
    """Fraction of task pairs ``s < t`` whose gradients have a negative inner product."""
    G = _check(G)
    T = G.shape[0]
    if T < 2:
        return 0.0
    iu = torch.triu_indices(T, T, offset=1)
    return float((G[iu[0], iu[1]] < 0).double().mean())


def magnitude_imbalance(G: Tensor) -> float:
    """``max ‖g_t‖ / min ‖g_t‖`` (``inf`` if some gradient is zero)."""
    n = torch.sqrt(torch.clamp(torch.diagonal(_check(G)), min=0.0))
    return float(n.max() / n.min()) if float(n.min()) > 0 else math.inf


def directional_conflict(G: Tensor) -> float:
    """``‖(1/T) Σ_t g_t/‖g_t‖‖`` from the Gramian (1: aligned; small: conflicting)."""
    C = pairwise_cosines(G)
    T = C.shape[0]
    return math.sqrt(max(float(C.sum()) / T**2, 0.0))


def condition_number(G: Tensor, rel_tol: float = 1e-12) -> float:
    """``λ_max / λ_min`` of the Gramian (``inf`` when ``λ_min ≤ rel_tol·λ_max``)."""
    ev = torch.linalg.eigvalsh(_check(G))
    lo, hi = float(ev[0]), float(ev[-1])
    if hi <= 0 or lo <= rel_tol * hi:
        return math.inf
    return hi / lo


def conflict_summary(G: Tensor) -> dict[str, float]:
    """All scalar diagnostics of one Gramian (mean pairwise cosine, min cosine, mean
    cos-to-rest, conflict frequency, magnitude imbalance, condition number)."""
    C = pairwise_cosines(G)
    T = C.shape[0]
    iu = torch.triu_indices(T, T, offset=1)
    pairs = C[iu[0], iu[1]]
    return {
        "mean_cosine": float(pairs.mean()) if pairs.numel() else 1.0,
        "min_cosine": float(pairs.min()) if pairs.numel() else 1.0,
        "mean_cos_to_rest": float(cos_to_rest(G).mean()),
        "conflict_frequency": conflict_frequency(G),
        "magnitude_imbalance": magnitude_imbalance(G),
        "condition_number": condition_number(G),
    }


__all__ = [
    "condition_number",
    "conflict_frequency",
    "conflict_summary",
    "cos_to_rest",
    "directional_conflict",
    "magnitude_imbalance",
    "pairwise_cosines",
]
