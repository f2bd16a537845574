"""The pseudo-contrastive view of head-first multi-task training (Collins et al. 2024; notes §4.2–4.3).

After one head step from zero heads (hinge loss, all margins below 1), head ``t`` is
``a_t = η_a (1/n1) Σ_i y_ti σ(W x_ti)``, and the multi-task first-layer gradient becomes

    ∇_W L = −(η_a / (T n1 n2)) Σ_t Σ_{i,i'} y_ti y'_ti' ∇_W ⟨sg[σ(W x_ti)], σ(W x'_ti')⟩,

the gradient of a *pseudo-contrastive* loss: pairs that share labels across tasks are pulled
together in feature space, pairs that disagree are pushed apart, with weights
``K_T(x, x') = (1/T) Σ_t y_t(x) y_t(x')`` from cross-task label agreement.

Under the canonical model (``x ~ N(0, I)``, odd halfspace labels, no bias) the expected one-step
update is ``W1 = (η_a η_W / 2π) · W0 Mᵀ Θ̂ M`` with ``Θ̂ = (1/T) Σ_t θ_t θ_tᵀ``
(:func:`population_one_step`): each neuron is its initial weight projected onto the span of the
task directions — rank one for a single task, all of row(M) once ``T ≥ r``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from mtlab._seeding import generator
from mtlab.models.relu import head_grads, init_first_layer, outputs, shared_grad
from mtlab.tasks.subspace import (
    SubspaceSpec,
    projection,
    sample_tasks,
    task_offsets,
    unit_directions,
)


def pseudo_contrastive_loss(
    W: Tensor,
    X1: Tensor,
    Y1: Tensor,
    X2: Tensor,
    Y2: Tensor,
    eta_a: float = 1.0,
    stop_gradient: bool = True,
) -> Tensor:
    """``−(η_a/(T n1 n2)) Σ_t Σ_{i,i'} y_ti y'_ti' ⟨σ(W x_ti), σ(W x'_ti')⟩`` in its explicit
    pairwise form (cost ``O(T·n1·n2·m)``): ``X1 (T, n1, d)``, ``Y1 (T, n1)`` are the head-step
    samples, ``X2 (T, n2, d)``, ``Y2 (T, n2)`` the representation-step samples. With
    ``stop_gradient`` the head-step side is detached, as in the identity above."""
    H1 = torch.relu(X1 @ W.T)
    if stop_gradient:
        H1 = H1.detach()
    H2 = torch.relu(X2 @ W.T)
    gram = H1 @ H2.transpose(1, 2)  # (T, n1, n2): ⟨σ(W x_ti), σ(W x'_ti')⟩
    K = Y1[:, :, None] * Y2[:, None, :]  # (T, n1, n2): y_ti y'_ti'
    T, n1, n2 = gram.shape
    return -eta_a * (K * gram).sum() / (T * n1 * n2)


def contrastive_kernel(Y: Tensor) -> Tensor:
    """``K_T(x_i, x_j) = (1/T) Σ_t y_t(x_i) y_t(x_j)`` for labels ``Y (T, n)`` of the same ``n``
    points under all ``T`` tasks: ``(n, n)``."""
    return Y.T @ Y / Y.shape[0]


def pseudo_contrastive_objective(
    W: Tensor,
    X: Tensor,
    K: Tensor,
    Xp: Tensor | None = None,
    stop_gradient: bool = False,
) -> Tensor:
    """``L_PC(W) = −E[K_T(x, x') ⟨σ(Wx), σ(Wx')⟩]``, the explicit objective.

    One set of points ``X (n, d)`` with kernel ``K (n, n)``: the mean over off-diagonal pairs
    (unbiased for independent x, x'). Two sets ``X (n1, d)``, ``Xp (n2, d)`` with a cross kernel
    ``K (n1, n2)`` (e.g. ``Y1ᵀ Y2 / T`` when every task labels the same points): the mean over all
    pairs; ``stop_gradient`` detaches the ``X`` side, which makes ``η_a ∇L_PC`` the multi-task
    first-layer gradient after the head step when all tasks share their samples."""
    H = torch.relu(X @ W.T)
    if Xp is None:
        G = H @ H.T
        n = X.shape[0]
        off = ~torch.eye(n, dtype=torch.bool, device=X.device)
        return -(K * G)[off].sum() / (n * (n - 1))
    if stop_gradient:
        H = H.detach()
    G = H @ torch.relu(Xp @ W.T).T
    return -(K * G).mean()


def population_one_step(
    W0: Tensor, M: Tensor, theta: Tensor, eta_a: float = 1.0, eta_w: float = 1.0
) -> Tensor:
    """Expected head-first one-step update ``(η_a η_W/2π) W0 Mᵀ Θ̂ M`` for ``W0 (m, d)``,
    ``M (r, d)`` and task directions ``theta (T, r)`` (unit rows), under the canonical model."""
    theta_hat = theta.T @ theta / theta.shape[0]
    return eta_a * eta_w / (2 * math.pi) * (W0 @ M.T @ theta_hat @ M)


def identity_check(
    d: int = 100, m: int = 200, T: int = 3, n: int = 50, eta_a: float = 0.01, seed: int = 0
) -> dict[str, Any]:
    """The identity on one fresh instance of the canonical model (paper notes, target 1): the
    relative difference between the first-layer gradient the training code computes after the
    zero-initialised hinge head step and autograd of :func:`pseudo_contrastive_loss` (float64),
    and whether every margin stayed below 1 (the identity's assumption)."""
    r = 5
    dt = torch.float64
    spec = SubspaceSpec(d, r)
    M = projection(d, r, seed, dt)
    theta = unit_directions(T, r, seed, "theta", dt)
    off = task_offsets(T, 0.0, seed, dt)
    X1, Y1 = sample_tasks(spec, M, theta, off, n, seed, "head")
    X2, Y2 = sample_tasks(spec, M, theta, off, n, seed, "rep")
    W = init_first_layer(m, d, generator(seed, "W0", d, m), dt)
    A = -eta_a * head_grads(W, torch.zeros(T, m, dtype=dt), X1, Y1, "hinge")
    g_train = shared_grad(W, A, X2, Y2, "hinge")
    Wg = W.clone().requires_grad_(True)
    (g_pc,) = torch.autograd.grad(pseudo_contrastive_loss(Wg, X1, Y1, X2, Y2, eta_a), Wg)
    margins = Y2 * outputs(W, A, X2)
    return {
        "rel_diff": float((g_train - g_pc).norm() / g_pc.norm()),
        "margins_below_1": bool((margins < 1).all()),
        "max_margin": float(margins.max()),
    }


__all__ = [
    "contrastive_kernel",
    "identity_check",
    "population_one_step",
    "pseudo_contrastive_loss",
    "pseudo_contrastive_objective",
]
