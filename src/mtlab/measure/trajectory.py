"""Everything measured at one checkpoint of a multi-head network, per task: losses and metrics on
the fixed training subset, validation and test splits; the trajectory factors of
:mod:`mtlab.measure.curvature` on the task's own training-subset loss; and, with several tasks,
the gradient conflict of the tasks' training-subset gradients on the shared parameters
(:mod:`mtlab.measure.conflict`).

The *training subset* is a seeded, fixed subset of each task's training examples
(:func:`train_subset`; its size is the option ``probe_size``, a name kept because it is a config
field of every trajectory run and so part of its id).

Options (:class:`FactorOptions`) name every estimator choice the paper leaves open, so a report
can state them: the training subset's size, the parameters the factors use (``shared``: the trunk;
``all``: the trunk and the task's own head), Lanczos tolerance, Fisher label samples and the
noise-scale micro-batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from mtlab._seeding import derive_seed, generator
from mtlab.measure.conflict import cos_to_rest, directional_conflict, pairwise_cosines
from mtlab.measure.curvature import (
    eval_mode,
    fisher_trace,
    gradient_coherence,
    noise_scale,
    per_example_grads,
    sharpness,
)
from mtlab.models.multitask import MultiTaskNet
from mtlab.tasks.supervised import SupervisedTask

FACTORS = ("sharpness", "fisher_trace", "coherence", "noise_scale", "grad_norm")


@dataclass(frozen=True)
class FactorOptions:
    probe_size: int = 256
    params: Literal["shared", "all"] = "shared"
    factors: tuple[str, ...] = FACTORS
    lanczos_tol: float = 1e-3
    fisher_samples: int = 1
    noise_batch: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [f for f in self.factors if f not in FACTORS]
        if unknown:
            raise ValueError(f"unknown factor(s) {unknown}; allowed: {', '.join(FACTORS)}")
        if self.params not in ("shared", "all"):
            raise ValueError(f"params must be 'shared' or 'all' (got {self.params!r})")
        if self.probe_size < 2:
            raise ValueError(f"probe_size must be >= 2 (got {self.probe_size})")

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def train_subset(task: SupervisedTask, size: int, seed: int) -> Tensor:
    """The fixed training subset: a seeded subset of ``size`` training examples (all if fewer),
    named by the task, so every run of that task (STL or MTL) uses the same one."""
    n = task["train"].n  # (the stream keeps its first name, "probe": renaming it would redraw)
    return torch.randperm(n, generator=generator(seed, "probe", task.name))[: min(size, n)]


class CheckpointMeter:
    """Call with ``(step, model)`` at each checkpoint; rows accumulate in ``rows``."""

    def __init__(
        self,
        model: MultiTaskNet,
        tasks: Sequence[SupervisedTask],
        opts: FactorOptions,
        factor_steps: set[int] | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.tasks, self.opts, self.factor_steps = list(tasks), opts, factor_steps
        dev = torch.device(device)
        self.subsets = []
        for t in self.tasks:
            idx = train_subset(t, opts.probe_size, opts.seed)
            self.subsets.append((t["train"].x[idx].to(dev), t["train"].y[idx].to(dev)))
        self.evals = {
            s: [(t[s].x.to(dev), t[s].y.to(dev)) for t in self.tasks] for s in ("val", "test")
        }
        self.shared = [n for n, _ in model.named_parameters() if n.startswith("trunk.")]
        self.init = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.rows: list[dict[str, Any]] = []

    def names(self, t: int) -> list[str]:
        own = [f"heads.{t}.weight", f"heads.{t}.bias"]
        return self.shared + own if self.opts.params == "all" else list(self.shared)

    def __call__(self, step: int, model: MultiTaskNet) -> None:
        with torch.no_grad(), eval_mode(model):
            losses = [self._losses(model, t) for t in range(len(self.tasks))]
        factors = self.factor_steps is None or step in self.factor_steps
        conflict = self._conflict(model) if len(self.tasks) > 1 else {}
        for t, task in enumerate(self.tasks):
            row: dict[str, Any] = {"task": task.name, "step": step, **losses[t]}
            row.update(self._norms(model, t))
            if factors:
                row.update(self._factors(model, t, step))
            row.update(conflict.get(t, {}))
            self.rows.append(row)

    def _losses(self, model: MultiTaskNet, t: int) -> dict[str, float]:
        task = self.tasks[t]
        out: dict[str, float] = {}
        for name, (x, y) in (("train", self.subsets[t]), ("val", self.evals["val"][t])):
            o = model(x)[1][t]
            out[f"{name}_loss"] = float(task.loss(o, y))
            out[f"{name}_metric"] = task.metric(o, y)
        x, y = self.evals["test"][t]
        o = model(x)[1][t]
        out["test_loss"], out["test_metric"] = float(task.loss(o, y)), task.metric(o, y)
        return out

    def _norms(self, model: MultiTaskNet, t: int) -> dict[str, float]:
        named = dict(model.named_parameters())
        names = self.names(t)
        w = sum(float((named[n].detach().double() ** 2).sum()) for n in names)
        d = sum(float(((named[n].detach() - self.init[n]).double() ** 2).sum()) for n in names)
        return {"weight_norm": math.sqrt(w), "dist_init": math.sqrt(d)}

    def _loss_fn(self, t: int) -> Callable[[Any, Tensor], Tensor]:
        task = self.tasks[t]
        return lambda out, y: task.loss(out[1][t], y)

    def _factors(self, model: MultiTaskNet, t: int, step: int) -> dict[str, float]:
        opts, task, (x, y) = self.opts, self.tasks[t], self.subsets[t]
        names, want, out = self.names(t), set(opts.factors), {}
        seed = derive_seed(opts.seed, "factors", task.name, step)
        if "sharpness" in want:
            out["sharpness"] = sharpness(
                model, self._loss_fn(t), (x, y), names, tol=opts.lanczos_tol, seed=seed % 2**32
            )
        if "fisher_trace" in want:
            out["fisher_trace"] = fisher_trace(
                model,
                x,
                names,
                output=lambda o: o[1][t],
                likelihood="gaussian" if task.kind == "regression" else "categorical",
                n_samples=opts.fisher_samples,
                seed=seed,
            )
        if want & {"coherence", "noise_scale", "grad_norm"}:
            g = per_example_grads(model, self._loss_fn(t), (x, y), names)
            out["coherence"] = gradient_coherence(g)
            out["grad_norm"] = float(g.double().mean(0).norm())
            try:
                out["noise_scale"] = noise_scale(g, opts.noise_batch, seed).b_simple
            except ValueError:  # a subset too small for two micro-batches
                out["noise_scale"] = math.nan
        return {k: v for k, v in out.items() if k in want}

    def _conflict(self, model: MultiTaskNet) -> dict[int, dict[str, float]]:
        """Per task: cos to the sum of the other tasks' training-subset gradients (shared parameters), and
        the run's mean pairwise cosine and directional conflict."""
        from torch.func import functional_call, grad

        named = dict(model.named_parameters())
        sel = {n: named[n].detach() for n in self.shared}
        fixed = {n: p.detach() for n, p in named.items() if n not in sel}
        rows = []
        with eval_mode(model):
            for t, (x, y) in enumerate(self.subsets):

                def f(s: dict[str, Tensor], t: int = t, x: Tensor = x, y: Tensor = y) -> Tensor:
                    out = functional_call(model, {**fixed, **s}, (x,))
                    return self.tasks[t].loss(out[1][t], y)

                gs = grad(f)(sel)
                rows.append(torch.cat([gs[n].reshape(-1) for n in self.shared]).double())
        J = torch.stack(rows)
        G = J @ J.T
        C = pairwise_cosines(G)
        T = len(rows)
        iu = torch.triu_indices(T, T, 1)
        mean_cos = float(C[iu[0], iu[1]].mean())
        rest = cos_to_rest(G)
        dc = directional_conflict(G)
        return {
            t: {"cos_to_rest": float(rest[t]), "mean_cosine": mean_cos, "directional": dc}
            for t in range(T)
        }


__all__ = ["FACTORS", "CheckpointMeter", "FactorOptions", "train_subset"]
