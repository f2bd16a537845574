"""Implicit-regularisation penalties of diagonal linear networks (Lippl & Lindsey 2024, §1.3–1.4).

All functions take float64 tensors (or anything ``torch.as_tensor`` accepts), broadcast their
arguments, and sum over the last axis (coordinates) unless documented otherwise.

* :func:`q` — ``q(z) = 2 − √(4+z²) + z·asinh(z/2)`` (Woodworth et al. 2020).
* :func:`stl_penalty` — ``Q_α(β) = α² Σ q(β/α²)``: gradient flow from ``w± = v± = α`` reaches the
  interpolator minimising it. ``Q_α / log(1/α²) → ‖β‖₁`` as α → 0 (rich); ``4α² Q_α → ‖β‖₂²`` as
  α → ∞ (lazy).
* :func:`mtl_penalty` — the ℓ1,2 norm ``Σ √(β_aux² + β_main²)`` minimised by small-init MTL, and
  :func:`mtl_incremental_penalty` ``Σ √(β² + a²) − |a|``, its cost of a main coefficient β given an
  auxiliary coefficient ``a``.
* :func:`ptft_penalty` — finetuning from pretrained coefficients ``a`` with readout re-init γ and
  first-layer rescaling s: ``K = s²|a| + γ²`` and ``Σ K·q(c·β/K)`` with ``c = 2`` (``form="figure"``,
  the paper's figures) or ``c = 1`` (``form="logging"``, the authors' Python logging code).
* :func:`exp_potential_penalty` — the exact gradient-flow penalty of any diagonal network started at
  given weights (see :mod:`mtlab.theory.interpolators`).
* :func:`l_order`, :func:`feature_dependence` — ``∂log R/∂log|β_main|`` and ``∂log R/∂log|β_aux|``
  per coordinate. For 1-homogeneous penalties (γ = 0) Euler's theorem gives
  ``ℓ-order + FD = 1`` (the conservation law; tested).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

PenaltyForm = Literal["figure", "logging"]
FORM_FACTOR = {"figure": 2.0, "logging": 1.0}


def _t(x: object) -> Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


def q(z: Tensor) -> Tensor:
    """``q(z) = 2 − √(4+z²) + z·asinh(z/2)``, computed without cancellation for small ``|z|``
    (``2 − √(4+z²) = −z²/(2 + √(4+z²))``). ``q(z) ≈ z²/4`` near 0 and ``≈ |z|·log|z|`` for large z."""
    z = _t(z)
    return z * torch.asinh(z / 2) - z * z / (2 + torch.sqrt(4 + z * z))


def stl_penalty(beta: Tensor, alpha: float | Tensor) -> Tensor:
    """``Q_α(β) = α² Σ_i q(β_i/α²)`` — the single-task penalty at init scale α."""
    a2 = _t(alpha) ** 2
    return (a2 * q(_t(beta) / a2)).sum(-1)


def mtl_penalty(beta_aux: Tensor, beta_main: Tensor) -> Tensor:
    """``Σ_i √(β_aux,i² + β_main,i²)`` — the ℓ1,2 group norm (small-init MTL, up to a factor 2)."""
    return torch.sqrt(_t(beta_aux) ** 2 + _t(beta_main) ** 2).sum(-1)


def mtl_incremental_penalty(beta: Tensor, beta_aux: Tensor) -> Tensor:
    """``R_MTL(β; a) = Σ_i √(β_i² + a_i²) − |a_i|`` — ≈ β²/(2|a|) for |a| ≫ |β|, ≈ |β| for |a| ≪ |β|."""
    a, b = _t(beta_aux), _t(beta)
    # β²/(√(β²+a²) + |a|): the same value without cancellation when |a| ≫ |β|
    den = torch.sqrt(b * b + a * a) + a.abs()
    return torch.where(den > 0, b * b / torch.where(den > 0, den, 1.0), 0.0).sum(-1)


def ptft_scale(beta_aux: Tensor, gamma: float | Tensor = 0.0, s: float | Tensor = 1.0) -> Tensor:
    """``K = s²|a| + γ²`` — the per-coordinate scale of the finetuning penalty."""
    return _t(s) ** 2 * _t(beta_aux).abs() + _t(gamma) ** 2


def ptft_penalty(
    beta: Tensor,
    beta_aux: Tensor,
    gamma: float | Tensor = 0.0,
    s: float | Tensor = 1.0,
    form: PenaltyForm = "figure",
) -> Tensor:
    """``R_FT(β; a, γ, s) = Σ_i K_i·q(c·β_i/K_i)``, ``K = s²|a| + γ²``, ``c = 2`` (figure form) or 1.

    Large K: ≈ Σ c²β²/(4K), a weighted ℓ2 (lazy) penalty under which strongly pretrained
    coordinates are cheap; small K: ℓ1-like (rich). ``K = 0`` (no pretraining, γ = 0) makes any
    nonzero β infinitely costly.
    """
    if form not in FORM_FACTOR:
        raise ValueError(f"form must be one of {sorted(FORM_FACTOR)}; got {form!r}")
    k = ptft_scale(beta_aux, gamma, s)
    c = FORM_FACTOR[form]
    b = _t(beta)
    with torch.no_grad():
        zero_k = (k == 0) & (b != 0)
    val = torch.where(k > 0, k * q(c * b / torch.where(k > 0, k, 1.0)), torch.zeros_like(b * k))
    val = torch.where(zero_k, torch.full_like(val, float("inf")), val)
    return val.sum(-1)


def exp_potential_penalty(beta: Tensor, p: Tensor, n: Tensor) -> Tensor:
    """The penalty whose convex conjugate is ``Σ P e^u + N e^{−u}`` (``P, N > 0``), shifted so its
    minimum, at ``β = P − N``, is 0: ``r(β) = uβ − P e^u − N e^{−u} + P + N`` with
    ``u = asinh(β / (2√(PN))) + ½·log(N/P)`` (the stable inverse of ``β = P eᵘ − N e⁻ᵘ``).
    Gradient flow on a diagonal network from any start minimises ``Σ r`` over interpolators
    (:func:`mtlab.theory.interpolators.diagonal_flow_potential`).
    """
    b, p, n = _t(beta), _t(p), _t(n)
    u = torch.asinh(b / (2 * torch.sqrt(p * n))) + 0.5 * torch.log(n / p)
    return (u * b - p * torch.exp(u) - n * torch.exp(-u) + p + n).sum(-1)


def _log_derivative(
    fn: Callable[[Tensor, Tensor], Tensor], beta_main: Tensor, beta_aux: Tensor, wrt: int
) -> Tensor:
    b = _t(beta_main).clone().requires_grad_(True)
    a = _t(beta_aux).clone().requires_grad_(True)
    b_, a_ = torch.broadcast_tensors(b, a)
    vals = fn(b_.unsqueeze(-1), a_.unsqueeze(-1))  # per-coordinate penalties
    (gb, ga) = torch.autograd.grad(vals.sum(), (b, a))
    g = gb if wrt == 0 else ga
    x = b if wrt == 0 else a
    return (x * g / vals).detach()


def l_order(fn: Callable[[Tensor, Tensor], Tensor], beta_main: Tensor, beta_aux: Tensor) -> Tensor:
    """ℓ-order ``∂log R/∂log|β_main|`` of the per-coordinate penalty ``fn(β_main, β_aux)``
    (1: ℓ1-like, sparse; 2: ℓ2-like), elementwise over broadcast inputs."""
    return _log_derivative(fn, beta_main, beta_aux, 0)


def feature_dependence(
    fn: Callable[[Tensor, Tensor], Tensor], beta_main: Tensor, beta_aux: Tensor
) -> Tensor:
    """Feature dependence ``∂log R/∂log|β_aux|`` (0: blind to pretraining; −1: maximal reuse bias)."""
    return _log_derivative(fn, beta_main, beta_aux, 1)
