"""Training one multi-task network on real data with a chosen multi-task method.

The ensemble loop (:mod:`mtlab.train.loop`) trains many small functional runs at once; this loop
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
from mtlab.grad.methods import Method
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
    device = torch.device(device)
    model.to(device)
    method.to(device)
    x_tr, y_tr = data.x["train"].to(device), data.y["train"].to(device)
    x_va, y_va = data.x["val"].to(device), data.y["val"].to(device)
    shared, specific = model.shared_parameters(), model.task_parameters()
    opt = torch.optim.Adam(
        [*model.parameters(), *method.parameters()], lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    engine = JacobianEngine(cfg.backend)
    # methods with random choices inside torchjd (PCGrad's task order, GradDrop's masks) draw from
    # the global stream: seed it so that a run is reproducible from its config
    torch.manual_seed(cfg.seed)
    shared_names = [n for n, p in model.named_parameters() if any(p is q for q in shared)]
    probe = None
    if cfg.probe_every or method.needs_lookahead:
        from mtlab.grad.lookahead import LookaheadProbe

        probe = LookaheadProbe(model, shared_names, opt, rule=cfg.probe_rule, eta=cfg.probe_eta)
    probes: list[Any] = []
    probe_time = 0.0
    g = torch.Generator().manual_seed(cfg.seed)
    n, T = x_tr.shape[0], data.n_tasks
    best_val, best_state, best_epoch = -1.0, None, 0
    history: list[dict[str, float]] = []
    diagnostics: list[dict[str, float]] = []
    step, train_time = 0, 0.0
    epochs = range(1, cfg.epochs + 1)
    if progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc=f"{method.name or 'stl'}", unit="epoch", leave=False)
    for epoch in epochs:
        order = torch.randperm(n, generator=g).to(device)
        sums = torch.zeros(T)
        w_sum = torch.zeros(T)
        batches = 0
        t0 = time.perf_counter()
        for s in range(0, n, cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            xb, yb = x_tr[idx], y_tr[idx]
            opt.zero_grad(set_to_none=True)
            for p in method.parameters():
                p.grad = None

            def losses_fn(out: tuple[Tensor, list[Tensor]], yb: Tensor = yb) -> Tensor:
                return torch.stack(
                    [nn.functional.cross_entropy(out[1][t], yb[:, t]) for t in range(T)]
                )

            if probe is not None and cfg.probe_every and step % cfg.probe_every == 0:
                tp = time.perf_counter()
                look = probe(xb, losses_fn)
                look.step = step  # type: ignore[attr-defined]
                probes.append(look)
                probe_time += time.perf_counter() - tp
            if probe is not None and method.needs_lookahead:
                method.set_lookahead(partial(probe.evaluate, xb, losses_fn))
            z, logits = model(xb)
            losses = torch.stack(
                [nn.functional.cross_entropy(logits[t], yb[:, t]) for t in range(T)]
            )
            want = step % cfg.diagnostics_every == 0
            rec = method.backward(losses, shared, specific, z, engine, want_gramian=want)
            opt.step()
            if want and rec.gramian is not None and T > 1:
                diag = conflict_summary(rec.gramian)  # inf (singular G) is stored as NaN
                d: dict[str, float] = {"step": step, "epoch": epoch}
                d.update({k: v if math.isfinite(v) else math.nan for k, v in diag.items()})
                d.update(
                    {f"w_{name}": float(w) for name, w in zip(data.tasks, rec.weights, strict=True)}
                )
                diagnostics.append(d)
            sums += rec.losses.detach().cpu()
            w_sum += rec.weights.detach().cpu()
            batches += 1
            step += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_time += time.perf_counter() - t0
        method.end_epoch()
        val = evaluate(model, x_va, y_va, data.tasks)
        mean_val = sum(v["accuracy"] for v in val.values()) / T
        rec_epoch = {"step": step, "epoch": epoch, "val_mean_accuracy": mean_val}
        for t, name in enumerate(data.tasks):
            rec_epoch[f"train_loss_{name}"] = float(sums[t]) / batches
            rec_epoch[f"val_accuracy_{name}"] = val[name]["accuracy"]
            rec_epoch[f"weight_{name}"] = float(w_sum[t]) / batches
        history.append(rec_epoch)
        if on_epoch is not None:
            on_epoch(rec_epoch)
        if mean_val > best_val:
            best_val, best_epoch = mean_val, epoch
            best_state = copy.deepcopy(model.state_dict())
    assert best_state is not None
    model.load_state_dict(best_state)
    metrics: dict[str, Any] = {
        "val": evaluate(model, x_va, y_va, data.tasks),
        "test": evaluate(model, data.x["test"].to(device), data.y["test"].to(device), data.tasks),
    }
    backend = next(iter(engine.choices.values()), engine.backend)
    return MTTrainResult(
        metrics,
        best_epoch,
        step,
        (train_time - probe_time) / max(step, 1),
        history,
        diagnostics,
        backend,
        probes,
        probe_time,
    )


__all__ = ["MTTrainConfig", "MTTrainResult", "evaluate", "train_multitask"]
