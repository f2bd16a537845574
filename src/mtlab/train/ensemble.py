"""The one training loop: an ensemble of independent runs trained as one batched computation.

Each iteration: per-task losses ``(T, E)`` → the step rule forms the gradients → a per-run
optimiser updates the runs that are still active. Per run, the loop

* stops at a train-loss threshold (checked every step for full-batch training; on the full
  training set at each sync point for minibatch training) or at its step budget;
* handles divergence as in Lippl & Lindsey's code: a loss above ``divergence_loss`` or NaN ⇒
  restart from the initial weights with lr/10, at most ``max_restarts`` times, then the run is
  recorded as failed with the reason (the others continue);
* logs train losses per task, and any measurement hooks, on a schedule.

Decisions that need Python (restarts, finishing, compaction) happen at *sync points* every
``sync_every`` iterations; everything else is tensor arithmetic, so a batched run does exactly
what the same run does alone (checked in the tests to float tolerance). When fewer than
``compact_below`` of the slots are still active the ensemble is compacted so finished runs stop
costing compute. Finished runs are handed to ``on_finish`` as soon as a sync point sees them,
so a sweep that is interrupted loses no finished run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor

from mtlab.grad.step import StepRule, WeightedSum
from mtlab.models.base import EnsembleModel, Params
from mtlab.train.optim import OPTIMIZERS, EnsembleOptimizer

RUNNING, CONVERGED, MAX_STEPS, FAILED = 0, 1, 2, 3
STATUS_NAMES = {CONVERGED: "converged", MAX_STEPS: "max_steps", FAILED: "failed"}


@dataclass(frozen=True)
class LoopConfig:
    """Settings of :func:`train_ensemble` shared by all runs of an ensemble."""

    max_steps: int = 100_000
    threshold: float = 0.0
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int | None = None
    divergence_loss: float = 100.0
    max_restarts: int = 3
    log_every: int = 1000
    sync_every: int = 100
    compact_below: float = 0.5

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}; got {self.optimizer!r}")
        for name in ("max_steps", "log_every", "sync_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None; got {self.batch_size}")
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0; got {self.max_restarts}")


@dataclass
class TrainData:
    """Training sets of an ensemble: per data entry ``i``, inputs ``x[i]: (E or 1, n_i, d)`` and
    targets ``y[i]: (E or 1, n_i)`` scored by model output ``outputs[i]``; the loss is
    ``Σ_i weights[i] · MSE_i`` with ``weights: (T,)`` or ``(T, E)``.

    Runs may have different sample counts for the same entry: pad their rows with zeros (x = 0,
    y = 0, so padded residuals vanish) and give ``counts[i]: (E,)``, the true number of rows per
    run; the MSE then divides by it. ``counts[i] = None`` means every row is real. Padding is for
    full-batch training only.

    Runs that share their inputs in groups (several runs on each of ``D`` data draws) keep one
    copy per draw: ``x[i]: (D, n_i, d)`` with ``src[i]: (E,)``, the draw of every run (full-batch
    only; :func:`grouped_layout` places the runs of a draw side by side, so one batched product
    reads each draw once instead of once per run).
    """

    x: list[Tensor]
    y: list[Tensor]
    outputs: tuple[int, ...]
    weights: Tensor
    counts: list[Tensor | None] | None = None
    src: list[Tensor | None] | None = None
    _layouts: dict[int, tuple[Tensor, int]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (len(self.x) == len(self.y) == len(self.outputs) == self.weights.shape[0]):
            raise ValueError("TrainData needs one x, y, output index and weight per task")
        if self.counts is None:
            self.counts = [None] * len(self.x)
        if len(self.counts) != len(self.x):
            raise ValueError("TrainData.counts needs one entry (or None) per task")
        if self.src is None:
            self.src = [None] * len(self.x)
        if len(self.src) != len(self.x):
            raise ValueError("TrainData.src needs one entry (or None) per task")

    @property
    def padded(self) -> bool:
        return any(c is not None for c in self.counts or [])

    @property
    def grouped(self) -> bool:
        return any(s is not None for s in self.src or [])

    def layout(self, i: int) -> tuple[Tensor, int] | None:
        """Entry ``i``'s :func:`grouped_layout` (None: its inputs are per run or shared)."""
        s = (self.src or [None] * len(self.x))[i]
        if s is None:
            return None
        if i not in self._layouts:
            self._layouts[i] = grouped_layout(s, self.x[i].shape[0])
        return self._layouts[i]

    def per_run_x(self, i: int) -> Tensor:
        """Entry ``i``'s inputs with one row per run (or one shared row), as autograd paths and
        other models read them."""
        s = (self.src or [None] * len(self.x))[i]
        return self.x[i] if s is None else self.x[i][s]

    def index(self, idx: Tensor) -> TrainData:
        w = self.weights if self.weights.ndim == 1 else self.weights[:, idx]
        xs: list[Tensor] = []
        srcs: list[Tensor | None] = []
        for x, s in zip(self.x, self.src or [None] * len(self.x), strict=True):
            if s is None:
                xs.append(x if x.shape[0] == 1 else x[idx])
                srcs.append(None)
                continue
            used, inv = torch.unique(s[idx], return_inverse=True)  # draws no run uses: dropped
            xs.append(x[used])
            srcs.append(None if len(used) == 1 else inv)  # one draw left: shared by every run
        return TrainData(
            xs,
            [y if y.shape[0] == 1 else y[idx] for y in self.y],
            self.outputs,
            w,
            [c if c is None or c.shape[0] == 1 else c[idx] for c in self.counts or []],
            srcs,
        )


def grouped_layout(src: Tensor, groups: int) -> tuple[Tensor, int]:
    """Where each run sits in a ``(groups, k)`` grid: row ``src[e]``, column its rank among the
    runs of that group (in run order); returns the flat positions ``(E,)`` and ``k``, the largest
    group."""
    order = torch.argsort(src, stable=True)
    counts = torch.bincount(src, minlength=groups)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(src)
    rank[order] = torch.arange(len(src), device=src.device) - starts[src[order]]
    k = int(counts.max())
    return src * k + rank, k


@dataclass(frozen=True)
class Hook:
    """A measurement on a schedule: ``fn(params, run_ids) → {name: (E,)}`` every ``every`` steps.

    ``run_ids: (E,)`` maps the current slots to the caller's run indices (slots move when the
    ensemble is compacted). Hooks must not mutate ``params``.
    """

    every: int
    fn: Callable[[Params, Tensor], dict[str, Tensor]]


@dataclass
class RunOutcome:
    """What one run of an ensemble ended with. ``params`` keep a run dimension of 1."""

    index: int
    params: Params
    status: str
    reason: str
    steps: int
    restarts: int
    lr: float
    train_loss: float
    task_losses: list[float]
    curve: list[dict[str, float]] = field(default_factory=list)


def _mse_losses(
    model: EnsembleModel, data: TrainData, xs: Sequence[Tensor], ys: Sequence[Tensor]
) -> Callable[[Params], Tensor]:
    counts = data.counts or [None] * len(xs)
    # the full batch with inputs kept once per data draw: the closed form reads them as they
    # are; autograd (and a model without grouped_inputs) gets one row per run, built per call
    # rather than held for the whole training
    layouts = [data.layout(i) for i in range(len(xs))] if xs is data.x and data.grouped else None

    def loss_fn(params: Params) -> Tensor:
        inputs = xs if layouts is None else [data.per_run_x(i) for i in range(len(xs))]
        out = []
        for x, y, o, c in zip(inputs, ys, data.outputs, counts, strict=True):
            sq = (model.forward(params, x, o) - y) ** 2
            out.append(sq.mean(-1) if c is None else sq.sum(-1) / c)
        return torch.stack(out)

    fast = getattr(model, "mse_loss_and_grads", None)
    if fast is not None and (layouts is None or getattr(model, "grouped_inputs", False)):
        extra = {} if layouts is None else {"layouts": layouts}
        loss_fn.closed_form = (  # type: ignore[attr-defined]
            lambda params, w, trainable: fast(
                params, list(xs), list(ys), data.outputs, w, trainable, counts=counts, **extra
            )
        )
    return loss_fn


class _Batches:
    """Per-run minibatch index streams (each run its own generator, so batching is reproducible
    whatever the ensemble composition)."""

    def __init__(
        self, data: TrainData, batch_size: int, seeds: Sequence[int], e: int, device: torch.device
    ) -> None:
        self.device = device
        self.sizes = [x.shape[1] for x in data.x]
        self.bs = [min(batch_size, n) for n in self.sizes]
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.e = e
        self.perm: list[Tensor | None] = [None] * len(self.sizes)
        self.pos = [0] * len(self.sizes)

    def _refill(self, t: int) -> None:
        self.perm[t] = torch.stack(
            [torch.randperm(self.sizes[t], generator=g) for g in self.gens]
        ).to(self.device)
        self.pos[t] = 0

    def next(self, data: TrainData) -> tuple[list[Tensor], list[Tensor]]:
        xs, ys = [], []
        for t, (x, y) in enumerate(zip(data.x, data.y, strict=True)):
            if self.perm[t] is None or self.pos[t] + self.bs[t] > self.sizes[t]:
                self._refill(t)
            idx = self.perm[t][:, self.pos[t] : self.pos[t] + self.bs[t]]  # type: ignore[index]
            self.pos[t] += self.bs[t]
            rows = torch.arange(idx.shape[0], device=idx.device)[:, None]
            xs.append(x[0][idx] if x.shape[0] == 1 else x[rows, idx])
            ys.append(y[0][idx] if y.shape[0] == 1 else y[rows, idx])
        return xs, ys

    def index(self, idx: Tensor) -> None:
        self.gens = [self.gens[i] for i in idx.tolist()]  # idx on any device
        self.perm = [None if p is None else p[idx] for p in self.perm]


@dataclass
class RunSlots:
    """Per-run state of the ensemble loop, one entry per *slot* (column of the ensemble).

    Slots move when the ensemble is compacted: :meth:`index` re-indexes every field at once
    (``run_ids`` maps slots back to the caller's run indices), so no field can be forgotten.
    ``last_tasks`` is ``(T, E)``; every other tensor is ``(E,)``; ``init`` holds each run's
    starting parameters (restarts go back to them).
    """

    run_ids: Tensor
    lr: Tensor
    steps: Tensor
    restarts: Tensor
    status: Tensor
    bad: Tensor
    running: Tensor
    reported: Tensor
    last_loss: Tensor
    last_tasks: Tensor
    init: dict[str, Tensor]

    @classmethod
    def start(cls, lr: Tensor, params0: Params, n_tasks: int) -> RunSlots:
        e, dev, dtype = lr.shape[0], lr.device, lr.dtype

        def flags() -> Tensor:
            return torch.zeros(e, dtype=torch.bool, device=dev)

        def counts() -> Tensor:
            return torch.zeros(e, dtype=torch.long, device=dev)

        return cls(
            run_ids=torch.arange(e, device=dev),
            lr=lr,
            steps=counts(),
            restarts=counts(),
            status=torch.full((e,), RUNNING, dtype=torch.long, device=dev),
            bad=flags(),
            running=torch.ones(e, dtype=torch.bool, device=dev),
            reported=flags(),
            last_loss=torch.full((e,), math.nan, dtype=dtype, device=dev),
            last_tasks=torch.full((n_tasks, e), math.nan, dtype=dtype, device=dev),
            init={k: v.detach().clone() for k, v in params0.items()},
        )

    def index(self, keep: Tensor) -> RunSlots:
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, dict):
                out[f.name] = {k: t[keep] for k, t in v.items()}
            elif f.name == "last_tasks":
                out[f.name] = v[:, keep]
            else:
                out[f.name] = v[keep]
        return RunSlots(**out)


def train_ensemble(
    model: EnsembleModel,
    params0: Params,
    data: TrainData,
    trainable: Sequence[str],
    lr: Tensor,
    cfg: LoopConfig,
    *,
    step_rule: StepRule | None = None,
    hooks: Sequence[Hook] = (),
    batch_seeds: Sequence[int] | None = None,
    on_finish: Callable[[list[RunOutcome]], None] | None = None,
) -> list[RunOutcome]:
    """Train the ``E`` runs of ``params0`` (every tensor ``(E, ...)``) with per-run ``lr: (E,)``.

    ``trainable`` names the parameters that are updated (e.g. only the readouts for a linear
    probe). Returns one :class:`RunOutcome` per run, in input order. The step rule receives the
    run id of every slot and is told which runs restart (``reset``), so a stateful rule keeps
    each run's own state through compaction and restarts.
    """
    unknown = [n for n in trainable if n not in params0]
    if unknown:
        raise ValueError(f"trainable parameters {unknown} are not in the model's {sorted(params0)}")
    e = lr.shape[0]
    if any(p.shape[0] != e for p in params0.values()):
        raise ValueError("every parameter must have the ensemble size lr.shape[0] as first dim")
    full_batch = cfg.batch_size is None
    if not full_batch and data.padded:
        raise ValueError("padded TrainData (counts) supports full-batch training only")
    if not full_batch and data.grouped:
        raise ValueError("grouped TrainData (src) supports full-batch training only")
    run = _EnsembleRun(model, params0, data, trainable, lr, cfg, step_rule or WeightedSum())
    run.hooks, run.on_finish = tuple(hooks), on_finish
    if not full_batch:
        seeds = batch_seeds if batch_seeds is not None else range(e)
        run.batches = _Batches(data, cfg.batch_size or 0, seeds, e, lr.device)
    it = 0
    while True:
        run.step(it)
        it += 1
        if it % cfg.sync_every == 0 and not run.sync():
            break
    return [run.outcomes[i] for i in range(e)]


class _EnsembleRun:
    """The state and the three phases (step, sync, compact) of :func:`train_ensemble`."""

    def __init__(
        self,
        model: EnsembleModel,
        params0: Params,
        data: TrainData,
        trainable: Sequence[str],
        lr: Tensor,
        cfg: LoopConfig,
        rule: StepRule,
    ) -> None:
        self.model, self.data, self.cfg, self.rule = model, data, cfg, rule
        self.trainable = tuple(trainable)
        dtype = next(iter(params0.values())).dtype
        self.params = {
            k: v.detach().clone().requires_grad_(k in trainable) for k, v in params0.items()
        }
        self.opt = EnsembleOptimizer(
            cfg.optimizer, self.params, trainable, momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
        )  # fmt: skip
        self.slots = RunSlots.start(lr.detach().clone().to(dtype), params0, len(data.x))
        self.curves: dict[int, list[dict[str, float]]] = {i: [] for i in range(lr.shape[0])}
        self.outcomes: dict[int, RunOutcome] = {}
        self.full_loss_fn = _mse_losses(model, data, data.x, data.y)
        self.batches: _Batches | None = None
        self.hooks: tuple[Hook, ...] = ()
        self.on_finish: Callable[[list[RunOutcome]], None] | None = None
        self.check_threshold = cfg.batch_size is None and cfg.threshold > 0

    # ---- one step of every slot -------------------------------------------------------------
    def step(self, it: int) -> None:
        cfg, sl = self.cfg, self.slots
        if self.batches is None:  # full batch: the loss closure is built once (and on compaction)
            loss_fn = self.full_loss_fn
        else:
            loss_fn = _mse_losses(self.model, self.data, *self.batches.next(self.data))
        out = self.rule(loss_fn, self.params, self.trainable, self.data.weights, sl.run_ids)
        with torch.no_grad():
            tl = out.task_losses
            total = (out.task_weights * tl).sum(0)
            sl.bad |= ~(total <= cfg.divergence_loss)  # also catches NaN; finished runs ignored
            alive = sl.running & ~sl.bad
            sl.last_loss = torch.where(alive, total, sl.last_loss)
            sl.last_tasks = torch.where(alive, tl, sl.last_tasks)
            move = alive
            if self.check_threshold:
                conv = alive & (total < cfg.threshold)
                sl.status.masked_fill_(conv, CONVERGED)
                sl.running &= ~conv
                move = alive & ~conv
            if it >= cfg.max_steps:  # a run's steps can reach the budget only after that many
                hit = move & (sl.steps >= cfg.max_steps)
                sl.status.masked_fill_(hit, MAX_STEPS)
                sl.running &= ~hit
                move = move & ~hit
            due = [h for h in self.hooks if it % h.every == 0]
            if it % cfg.log_every == 0 or due:
                extra: dict[str, Tensor] = {}
                for h in due:
                    extra.update(h.fn(self.params, sl.run_ids))
                self._log(tl, total, alive, extra)
            self.opt.step(self.params, out.grads, sl.lr, move)
            sl.steps += move

    def _log(self, losses: Tensor, total: Tensor, active: Tensor, extra: dict[str, Tensor]) -> None:
        rows = active.nonzero().flatten().tolist()
        if not rows:
            return
        s, tot, tl = self.slots.steps.tolist(), total.tolist(), losses.T.tolist()
        ext = {k: v.tolist() for k, v in extra.items()}
        ids = self.slots.run_ids.tolist()
        for slot in rows:
            rec = {"step": float(s[slot]), "train_loss": tot[slot]}
            rec.update({f"train_loss_{t}": v for t, v in enumerate(tl[slot])})
            rec.update({k: v[slot] for k, v in ext.items()})
            self.curves[ids[slot]].append(rec)

    # ---- sync point: threshold for minibatch runs, restarts, finishing, compaction ----------
    def sync(self) -> bool:
        """Returns False when no run is left."""
        cfg, sl = self.cfg, self.slots
        with torch.no_grad():
            if self.batches is not None and cfg.threshold > 0:
                self._minibatch_threshold()
            sl.bad &= sl.running
            reasons = self._restart(sl.bad.nonzero().flatten().tolist())
            sl.bad.zero_()
            newly = ((sl.status != RUNNING) & ~sl.reported).nonzero().flatten().tolist()
            self._finish(newly, reasons)
            sl.reported[newly] = True
            n_active = int(sl.running.sum())
            if n_active == 0:
                return False
            if n_active < cfg.compact_below * sl.running.numel():
                self._compact(sl.running.nonzero().flatten())
        return True

    def _minibatch_threshold(self) -> None:
        sl, w = self.slots, self.data.weights
        ftl = self.full_loss_fn(self.params)
        ftot = ((w if w.ndim == 2 else w[:, None]) * ftl).sum(0)
        conv = sl.running & ~sl.bad & (ftot < self.cfg.threshold)
        sl.last_loss = torch.where(conv, ftot, sl.last_loss)
        sl.last_tasks = torch.where(conv, ftl, sl.last_tasks)
        sl.status.masked_fill_(conv, CONVERGED)
        sl.running &= ~conv

    def _restart(self, bad: list[int]) -> dict[int, str]:
        """Diverged slots start again from their initial parameters with lr / 10 (or fail after
        ``max_restarts``); the optimiser's and the step rule's state of those runs are reset."""
        cfg, sl = self.cfg, self.slots
        reasons: dict[int, str] = {}
        again = []
        for slot in bad:
            sl.restarts[slot] += 1
            if int(sl.restarts[slot]) > cfg.max_restarts:
                sl.status[slot] = FAILED
                sl.running[slot] = False
                reasons[slot] = (
                    f"diverged (loss > {cfg.divergence_loss:g} or NaN) "
                    f"{int(sl.restarts[slot])} times; last lr {float(sl.lr[slot]):.3g}"
                )
                continue
            for k in self.params:
                self.params[k][slot] = sl.init[k][slot]
            sl.lr[slot] = sl.lr[slot] / 10
            sl.steps[slot] = 0
            rid = int(sl.run_ids[slot])
            self.curves[rid].append({"step": 0.0, "restart": float(sl.restarts[slot])})
            again.append(rid)
        if bad:
            self.opt.reset(sl.bad & sl.running)
        if again:
            self.rule.reset(again)
        return reasons

    def _finish(self, slots: list[int], reasons: dict[int, str]) -> None:
        sl, done = self.slots, []
        for slot in slots:
            rid = int(sl.run_ids[slot])
            tasks = sl.last_tasks[:, slot].tolist()
            if sl.status[slot] != FAILED:
                self.curves[rid].append(
                    {
                        "step": float(sl.steps[slot]),
                        "train_loss": float(sl.last_loss[slot]),
                        **{f"train_loss_{t}": v for t, v in enumerate(tasks)},
                    }
                )
            out = RunOutcome(
                index=rid,
                params={k: v[slot : slot + 1].detach().clone() for k, v in self.params.items()},
                status=STATUS_NAMES[int(sl.status[slot])],
                reason=reasons.get(slot, ""),
                steps=int(sl.steps[slot]),
                restarts=int(sl.restarts[slot]),
                lr=float(sl.lr[slot]),
                train_loss=float(sl.last_loss[slot]),
                task_losses=tasks,
                curve=self.curves.pop(rid),
            )
            self.outcomes[rid] = out
            done.append(out)
        if done and self.on_finish is not None:
            self.on_finish(done)

    def _compact(self, keep: Tensor) -> None:
        self.params = {
            k: v.detach()[keep].clone().requires_grad_(k in self.trainable)
            for k, v in self.params.items()
        }
        self.slots = self.slots.index(keep)
        self.opt.index(keep)
        self.data = self.data.index(keep)
        self.full_loss_fn = _mse_losses(self.model, self.data, self.data.x, self.data.y)
        if self.batches is not None:
            self.batches.index(keep)
