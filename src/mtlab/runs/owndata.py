"""The own-data family: one :class:`~mtlab.runs.config.OwnDataRunConfig` = one network trained on
some of the tasks of a user's data (STL, MTL with a method, or PT+FT from the STL run of another
task), scored per task at its best validation checkpoint, optionally measuring lookahead affinity.
Every own-data command trains through it: ``mtlab advise`` (its stages are sweeps of these runs),
``mtlab benchmark --data`` and ``mtlab affinity --data``.

A run stores one evaluation row per task: ``task``, ``kind``, ``metric`` (``accuracy`` or ``r2``),
``val_metric`` / ``test_metric`` and ``val_loss`` / ``test_loss`` at the checkpoint with the best
validation metric (``best_step``; regression: ``val_rmse`` / ``test_rmse`` in the target's units),
``min_val_loss`` (the lowest validation loss at any checkpoint) and, for probed runs, the task's
row of the affinity (``affinity``: the mean over probes, one entry per source in ``tasks`` order;
``affinity_per_probe``). The run row carries ``regime``, ``steps_done``, ``diverged_at``,
``probe_steps`` and the seconds spent training, measuring and probing. A run whose training loss
became non-finite is ``failed`` with that reason (its runs that depend on it fail with it). The
stored parameters are the trunk's (what a PT+FT run starts from), for ``stl`` runs only.

The data are read once per process (:func:`prepared`, cached by the data fields) with
:func:`mtlab.tasks.tables.read_data` and split with seed 0, so every run of one folder sees the
same split; the file's SHA-256 is checked against the config's, so data changed under a folder
fail its runs instead of mixing into them.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mtlab._seeding import generator
from mtlab.grad.lookahead import LookaheadProbe
from mtlab.grad.methods import make_method
from mtlab.models.multitask import MultiTaskNet, rescale_, seeded_network
from mtlab.runs.config import OwnDataRunConfig
from mtlab.runs.family import Record, SequentialFamily, register_family
from mtlab.tasks.base import DataError, Split
from mtlab.tasks.supervised import SupervisedTask
from mtlab.tasks.tables import Prepared, prepare, read_data, read_dataset
from mtlab.train.minibatch import MinibatchConfig, task_output, train_minibatch

#: the config fields that say which data a run reads (the key of the per-process data cache)
DATA_FIELDS = ("data", "data_sha256", "dataset", "targets", "features", "kinds", "split_column",
               "images", "image_column", "image_size", "labels", "labels_sha256")  # fmt: skip


def file_digest(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (a data file's identity in every run id)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def parse_kinds(items: Sequence[str]) -> dict[str, Any]:
    """``("ltv=regression", …)`` → ``{"ltv": "regression"}`` (the kinds are checked by the
    reader)."""
    out: dict[str, Any] = {}
    for item in items:
        name, _, kind = item.partition("=")
        out[name.strip()] = kind.strip()
    return out


def prepared(cfg: OwnDataRunConfig) -> Prepared:
    """The run's data, read, checked and split (cached per process by :data:`DATA_FIELDS`)."""
    return load_data({f: getattr(cfg, f) for f in DATA_FIELDS})


def load_data(fields: dict[str, Any]) -> Prepared:
    """The data the :data:`DATA_FIELDS` of ``fields`` name (``targets`` None: the reader's
    default), read with :func:`~mtlab.tasks.tables.read_data`, checked and split with seed 0;
    cached per process. A :class:`~mtlab.tasks.base.DataError` names what is wrong — also a file
    whose SHA-256 is no longer the one the runs were planned with (checked on every call)."""
    for path, digest in ((fields.get("data"), fields.get("data_sha256")),
                         (fields.get("labels"), fields.get("labels_sha256"))):  # fmt: skip
        now = None if path is None or digest is None else current_digest(path)
        if now is not None and now != digest:  # (a missing file: the reader names it)
            raise DataError(f"{path}: the file changed since this folder's runs were planned "
                            "(its SHA-256 differs); use a new --out for the new data")  # fmt: skip
    return _load(tuple(_hashable(fields.get(f)) for f in DATA_FIELDS))


def current_digest(path: str | Path) -> str | None:
    """The file's SHA-256 now (None if it is gone); hashed again only when its size or
    modification time changed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _digest(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=16)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return file_digest(path)


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


@lru_cache(maxsize=4)
def _load(key: tuple[Any, ...]) -> Prepared:
    d = dict(zip(DATA_FIELDS, key, strict=True))
    if d["dataset"] is not None:
        return prepare(read_dataset(d["dataset"]), seed=0)
    table = read_data(d["data"], d["targets"], d["features"], parse_kinds(d["kinds"] or ()),
                      d["split_column"], d["images"], d["image_column"] or "file",
                      d["image_size"], d["labels"])  # fmt: skip
    return prepare(table, seed=0)


class _PerTask(nn.Module):
    """The network on per-task inputs: ``xs[t]`` through the trunk and head ``t``."""

    def __init__(self, net: MultiTaskNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, xs: Sequence[Tensor]) -> list[Tensor]:
        return [task_output(self.net, x, t) for t, x in enumerate(xs)]


@torch.no_grad()
def evaluate(
    net: MultiTaskNet, tasks: Sequence[SupervisedTask], prep: Prepared, dev: Any
) -> dict[str, dict[str, float]]:
    """Per task: validation and test metric (accuracy / R²; −inf if not finite) and loss, and
    for regression the RMSE in the target's units."""
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


class AffinityProber:
    """Lookahead affinity at checkpoints, on fixed per-task batches of the training split (TAG's
    lookahead with ``cfg.probe_rule``; only the first-order estimate above
    ``cfg.first_order_above`` tasks, else both)."""

    def __init__(self, net: MultiTaskNet, tasks: Sequence[SupervisedTask],
                 cfg: OwnDataRunConfig, dev: Any, optimizer: Any) -> None:  # fmt: skip
        self.wrapped = _PerTask(net)
        shared = [f"net.trunk.{n}" for n, _ in net.trunk.named_parameters()]
        self.first_order = len(tasks) > cfg.first_order_above
        sgd = cfg.probe_rule == "sgd"
        self.lookahead = LookaheadProbe(
            self.wrapped, shared, None if sgd else optimizer, rule=cfg.probe_rule,
            eta=cfg.probe_eta if sgd else None, first_order_only=self.first_order,
        )  # fmt: skip
        g = generator(cfg.seed, "probe")
        self.batches = []
        for task in tasks:
            n = task["train"].n
            idx = torch.randperm(n, generator=g)[: min(n, cfg.probe_batch)]
            self.batches.append((task["train"].x[idx].to(dev), task["train"].y[idx].to(dev)))
        self.tasks = tasks
        self.values: list[Tensor] = []  # per probe: the affinity (the first-order one above …)
        self.estimates: list[Tensor] = []  # … and, where both are measured, the first-order one
        self.steps: list[int] = []
        self.seconds = 0.0

    def __call__(self, step: int) -> None:
        t0 = time.perf_counter()
        ys = [y for _, y in self.batches]

        def losses_fn(out: list[Tensor]) -> Tensor:
            return torch.stack([t.loss(o, y) for t, o, y in zip(self.tasks, out, ys, strict=True)])

        look = self.lookahead([x for x, _ in self.batches], losses_fn)
        Z = look.first_order if self.first_order else look.affinity
        if bool(torch.isfinite(Z).all()):
            self.values.append(Z.detach().double().cpu())
            if not self.first_order:
                self.estimates.append(look.first_order.detach().double().cpu())
            self.steps.append(step)
        self.seconds += time.perf_counter() - t0


def null_task(task: SupervisedTask, seed: int) -> SupervisedTask:
    """``task`` with its training labels permuted (seeded by the run's seed and the task's name):
    the labels' distribution without their relation to the inputs — a null partner or source.
    Its validation and test splits are left as they are."""
    train = task["train"]
    perm = torch.randperm(train.n, generator=generator(seed, "null", task.name))
    splits = {**task.data.splits, "train": Split(train.x, train.y[perm])}
    return replace(task, data=replace(task.data, splits=splits))


#: the reference model's grid, tried on the training split and chosen on the validation split
REFERENCE_GRID = ({"learning_rate": 0.1, "max_leaf_nodes": 31},
                  {"learning_rate": 0.05, "max_leaf_nodes": 15},
                  {"learning_rate": 0.05, "max_leaf_nodes": 63})  # fmt: skip
REFERENCE_MAX_ITER = 500  # with early stopping on a tenth of the training split


def fit_reference(cfg: OwnDataRunConfig, prep: Prepared) -> Record:
    """The non-neural reference for one task: scikit-learn's ``HistGradientBoosting`` at each
    setting of :data:`REFERENCE_GRID` (at most ``REFERENCE_MAX_ITER`` boosting rounds, stopped
    early on a seeded tenth of the training split), the one with the best validation metric
    kept; scored like a network (its probabilities or predictions through the task's loss and
    metric), so its numbers compare with STL's."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    task = next(t for t in prep.tasks if t.name == cfg.tasks[0])
    t0 = time.perf_counter()

    def arrays(split: str) -> tuple[Any, Any]:
        s = task[split]
        return s.x.reshape(s.n, -1).double().numpy(), s.y.numpy()

    x, y = arrays("train")
    cls = HistGradientBoostingRegressor if task.kind == "regression" else HistGradientBoostingClassifier
    best: dict[str, Any] | None = None
    with threadpool_limits(limits=torch.get_num_threads()):
        for params in REFERENCE_GRID:
            model = cls(max_iter=REFERENCE_MAX_ITER, early_stopping=True, random_state=cfg.seed,
                        **params)  # fmt: skip
            model.fit(x, y.ravel())
            m: dict[str, Any] = {}
            for split in ("val", "test"):
                xs, ys = arrays(split)
                if task.kind == "regression":
                    out = torch.as_tensor(model.predict(xs), dtype=torch.float32).reshape(-1, 1)
                else:  # the classes the model saw, placed in the task's columns
                    proba = torch.full((len(xs), task.n_out), 1e-12, dtype=torch.float64)
                    proba[:, torch.as_tensor(model.classes_)] = torch.as_tensor(
                        model.predict_proba(xs))
                    out = proba.clamp_min(1e-12).log().float()
                yt = torch.as_tensor(ys)
                m[f"{split}_metric"] = task.metric(out, yt)
                m[f"{split}_loss"] = float(task.loss(out, yt))
                if task.kind == "regression":
                    m[f"{split}_rmse"] = prep.rmse(task.name, float(((out - yt) ** 2).mean()))
            if best is None or m["val_metric"] > best["val_metric"]:
                best = {**m, "min_val_loss": m["val_loss"], "best_step": float(model.n_iter_),
                        **{f"reference_{k}": v for k, v in params.items()}}  # fmt: skip
    assert best is not None
    seconds = time.perf_counter() - t0
    evals = [{"task": task.name, "kind": task.kind, "metric": task.metric_name, **best}]
    row = {**cfg.row_fields(), "run_id": cfg.run_id(), "status": "ok", "reason": None,
           "regime": "reference", "steps_done": int(best["best_step"]), "diverged_at": None,
           "stopped_at": None, "train_seconds": seconds, "measure_seconds": 0.0,
           "probe_seconds": 0.0, "probes": 0, "probe_steps": [], "first_order": False}  # fmt: skip
    return row, [], {}, evals


def schedule(cfg: OwnDataRunConfig) -> tuple[set[int], set[int]]:
    """(probe steps, evaluation steps). Probes start after the first tenth of training — at step 0
    the heads are random, and so is the direction each task pulls the trunk in — and short
    trainings probe often enough (at least every eighth of training)."""
    every = min(cfg.probe_every, max(1, cfg.steps // 8))
    start = max(every, cfg.steps // 10)
    probes = set(range(start, cfg.steps, every)) if cfg.probe else set()
    evals = set(range(cfg.eval_every, cfg.steps + 1, cfg.eval_every)) | {cfg.steps}
    return probes, evals


def train_run(  # long: the run's one training, its checkpoints and its outcome, in order
    cfg: OwnDataRunConfig, device: Any = "cpu", trunk: dict[str, Tensor] | None = None
) -> Record:
    """Train one run (``trunk``: the pretrained trunk of a ``ptft`` run); its record."""
    prep = prepared(cfg)
    if cfg.method == "reference":
        return fit_reference(cfg, prep)
    by_name = {t.name: t for t in prep.tasks}
    tasks = [null_task(by_name[n], cfg.seed) if n in cfg.null else by_name[n] for n in cfg.tasks]
    dev = torch.device(device)
    shape = tuple(tasks[0]["train"].x.shape[1:])
    net = seeded_network(shape, [(t.name, t.n_out) for t in tasks], cfg.trunk, cfg.widths,
                         cfg.seed)  # fmt: skip
    if cfg.method == "ptft":
        if trunk is None:
            raise ValueError(f"run {cfg.run_id()}: finetuning needs the pretrained trunk")
        net.trunk.load_state_dict(trunk)
        rescale_(net.trunk, float(cfg.rescale or 1.0))
    elif cfg.init_scale is not None:  # (a finetuning's is its pretraining's)
        rescale_(net.trunk, float(cfg.init_scale))
    method = make_method("mean" if cfg.regime != "mtl" else cfg.method, len(tasks))
    probe_steps, eval_steps = schedule(cfg)
    tcfg = MinibatchConfig(steps=cfg.steps, lr=cfg.lr, optimizer="adam",
                           batch_size=cfg.batch_size,
                           checkpoints=tuple(sorted(probe_steps | eval_steps)),
                           seed=cfg.seed)  # fmt: skip
    net.to(dev)
    prober: AffinityProber | None = None
    best: dict[str, dict[str, float]] = {}
    stale = 0  # evaluations since any task's validation metric or loss last improved

    def ready(optimizer: torch.optim.Optimizer) -> None:
        nonlocal prober
        prober = AffinityProber(net, tasks, cfg, dev, optimizer) if cfg.probe else None

    def measure(step: int, model: MultiTaskNet) -> bool:
        nonlocal stale
        if prober is not None and step in probe_steps:
            prober(step)
        if step not in eval_steps:
            return False
        improved = False
        for name, m in evaluate(model, tasks, prep, dev).items():
            before = best.get(name, {}).get("min_val_loss", math.inf)
            improved |= m["val_loss"] < before
            if name not in best or m["val_metric"] > best[name]["val_metric"]:
                best[name] = {**m, "best_step": float(step)}
                improved = True
            best[name]["min_val_loss"] = min(m["val_loss"], before)
        stale = 0 if improved else stale + 1
        return cfg.patience is not None and stale >= cfg.patience

    res = train_minibatch(net, tasks, method, tcfg, measure=measure, device=dev,
                          on_optimizer=ready)  # fmt: skip
    if res.diverged_at is not None or not best:  # the state it stopped in
        for name, m in evaluate(net, tasks, prep, dev).items():
            best.setdefault(name, {**m, "best_step": float(res.steps),
                                   "min_val_loss": m["val_loss"]})  # fmt: skip
    evals = []
    for i, task in enumerate(tasks):
        e: dict[str, Any] = {"task": task.name, "kind": task.kind, "metric": task.metric_name,
                             **best[task.name]}  # fmt: skip
        if prober is not None:
            e["affinity"] = (torch.stack(prober.values).mean(0)[i].tolist()
                             if prober.values else None)  # fmt: skip
            e["affinity_per_probe"] = [v[i].tolist() for v in prober.values]
            e["first_order_per_probe"] = [v[i].tolist() for v in prober.estimates]
        evals.append(e)
    failed = res.diverged_at is not None
    lin_seconds = 0.0
    if cfg.linearise is not None and not failed:
        lin_seconds = _linearised(net, tasks, cfg, dev, evals)
    if cfg.signature is not None and not failed:
        evals[0]["signature"] = sig = signature(net, prep, cfg.signature, dev)
        evals[0]["signature_outputs"] = len(sig) // min(cfg.signature, len(prep.rows["val"]))
    row = {
        **cfg.row_fields(),
        "run_id": cfg.run_id(),
        "status": "failed" if failed else "ok",
        "reason": f"non-finite training loss at step {res.diverged_at}" if failed else None,
        "regime": cfg.regime,
        "steps_done": res.steps,
        "diverged_at": res.diverged_at,
        "stopped_at": res.stopped_at,
        "train_seconds": res.train_seconds,
        "measure_seconds": res.measure_seconds,
        "probe_seconds": prober.seconds if prober else 0.0,
        "probes": len(prober.values) if prober else 0,
        "probe_steps": prober.steps if prober else [],
        "first_order": bool(prober.first_order) if prober else False,
        "linearise_seconds": lin_seconds,
    }
    params = ({k: v.detach().cpu() for k, v in net.trunk.state_dict().items()}
              if cfg.method == "stl" else {})  # fmt: skip
    return row, [], params, evals


def signature(net: MultiTaskNet, prep: Prepared, n: int, dev: Any) -> list[float]:
    """The first head's outputs on the first ``n`` validation rows of the table (standardised
    as in training; the same rows for every task, labelled or not), row by row, flattened —
    the task's signature (:class:`mtlab.advise.estimators.Screened`)."""
    rows = prep.rows["val"][:n]
    x = (prep.table.x[rows] - prep.mean) / prep.std
    net.eval()
    with torch.no_grad():
        out = task_output(net, torch.as_tensor(x.astype(np.float32)).to(dev), 0)
    net.train()
    return [float(v) for v in out.double().cpu().reshape(-1)]


def _linearised(net: MultiTaskNet, tasks: Sequence[SupervisedTask], cfg: OwnDataRunConfig,
                dev: Any, evals: list[dict[str, Any]]) -> float:  # fmt: skip
    """The linearised transfer estimate of the network as it ended its training
    (:mod:`mtlab.measure.linearised`): each task's row stored in its evaluation (``linearised``)
    with the ridge strength chosen (``linearised_ridge``); returns the seconds it took."""
    from mtlab.measure.linearised import linearise, transfer_matrix

    t0 = time.perf_counter()
    net.eval()
    lins = linearise(net.trunk, list(net.heads), [t.kind for t in tasks],
                     [(t["train"].x.to(dev), t["train"].y.to(dev)) for t in tasks],
                     [(t["val"].x.to(dev), t["val"].y.to(dev)) for t in tasks],
                     int(cfg.linearise or 0), seed=cfg.seed)  # fmt: skip
    Z, lam = transfer_matrix(lins)
    net.train()
    for e, row in zip(evals, Z.tolist(), strict=True):
        e["linearised"] = row
        e["linearised_ridge"] = lam
    return time.perf_counter() - t0


class OwnDataFamily(SequentialFamily):
    name = "owndata"
    config_cls = OwnDataRunConfig
    headline = ("test_metric", "val_metric")
    eval_keys = ("task",)
    columns = ("regime", "steps_done", "diverged_at", "stopped_at", "train_seconds", "measure_seconds",
               "probe_seconds", "probes", "probe_steps", "first_order", "linearise_seconds")  # fmt: skip
    timing_columns = ("wall_s", "train_seconds", "measure_seconds", "probe_seconds",
                      "linearise_seconds")

    def sort_key(self, cfg: OwnDataRunConfig) -> tuple[Any, ...]:
        order = {"reference": 0, "stl": 1, "mtl": 2, "ptft": 3}[cfg.regime]
        return (order, len(cfg.tasks), cfg.tasks, cfg.method, cfg.source or "",
                cfg.rescale or 0.0, cfg.null, cfg.init_scale or 0.0, cfg.steps, cfg.seed)  # fmt: skip

    def record(
        self, cfg: OwnDataRunConfig, device: Any = "cpu", pretrained: Any = None
    ) -> Record:
        trunk = None
        if cfg.method == "ptft":
            if pretrained is None:
                raise ValueError(f"run {cfg.run_id()}: finetuning needs its pretraining run")
            trunk = pretrained(cfg.pretraining().run_id())
        return train_run(cfg, device, trunk)


FAMILY = register_family(OwnDataFamily())

__all__ = ["DATA_FIELDS", "FAMILY", "OwnDataFamily", "evaluate", "file_digest", "load_data",
           "parse_kinds", "prepared", "train_run"]  # fmt: skip
