"""Lookahead transference (inter-task affinity; Fifty et al. 2020, TAG 2021).

For a batch and the current parameters, the affinity of source ``j`` onto recipient ``i`` is

    Z[i, j] = 1 − L_i(θ_s − u_j, θ_i) / L_i(θ_s, θ_i),

where ``u_j`` is the update the optimiser would make to the *shared* parameters ``θ_s`` from task
``j``'s gradient alone (task-specific parameters stay put). ``Z > 0``: a step on ``j`` lowers
``i``'s loss. Orientation everywhere: ``affinity[recipient][source]``. Sources may be sets of
tasks (their summed gradient).

``u_j`` (``rule``):

* ``"optimizer"`` — read from the optimiser's real per-parameter state: SGD with momentum,
  dampening, Nesterov and weight decay (``u = lr·(μ·buf + (1−dampening)(g + wd·θ))``, or the
  first-step form), Adam / AdamW (bias-corrected moments after one more step, L2 or decoupled
  weight decay);
* ``"sgd"`` — a plain gradient step ``u = lr·g`` (TAG's probe), with ``lr`` the optimiser's
  (or ``eta``).

The probe has **no side effects**: parameters, optimiser state, BatchNorm running statistics
(the lookahead forwards run on copies of every buffer) and the random streams (forked) are
untouched; it only reads the batch it is given. The ``T`` (or ``S``) lookahead forwards run as
one batched computation (``torch.func.vmap`` over stacked parameter sets) or in a loop.

:func:`first_order_affinity` is the cheap estimate ``Z[i, j] ≈ ⟨g_i, u_j⟩ / L_i`` (``= η⟨g_i,
g_j⟩/L_i`` for the SGD probe), from the task Gramian.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

LossesFn = Callable[[Any], Tensor]  # model output → per-task losses (T,)
RULES = ("optimizer", "sgd")


@dataclass
class Lookahead:
    """One probe: ``affinity (T, S)`` (recipients × sources), the same divided by the step size
    (``per_lr``), the losses ``(T,)`` before, the per-source losses after ``(S, T)`` and the
    first-order estimate ``(T, S)``."""

    affinity: Tensor
    per_lr: Tensor
    losses: Tensor
    after: Tensor
    first_order: Tensor
    lr: float
    cosine: Tensor | None = None  # (T, T) cosines of the per-task gradients (baseline affinity)


def _param_lr(optimizer: torch.optim.Optimizer | None, p: Tensor, eta: float | None) -> dict:
    if optimizer is None:
        return {"lr": eta if eta is not None else 0.1}
    for group in optimizer.param_groups:
        if any(q is p for q in group["params"]):
            return group
    raise ValueError("a shared parameter is not managed by the optimiser")


def optimizer_update(
    optimizer: torch.optim.Optimizer | None,
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    rule: str = "optimizer",
    eta: float | None = None,
) -> list[Tensor]:
    """The update ``u`` (to subtract) the optimiser would apply for gradients ``grads`` —
    computed from copies of its state, never modifying it."""
    if rule not in RULES:
        raise ValueError(f"unknown lookahead rule {rule!r}; allowed: {', '.join(RULES)}")
    out = []
    for p, g in zip(params, grads, strict=True):
        group = _param_lr(optimizer, p, eta)
        lr = float(eta if eta is not None else group["lr"])
        if rule == "sgd" or optimizer is None:
            out.append(lr * g)
            continue
        state = optimizer.state.get(p, {})
        if isinstance(optimizer, torch.optim.SGD):
            wd, mom = group.get("weight_decay", 0.0), group.get("momentum", 0.0)
            damp, nesterov = group.get("dampening", 0.0), group.get("nesterov", False)
            d = g + wd * p.detach() if wd else g
            if mom:
                buf = state.get("momentum_buffer")
                buf = d.clone() if buf is None else mom * buf + (1 - damp) * d
                d = d + mom * buf if nesterov else buf
            out.append(lr * d)
        elif isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW):
            b1, b2 = group["betas"]
            eps, wd = group["eps"], group.get("weight_decay", 0.0)
            decoupled = isinstance(optimizer, torch.optim.AdamW) or group.get(
                "decoupled_weight_decay", False
            )
            gg = g + wd * p.detach() if (wd and not decoupled) else g
            m = state.get("exp_avg", torch.zeros_like(p))
            v = state.get("exp_avg_sq", torch.zeros_like(p))
            step = float(state.get("step", 0)) + 1
            m = b1 * m + (1 - b1) * gg
            v = b2 * v + (1 - b2) * gg * gg
            mhat = m / (1 - b1**step)
            vhat = v / (1 - b2**step)
            u = lr * mhat / (vhat.sqrt() + eps)
            if wd and decoupled:
                u = u + lr * wd * p.detach()
            out.append(u)
        else:
            raise ValueError(
                f"rule 'optimizer' supports SGD, Adam and AdamW (got {type(optimizer).__name__});"
                " use rule='sgd'"
            )
    return out


def first_order_affinity(J: Tensor, U: Tensor, losses: Tensor) -> Tensor:
    """``Z[i, j] ≈ ⟨g_i, u_j⟩ / L_i`` from per-task gradients ``J (T, P)``, source updates
    ``U (S, P)`` and losses ``(T,)``."""
    return (J @ U.T) / losses[:, None]


class LookaheadProbe:
    """Measures lookahead affinity on a batch without side effects (see module doc).

    ``probe(x, losses_fn)``: ``losses_fn(output) → (T,)`` turns the model's output on the batch
    ``x`` into per-task losses (it closes over the batch's labels). ``shared`` names the shared
    parameters (as in ``model.named_parameters()``). ``sources``: ``None`` (each task alone) or a
    list of task-index sets. ``batched``: one vmapped forward for all sources (``True``), a loop
    (``False``) or ``"auto"`` (vmap, falling back to the loop for models vmap cannot run).
    """

    def __init__(
        self,
        model: nn.Module,
        shared: Sequence[str],
        optimizer: torch.optim.Optimizer | None = None,
        rule: str = "optimizer",
        eta: float | None = None,
        sources: Sequence[Sequence[int]] | None = None,
        batched: bool | str = "auto",
        first_order_only: bool = False,
    ) -> None:
        if rule not in RULES:
            raise ValueError(f"unknown lookahead rule {rule!r}; allowed: {', '.join(RULES)}")
        names = dict(model.named_parameters())
        missing = [n for n in shared if n not in names]
        if missing:
            raise ValueError(f"unknown shared parameter name(s) {missing}")
        self.model, self.shared = model, list(shared)
        self.losses_fn: LossesFn | None = None  # set per call
        self.optimizer, self.rule, self.eta = optimizer, rule, eta
        self.sources = None if sources is None else [tuple(s) for s in sources]
        self.batched = batched
        #: skip the S lookahead forwards: ``affinity`` is then the first-order estimate (and
        #: ``after`` NaN) — for many tasks, where the forwards dominate the probe's cost
        self.first_order_only = first_order_only

    def _losses(self, out: Any) -> Tensor:
        if self.losses_fn is None:
            raise RuntimeError("the probe's losses_fn is set by each call")
        return self.losses_fn(out)

    def _forward(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x) -> Tensor:
        return self._losses(functional_call(self.model, {**params, **buffers}, (x,)))

    def __call__(self, x, losses_fn: LossesFn) -> Lookahead:
        self.losses_fn = losses_fn
        model = self.model
        params = {n: p.detach() for n, p in model.named_parameters()}
        buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
        devices = [x.device] if isinstance(x, Tensor) and x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            live = {n: p.detach().requires_grad_(n in self.shared) for n, p in params.items()}
            L = self._forward(live, {n: b.clone() for n, b in buffers.items()}, x)
            shared_t = [live[n] for n in self.shared]
            T = L.shape[0]
            rows = []
            for t in range(T):
                gs = torch.autograd.grad(L[t], shared_t, retain_graph=t < T - 1, allow_unused=True)
                rows.append(
                    [
                        g if g is not None else torch.zeros_like(p)
                        for g, p in zip(gs, shared_t, strict=True)
                    ]
                )
            L = L.detach()
            sources = self.sources or [(t,) for t in range(T)]
            real = [p for n, p in model.named_parameters() if n in self.shared]
            updates = []
            for src in sources:
                g = [torch.stack([rows[t][k] for t in src]).sum(0) for k in range(len(shared_t))]
                updates.append(optimizer_update(self.optimizer, real, g, self.rule, self.eta))
            after = (
                torch.full((len(sources), T), float("nan"), dtype=L.dtype, device=L.device)
                if self.first_order_only
                else self._lookahead(params, buffers, updates, x)
            )
        J = torch.stack([torch.cat([g.reshape(-1) for g in r]) for r in rows])
        U = torch.stack([torch.cat([u.reshape(-1) for u in up]) for up in updates])
        lr = float(
            self.eta
            if self.eta is not None
            else (self.optimizer.param_groups[0]["lr"] if self.optimizer else 0.1)
        )
        first = first_order_affinity(J, U, L).detach()
        Z = first if self.first_order_only else (1 - after.T / L[:, None]).detach()
        n = J.norm(dim=1).clamp_min(1e-30)
        cos = (J @ J.T / (n[:, None] * n[None, :])).detach()
        return Lookahead(Z, Z / lr, L, after.detach(), first, lr, cos)

    def evaluate(self, x, losses_fn: LossesFn, vectors: Sequence[Tensor]) -> Tensor:
        """Losses ``(K, T)`` after applying each candidate combined *gradient* ``vectors[k]``
        (flattened over the shared parameters) through the probe's update rule — for IT-MTL."""
        self.losses_fn = losses_fn
        real = [p for n, p in self.model.named_parameters() if n in self.shared]
        params = {n: p.detach() for n, p in self.model.named_parameters()}
        buffers = {n: b.detach().clone() for n, b in self.model.named_buffers()}
        updates = []
        for v in vectors:
            parts, off = [], 0
            for p in real:
                parts.append(v[off : off + p.numel()].view_as(p))
                off += p.numel()
            updates.append(optimizer_update(self.optimizer, real, parts, self.rule, self.eta))
        devices = [x.device] if isinstance(x, Tensor) and x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            return self._lookahead(params, buffers, updates, x)

    def _lookahead(self, params, buffers, updates, x) -> Tensor:
        """Per-source losses after the step: ``(S, T)``."""
        names = self.shared

        def one(stepped: list[Tensor]) -> Tensor:
            p = dict(params)
            p.update({n: params[n] - u for n, u in zip(names, stepped, strict=True)})
            return self._forward(p, {n: b.clone() for n, b in buffers.items()}, x)

        with torch.no_grad():
            if self.batched is not False:
                try:
                    stacked = [torch.stack([up[k] for up in updates]) for k in range(len(names))]

                    def batched_fn(*us: Tensor) -> Tensor:
                        p = dict(params)
                        p.update({n: params[n] - u for n, u in zip(names, us, strict=True)})
                        return self._losses(
                            functional_call(self.model, {**p, **buffers}, (x,), strict=False)
                        )

                    if self.model.training and any(True for _ in self.model.buffers()):
                        raise RuntimeError("buffers would be updated in place under vmap")
                    return torch.func.vmap(batched_fn, randomness="different")(*stacked)
                except (RuntimeError, NotImplementedError, ValueError):
                    if self.batched is True:
                        raise
            return torch.stack([one(up) for up in updates])


def mean_affinity(probes: Sequence[Lookahead], per_lr: bool = False) -> Tensor:
    """The affinity averaged over probes (``(T, S)``), ignoring non-finite entries."""
    Z = torch.stack([(p.per_lr if per_lr else p.affinity) for p in probes])
    finite = torch.isfinite(Z)
    return torch.where(finite, Z, 0).sum(0) / finite.sum(0).clamp_min(1)


__all__ = [
    "RULES",
    "Lookahead",
    "LookaheadProbe",
    "first_order_affinity",
    "mean_affinity",
    "optimizer_update",
]
