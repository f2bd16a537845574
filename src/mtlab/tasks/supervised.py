"""A supervised task = its data splits plus its loss and metric: regression (mean squared error;
R²) or classification (cross-entropy; accuracy). Used where tasks of different kinds and sample
counts are trained through one network (the trajectories lab)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from mtlab.tasks.base import Split, TaskData

Kind = Literal["regression", "classification"]


@dataclass(frozen=True)
class SupervisedTask:
    """``kind`` decides the loss and metric; ``n_out`` is the head's width (1 for regression,
    the number of classes for classification). Regression targets are ``(n, 1)``."""

    data: TaskData
    kind: Kind
    n_out: int

    def __post_init__(self) -> None:
        if self.kind not in ("regression", "classification"):
            raise ValueError(f"kind must be 'regression' or 'classification' (got {self.kind!r})")
        if self.kind == "classification" and self.n_out < 2:
            raise ValueError(f"task {self.name!r}: a classification task needs >= 2 classes")

    @property
    def name(self) -> str:
        return self.data.name

    @property
    def metric_name(self) -> str:
        return "r2" if self.kind == "regression" else "accuracy"

    def __getitem__(self, split: str) -> Split:
        return self.data[split]

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        """Mean squared error or mean cross-entropy of the head's output ``out`` on ``y``."""
        if self.kind == "regression":
            return ((out - y) ** 2).mean()
        return nn.functional.cross_entropy(out, y)

    @torch.no_grad()
    def metric(self, out: Tensor, y: Tensor) -> float:
        """R² (1 − MSE / Var y) or accuracy — higher is better for both."""
        if self.kind == "regression":
            var = float(((y - y.mean()) ** 2).mean())
            mse = float(((out - y) ** 2).mean())
            return 1.0 - mse / var if var > 0 else float("nan")
        return float((out.argmax(-1) == y).double().mean())


def from_classification(
    name: str, x: dict[str, Tensor], y: dict[str, Tensor], n_classes: int
) -> SupervisedTask:
    """A classification task from per-split inputs (flattened to ``(n, d)``) and labels."""
    splits = {s: Split(x[s].reshape(x[s].shape[0], -1), y[s]) for s in x}
    return SupervisedTask(TaskData(name, splits), "classification", n_classes)


__all__ = ["Kind", "SupervisedTask", "from_classification"]
