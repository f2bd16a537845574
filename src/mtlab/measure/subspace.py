"""How well a first layer ``W: (m, d)`` recovers a ground-truth subspace ``row(M)``, ``M: (r, d)``
with orthonormal rows (Collins et al. 2024; paper notes §6). Rows of ``W`` are normalised first,
so the scale and sign conventions of a one-step update do not matter.

* ``energy`` — ``‖Ŵ Mᵀ‖_F² / ‖Ŵ‖_F²``: the fraction of the first layer's energy inside row(M)
  (≈ r/d at random initialisation). High energy does **not** mean recovery: a rank-one layer
  along one direction of row(M) has energy ≈ 1.
* ``sin_max`` — sine of the largest principal angle between the top-r right-singular subspace of
  ``Ŵ`` and row(M): ``‖(I − MᵀM) V_r‖₂`` (0 = recovered, 1 = some direction missing entirely).
* ``coverage`` — ``σ_min(Ŵ Mᵀ) / σ_max(Ŵ Mᵀ)``: are all r directions represented?
* ``n_dirs`` — singular values of ``Ŵ Mᵀ`` above ``rel_tol·σ_max`` (recovered directions).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _unit_rows(W: Tensor) -> Tensor:
    W = W.to(torch.float64)
    return W / W.norm(dim=1, keepdim=True).clamp_min(1e-300)


def energy_fraction(W: Tensor, M: Tensor) -> float:
    """``‖Ŵ Mᵀ‖_F² / ‖Ŵ‖_F²`` with unit rows ``Ŵ`` (float64)."""
    Wn = _unit_rows(W)
    return float((Wn @ M.to(Wn).T).square().sum() / Wn.square().sum())


def principal_sines(U: Tensor, V: Tensor) -> Tensor:
    """Sines of the principal angles between ``span(U)`` and ``span(V)`` (orthonormal columns,
    ``(d, k)`` and ``(d, r)``), largest first: the singular values of ``(I − V Vᵀ) U``."""
    U, V = U.to(torch.float64), V.to(torch.float64)
    R = U - V @ (V.T @ U)
    return torch.linalg.svdvals(R)


def sin_max(W: Tensor, M: Tensor) -> float:
    """``‖(I − MᵀM) V_r‖₂``: the largest principal-angle sine between the top-``r``
    right-singular subspace of ``Ŵ`` and row(M)."""
    r = M.shape[0]
    _, _, Vh = torch.linalg.svd(_unit_rows(W), full_matrices=False)
    return float(principal_sines(Vh[:r].T, M.to(torch.float64).T)[0])


def subspace_metrics(W: Tensor, M: Tensor, rel_tol: float = 0.1) -> dict[str, float]:
    """``energy``, ``sin_max``, ``coverage`` and ``n_dirs`` of ``W`` against ``M`` (see module)."""
    Wn = _unit_rows(W)
    Mf = M.to(Wn)
    s = torch.linalg.svdvals(Wn @ Mf.T)
    smax = float(s[0]) if s.numel() else 0.0
    return {
        "energy": float((Wn @ Mf.T).square().sum() / Wn.square().sum()),
        "sin_max": sin_max(Wn, Mf),
        "coverage": float(s[-1] / s[0]) if smax > 0 else 0.0,
        "n_dirs": int((s > rel_tol * smax).sum()) if smax > 0 else 0,
    }


__all__ = ["energy_fraction", "principal_sines", "sin_max", "subspace_metrics"]
