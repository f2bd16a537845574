"""A Grad-TAG-style linearised estimate of pairwise transfer (after Li, Sharma & Zhang, KDD 2024):
from one network trained on all tasks, estimate how task ``i``'s validation loss would change if
the shared trunk were trained on ``i`` together with ``j`` rather than on ``i`` alone — without
training either.

Around the base parameters θ₀ every task's output is linearised in the trunk's parameters,
``f_t(x; θ₀ + Pz) ≈ f_t(x; θ₀) + Φ_t(x) z`` with ``Φ_t(x) = ∇_θ f_t(x; θ₀) P`` the per-example
Jacobian of the trunk's parameters randomly projected to ``d`` dimensions (``P``: Gaussian, seeded).
Per task ``t`` its training loss is expanded to second order in ``z`` (gradient ``g_t``,
Gauss–Newton matrix ``H_t``, means over its training examples; exact for the squared error), and a
set ``S`` of tasks trained together is the ridge-regularised Newton step on their summed losses,
``z_S = −(Σ_{t∈S} H_t + λ I)⁻¹ Σ_{t∈S} g_t``. The estimate of transfer from ``j`` onto ``i`` is
``1 − L_i^val(z_{ij}) / L_i^val(z_i)`` — the unit of the realised transfer — with ``L^val`` the
task's loss on its validation split under the linearised model, exactly (cross-entropy or squared
error of the linearised outputs). ``λ`` is chosen from a grid on the single-task fits' validation
losses (the mean over tasks of ``L_i^val(z_i) / L_i^val(0)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

#: λ is tried at these multiples of the mean diagonal of the tasks' Gauss–Newton matrices
RIDGE_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


@dataclass
class TaskLinearisation:
    """One task linearised around θ₀: training gradient ``g`` (d,) and Gauss–Newton ``H``
    (d, d); the validation split's base outputs ``f0`` (n, k), projected Jacobians ``phi``
    (n, k, d) and targets ``y``; ``kind`` decides the loss."""

    kind: str
    g: Tensor
    H: Tensor
    f0: Tensor
    phi: Tensor
    y: Tensor

    def val_loss(self, z: Tensor) -> Tensor:
        """The linearised model's validation loss at each column of ``z`` (d, m) → (m,)."""
        out = self.f0[:, :, None] + torch.einsum("nkd,dm->nkm", self.phi, z)
        if self.kind == "regression":
            return ((out[:, 0, :] - self.y.reshape(-1, 1)) ** 2).mean(0)
        logp = torch.log_softmax(out, dim=1)  # (n, k, m)
        return -logp.gather(1, self.y.reshape(-1, 1, 1).expand(-1, 1, z.shape[1]))[:, 0].mean(0)


def projection(params: dict[str, Tensor], d: int, seed: int) -> dict[str, Tensor]:
    """A Gaussian projection of every parameter tensor to ``d`` dimensions (entries of variance
    1/d), seeded."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.numel(), d, generator=g, dtype=torch.float64) / math.sqrt(d)
            for k, v in params.items()}  # fmt: skip


def projected_jacobian(
    fn: Callable[[dict[str, Tensor], Tensor], Tensor], params: dict[str, Tensor], x: Tensor,
    proj: dict[str, Tensor], batch: int = 256,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """``fn(params, x)`` → outputs (n, k): the outputs at ``params`` and the per-example
    Jacobians projected by ``proj`` (n, k, d), in float64, computed ``batch`` examples at a
    time (torch.func)."""
    from torch.func import jacrev, vmap

    def one(p: dict[str, Tensor], xi: Tensor) -> Tensor:
        return fn(p, xi[None])[0]

    jac = vmap(jacrev(one), in_dims=(None, 0))
    outs, phis = [], []
    with torch.no_grad():
        for s in range(0, len(x), batch):
            xb = x[s : s + batch]
            outs.append(fn(params, xb).double())
            J = jac(params, xb)
            phi = sum(J[k].reshape(len(xb), J[k].shape[1], -1).double() @ proj[k] for k in proj)
            phis.append(phi)
    return torch.cat(outs), torch.cat(phis)


def second_order(kind: str, f0: Tensor, phi: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """The training loss's gradient in ``z`` and its Gauss–Newton matrix at ``z = 0`` (means
    over examples)."""
    n = len(f0)
    if kind == "regression":
        r = 2.0 * (f0[:, 0] - y.reshape(-1).double())
        J = phi[:, 0, :]
        return J.T @ r / n, 2.0 * J.T @ J / n
    p = torch.softmax(f0, dim=1)
    r = p.clone()
    r[torch.arange(n), y.long().reshape(-1)] -= 1.0
    g = torch.einsum("nkd,nk->d", phi, r) / n
    # Σ_n Φᵀ (diag p − p pᵀ) Φ
    pphi = torch.einsum("nk,nkd->nd", p, phi)
    H = (torch.einsum("nkd,nk,nke->de", phi, p, phi) - pphi.T @ pphi) / n
    return g, H


def fit(tasks: Sequence[TaskLinearisation], members: Sequence[int], lam: float) -> Tensor:
    """``z_S`` for the tasks ``members`` (module doc)."""
    d = tasks[0].g.shape[0]
    H = sum(tasks[t].H for t in members) + lam * torch.eye(d, dtype=torch.float64)
    g = sum(tasks[t].g for t in members)
    return -torch.linalg.solve(H, g)


def transfer_matrix(tasks: Sequence[TaskLinearisation]) -> tuple[Tensor, float]:
    """``(Z, λ)``: ``Z[i, j] = 1 − L_i^val(z_{ij}) / L_i^val(z_i)`` (diagonal 0) at the λ of
    :data:`RIDGE_GRID` whose single-task fits have the lowest mean relative validation loss."""
    T = len(tasks)
    d = tasks[0].g.shape[0]
    scale = float(torch.stack([t.H.diagonal().mean() for t in tasks]).mean()) or 1.0

    def singles(lam: float) -> Tensor:
        return torch.stack([tasks[i].val_loss(fit(tasks, [i], lam)[:, None])[0]
                            for i in range(T)])  # fmt: skip

    base = torch.stack([t.val_loss(torch.zeros(d, 1, dtype=torch.float64))[0] for t in tasks])
    scores = {m: float((singles(m * scale) / base).mean()) for m in RIDGE_GRID}
    lam = min(scores, key=lambda m: (math.inf if math.isnan(scores[m]) else scores[m])) * scale
    alone = singles(lam)
    Z = torch.zeros(T, T, dtype=torch.float64)
    for i in range(T):
        zs = torch.stack([fit(tasks, [i, j], lam) if j != i else torch.zeros(d, dtype=torch.float64)
                          for j in range(T)], dim=1)  # fmt: skip
        Z[i] = 1.0 - tasks[i].val_loss(zs) / alone[i]
        Z[i, i] = 0.0
    return Z, lam


def linearise(
    trunk: nn.Module, heads: Sequence[nn.Module], kinds: Sequence[str],
    train: Sequence[tuple[Tensor, Tensor]], val: Sequence[tuple[Tensor, Tensor]], d: int,
    seed: int, max_examples: int | None = None,
) -> list[TaskLinearisation]:  # fmt: skip
    """Every task linearised around the network's current parameters in the trunk's parameters,
    projected to ``d`` dimensions (one projection for all tasks); ``train`` / ``val``: per task
    ``(x, y)`` (at most ``max_examples`` training examples each, the first ones)."""
    from torch.func import functional_call

    params = {k: v.detach() for k, v in trunk.named_parameters()}
    proj = projection(params, d, seed)
    out = []
    for head, kind, (xt, yt), (xv, yv) in zip(heads, kinds, train, val, strict=True):

        def fn(p: dict[str, Tensor], x: Tensor, head: nn.Module = head) -> Tensor:
            return head(functional_call(trunk, p, (x,)))

        if max_examples is not None:
            xt, yt = xt[:max_examples], yt[:max_examples]
        f0, phi = projected_jacobian(fn, params, xt, proj)
        g, H = second_order(kind, f0, phi, yt)
        fv, phv = projected_jacobian(fn, params, xv, proj)
        out.append(TaskLinearisation(kind, g, H, fv, phv, yv))
    return out


__all__ = ["RIDGE_GRID", "TaskLinearisation", "fit", "linearise", "projected_jacobian",
           "projection", "second_order", "transfer_matrix"]  # fmt: skip
