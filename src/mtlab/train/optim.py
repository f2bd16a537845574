"""Per-run optimisers for ensembles: each run has its own learning rate and its own state.

``torch.optim`` keeps one learning rate per parameter group, but an ensemble needs one per *run*
(a slice of every tensor) and must freeze finished or diverged runs, restart single runs, and drop
runs from the batch. These small optimisers do exactly that; their update rules are the textbook
ones (SGD, heavy-ball momentum as in ``torch.optim.SGD``, Adam as in ``torch.optim.Adam``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtlab.models.base import Params, per_run

OPTIMIZERS = ("sgd", "momentum", "adam")


class EnsembleOptimizer:
    """``kind`` ∈ {sgd, momentum, adam}; state tensors mirror the trainable parameters."""

    def __init__(
        self,
        kind: str,
        params: Params,
        names: Sequence[str],
        *,
        momentum: float = 0.9,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        if kind not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {kind!r}; allowed: {', '.join(OPTIMIZERS)}")
        self.kind, self.names = kind, tuple(names)
        self.momentum, self.betas, self.eps, self.weight_decay = momentum, betas, eps, weight_decay
        self.state: dict[str, Tensor] = {}
        e = next(iter(params.values())).shape[0]
        for n in self.names:
            if kind == "momentum":
                self.state[f"{n}.buf"] = torch.zeros_like(params[n], requires_grad=False)
            elif kind == "adam":
                self.state[f"{n}.m"] = torch.zeros_like(params[n], requires_grad=False)
                self.state[f"{n}.v"] = torch.zeros_like(params[n], requires_grad=False)
        if kind == "adam":
            self.state["t"] = torch.zeros(e, dtype=next(iter(params.values())).dtype)

    @torch.no_grad()
    def step(self, params: Params, grads: dict[str, Tensor], lr: Tensor, mask: Tensor) -> None:
        """Update the runs where ``mask: (E,)`` is true, in place; ``lr: (E,)``.

        Masked runs keep their parameters (their step is multiplied by a zero learning rate);
        their optimiser state may still move, which is harmless: a run is only masked once it
        has finished (it never moves again) or diverged (its state is reset on restart).
        """
        lr_eff = lr * mask
        if self.kind == "adam":
            t = self.state["t"]
            t += mask
            b1, b2 = self.betas
            c1 = 1 - b1 ** t.clamp(min=1)
            c2 = 1 - b2 ** t.clamp(min=1)
        for n in self.names:
            p, g = params[n], grads[n]
            if self.weight_decay:
                g = g + self.weight_decay * p
            if self.kind == "sgd":
                upd = g
            elif self.kind == "momentum":
                upd = self.state[f"{n}.buf"]
                upd.mul_(self.momentum).add_(g)
            else:
                mm, vv = self.state[f"{n}.m"], self.state[f"{n}.v"]
                mm.mul_(b1).add_(g, alpha=1 - b1)
                vv.mul_(b2).addcmul_(g, g, value=1 - b2)
                upd = (mm / per_run(c1, p)) / ((vv / per_run(c2, p)).sqrt() + self.eps)
            p.addcmul_(per_run(lr_eff, p), upd, value=-1)

    @torch.no_grad()
    def reset(self, runs: Tensor) -> None:
        """Zero the state of the runs where ``runs: (E,)`` (bool) is true (a restart)."""
        for k, s in self.state.items():
            s.copy_(torch.where(per_run(runs, s), torch.zeros_like(s), s))
            self.state[k] = s

    def index(self, idx: Tensor) -> None:
        """Keep only the runs ``idx`` (ensemble compaction)."""
        self.state = {k: s[idx].clone() for k, s in self.state.items()}
