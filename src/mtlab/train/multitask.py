"""Training one multi-task network on real data with a chosen multi-task method.

The ensemble loop (:mod:`mtlab.train.ensemble`) trains many small functional runs at once; this loop
trains one ``nn.Module`` (:class:`mtlab.models.multitask.MultiTaskNet`) with minibatches, which
is what the methods of :mod:`mtlab.grad.methods` are used on in practice. Per step: forward →
per-task cross-entropy losses ``(T,)`` → ``method.backward`` (Jacobian aggregation or loss
weighting; the task weights it used are recorded) → optimiser step. Every
``diagnostics_every`` steps the task Gramian is computed (free for Jacobian methods) and the
conflict diagnostics of :mod:`mtlab.measure.conflict` are logged.

The global torch random stream is seeded from ``cfg.seed`` at the start (some torchjd
aggregators draw from it), so the same config gives the same run. Model selection uses
validation data only: after every epoch the mean validation accuracy over
the trained tasks is computed and the best parameters are kept; the test split is evaluated once,
at the end, with those parameters.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from mtlab.grad.jacobian import JacobianEngine
from mtlab.grad.methods import Method, StepRecord
from mtlab.measure.conflict import conflict_summary
from mtlab.models.multitask import MultiTaskNet
from mtlab.tasks.datasets import MultiTaskDataset


@dataclass(frozen=True)
class MTTrainConfig:
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    backend: str = "auto"
    diagnostics_every: int = 10
    seed: int = 0
    probe_every: int = 0  # lookahead transference every k steps (0: never)
    probe_rule: str = "optimizer"  # "optimizer" (the real Adam update) or "sgd" (lr · g)
    probe_eta: float | None = None  # step size of the probe (default: the optimiser's lr)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "diagnostics_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0 (got {self.lr})")
        if self.probe_every < 0:
            raise ValueError(f"probe_every must be >= 0 (got {self.probe_every})")


@dataclass
class MTTrainResult:
    """Per split and task: ``metrics[split][task] = {"accuracy": …, "loss": …}`` at the best
    epoch (by mean validation accuracy); ``history``: one dict per epoch; ``diagnostics``: one
    dict per diagnostic step (conflict measures and task weights)."""

    metrics: dict[str, dict[str, dict[str, float]]]
    best_epoch: int
    steps: int
    sec_per_step: float
    history: list[dict[str, float]] = field(default_factory=list)
    diagnostics: list[dict[str, float]] = field(default_factory=list)
    backend: str = ""
    probes: list[Any] = field(default_factory=list)  # Lookahead records (with .step)
    probe_seconds: float = 0.0


@torch.no_grad()
def evaluate(
    model: MultiTaskNet, x: Tensor, y: Tensor, tasks: list[str], batch: int = 1024
) -> dict[str, dict[str, float]]:
    """Accuracy and mean cross-entropy per task on ``(x, y)``."""
    model.eval()
    T = len(tasks)
    correct = torch.zeros(T)
    loss = torch.zeros(T)
    for s in range(0, x.shape[0], batch):
        xb, yb = x[s : s + batch], y[s : s + batch]
        _, logits = model(xb)
        for t in range(T):
            correct[t] += float((logits[t].argmax(1) == yb[:, t]).sum())
            loss[t] += float(nn.functional.cross_entropy(logits[t], yb[:, t], reduction="sum"))
    n = max(x.shape[0], 1)
    model.train()
    return {
        tasks[t]: {"accuracy": float(correct[t]) / n, "loss": float(loss[t]) / n} for t in range(T)
    }


def train_multitask(
    model: MultiTaskNet,
    data: MultiTaskDataset,
    method: Method,
    cfg: MTTrainConfig,
    device: torch.device | str = "cpu",
    progress: bool = False,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> MTTrainResult:
    """Train ``model`` on all tasks of ``data`` with ``method`` (see module doc)."""
    if len(model.heads) != data.n_tasks or method.n_tasks != data.n_tasks:
        raise ValueError(
            f"model has {len(model.heads)} heads and method {method.n_tasks} tasks, but the "
            f"dataset has {data.n_tasks}"
        )
    run = _MTRun(model, data, method, cfg, torch.device(device))
    epochs: Any = range(1, cfg.epochs + 1)
    if progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc=f"{method.name or 'stl'}", unit="epoch", leave=False)
    for epoch in epochs:
        record = run.epoch(epoch)
        if on_epoch is not None:
            on_epoch(record)
    return run.result()


class _MTRun:
    """State and phases (one step, one epoch, the result) of :func:`train_multitask`."""

    def __init__(
        self,
        model: MultiTaskNet,
        data: MultiTaskDataset,
        method: Method,
        cfg: MTTrainConfig,
        device: torch.device,
    ) -> None:
        self.model, self.data, self.method, self.cfg, self.device = model, data, method, cfg, device
        model.to(device)
        method.to(device)
        self.x_tr, self.y_tr = data.x["train"].to(device), data.y["train"].to(device)
        self.x_va, self.y_va = data.x["val"].to(device), data.y["val"].to(device)
        self.shared, self.specific = model.shared_parameters(), model.task_parameters()
        self.opt = torch.optim.Adam(
            [*model.parameters(), *method.parameters()], lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.engine = JacobianEngine(cfg.backend)
        # methods with random choices inside torchjd (PCGrad's task order, GradDrop's masks) draw
        # from the global stream: seed it so that a run is reproducible from its config
        torch.manual_seed(cfg.seed)
        shared_ids = {id(q) for q in self.shared}
        names = [n for n, p in model.named_parameters() if id(p) in shared_ids]
        self.probe: Any = None
        if cfg.probe_every or method.needs_lookahead:
            from mtlab.grad.lookahead import LookaheadProbe

            self.probe = LookaheadProbe(
                model, names, self.opt, rule=cfg.probe_rule, eta=cfg.probe_eta
            )
        self.probes: list[Any] = []
        self.probe_time = 0.0
        self.g = torch.Generator().manual_seed(cfg.seed)
        self.best_state: dict[str, Any] | None = None
        self.best_val, self.best_epoch = -1.0, 0
        self.history: list[dict[str, float]] = []
        self.diagnostics: list[dict[str, float]] = []
        self.step_count, self.train_time = 0, 0.0

    def _step(self, epoch: int, xb: Tensor, yb: Tensor) -> StepRecord:
        """One optimiser step on a batch (probes and diagnostics on their schedules)."""
        cfg, method, step, T = self.cfg, self.method, self.step_count, self.data.n_tasks
        self.opt.zero_grad(set_to_none=True)
        for p in method.parameters():
            p.grad = None

        def losses_fn(out: tuple[Tensor, list[Tensor]]) -> Tensor:
            return torch.stack([nn.functional.cross_entropy(out[1][t], yb[:, t]) for t in range(T)])

        if self.probe is not None and cfg.probe_every and step % cfg.probe_every == 0:
            tp = time.perf_counter()
            look = self.probe(xb, losses_fn)
            look.step = step
            self.probes.append(look)
            self.probe_time += time.perf_counter() - tp
        if self.probe is not None and method.needs_lookahead:
            method.set_lookahead(partial(self.probe.evaluate, xb, losses_fn))
        z, logits = self.model(xb)
        losses = torch.stack([nn.functional.cross_entropy(logits[t], yb[:, t]) for t in range(T)])
        want = step % cfg.diagnostics_every == 0
        rec = method.backward(losses, self.shared, self.specific, z, self.engine, want_gramian=want)
        self.opt.step()
        if want and rec.gramian is not None and T > 1:
            diag = conflict_summary(rec.gramian)  # inf (singular G) is stored as NaN
            d: dict[str, float] = {"step": step, "epoch": epoch}
            d.update({k: v if math.isfinite(v) else math.nan for k, v in diag.items()})
            tasks = self.data.tasks
            d.update({f"w_{name}": float(w) for name, w in zip(tasks, rec.weights, strict=True)})
            self.diagnostics.append(d)
        self.step_count += 1
        return rec

    def epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training set in a seeded order; validation; best-epoch selection."""
        n, T, bs = self.x_tr.shape[0], self.data.n_tasks, self.cfg.batch_size
        order = torch.randperm(n, generator=self.g).to(self.device)
        sums, w_sum, batches = torch.zeros(T), torch.zeros(T), 0
        t0 = time.perf_counter()
        for s in range(0, n, bs):
            idx = order[s : s + bs]
            rec = self._step(epoch, self.x_tr[idx], self.y_tr[idx])
            sums += rec.losses.detach().cpu()
            w_sum += rec.weights.detach().cpu()
            batches += 1
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.train_time += time.perf_counter() - t0
        self.method.end_epoch()
        val = evaluate(self.model, self.x_va, self.y_va, self.data.tasks)
        mean_val = sum(v["accuracy"] for v in val.values()) / T
        record = {"step": self.step_count, "epoch": epoch, "val_mean_accuracy": mean_val}
        for t, name in enumerate(self.data.tasks):
            record[f"train_loss_{name}"] = float(sums[t]) / batches
            record[f"val_accuracy_{name}"] = val[name]["accuracy"]
            record[f"weight_{name}"] = float(w_sum[t]) / batches
        self.history.append(record)
        if mean_val > self.best_val:
            self.best_val, self.best_epoch = mean_val, epoch
            self.best_state = copy.deepcopy(self.model.state_dict())
        return record

    def result(self) -> MTTrainResult:
        """Restore the best epoch's weights and evaluate them on validation and test data."""
        assert self.best_state is not None
        self.model.load_state_dict(self.best_state)
        tasks, dev = self.data.tasks, self.device
        metrics: dict[str, Any] = {
            "val": evaluate(self.model, self.x_va, self.y_va, tasks),
            "test": evaluate(
                self.model, self.data.x["test"].to(dev), self.data.y["test"].to(dev), tasks
            ),
        }
        backend = next(iter(self.engine.choices.values()), self.engine.backend)
        steps = self.step_count
        return MTTrainResult(
            metrics,
            self.best_epoch,
            steps,
            (self.train_time - self.probe_time) / max(steps, 1),
            self.history,
            self.diagnostics,
            backend,
            self.probes,
            self.probe_time,
        )


__all__ = ["MTTrainConfig", "MTTrainResult", "evaluate", "train_multitask"]
