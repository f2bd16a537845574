"""Containers for multi-task data: per task, named splits of inputs and targets, plus ground truth.

Tasks may differ in their inputs and sample counts (an auxiliary task with 1024 samples next to a
main task with 16); nothing here assumes a common design matrix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor


class DataError(ValueError):
    """Data that cannot be used as given — a file that cannot be read, an unknown column, a bad
    value: the message names the file and, where there is one, the column and the row. The one
    error of every reader (tables, images, IDX, CelebA, CIFAR)."""


@dataclass(frozen=True)
class Split:
    """One split of one task: inputs ``x: (n, d)`` (or images ``(n, C, H, W)``) and targets
    ``y: (n,)`` (regression) or class labels."""

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if self.x.ndim not in (2, 4):
            raise ValueError(
                f"Split.x must be (n, d) or (n, C, H, W); got shape {tuple(self.x.shape)}"
            )
        if self.y.shape[0] != self.x.shape[0]:
            raise ValueError(
                f"Split.y has {self.y.shape[0]} rows but Split.x has {self.x.shape[0]}"
            )

    @property
    def n(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class TaskData:
    """A task's splits (``"train"``, ``"val"``, ``"test"``, …) and its ground truth.

    ``truth`` holds whatever generated the targets, e.g. ``{"beta": (d,)}`` for a linear teacher.
    """

    name: str
    splits: Mapping[str, Split]
    truth: Mapping[str, Tensor] = field(default_factory=dict)

    def __getitem__(self, split: str) -> Split:
        try:
            return self.splits[split]
        except KeyError:
            raise KeyError(
                f"task {self.name!r} has no split {split!r}; it has {sorted(self.splits)}"
            ) from None


def rms_normalised_gaussian(
    n: int, d: int, generator: torch.Generator, dtype: torch.dtype = torch.float64
) -> Tensor:
    """``x ~ N(0, I_d)`` with each row rescaled to RMS 1 (``‖x‖² = d``): shape ``(n, d)``.

    By rotational symmetry ``E[x xᵀ] = I_d`` exactly, so the population risk of a linear predictor
    ``β`` against a teacher ``β*`` is ``‖β − β*‖²`` (+ label-noise variance).
    """
    z = torch.randn(n, d, generator=generator, dtype=torch.float64)
    z = z * (d**0.5 / z.norm(dim=1, keepdim=True))
    return z.to(dtype)
