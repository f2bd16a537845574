"""What gradient descent should find: minimum-penalty interpolators of diagonal networks.

**Exact gradient flow.** For one path ``β_p = w·v`` of a diagonal network, ``δ = w² − v²`` is
conserved and ``d asinh(2β_p/|δ|)/dt = −2 ∂L/∂β_p``. With the ± paths (``β = β₊ − β₋``) and
``u = −2∫∂L/∂β dt`` this integrates to

    β(u) = P·eᵘ − N·e⁻ᵘ,   P = A₊ + B₋,   N = B₊ + A₋,
    A = (2β₀ + √(4β₀² + δ²))/4,   B = (√(4β₀² + δ²) − 2β₀)/4,   β₀ = w(0)·v(0),

per coordinate, and for the squared loss ``u = Xᵀλ`` lies in the row space of ``X``
(Woodworth et al. 2020 for the balanced start, Azulay et al. 2021 for general starts; our
derivation). The interpolator reached is therefore the minimiser of
``Σ_i [P_i e^{u_i} + N_i e^{−u_i}] − yᵀλ`` over λ — a smooth, strictly convex problem in ``n``
variables solved here with SciPy's ``trust-exact`` Newton method — equivalently the interpolator
of minimal :func:`mtlab.theory.penalties.exp_potential_penalty`.

* STL from ``w± = v± = α``: ``P = N = α²`` ⇒ ``β = 2α² sinh(u)``, the minimiser of ``Q_α``.
* PT+FT from pretrained ``w±`` rescaled by s with readouts γ: :func:`diagonal_flow_potential` of
  those weights (the "exact" prediction), or the paper's figure form ``P = N = K/2``,
  ``K = s²|a| + γ²`` (:func:`ptft_figure_potential`).
* PT+FT (LR), readouts only: a linear least-squares problem from ``v(0)``; gradient descent reaches
  the interpolator closest to ``v(0)`` (:func:`linear_probe_interpolant`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ExpPotential:
    """Per-coordinate ``β(u) = P eᵘ − N e⁻ᵘ`` with ``P, N > 0`` (arrays of shape ``(d,)``)."""

    p: np.ndarray
    n: np.ndarray

    def __post_init__(self) -> None:
        if np.any(self.p <= 0) or np.any(self.n <= 0):
            raise ValueError("ExpPotential needs P > 0 and N > 0 on every coordinate")

    def beta(self, u: np.ndarray) -> np.ndarray:
        return self.p * np.exp(u) - self.n * np.exp(-u)


def stl_potential(d: int, alpha: float) -> ExpPotential:
    """Balanced start ``w± = v± = α``: ``P = N = α²`` (the ``Q_α`` interpolator)."""
    return ExpPotential(np.full(d, alpha**2), np.full(d, alpha**2))


def _path_ab(w0: np.ndarray, v0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    beta0 = w0 * v0
    delta = w0**2 - v0**2
    root = np.sqrt(4 * beta0**2 + delta**2)
    a = (2 * beta0 + root) / 4
    # B = (root − 2β₀)/4 rationalised (= δ²/(4(root + 2β₀))) to avoid cancellation when β₀ ≫ |δ|.
    denom = root + 2 * beta0
    b = np.where(denom > 0, delta**2 / (4 * np.where(denom > 0, denom, 1.0)), 0.0)
    return a, b


def diagonal_flow_potential(
    w_pos: np.ndarray,
    w_neg: np.ndarray,
    v_pos: np.ndarray,
    v_neg: np.ndarray,
    floor: float = 1e-300,
) -> ExpPotential:
    """The exact gradient-flow potential of a diagonal network started at ``(w±, v±)`` (all
    nonnegative, shape ``(d,)``). ``floor`` keeps P, N strictly positive."""
    a_pos, b_pos = _path_ab(np.asarray(w_pos, float), np.asarray(v_pos, float))
    a_neg, b_neg = _path_ab(np.asarray(w_neg, float), np.asarray(v_neg, float))
    return ExpPotential(np.maximum(a_pos + b_neg, floor), np.maximum(b_pos + a_neg, floor))


def ptft_figure_potential(beta_aux: np.ndarray, gamma: float, s: float) -> ExpPotential:
    """The paper's figure-form finetuning penalty ``Σ K q(2β/K)`` as a potential: ``P = N = K/2``."""
    k = s**2 * np.abs(np.asarray(beta_aux, float)) + gamma**2
    if np.any(k <= 0):
        raise ValueError("K = s²|a| + γ² must be > 0 on every coordinate (use gamma > 0)")
    return ExpPotential(k / 2, k / 2)


@dataclass(frozen=True)
class InterpolantResult:
    beta: np.ndarray
    residual: float  # ‖Xβ − y‖ / ‖y‖
    iterations: int
    success: bool


def min_penalty_interpolant(
    x: np.ndarray,
    y: np.ndarray,
    potential: ExpPotential,
    *,
    tol: float = 1e-10,
    max_iter: int = 500,
) -> InterpolantResult:
    """``argmin_β Σ r_i(β_i)`` s.t. ``Xβ = y`` for the penalty of ``potential``, via its dual.

    ``x: (n, d)`` with full row rank (``n ≤ d``), ``y: (n,)``. The dual
    ``D(λ) = Σ P e^{Xᵀλ} + N e^{−Xᵀλ} − yᵀλ`` has gradient ``Xβ(Xᵀλ) − y`` and Hessian
    ``X diag(P eᵘ + N e⁻ᵘ) Xᵀ``; ``scipy.optimize.minimize(method="trust-exact")`` solves it.
    """
    from scipy.optimize import minimize

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"need x: (n, d) and y: (n,); got {x.shape} and {y.shape}")
    if potential.p.shape != (x.shape[1],):
        raise ValueError(f"potential has {potential.p.shape[0]} coordinates, x has {x.shape[1]}")
    p, nn = potential.p, potential.n
    ynorm = max(float(np.linalg.norm(y)), 1e-300)

    def parts(lam: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        u = np.clip(x.T @ lam, -700, 700)
        ep, en = p * np.exp(u), nn * np.exp(-u)
        return u, ep, en

    def fun(lam: np.ndarray) -> float:
        _, ep, en = parts(lam)
        return float(np.sum(ep + en) - y @ lam)

    def jac(lam: np.ndarray) -> np.ndarray:
        _, ep, en = parts(lam)
        return x @ (ep - en) - y

    def hess(lam: np.ndarray) -> np.ndarray:
        _, ep, en = parts(lam)
        return (x * (ep + en)) @ x.T

    res = minimize(
        fun,
        np.zeros(x.shape[0]),
        jac=jac,
        hess=hess,
        method="trust-exact",
        options={"gtol": tol * ynorm, "maxiter": max_iter},
    )
    u = np.clip(x.T @ res.x, -700, 700)
    beta = potential.beta(u)
    resid = float(np.linalg.norm(x @ beta - y)) / ynorm
    return InterpolantResult(beta, resid, int(res.nit), bool(resid < 1e-5))


def linear_probe_interpolant(
    x: np.ndarray,
    y: np.ndarray,
    w_pos: np.ndarray,
    w_neg: np.ndarray,
    v_pos0: np.ndarray,
    v_neg0: np.ndarray,
) -> np.ndarray:
    """Readout-only training with the first layer frozen: ``β = w₊⊙v₊ − w₋⊙v₋`` is linear in
    ``v = (v₊, v₋)``, and gradient descent from ``v(0)`` reaches the interpolator with minimal
    ``‖v − v(0)‖₂`` (Σ(β_i/w_i − γ)² in the paper's notation). Returns β: (d,)."""
    x = np.asarray(x, np.float64)
    a = np.concatenate([x * w_pos, -x * w_neg], axis=1)  # (n, 2d) design in v
    v0 = np.concatenate([v_pos0, v_neg0])
    dv = np.linalg.lstsq(a, y - a @ v0, rcond=None)[0]  # min-norm correction
    v = v0 + dv
    d = x.shape[1]
    return w_pos * v[:d] - w_neg * v[d:]


def mtl_l12_interpolant(
    x: np.ndarray,
    y: np.ndarray,
    beta_aux: np.ndarray,
    *,
    eps: float = 1e-5,
    tol: float = 1e-9,
    max_iter: int = 200,
) -> InterpolantResult:
    """Main-task part of the ℓ1,2 (small-init MTL) interpolator with the auxiliary coefficients
    ``a = beta_aux`` pinned: ``argmin Σ_i √(β_i² + a_i² + ε²)`` s.t. ``Xβ = y``.

    When the auxiliary task is interpolated with a full-column-rank design (n_aux ≥ d), MTL's
    auxiliary coefficients are fixed by the data, and the ℓ1,2 norm of the joint solution reduces
    to this separable problem (``R_MTL(β; a)`` up to a constant); ``ε`` smooths the coordinates
    with ``a_i = 0`` (there it is ≈ ℓ1). Solved through the dual
    ``min_λ D(λ) = −yᵀλ − Σ c_i √(1 − u_i²)``, ``u = Xᵀλ``, ``c = √(a² + ε²)``, which is finite
    only for ``|u| < 1``: a damped Newton method whose backtracking keeps the iterates inside
    (the trust-region solvers of SciPy stall at that wall). ``β_i = c_i u_i / √(1 − u_i²)``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],) or np.shape(beta_aux) != (x.shape[1],):
        raise ValueError(
            f"need x: (n, d), y: (n,), beta_aux: (d,); got {x.shape}, {y.shape}, "
            f"{np.shape(beta_aux)}"
        )
    if eps <= 0:
        raise ValueError(f"eps must be > 0; got {eps}")
    c = np.sqrt(np.asarray(beta_aux, float) ** 2 + eps**2)
    ynorm = max(float(np.linalg.norm(y)), 1e-300)

    def dual(lam: np.ndarray) -> float:
        u = x.T @ lam
        if np.max(np.abs(u)) >= 1:
            return np.inf
        return float(-y @ lam - np.sum(c * np.sqrt(1 - u * u)))

    lam = np.zeros(x.shape[0])
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007
        u = x.T @ lam
        root = np.sqrt(1 - u * u)
        grad = x @ (c * u / root) - y
        if np.linalg.norm(grad) <= tol * ynorm:
            break
        hess = (x * (c / root**3)) @ x.T
        step = np.linalg.solve(hess + 1e-14 * np.trace(hess) * np.eye(len(lam)), -grad)
        f0, t = dual(lam), 1.0
        while dual(lam + t * step) > f0 + 1e-4 * t * (grad @ step) and t > 1e-12:
            t /= 2
        lam = lam + t * step
    u = x.T @ lam
    beta = c * u / np.sqrt(1 - u * u)
    resid = float(np.linalg.norm(x @ beta - y)) / ynorm
    return InterpolantResult(beta, resid, it, bool(resid < 1e-5))
