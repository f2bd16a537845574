"""The trajectory family: one :class:`TrajectoryRunConfig` = one network trained on its setting's
tasks (MTL with a method) or on one task (``stl``), measured at every checkpoint.

A run stores one evaluation row per (task, checkpoint): ``task``, ``step``, ``epoch_frac``
(epochs of that task's training set seen), the losses and metrics on the fixed training subset,
validation and test splits, the factors of :mod:`mtlab.measure.trajectory` and, for MTL runs,
the task's conflict measures. The run row carries ``steps``, ``diverged_at``, ``train_seconds``
and ``measure_seconds``; a run whose loss became non-finite is ``failed`` with that reason.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch

from mtlab.grad.methods import make_method
from mtlab.measure.trajectory import CheckpointMeter, FactorOptions
from mtlab.models.multitask import MultiTaskNet, seeded_network
from mtlab.runs.config import TrajectoryRunConfig
from mtlab.runs.family import Record, SequentialFamily, register_family
from mtlab.tasks.supervised import SupervisedTask, from_classification
from mtlab.train.minibatch import MinibatchConfig, checkpoint_schedule, train_minibatch


@lru_cache(maxsize=16)
def _dataset_tasks(dataset: str, tasks: tuple[str, ...], seed: int) -> tuple:
    from mtlab.tasks.datasets import load_dataset

    data = load_dataset(dataset, seed)
    if tasks:
        data = data.subset_tasks(list(tasks))
    return tuple(
        from_classification(
            name, data.x, {s: y[:, i] for s, y in data.y.items()}, data.num_classes[i]
        )
        for i, name in enumerate(data.tasks)
    )


@lru_cache(maxsize=16)
def _file_tasks(path: str, tasks: tuple[str, ...], seed: int) -> tuple:
    """The tasks of a user's table: the one reader of every ``--data`` command
    (:mod:`mtlab.tasks.tables`; classification and regression targets, missing labels), split
    by the seed."""
    from mtlab.tasks.tables import prepare, read_table

    return tuple(prepare(read_table(path, list(tasks)), seed=seed).tasks)


def setting_tasks(cfg: TrajectoryRunConfig) -> list[SupervisedTask]:
    """Every task of the run's setting (an STL run picks its own from these)."""
    if cfg.setting == "teacher":
        from mtlab.tasks.teacher_angle import teacher_angle_tasks

        tds = teacher_angle_tasks(
            cfg.angle, cfg.d, (cfg.n1, cfg.n2), noise=cfg.noise, seed=cfg.seed
        )
        return [SupervisedTask(t, "regression", 1) for t in tds]
    if cfg.setting == "file":
        assert cfg.data_path is not None
        return list(_file_tasks(cfg.data_path, tuple(cfg.task_names()), cfg.seed))
    assert cfg.dataset is not None
    return list(_dataset_tasks(cfg.dataset, tuple(cfg.task_names()), cfg.seed))


def build_network(cfg: TrajectoryRunConfig, tasks: list[SupervisedTask]) -> MultiTaskNet:
    """The trunk initialised from the seed, each head from the seed and its task's name."""
    shape = tuple(tasks[0]["train"].x.shape[1:])
    return seeded_network(shape, [(t.name, t.n_out) for t in tasks], cfg.trunk, cfg.widths,
                          cfg.seed)  # fmt: skip


def factor_options(cfg: TrajectoryRunConfig) -> FactorOptions:
    return FactorOptions(
        probe_size=cfg.probe_size,
        params=cfg.factor_params,
        factors=tuple(cfg.factors),
        lanczos_tol=cfg.lanczos_tol,
        fisher_samples=cfg.fisher_samples,
        noise_batch=cfg.noise_batch,
        seed=cfg.seed,
    )


def record_trajectory(
    cfg: TrajectoryRunConfig, device: torch.device | str = "cpu", measure: bool = True
) -> tuple[dict[str, Any], list[dict[str, Any]], MultiTaskNet]:
    """Train and measure one run: (row, checkpoint rows, trained model)."""
    tasks = setting_tasks(cfg)
    if cfg.method == "stl":
        tasks = [t for t in tasks if t.name == cfg.task]
    model = build_network(cfg, tasks)
    method = make_method("mean" if cfg.method == "stl" else cfg.method, len(tasks))
    cps = checkpoint_schedule(cfg.steps, cfg.n_early, cfg.early_frac, cfg.n_late)
    tcfg = MinibatchConfig(
        steps=cfg.steps,
        lr=cfg.lr,
        optimizer=cfg.optimizer,
        momentum=cfg.momentum,
        batch_size=cfg.batch_size,
        checkpoints=cps,
        seed=cfg.seed,
    )
    meter = CheckpointMeter(model, tasks, factor_options(cfg), device=device) if measure else None
    res = train_minibatch(model, tasks, method, tcfg, meter, device)
    n_train = {t.name: t["train"].n for t in tasks}
    batch = {k: min(cfg.batch_size, n) for k, n in n_train.items()}
    rows = []
    for r in meter.rows if meter is not None else []:
        rows.append({**r, "epoch_frac": r["step"] * batch[r["task"]] / n_train[r["task"]]})
    failed = res.diverged_at is not None
    row = {
        **cfg.row_fields(),
        "run_id": cfg.run_id(),
        "status": "failed" if failed else "ok",
        "reason": f"non-finite training loss at step {res.diverged_at}" if failed else None,
        "regime": "stl" if cfg.method == "stl" else "mtl",
        "setting_id": cfg.setting_id(),
        "steps": res.steps,
        "diverged_at": res.diverged_at,
        "n_checkpoints": len(cps),
        "train_seconds": res.train_seconds,
        "measure_seconds": res.measure_seconds,
    }
    return row, rows, model


class TrajectoryFamily(SequentialFamily):
    name = "trajectory"
    headline = ("test_metric", "test_loss", "val_loss")
    eval_keys = ("task",)
    config_cls = TrajectoryRunConfig
    columns = (
        "regime",
        "setting_id",
        "steps",
        "diverged_at",
        "n_checkpoints",
        "train_seconds",
        "measure_seconds",
    )
    timing_columns = ("wall_s", "train_seconds", "measure_seconds")

    def summary_rows(self, results: Any) -> Any:
        """The last checkpoint of each run and task (the end of training)."""
        if "step" not in results.columns:  # no run got to measure (every run failed)
            return results
        last = results.groupby(["run_id", "task"]).step.transform("max")
        return results[results.step == last]

    def sort_key(self, cfg: TrajectoryRunConfig) -> tuple[Any, ...]:
        return (cfg.setting_id(), cfg.seed, cfg.method, cfg.task or "")

    def record(
        self, cfg: TrajectoryRunConfig, device: Any = "cpu", pretrained: Any = None
    ) -> Record:
        row, evals, _ = record_trajectory(cfg, device)
        return row, [], {}, evals


FAMILY = register_family(TrajectoryFamily())
