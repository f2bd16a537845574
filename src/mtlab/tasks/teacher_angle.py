"""Two linear-regression tasks whose relation is known by construction: teachers at a set angle.

Task ``t1`` has teacher ``w₁`` (a seeded unit vector in R^d) and task ``t2`` has
``w₂ = cos θ · w₁ + sin θ · u`` with ``u ⊥ w₁`` a second seeded unit vector, so ``θ = 0°`` is the
same task, ``90°`` orthogonal teachers and ``180°`` a sign-flipped teacher. Targets are
``y = ⟨w, x⟩ + σ ε`` with ``x ∼ N(0, I_d)`` (unit signal variance) and label noise σ.
Each task draws its own inputs per split from its own stream, so the tasks may have different
sample counts (``n = (n₁, n₂)``). Used by the trajectories study (Mueller, Dredze & Andrews
2024, §6 "toy reproduction targets"): through a shared trunk with per-task heads, sign-flipped
teachers conflict in gradient yet share a feature; orthogonal teachers through a one-unit
bottleneck compete for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mtlab._seeding import generator
from mtlab.tasks.base import Split, TaskData

TASKS = ("t1", "t2")


def teachers(angle_deg: float, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w₁, w₂)``: unit vectors in R^d at ``angle_deg`` degrees."""
    if d < 2:
        raise ValueError(f"d must be >= 2 for two teachers at an angle (got {d})")
    g = generator(seed, "teacher-angle", d)
    q, _ = torch.linalg.qr(torch.randn(d, 2, generator=g, dtype=torch.float64))
    w1, u = q[:, 0], q[:, 1]
    theta = math.radians(angle_deg)
    return w1, math.cos(theta) * w1 + math.sin(theta) * u


def teacher_angle_tasks(
    angle_deg: float,
    d: int = 20,
    n: Sequence[int] = (25, 200),
    n_val: int = 500,
    n_test: int = 500,
    noise: float = 0.5,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> list[TaskData]:
    """The two tasks (``t1``, ``t2``) with train / val / test splits (see module doc)."""
    if len(n) != 2 or min(n) < 1:
        raise ValueError(f"n must give two positive training sizes (got {tuple(n)})")
    if noise < 0:
        raise ValueError(f"noise must be >= 0 (got {noise})")
    ws = teachers(angle_deg, d, seed)
    tasks = []
    for name, w, n_train in zip(TASKS, ws, n, strict=True):
        splits = {}
        for split, size in (("train", n_train), ("val", n_val), ("test", n_test)):
            g = generator(seed, "teacher-angle-x", name, split, d)
            x = torch.randn(size, d, generator=g, dtype=torch.float64)
            y = x @ w + noise * torch.randn(size, generator=g, dtype=torch.float64)
            splits[split] = Split(x.to(dtype), y.to(dtype)[:, None])
        tasks.append(TaskData(name, splits, {"w": w}))
    return tasks


__all__ = ["TASKS", "teacher_angle_tasks", "teachers"]
