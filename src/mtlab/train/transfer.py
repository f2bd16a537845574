"""Minibatch training of an ``nn.Module`` on tasks with their own inputs, in *phases*: the loop of
the deep-network rescaling check (Lippl & Lindsey 2024, §4).

Each epoch passes over every phase in order — a phase is one task's training set, the model head
that scores it and a loss weight — shuffling each phase with its own seeded stream. STL,
pretraining and finetuning are one phase; the paper's MTL is a pass over the main data followed by
a pass over the auxiliary data with the auxiliary loss scaled by
``(n_main / b_main) / (n_aux / b_aux)`` (batches per epoch of each). SGD with momentum; training
stops after the first epoch whose mean loss on the *first* phase is below ``loss_threshold``, or
after ``max_epochs``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Phase:
    """One task's training data ``x: (n, ...)``, integer labels ``y: (n,)``, the index of the
    model head that scores it, its loss weight and batch size."""

    x: Tensor
    y: Tensor
    head: int
    weight: float = 1.0
    batch_size: int = 128

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0] or self.x.shape[0] == 0:
            raise ValueError(
                f"a phase needs matching, non-empty x and y; got {self.x.shape[0]} and "
                f"{self.y.shape[0]} rows"
            )
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {self.batch_size}")


@dataclass(frozen=True)
class PhaseTrainConfig:
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    max_epochs: int = 1000
    loss_threshold: float = 1e-2
    seed: int = 0


@dataclass
class PhaseTrainResult:
    epochs: int
    steps: int
    final_loss: float
    status: str  # converged | max_epochs | failed
    history: list[dict[str, float]] = field(default_factory=list)


def mtl_aux_weight(n_main: int, n_aux: int, batch: int = 128) -> float:
    """The paper's auxiliary-loss factor ``(n_main / min(n_main, b)) / (n_aux / b)``."""
    return (n_main / min(n_main, batch)) / (n_aux / batch)


def train_phases(
    model: nn.Module,
    phases: Sequence[Phase],
    cfg: PhaseTrainConfig,
    device: torch.device | str = "cpu",
    log_every: int = 1,
) -> PhaseTrainResult:
    """Train ``model`` (returning ``(features, [logits per head])``) on ``phases``; see the module
    docstring. Cross-entropy per phase; every parameter is trained."""
    if not phases:
        raise ValueError("train_phases needs at least one phase")
    model.to(device)
    opt = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    gens = [torch.Generator().manual_seed(cfg.seed * 1000 + i) for i in range(len(phases))]
    data = [(p.x.to(device), p.y.to(device)) for p in phases]
    history: list[dict[str, float]] = []
    steps = 0
    loss0 = math.nan
    status = "max_epochs"
    epoch = 0
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        totals = []
        for phase, (x, y), g in zip(phases, data, gens, strict=True):
            perm = torch.randperm(x.shape[0], generator=g).to(device)
            tot, count = 0.0, 0
            for i in range(0, x.shape[0], phase.batch_size):
                idx = perm[i : i + phase.batch_size]
                _, logits = model(x[idx])
                loss = nn.functional.cross_entropy(logits[phase.head], y[idx])
                opt.zero_grad(set_to_none=True)
                (phase.weight * loss).backward()
                opt.step()
                steps += 1
                tot += float(loss.detach()) * len(idx)
                count += len(idx)
            totals.append(tot / count)
        loss0 = totals[0]
        if epoch % log_every == 0 or loss0 < cfg.loss_threshold:
            history.append(
                {"epoch": float(epoch), **{f"train_loss_{k}": v for k, v in enumerate(totals)}}
            )
        if not math.isfinite(loss0):
            status = "failed"
            break
        if loss0 < cfg.loss_threshold:
            status = "converged"
            break
    return PhaseTrainResult(epoch, steps, loss0, status, history)


@torch.no_grad()
def evaluate(
    model: nn.Module, x: Tensor, y: Tensor, head: int, device: torch.device | str = "cpu"
) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``head`` on ``(x, y)`` (eval mode, batches of 512)."""
    model.eval()
    correct, loss, n = 0, 0.0, 0
    for i in range(0, x.shape[0], 512):
        xb, yb = x[i : i + 512].to(device), y[i : i + 512].to(device)
        logits = model(xb)[1][head]
        correct += int((logits.argmax(1) == yb).sum())
        loss += float(nn.functional.cross_entropy(logits, yb, reduction="sum"))
        n += len(yb)
    return {"accuracy": correct / n, "loss": loss / n}


@torch.no_grad()
def features(model: nn.Module, x: Tensor, device: torch.device | str = "cpu") -> Tensor:
    """The shared representation (penultimate layer) ``(n, k)`` in eval mode (BatchNorm uses its
    running statistics — a deliberate choice; the authors' script extracted in training mode)."""
    model.eval()
    return torch.cat([model(x[i : i + 512].to(device))[0].cpu() for i in range(0, len(x), 512)])


__all__ = [
    "Phase",
    "PhaseTrainConfig",
    "PhaseTrainResult",
    "evaluate",
    "features",
    "mtl_aux_weight",
    "train_phases",
]
