"""Real multi-task classification data, offline: containers and the built-in datasets.

:class:`MultiTaskDataset` holds inputs ``x: (n, ...)`` and integer labels ``y: (n, T)`` (one
column per task, ``num_classes[t]`` classes each) with named train / val / test splits.

Built in (scikit-learn's handwritten digits, shipped with scikit-learn — no download):

* ``digit-attributes`` — every 8×8 digit image labelled with nine binary attributes of its digit
  (odd, ≥ 5, prime, closed loop, curved strokes, mirror-symmetric, perfect square, Fibonacci,
  multiple of 3): a CelebA-like multi-label benchmark whose tasks share structure to different
  degrees.
* ``multi-digits`` — two digits composed into one image, side by side with overlapping columns
  (``layout="overlap"``, 8 × (16 − overlap)) or superimposed with a shift (``"superimpose"``),
  tasks = left digit and right digit: the MultiMNIST analogue. Pairs are drawn within each split
  of the underlying digits, so no test digit image is ever seen in training.

Splits are seeded and stratified by digit class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

SPLITS = ("train", "val", "test")

#: digit → attribute (1 = yes); the nine tasks of ``digit-attributes``
DIGIT_ATTRIBUTES: dict[str, set[int]] = {
    "odd": {1, 3, 5, 7, 9},
    "ge5": {5, 6, 7, 8, 9},
    "prime": {2, 3, 5, 7},
    "closed_loop": {0, 4, 6, 8, 9},
    "curved": {0, 2, 3, 5, 6, 8, 9},
    "symmetric": {0, 1, 8},
    "square": {0, 1, 4, 9},
    "fibonacci": {0, 1, 2, 3, 5, 8},
    "multiple_of_3": {0, 3, 6, 9},
}
DATASETS = ("digit-attributes", "multi-digits", "planted-groups")


@dataclass
class MultiTaskDataset:
    """Inputs and per-task integer labels per split.

    ``x[split]: (n, *input_shape)`` float32, ``y[split]: (n, T)`` int64, ``tasks``: names,
    ``num_classes[t]``: classes of task ``t`` (labels in ``0 … num_classes[t] − 1``).
    """

    name: str
    tasks: list[str]
    num_classes: list[int]
    x: dict[str, Tensor]
    y: dict[str, Tensor]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.tasks) != len(self.num_classes):
            raise ValueError("tasks and num_classes must have the same length")
        for split in self.x:
            if split not in self.y:
                raise ValueError(f"split {split!r} has inputs but no labels")
            n = self.x[split].shape[0]
            if self.y[split].shape != (n, len(self.tasks)):
                raise ValueError(
                    f"labels of split {split!r} have shape {tuple(self.y[split].shape)}, "
                    f"expected {(n, len(self.tasks))}"
                )

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x["train"].shape[1:])

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    def subset_tasks(self, names: Sequence[str]) -> MultiTaskDataset:
        """The same inputs with only the named tasks (in the given order)."""
        unknown = [t for t in names if t not in self.tasks]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; this dataset has {self.tasks}")
        idx = [self.tasks.index(t) for t in names]
        return MultiTaskDataset(
            self.name,
            list(names),
            [self.num_classes[i] for i in idx],
            dict(self.x),
            {s: y[:, idx] for s, y in self.y.items()},
            dict(self.meta),
        )


def split_indices(labels: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Stratified random split of ``range(len(labels))`` into parts with the given fractions."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cuts = np.floor(np.cumsum(fractions)[:-1] * len(idx)).astype(int)
        for k, chunk in enumerate(np.split(idx, cuts)):
            parts[k].extend(chunk.tolist())
    return [rng.permutation(np.asarray(p, dtype=np.int64)) for p in parts]


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def digit_attributes(
    seed: int = 0, fractions: Sequence[float] = (0.6, 0.2, 0.2), tasks: Sequence[str] | None = None
) -> MultiTaskDataset:
    """The ``digit-attributes`` dataset (see module doc); inputs ``(n, 1, 8, 8)`` in [0, 1]."""
    images, digits = _digits()
    names = list(tasks) if tasks is not None else list(DIGIT_ATTRIBUTES)
    unknown = [t for t in names if t not in DIGIT_ATTRIBUTES]
    if unknown:
        raise ValueError(f"unknown attribute(s) {unknown}; allowed: {', '.join(DIGIT_ATTRIBUTES)}")
    table = np.array([[int(d in DIGIT_ATTRIBUTES[t]) for t in names] for d in range(10)])
    parts = split_indices(digits, fractions, seed)
    x = {s: torch.from_numpy(images[p][:, None]) for s, p in zip(SPLITS, parts, strict=True)}
    y = {s: torch.from_numpy(table[digits[p]]) for s, p in zip(SPLITS, parts, strict=True)}
    return MultiTaskDataset("digit-attributes", names, [2] * len(names), x, y, {"seed": seed})


def compose_digits(left: np.ndarray, right: np.ndarray, layout: str, overlap: int) -> np.ndarray:
    """Two batches of ``(n, 8, 8)`` images composed into one batch (pixel-wise max where they
    overlap): ``overlap`` → ``(n, 8, 16 − overlap)``; ``superimpose`` → ``(n, 8, 8 + overlap)``
    with the right digit shifted by ``overlap`` columns."""
    n, h, w = left.shape
    if layout not in ("overlap", "superimpose"):
        raise ValueError(f"unknown layout {layout!r}; allowed: overlap, superimpose")
    if not 0 <= overlap <= w:
        raise ValueError(f"overlap must be in [0, {w}] (got {overlap})")
    shift = w - overlap if layout == "overlap" else overlap
    out = np.zeros((n, h, shift + w), dtype=left.dtype)
    out[:, :, :w] = left
    out[:, :, shift:] = np.maximum(out[:, :, shift:], right)
    return out


def multi_digits(
    seed: int = 0,
    n: Sequence[int] = (4000, 1000, 1000),
    layout: str = "overlap",
    overlap: int = 4,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
) -> MultiTaskDataset:
    """The ``multi-digits`` dataset: ``n`` composed images per split, tasks ``left``/``right``
    (10 classes each); inputs ``(n, 1, 8, W)``."""
    images, digits = _digits()
    parts = split_indices(digits, fractions, seed)
    rng = np.random.default_rng([seed, 7])
    x, y = {}, {}
    for split, idx, count in zip(SPLITS, parts, n, strict=True):
        a = rng.choice(idx, size=count)
        b = rng.choice(idx, size=count)
        img = compose_digits(images[a], images[b], layout, overlap)
        x[split] = torch.from_numpy(img[:, None])
        y[split] = torch.from_numpy(np.stack([digits[a], digits[b]], axis=1))
    meta = {"seed": seed, "layout": layout, "overlap": overlap}
    return MultiTaskDataset("multi-digits", ["left", "right"], [10, 10], x, y, meta)


def planted_groups(
    seed: int = 0,
    n_groups: int = 3,
    per_group: int = 3,
    d: int = 20,
    n: Sequence[int] = (2000, 500, 500),
    jitter: float = 0.0,
    flip: float = 0.1,
) -> MultiTaskDataset:
    """Synthetic tasks with planted groups: group ``g`` has a random unit teacher ``w_g``; task
    ``k`` of the group labels ``x ~ N(0, I_d)`` by ``1[xᵀ(w_g + jitter·ξ_k) > 0]`` (``ξ_k`` a fresh
    unit vector) and flips each training label with probability ``flip`` (independently per task),
    so tasks of a group share their teacher but are not copies, and groups are unrelated —
    trained through a narrow bottleneck they compete. Tasks ``g{g}t{k}``; validation and test
    labels are clean."""
    rng = np.random.default_rng([seed, 11])
    W = []
    for _ in range(n_groups):
        w = rng.normal(size=d)
        w /= np.linalg.norm(w)
        for _ in range(per_group):
            xi = rng.normal(size=d)
            W.append(w + jitter * xi / np.linalg.norm(xi))
    Wm = np.stack(W, axis=1)  # (d, T)
    names = [f"g{g}t{k}" for g in range(n_groups) for k in range(per_group)]
    x, y = {}, {}
    for split, count in zip(SPLITS, n, strict=True):
        xs = rng.normal(size=(count, d)).astype(np.float32)
        labels = (xs @ Wm > 0).astype(np.int64)
        if split == "train" and flip > 0:
            labels = np.where(rng.random(labels.shape) < flip, 1 - labels, labels)
        x[split] = torch.from_numpy(xs)
        y[split] = torch.from_numpy(labels)
    groups = [[names[g * per_group + k] for k in range(per_group)] for g in range(n_groups)]
    meta = {"seed": seed, "groups": groups, "jitter": jitter, "flip": flip}
    return MultiTaskDataset("planted-groups", names, [2] * len(names), x, y, meta)


def dataset_tasks(name: str) -> list[str]:
    """Task names of a built-in dataset, without loading it."""
    if name == "digit-attributes":
        return list(DIGIT_ATTRIBUTES)
    if name == "multi-digits":
        return ["left", "right"]
    if name == "planted-groups":
        return [f"g{g}t{k}" for g in range(3) for k in range(3)]
    raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")


def load_dataset(name: str, seed: int = 0, **options: Any) -> MultiTaskDataset:
    """A built-in dataset by name (``digit-attributes`` or ``multi-digits``)."""
    if name == "digit-attributes":
        return digit_attributes(seed, **options)
    if name == "multi-digits":
        return multi_digits(seed, **options)
    if name == "planted-groups":
        return planted_groups(seed, **options)
    raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")


__all__ = [
    "DATASETS",
    "DIGIT_ATTRIBUTES",
    "SPLITS",
    "MultiTaskDataset",
    "compose_digits",
    "dataset_tasks",
    "digit_attributes",
    "load_dataset",
    "multi_digits",
    "planted_groups",
    "split_indices",
]
