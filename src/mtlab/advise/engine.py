"""One training of ``mtlab advise``: some of a user's tasks through one network (STL: one task;
MTL: several, with a multi-task method; PT+FT: the trunk of a pretrained run, rescaled by ``s``,
then finetuned), evaluated per task on validation and test, optionally probing lookahead
affinity. Trainings are cached by their specification in ``OUT/trainings.jsonl`` (and the trunks
that others finetune in ``OUT/trunks/``), so an interrupted ``mtlab advise`` resumes."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mtlab._seeding import derive_seed, generator
from mtlab.grad.lookahead import LookaheadProbe
from mtlab.grad.methods import make_method
from mtlab.models.multitask import MultiTaskNet, init_seeded
from mtlab.tasks.supervised import SupervisedTask
from mtlab.tasks.tables import Prepared
from mtlab.train.minibatch import MinibatchConfig, task_output, train_minibatch


@dataclass(frozen=True)
class Settings:
    """How every training of one advice runs (the same for all, so they compare)."""

    widths: tuple[int, ...] = (128, 128)  # hidden widths (mlp) or channels (cnn)
    lr: float = 1e-3
    batch_size: int = 128
    steps: int = 800
    probe_every: int = 100
    eval_every: int = 100  # each task's validation metric is tracked; its best checkpoint counts
    probe_batch: int = 256
    probe_eta: float = 0.1  # the probe's step: lr·g with this lr (TAG's SGD lookahead)
    first_order_above: int = 12  # tasks: beyond this the probe's first-order estimate is used
    device: str = "cpu"
    trunk: str = "mlp"  # "mlp", or "cnn" for image inputs (then ``widths`` are channels)


@dataclass(frozen=True)
class Spec:
    """One training: ``tasks`` share a network (one head each); ``source``/``rescale``: start
    from the trunk of the STL run on ``source`` (same seed), multiplied by ``rescale``."""

    tasks: tuple[str, ...]
    method: str = "mean"
    seed: int = 0
    source: str | None = None
    rescale: float | None = None
    probe: bool = False
    steps: int | None = None  # None: the settings' steps (an STL as long as a PT+FT sets it)

    @property
    def regime(self) -> str:
        if self.source is not None:
            return "ptft"
        return "stl" if len(self.tasks) == 1 else "mtl"

    def key(self) -> str:
        d = asdict(self)
        if d["steps"] is None:  # keys of the default length stay what they were
            del d["steps"]
        text = json.dumps(d, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def pretraining(self) -> Spec | None:
        return None if self.source is None else Spec((self.source,), seed=self.seed)


@dataclass
class Outcome:
    """Per task, at the checkpoint with its best validation metric (early stopping per task, so
    that no regime is judged undertrained): validation / test metric (accuracy or R²; higher is
    better) and loss, RMSE for regression, and that ``step``; ``min_val_loss``: the lowest
    validation loss at any checkpoint; the affinity ``(T, T)`` (recipient × source) averaged
    over probes, if probed."""

    spec: Spec
    metrics: dict[str, dict[str, float]]
    seconds: float
    affinity: list[list[float]] | None = None
    diverged: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class _PerTask(nn.Module):
    """The network on per-task inputs: ``xs[t]`` through the trunk and head ``t``."""

    def __init__(self, net: MultiTaskNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, xs: Sequence[Tensor]) -> list[Tensor]:
        return [task_output(self.net, x, t) for t, x in enumerate(xs)]


def build(spec: Spec, tasks: Sequence[SupervisedTask], settings: Settings) -> MultiTaskNet:
    shape = tuple(tasks[0]["train"].x.shape[1:])
    net = MultiTaskNet(shape, [t.n_out for t in tasks], settings.trunk, settings.widths)
    init_seeded(net.trunk, derive_seed(spec.seed, "trunk"))
    for head, task in zip(net.heads, tasks, strict=True):
        init_seeded(head, derive_seed(spec.seed, "head", task.name))
    return net


@torch.no_grad()
def evaluate(net: MultiTaskNet, tasks: Sequence[SupervisedTask], prep: Prepared, dev: Any) -> dict:
    net.eval()
    out: dict[str, dict[str, float]] = {}
    for t, task in enumerate(tasks):
        m: dict[str, float] = {}
        for split in ("val", "test"):
            s = task[split]
            pred = task_output(net, s.x.to(dev), t)
            y = s.y.to(dev)
            value = task.metric(pred, y)
            m[f"{split}_metric"] = value if math.isfinite(value) else -math.inf
            m[f"{split}_loss"] = float(task.loss(pred, y))
            if task.kind == "regression":
                m[f"{split}_rmse"] = prep.rmse(task.name, float(((pred - y) ** 2).mean()))
        out[task.name] = m
    net.train()
    return out


class _Prober:
    """Lookahead affinity at the checkpoints, on fixed per-task probe batches."""

    def __init__(self, net: MultiTaskNet, tasks: Sequence[SupervisedTask], settings: Settings,
                 seed: int, dev: Any) -> None:  # fmt: skip
        self.wrapped = _PerTask(net)
        shared = [f"net.trunk.{n}" for n, _ in net.trunk.named_parameters()]
        self.first_order = len(tasks) > settings.first_order_above
        self.probe = LookaheadProbe(
            self.wrapped, shared, None, rule="sgd", eta=settings.probe_eta,
            first_order_only=self.first_order,
        )  # fmt: skip
        g = generator(seed, "probe")
        self.batches = []
        for task in tasks:
            n = task["train"].n
            idx = torch.randperm(n, generator=g)[: min(n, settings.probe_batch)]
            self.batches.append((task["train"].x[idx].to(dev), task["train"].y[idx].to(dev)))
        self.tasks = tasks
        self.values: list[Tensor] = []
        self.steps: list[int] = []
        self.seconds = 0.0

    def __call__(self, step: int, model: MultiTaskNet) -> None:
        t0 = time.perf_counter()
        self._probe_now(step)
        self.seconds += time.perf_counter() - t0

    def _probe_now(self, step: int) -> None:
        ys = [y for _, y in self.batches]

        def losses_fn(out: list[Tensor]) -> Tensor:
            return torch.stack([t.loss(o, y) for t, o, y in zip(self.tasks, out, ys, strict=True)])

        look = self.probe([x for x, _ in self.batches], losses_fn)
        Z = look.first_order if self.first_order else look.affinity
        if bool(torch.isfinite(Z).all()):
            self.values.append(Z.detach().double().cpu())
            self.steps.append(step)


def train(
    spec: Spec,
    prep: Prepared,
    settings: Settings,
    trunk: dict[str, Tensor] | None = None,
) -> tuple[Outcome, dict[str, Tensor]]:
    """Train ``spec`` on ``prep``'s tasks; returns the outcome and the trained trunk."""
    by_name = {t.name: t for t in prep.tasks}
    tasks = [by_name[n] for n in spec.tasks]
    dev = torch.device(settings.device)
    net = build(spec, tasks, settings)
    if spec.source is not None:
        if trunk is None:
            raise ValueError(f"{spec}: finetuning needs the pretrained trunk")
        net.trunk.load_state_dict(trunk)
        with torch.no_grad():
            for p in net.trunk.parameters():
                p.mul_(spec.rescale if spec.rescale is not None else 1.0)
    method = make_method(spec.method, len(tasks))
    # probes after the first tenth of training: at step 0 the heads are random, and so is the
    # direction each task pulls the trunk in
    steps = spec.steps or settings.steps
    every = min(settings.probe_every, max(1, steps // 8))  # short trainings probe often enough
    start = max(every, steps // 10)
    probe_steps = set(range(start, steps, every)) if spec.probe else set()
    eval_steps = set(range(settings.eval_every, steps + 1, settings.eval_every))
    eval_steps.add(steps)
    cfg = MinibatchConfig(
        steps=steps,
        lr=settings.lr,
        optimizer="adam",
        batch_size=settings.batch_size,
        checkpoints=tuple(sorted(probe_steps | eval_steps)),
        seed=spec.seed,
    )
    net.to(dev)
    prober = _Prober(net, tasks, settings, spec.seed, dev) if spec.probe else None
    best: dict[str, dict[str, float]] = {}

    def measure(step: int, model: MultiTaskNet) -> None:
        if prober is not None and step in probe_steps:
            prober(step, model)
        if step in eval_steps:
            for name, m in evaluate(model, tasks, prep, dev).items():
                low = min(m["val_loss"], best.get(name, {}).get("min_val_loss", math.inf))
                if name not in best or m["val_metric"] > best[name]["val_metric"]:
                    best[name] = {**m, "step": float(step)}
                best[name]["min_val_loss"] = low

    t0 = time.perf_counter()
    res = train_minibatch(net, tasks, method, cfg, measure=measure, device=dev)
    seconds = time.perf_counter() - t0
    if res.diverged_at is not None or not best:  # the state it stopped in
        for name, m in evaluate(net, tasks, prep, dev).items():
            best.setdefault(name, {**m, "step": float(res.steps), "min_val_loss": m["val_loss"]})
    affinity = None
    if prober is not None and prober.values:
        affinity = torch.stack(prober.values).mean(0).tolist()
    outcome = Outcome(
        spec,
        best,
        seconds,
        affinity,
        diverged=res.diverged_at is not None,
        extra={
            "probes": len(prober.values) if prober else 0,
            "probe_steps": prober.steps if prober else [],
            "per_probe": [v.tolist() for v in prober.values] if prober else [],
            "first_order": bool(prober.first_order) if prober else False,
            "probe_seconds": prober.seconds if prober else 0.0,
        },
    )
    return outcome, {k: v.detach().cpu() for k, v in net.trunk.state_dict().items()}


class Cache:
    """Finished trainings of one advice folder, by specification (resume)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "trainings.jsonl"
        self.trunks = root / "trunks"
        self.done: dict[str, Outcome] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    d = json.loads(line)
                    spec = Spec(**{**d["spec"], "tasks": tuple(d["spec"]["tasks"])})
                    self.done[spec.key()] = Outcome(
                        spec, d["metrics"], d["seconds"], d["affinity"], d["diverged"], d["extra"]
                    )

    def get(self, spec: Spec) -> Outcome | None:
        return self.done.get(spec.key())

    def save_trunk(self, spec: Spec, trunk: dict[str, Tensor]) -> None:
        self.trunks.mkdir(parents=True, exist_ok=True)
        torch.save(trunk, self.trunks / f"{spec.key()}.pt")

    def add(self, outcome: Outcome, trunk: dict[str, Tensor] | None) -> None:
        key = outcome.spec.key()
        if trunk is not None and outcome.spec.regime == "stl":  # a possible pretraining
            self.save_trunk(outcome.spec, trunk)
        d = {**asdict(outcome), "spec": asdict(outcome.spec)}
        with open(self.path, "a") as f:
            f.write(json.dumps(d) + "\n")
        self.done[key] = outcome

    def trunk(self, spec: Spec) -> dict[str, Tensor] | None:
        path = self.trunks / f"{spec.key()}.pt"
        return torch.load(path) if path.exists() else None


def run(spec: Spec, prep: Prepared, settings: Settings, cache: Cache) -> Outcome:
    """The cached outcome of ``spec``, training it (and its pretraining) if needed."""
    hit = cache.get(spec)
    if hit is not None:
        return hit
    trunk = None
    pre = spec.pretraining()
    if pre is not None:
        trunk = cache.trunk(pre)
        if trunk is None:  # not trained yet, or its trunk was lost: (re)train it
            outcome, trunk = train(pre, prep, settings)
            if cache.get(pre) is None:
                cache.add(outcome, trunk)
            else:
                cache.save_trunk(pre, trunk)
    outcome, new_trunk = train(spec, prep, settings, trunk)
    cache.add(outcome, new_trunk)
    return outcome


__all__ = ["Cache", "Outcome", "Settings", "Spec", "evaluate", "run", "train"]
