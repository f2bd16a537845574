"""Training with checkpoints: one network through its tasks' own minibatches, measured on a
schedule that is dense early (Mueller, Dredze & Andrews 2024).

Tasks may differ in kind and sample count (:class:`mtlab.tasks.supervised.SupervisedTask`). Per
step, every task draws a minibatch of its own training set (its own seeded stream, named by the
task, so an STL run of a task sees exactly the batches the MTL run gives that task), the per-task
losses ``(T,)`` go to a multi-task method (:mod:`mtlab.grad.methods`) and the optimiser steps.
At every checkpoint step the ``measure(step, model)`` hook runs *before* that step's update; it
must not change the model or any random stream the training uses (the measurements of
:mod:`mtlab.measure` work on detached copies with their own generators) — tested bitwise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from mtlab._seeding import derive_seed, generator
from mtlab.grad.jacobian import JacobianEngine
from mtlab.grad.methods import Method
from mtlab.models.multitask import MultiTaskNet
from mtlab.tasks.supervised import SupervisedTask


def checkpoint_schedule(
    steps: int, n_early: int = 20, early_frac: float = 0.3, n_late: int = 10
) -> tuple[int, ...]:
    """Step 0, at least ``n_early`` geometrically spaced steps in ``[1, early_frac · steps]``
    (every step there if there are fewer) and ``n_late`` evenly spaced steps after, ending at
    ``steps``."""
    if steps < 1 or n_early < 0 or n_late < 0 or not 0 < early_frac <= 1:
        raise ValueError(
            f"need steps >= 1, n_early, n_late >= 0 and 0 < early_frac <= 1 "
            f"(got {steps}, {n_early}, {n_late}, {early_frac})"
        )
    end = max(1, int(early_frac * steps))
    if end <= n_early:
        early = np.arange(1, end + 1)
    else:
        m = n_early
        while True:
            early = np.unique(np.round(np.geomspace(1, end, m)).astype(int))
            if len(early) >= n_early:
                break
            m += 1
    late: list[int] = (
        np.round(np.linspace(end, steps, n_late + 1)).astype(int)[1:].tolist() if n_late else []
    )
    return tuple(sorted({0, steps, *(int(s) for s in early), *(int(s) for s in late)}))


@dataclass(frozen=True)
class MinibatchConfig:
    steps: int = 1000
    lr: float = 0.05
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = 0.0
    batch_size: int = 32
    checkpoints: tuple[int, ...] = (0,)
    seed: int = 0
    backend: str = "loop"

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("steps, batch_size and lr must be positive")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam' (got {self.optimizer!r})")
        bad = [c for c in self.checkpoints if not 0 <= c <= self.steps]
        if bad:
            raise ValueError(f"checkpoints {bad} are outside 0 … {self.steps}")


@dataclass
class MinibatchResult:
    steps: int
    train_seconds: float
    measure_seconds: float
    diverged_at: int | None = None
    stopped_at: int | None = None  # the checkpoint whose measurement asked to stop
    last_losses: list[float] = field(default_factory=list)


class _Batches:
    """Epochs of seeded permutations of ``range(n)``, cut into batches of ``min(b, n)``."""

    def __init__(self, n: int, b: int, g: torch.Generator) -> None:
        self.n, self.b, self.g = n, min(b, n), g
        self.order = torch.randperm(n, generator=g)
        self.pos = 0

    def next(self) -> Tensor:
        if self.pos + self.b > self.n:
            self.order, self.pos = torch.randperm(self.n, generator=self.g), 0
        idx = self.order[self.pos : self.pos + self.b]
        self.pos += self.b
        return idx


def task_output(model: MultiTaskNet, x: Tensor, t: int) -> Tensor:
    """Head ``t`` on the trunk's representation of ``x`` (only that head is computed)."""
    head: torch.nn.Module = model.heads[t]
    out: Tensor = head(model.trunk(x))
    return out


def _optimizer(params: list[Tensor], cfg: MinibatchConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.Adam(params, lr=cfg.lr)


def train_minibatch(
    model: MultiTaskNet,
    tasks: Sequence[SupervisedTask],
    method: Method,
    cfg: MinibatchConfig,
    measure: Callable[[int, MultiTaskNet], bool | None] | None = None,
    device: torch.device | str = "cpu",
    on_optimizer: Callable[[torch.optim.Optimizer], None] | None = None,
) -> MinibatchResult:
    """Train ``model`` (one head per task, in order) on ``tasks`` with ``method`` (module doc).
    ``on_optimizer(opt)`` is called with the optimizer once it is built (a measurement that
    reads its state, such as a lookahead with the optimiser's update, takes it there).

    A non-finite loss stops training (``diverged_at`` is that step); measurements stop with it.
    A measurement that returns True stops training there (``stopped_at``: early stopping)."""
    if len(model.heads) != len(tasks) or method.n_tasks != len(tasks):
        raise ValueError(
            f"model has {len(model.heads)} heads and method {method.n_tasks} tasks for "
            f"{len(tasks)} tasks"
        )
    dev = torch.device(device)
    model.to(dev)
    method.to(dev)
    opt = _optimizer([*model.parameters(), *method.parameters()], cfg)
    if on_optimizer is not None:
        on_optimizer(opt)
    engine = JacobianEngine(cfg.backend)
    shared, specific = model.shared_parameters(), model.task_parameters()
    data = [(t["train"].x.to(dev), t["train"].y.to(dev)) for t in tasks]
    batches = [
        _Batches(t["train"].n, cfg.batch_size, generator(cfg.seed, "batches", t.name))
        for t in tasks
    ]
    torch.manual_seed(derive_seed(cfg.seed, "method"))  # PCGrad's order, GradDrop's masks
    checkpoints = set(cfg.checkpoints)
    res = MinibatchResult(0, 0.0, 0.0)
    for step in range(cfg.steps + 1):
        if measure is not None and step in checkpoints:
            t0 = time.perf_counter()
            stop = measure(step, model)
            res.measure_seconds += time.perf_counter() - t0
            if stop and step < cfg.steps:
                res.stopped_at = step
                break
        if step == cfg.steps:
            break
        t0 = time.perf_counter()
        losses = []
        for i, (task, (x, y), b) in enumerate(zip(tasks, data, batches, strict=True)):
            idx = b.next().to(dev)
            losses.append(task.loss(task_output(model, x[idx], i), y[idx]))
        loss_vec = torch.stack(losses)
        if not bool(torch.isfinite(loss_vec).all()):
            res.diverged_at = step
            break
        opt.zero_grad(set_to_none=True)
        for p in method.parameters():
            p.grad = None
        method.backward(loss_vec, shared, specific, None, engine)
        opt.step()
        res.steps = step + 1
        res.last_losses = [float(v) for v in loss_vec.detach()]
        res.train_seconds += time.perf_counter() - t0
    if res.last_losses and not all(math.isfinite(v) for v in res.last_losses):
        res.diverged_at = res.diverged_at or res.steps
    return res


__all__ = [
    "MinibatchConfig",
    "MinibatchResult",
    "checkpoint_schedule",
    "task_output",
    "train_minibatch",
]
