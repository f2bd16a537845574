"""mtlab inside your own PyTorch training loop — four entry points, a few lines each.

Any ``nn.Module`` works; you name its shared parameters (as in ``model.named_parameters()``) and
keep your own optimiser, data and loop::

    from mtlab import loop

    probe = loop.AffinityProbe(model, shared=["trunk.0.weight", "trunk.0.bias"], optimizer=opt)
    update = loop.MultiTaskBackward(model, shared=probe.shared, method="pcgrad", n_tasks=3)
    for step, (x, ys) in enumerate(batches):
        losses_fn = lambda out: torch.stack([F.cross_entropy(o, y) for o, y in zip(out, ys)])
        probe.maybe(step, x, losses_fn)                 # (a) lookahead affinity every k steps
        losses = losses_fn(model(x))
        opt.zero_grad()
        record = update(losses)                         # (c) the update formed by a method
        opt.step()
        print(loop.conflict(record.gramian))            # (b) conflict diagnostics (Gramian)
    mean, se = probe.affinity()                         # → probe.save("affinity.json")
    loop.rescale_(pretrained_model, 0.5)                # (d) before finetuning: s < 1 → nested

* :class:`AffinityProbe` — lookahead inter-task affinity (TAG) on your batch, without side
  effects on the model, optimiser, buffers or random streams; averaged over probes with standard
  errors; saved in the format ``mtlab group`` reads.
* :func:`conflict` — gradient-conflict diagnostics from the task Gramian (pairwise cosines,
  conflict frequency, magnitude imbalance, …); :func:`task_gramian` computes it from your
  per-task losses when you do not use :class:`MultiTaskBackward`.
* :class:`MultiTaskBackward` — any mtlab method (``mtlab benchmark --list``) forms the gradient
  that your optimiser then applies.
* :func:`rescale_` — multiplies pretrained weights by ``s`` in place before finetuning (Lippl &
  Lindsey: ``s < 1`` favours reusing few features — nested feature selection; ``s > 1`` keeps the
  network lazy).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mtlab.grad.jacobian import JacobianEngine
from mtlab.grad.lookahead import Lookahead, LookaheadProbe
from mtlab.grad.methods import Method, StepRecord, check_methods, make_method
from mtlab.measure.conflict import conflict_summary, pairwise_cosines
from mtlab.models.multitask import rescale_


def _shared(model: nn.Module, shared: Sequence[str]) -> tuple[list[Tensor], list[Tensor]]:
    params = dict(model.named_parameters())
    unknown = [n for n in shared if n not in params]
    if unknown:
        raise ValueError(
            f"unknown shared parameter name(s) {unknown}; the model has {list(params)[:8]}…"
        )
    if not shared:
        raise ValueError("name at least one shared parameter")
    names = set(shared)
    return [params[n] for n in shared], [p for n, p in params.items() if n not in names]


class AffinityProbe:
    """Lookahead affinity ``Z[i, j] = 1 − L_i(after a step on j) / L_i(now)`` every ``every``
    steps (``rule="optimizer"``: the step your optimiser would take; ``"sgd"``: ``lr·g``).
    ``first_order=True`` uses the cheap estimate ``⟨g_i, u_j⟩ / L_i`` from the Gramian instead
    of T lookahead forwards (for many tasks)."""

    def __init__(
        self,
        model: nn.Module,
        shared: Sequence[str],
        optimizer: torch.optim.Optimizer | None = None,
        every: int = 100,
        rule: str = "optimizer",
        tasks: Sequence[str] | None = None,
        first_order: bool = False,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1 (got {every})")
        _shared(model, shared)
        self.shared = list(shared)
        self.every, self.first_order = every, first_order
        self.tasks = list(tasks) if tasks is not None else None
        self._probe = LookaheadProbe(model, self.shared, optimizer, rule=rule)
        self.probes: list[Lookahead] = []
        self.steps: list[int] = []

    def __call__(self, x: Any, losses_fn: Callable[[Any], Tensor]) -> Lookahead:
        """Probe now: ``losses_fn(model(x)) → (T,)`` per-task losses on this batch."""
        look = self._probe(x, losses_fn)
        self.probes.append(look)
        return look

    def maybe(self, step: int, x: Any, losses_fn: Callable[[Any], Tensor]) -> Lookahead | None:
        """Probe if ``step`` is a multiple of ``every``."""
        if step % self.every:
            return None
        self.steps.append(step)
        return self(x, losses_fn)

    def affinity(self) -> tuple[Tensor, Tensor]:
        """Mean ``(T, T)`` affinity over the probes (recipient × source) and its standard error
        (non-finite entries left out; NaN where fewer than one / two probes are finite)."""
        if not self.probes:
            raise RuntimeError("no probe yet: call maybe(step, x, losses_fn) in your loop")
        from mtlab.measure.stats import finite_mean_se

        Z = torch.stack(
            [(p.first_order if self.first_order else p.affinity).double() for p in self.probes]
        )
        mean, se = finite_mean_se(Z.numpy())
        return torch.from_numpy(mean), torch.from_numpy(se)

    def save(self, path: str | Path) -> Path:
        """``affinity.json`` for ``mtlab group`` (the mean; the standard errors in its meta)."""
        from mtlab.grouping import write_affinity

        mean, se = self.affinity()
        T = mean.shape[0]
        tasks = self.tasks or [f"task{t}" for t in range(T)]
        meta = {"probes": len(self.probes), "se": se.tolist(), "first_order": self.first_order}
        return write_affinity(path, tasks, mean.numpy(), meta)


def task_gramian(losses: Tensor, shared: Sequence[Tensor]) -> Tensor:
    """``G = J Jᵀ`` of the per-task losses ``(T,)`` over the shared parameters (keeps the graph)."""
    if losses.ndim != 1:
        raise ValueError(f"losses must be a vector of per-task losses (got {tuple(losses.shape)})")
    J = JacobianEngine("loop")(losses, list(shared)).matrix
    return (J @ J.T).detach()


def conflict(gramian: Tensor | None) -> dict[str, Any]:
    """Conflict diagnostics of one step from its task Gramian: the scalar summary (mean and
    minimum pairwise cosine, conflict frequency, magnitude imbalance, condition number, …) and
    the ``(T, T)`` cosines."""
    if gramian is None:
        raise ValueError(
            "no Gramian: loss-weighting methods compute one only on request — use "
            "loop.task_gramian(losses, shared) or MultiTaskBackward(..., gramian_every=1)"
        )
    out: dict[str, Any] = {
        k: (v if math.isfinite(v) else math.nan) for k, v in conflict_summary(gramian).items()
    }
    out["cosines"] = pairwise_cosines(gramian)
    return out


class MultiTaskBackward:
    """``update(losses)`` fills ``.grad`` of every parameter — the shared ones from the chosen
    method's combination of the per-task gradients, the task-specific ones from their own
    losses — for your optimiser's ``step()``. Returns the step's
    :class:`~mtlab.grad.methods.StepRecord` (losses, weights, Gramian when computed). Methods
    with trainable weights (``uw``) expose them in :meth:`parameters` — add them to your
    optimiser."""

    def __init__(
        self,
        model: nn.Module,
        shared: Sequence[str],
        method: str = "mean",
        n_tasks: int = 2,
        gramian_every: int = 0,
        **options: Any,
    ) -> None:
        check_methods([method])
        self.shared, self.specific = _shared(model, shared)
        self.method: Method = make_method(method, n_tasks, **options)
        self.engine = JacobianEngine("auto")
        self.gramian_every = gramian_every
        self.steps = 0

    def parameters(self) -> list[Tensor]:
        return self.method.parameters()

    def __call__(self, losses: Tensor) -> StepRecord:
        if losses.shape != (self.method.n_tasks,):
            raise ValueError(
                f"expected {self.method.n_tasks} per-task losses, got shape {tuple(losses.shape)}"
            )
        want = bool(self.gramian_every) and self.steps % self.gramian_every == 0
        self.steps += 1
        return self.method.backward(
            losses, self.shared, self.specific, None, self.engine, want_gramian=want
        )


__all__ = [
    "AffinityProbe",
    "MultiTaskBackward",
    "conflict",
    "rescale_",
    "task_gramian",
]
