"""The ``mtbench`` family — one run of the multi-task method benchmark (the ``benchmark`` study and
``mtlab benchmark --dataset``): one :class:`MtbenchRunConfig` = one network trained on a built-in
dataset's tasks with one method (or one task alone, ``stl``), epochs over the shared design matrix
(:func:`mtlab.train.multitask.train_multitask`). (``mtlab benchmark --data`` trains the own-data
family, :mod:`mtlab.runs.owndata`.)

Each run stores one evaluation row per (task, split, metric) — ``task``, ``split`` (``val`` /
``test``), ``metric`` (``accuracy`` / ``loss``), ``value``, ``higher_is_better`` — plus run-level
``sec_per_step``, ``steps``, ``best_epoch`` and the Jacobian ``backend`` used; its curve holds the
per-epoch history (train losses, validation accuracies, mean task weights) and the conflict
diagnostics of the task Gramian on the configured schedule.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch

from mtlab._seeding import derive_seed
from mtlab.grad.methods import make_method
from mtlab.models.multitask import MultiTaskNet, init_seeded
from mtlab.runs.config import MtbenchRunConfig
from mtlab.runs.family import Record, SequentialFamily, register_family
from mtlab.tasks.datasets import MultiTaskDataset, load_dataset
from mtlab.train.multitask import MTTrainConfig, train_multitask

HIGHER_IS_BETTER = {"accuracy": True, "loss": False}


@lru_cache(maxsize=8)
def _dataset(name: str, seed: int) -> MultiTaskDataset:
    return load_dataset(name, seed)


class MtbenchFamily(SequentialFamily):
    name = "mtbench"
    headline = ("value",)
    eval_keys = ("task", "split", "metric")
    config_cls = MtbenchRunConfig
    columns = ("steps", "best_epoch", "sec_per_step", "jacobian_backend")
    # backend "auto" picks the Jacobian backend by timing it, so the recorded choice is timing too
    timing_columns = ("wall_s", "sec_per_step", "jacobian_backend")

    def sort_key(self, cfg: MtbenchRunConfig) -> tuple[Any, ...]:
        return (cfg.dataset, cfg.method, cfg.seed, cfg.task or "")

    def run_one(
        self, cfg: MtbenchRunConfig, device: torch.device | str = "cpu"
    ) -> tuple[dict[str, Any], list[dict[str, float]], list[dict[str, Any]]]:
        """Train and evaluate one run: (base row, curve, evaluation rows)."""
        data = _dataset(cfg.dataset, cfg.seed)  # the split depends on the seed
        if cfg.method == "stl":
            assert cfg.task is not None
            data = data.subset_tasks([cfg.task])
        method = make_method("mean" if cfg.method == "stl" else cfg.method, data.n_tasks)
        torch.manual_seed(derive_seed(cfg.run_id(), "torch"))  # e.g. GradDrop's random masks
        model = init_seeded(
            MultiTaskNet(data.input_shape, data.num_classes, cfg.trunk, cfg.widths),
            derive_seed(cfg.seed, "init", cfg.dataset),
        )
        tcfg = MTTrainConfig(
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            backend=cfg.backend,
            diagnostics_every=cfg.diagnostics_every,
            seed=derive_seed(cfg.seed, "batches"),
        )
        res = train_multitask(model, data, method, tcfg, device)
        base = cfg.row_fields()
        base.update(
            {
                "run_id": cfg.run_id(),
                "status": "ok",
                "reason": None,
                "steps": res.steps,
                "best_epoch": res.best_epoch,
                "sec_per_step": res.sec_per_step,
                "jacobian_backend": res.backend,
            }
        )
        evals = []
        for split in ("val", "test"):
            for task, ms in res.metrics[split].items():
                for metric, value in ms.items():
                    evals.append(
                        {
                            "task": task,
                            "split": split,
                            "metric": metric,
                            "value": value,
                            "higher_is_better": HIGHER_IS_BETTER[metric],
                        }
                    )
        return base, [*res.history, *res.diagnostics], evals

    def record(
        self, cfg: MtbenchRunConfig, device: torch.device | str = "cpu", pretrained=None
    ) -> Record:
        row, curve, evals = self.run_one(cfg, device)
        return row, curve, {}, evals


FAMILY = register_family(MtbenchFamily())
