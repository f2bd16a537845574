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
from dataclasses import dataclass, field

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
    """

    x: list[Tensor]
    y: list[Tensor]
    outputs: tuple[int, ...]
    weights: Tensor
    counts: list[Tensor | None] | None = None

    def __post_init__(self) -> None:
        if not (len(self.x) == len(self.y) == len(self.outputs) == self.weights.shape[0]):
            raise ValueError("TrainData needs one x, y, output index and weight per task")
        if self.counts is None:
            self.counts = [None] * len(self.x)
        if len(self.counts) != len(self.x):
            raise ValueError("TrainData.counts needs one entry (or None) per task")

    @property
    def padded(self) -> bool:
        return any(c is not None for c in self.counts or [])

    def index(self, idx: Tensor) -> TrainData:
        pick = lambda t: t if t is None or t.shape[0] == 1 else t[idx]  # noqa: E731
        w = self.weights if self.weights.ndim == 1 else self.weights[:, idx]
        return TrainData(
            [pick(x) for x in self.x],
            [pick(y) for y in self.y],
            self.outputs,
            w,
            [pick(c) for c in self.counts or []],
        )


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

    def loss_fn(params: Params) -> Tensor:
        out = []
        for x, y, o, c in zip(xs, ys, data.outputs, counts, strict=True):
            sq = (model.forward(params, x, o) - y) ** 2
            out.append(sq.mean(-1) if c is None else sq.sum(-1) / c)
        return torch.stack(out)

    fast = getattr(model, "mse_loss_and_grads", None)
    if fast is not None:
        loss_fn.closed_form = (  # type: ignore[attr-defined]
            lambda params, w, trainable: fast(
                params, list(xs), list(ys), data.outputs, w, trainable, counts=counts
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
    probe). Returns one :class:`RunOutcome` per run, in input order.
    """
    unknown = [n for n in trainable if n not in params0]
    if unknown:
        raise ValueError(f"trainable parameters {unknown} are not in the model's {sorted(params0)}")
    e = lr.shape[0]
    dev = lr.device
    if any(p.shape[0] != e for p in params0.values()):
        raise ValueError("every parameter must have the ensemble size lr.shape[0] as first dim")
    step_rule = step_rule or WeightedSum()
    dtype = next(iter(params0.values())).dtype
    init = {k: v.detach().clone() for k, v in params0.items()}
    params = {k: v.detach().clone().requires_grad_(k in trainable) for k, v in params0.items()}
    opt = EnsembleOptimizer(
        cfg.optimizer, params, trainable, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    lr = lr.detach().clone().to(dtype)
    run_ids = torch.arange(e, device=dev)
    steps = torch.zeros(e, dtype=torch.long, device=dev)
    restarts = torch.zeros(e, dtype=torch.long, device=dev)
    status = torch.full((e,), RUNNING, dtype=torch.long, device=dev)
    bad = torch.zeros(e, dtype=torch.bool, device=dev)
    last_loss = torch.full((e,), math.nan, dtype=dtype, device=dev)
    last_tasks = torch.full((len(data.x), e), math.nan, dtype=dtype, device=dev)
    curves: dict[int, list[dict[str, float]]] = {i: [] for i in range(e)}
    outcomes: dict[int, RunOutcome] = {}
    full_batch = cfg.batch_size is None
    if not full_batch and data.padded:
        raise ValueError("padded TrainData (counts) supports full-batch training only")
    batches = None
    if not full_batch:
        seeds = batch_seeds if batch_seeds is not None else range(e)
        batches = _Batches(data, cfg.batch_size, seeds, e, dev)  # type: ignore[arg-type]
    full_loss_fn = _mse_losses(model, data, data.x, data.y)

    def log(it_losses: Tensor, it_total: Tensor, active: Tensor, extra: dict[str, Tensor]) -> None:
        rows = active.nonzero().flatten().tolist()
        if not rows:
            return
        s, tot, tl = steps.tolist(), it_total.tolist(), it_losses.T.tolist()
        ext = {k: v.tolist() for k, v in extra.items()}
        for slot in rows:
            rec = {"step": float(s[slot]), "train_loss": tot[slot]}
            rec.update({f"train_loss_{t}": v for t, v in enumerate(tl[slot])})
            rec.update({k: v[slot] for k, v in ext.items()})
            curves[int(run_ids[slot])].append(rec)

    def finish(slots: list[int], reasons: dict[int, str]) -> None:
        done = []
        for slot in slots:
            rid = int(run_ids[slot])
            code = int(status[slot])
            out = RunOutcome(
                index=rid,
                params={k: v[slot : slot + 1].detach().clone() for k, v in params.items()},
                status=STATUS_NAMES[code],
                reason=reasons.get(slot, ""),
                steps=int(steps[slot]),
                restarts=int(restarts[slot]),
                lr=float(lr[slot]),
                train_loss=float(last_loss[slot]),
                task_losses=last_tasks[:, slot].tolist(),
                curve=curves.pop(rid),
            )
            outcomes[rid] = out
            done.append(out)
        if done and on_finish is not None:
            on_finish(done)

    reported = torch.zeros(e, dtype=torch.bool, device=dev)
    running = torch.ones(e, dtype=torch.bool, device=dev)
    check_threshold = full_batch and cfg.threshold > 0
    it = 0
    while True:
        if batches is None:  # full batch: the loss closure is built once (and on compaction)
            loss_fn = full_loss_fn
        else:
            loss_fn = _mse_losses(model, data, *batches.next(data))
        out = step_rule(loss_fn, params, trainable, data.weights)
        with torch.no_grad():
            tl = out.task_losses
            total = (out.task_weights * tl).sum(0)
            bad |= ~(total <= cfg.divergence_loss)  # also catches NaN; finished runs ignored
            alive = running & ~bad
            last_loss = torch.where(alive, total, last_loss)
            last_tasks = torch.where(alive, tl, last_tasks)
            move = alive
            if check_threshold:
                conv = alive & (total < cfg.threshold)
                status.masked_fill_(conv, CONVERGED)
                running &= ~conv
                move = alive & ~conv
            if it >= cfg.max_steps:  # a run's steps can reach the budget only after that many
                hit = move & (steps >= cfg.max_steps)
                status.masked_fill_(hit, MAX_STEPS)
                running &= ~hit
                move = move & ~hit
            due = [h for h in hooks if it % h.every == 0]
            if it % cfg.log_every == 0 or due:
                extra: dict[str, Tensor] = {}
                for h in due:
                    extra.update(h.fn(params, run_ids))
                log(tl, total, alive, extra)
            opt.step(params, out.grads, lr, move)
            steps += move

        it += 1
        if it % cfg.sync_every:
            continue
        # ---- sync point: restarts, threshold for minibatch runs, finishing, compaction ----
        with torch.no_grad():
            reasons: dict[int, str] = {}
            if not full_batch and cfg.threshold > 0:
                ftl = full_loss_fn(params)
                ftot = (data.weights if data.weights.ndim == 2 else data.weights[:, None]) * ftl
                ftot = ftot.sum(0)
                conv = running & ~bad & (ftot < cfg.threshold)
                last_loss = torch.where(conv, ftot, last_loss)
                last_tasks = torch.where(conv, ftl, last_tasks)
                status.masked_fill_(conv, CONVERGED)
                running &= ~conv
            bad &= running
            for slot in bad.nonzero().flatten().tolist():
                restarts[slot] += 1
                if int(restarts[slot]) > cfg.max_restarts:
                    status[slot] = FAILED
                    running[slot] = False
                    reasons[slot] = (
                        f"diverged (loss > {cfg.divergence_loss:g} or NaN) "
                        f"{int(restarts[slot])} times; last lr {float(lr[slot]):.3g}"
                    )
                    continue
                for k in params:
                    params[k][slot] = init[k][slot]
                lr[slot] = lr[slot] / 10
                steps[slot] = 0
                curves[int(run_ids[slot])].append({"step": 0.0, "restart": float(restarts[slot])})
            if bad.any():
                opt.reset(bad & running)
            bad.zero_()
            newly = ((status != RUNNING) & ~reported).nonzero().flatten().tolist()
            for slot in newly:
                if status[slot] != FAILED:
                    curves[int(run_ids[slot])].append(
                        {
                            "step": float(steps[slot]),
                            "train_loss": float(last_loss[slot]),
                            **{
                                f"train_loss_{t}": v
                                for t, v in enumerate(last_tasks[:, slot].tolist())
                            },
                        }
                    )
            finish(newly, reasons)
            reported[newly] = True
            still = running
            n_active = int(still.sum())
            if n_active == 0:
                break
            if n_active < cfg.compact_below * still.numel():
                keep = still.nonzero().flatten()
                params = {
                    k: v.detach()[keep].clone().requires_grad_(k in trainable)
                    for k, v in params.items()
                }
                init = {k: v[keep] for k, v in init.items()}
                opt.index(keep)
                lr, steps, restarts, status = lr[keep], steps[keep], restarts[keep], status[keep]
                bad, last_loss, last_tasks = bad[keep], last_loss[keep], last_tasks[:, keep]
                reported, run_ids, running = reported[keep], run_ids[keep], running[keep]
                data = data.index(keep)
                full_loss_fn = _mse_losses(model, data, data.x, data.y)
                if batches is not None:
                    batches.index(keep)
    return [outcomes[i] for i in range(e)]
