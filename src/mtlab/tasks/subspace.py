"""Subspace classification tasks (Collins et al., ICML 2024, §2).

Inputs ``x ~ N(0, I_d)``; a ground-truth projection ``M ∈ ℝ^{r×d}`` with orthonormal rows
(``M Mᵀ = I_r``); pretraining task ``t`` has a direction ``θ_t`` uniform on the unit sphere of
``ℝ^r`` and labels ``y_t = sign(⟨θ_t, Mx⟩ + c_t)``, so labels depend on ``x`` only through ``Mx``.

Options (all off by default, which is the paper's canonical balanced, odd setting):

* ``margin`` — keep only samples with ``|⟨θ_t, Mx⟩ + c_t| ≥ margin`` (rejection sampling);
* ``label_noise`` — flip each label independently with this probability;
* ``offset`` — task offsets ``c_t ~ U[−offset, offset]`` (breaks oddness; see the paper notes §8).

Every task draws its own fresh samples from its own random stream, so task ``t``'s data is the same
whatever ``T`` is (common random numbers across a sweep over ``T``) and however the tasks are later
batched. Downstream tasks are fresh halfspaces in the subspace, the XOR of two orthogonal
in-subspace directions ``sign((θ₁ᵀMx)(θ₂ᵀMx))``, or any user function ``g(Mx) → ±1``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mtlab._seeding import derive_seed

DownstreamKind = str | Callable[[Tensor], Tensor]
DOWNSTREAM_KINDS = ("halfspace", "xor")


def _gen(device: torch.device | str, *parts: object) -> torch.Generator:
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(derive_seed(*parts))
    return g


@dataclass(frozen=True)
class SubspaceSpec:
    """The task family: input dimension ``d``, subspace dimension ``r`` and label options."""

    d: int
    r: int
    margin: float = 0.0
    label_noise: float = 0.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        if self.r < 1 or self.d < self.r:
            raise ValueError(f"need 1 <= r <= d (got d={self.d}, r={self.r})")
        if not 0.0 <= self.label_noise < 0.5:
            raise ValueError(f"label_noise must be in [0, 0.5) (got {self.label_noise})")
        if self.margin < 0 or self.offset < 0:
            raise ValueError(f"margin and offset must be >= 0 (got {self.margin}, {self.offset})")


def projection(
    d: int,
    r: int,
    seed: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Ground truth ``M: (r, d)`` with orthonormal rows: ``Qᵀ`` of the QR of a ``d×r`` Gaussian."""
    g = _gen("cpu", seed, "projection", d, r)
    q, _ = torch.linalg.qr(torch.randn(d, r, generator=g, dtype=torch.float64))
    return q.T.contiguous().to(dtype=dtype, device=device)


def unit_directions(
    n: int, r: int, seed: int, stream: str, dtype: torch.dtype = torch.float32
) -> Tensor:
    """``n`` directions uniform on the unit sphere of ``ℝ^r``: ``(n, r)``, row ``t`` from its own
    stream (so the first ``k`` of ``n`` are the same for every ``n ≥ k``)."""
    rows = [torch.randn(r, generator=_gen("cpu", seed, stream, r, t)) for t in range(n)]
    theta = torch.stack(rows) if rows else torch.zeros(0, r)
    return (theta / theta.norm(dim=1, keepdim=True)).to(dtype)


def task_offsets(n: int, offset: float, seed: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``c_t ~ U[−offset, offset]`` for ``n`` tasks (zeros when ``offset == 0``)."""
    if offset == 0:
        return torch.zeros(n, dtype=dtype)
    g = _gen("cpu", seed, "offsets")
    return ((2 * torch.rand(n, generator=g, dtype=torch.float64) - 1) * offset).to(dtype)


def _sample_one(
    spec: SubspaceSpec,
    M: Tensor,
    theta: Tensor,
    c: float,
    n: int,
    g: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """``n`` samples ``(n, d)`` of one halfspace task with labels ``(n,)`` in {−1, +1}."""
    if spec.margin == 0:
        x = torch.randn(n, spec.d, generator=g, dtype=M.dtype, device=M.device)
        s = x @ (M.T @ theta) + c
    else:
        xs, ss, have = [], [], 0
        while have < n:  # rejection sampling: keep |θᵀMx + c| >= margin
            x = torch.randn(
                2 * (n - have) + 16, spec.d, generator=g, dtype=M.dtype, device=M.device
            )
            s = x @ (M.T @ theta) + c
            keep = s.abs() >= spec.margin
            xs.append(x[keep])
            ss.append(s[keep])
            have += int(keep.sum())
        x, s = torch.cat(xs)[:n], torch.cat(ss)[:n]
    y = torch.where(s >= 0, 1.0, -1.0).to(M.dtype)
    if spec.label_noise > 0:
        flip = torch.rand(n, generator=g, device=M.device) < spec.label_noise
        y = torch.where(flip, -y, y)
    return x, y


def sample_tasks(
    spec: SubspaceSpec,
    M: Tensor,
    theta: Tensor,
    offsets: Tensor,
    n: int,
    seed: int,
    stream: str,
    tasks: Sequence[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """Fresh samples for a block of pretraining tasks: ``X (T, n, d)``, ``Y (T, n)``.

    ``theta: (T_all, r)``, ``offsets: (T_all,)``; ``tasks`` picks which (default all); ``stream``
    names the sample stream (e.g. ``"head"`` for the n1 samples, ``"rep"`` for the n2 samples,
    ``"round7"`` for alternating SGD). Task ``t`` always uses stream ``(seed, stream, t)``.
    """
    tasks = range(theta.shape[0]) if tasks is None else tasks
    if n < 1:
        raise ValueError(f"need n >= 1 samples per task (got {n})")
    X = torch.empty(len(tasks), n, spec.d, dtype=M.dtype, device=M.device)
    Y = torch.empty(len(tasks), n, dtype=M.dtype, device=M.device)
    th = theta.to(device=M.device, dtype=M.dtype)
    for k, t in enumerate(tasks):
        g = _gen(M.device, seed, stream, spec.d, spec.r, t)
        X[k], Y[k] = _sample_one(spec, M, th[t], float(offsets[t]), n, g)
    return X, Y


@dataclass(frozen=True)
class DownstreamTask:
    """A downstream task ``y = g(Mx)``: ``kind`` is ``"halfspace"`` (fresh θ), ``"xor"``
    (``sign((θ₁ᵀz)(θ₂ᵀz))`` with ``θ₁ ⊥ θ₂``) or a callable ``g: (n, r) → (n,)`` of ±1 labels."""

    kind: DownstreamKind
    directions: Tensor  # (k, r): 1 for halfspace, 2 orthonormal for xor, empty for a callable

    def labels(self, z: Tensor) -> Tensor:
        """Labels ``(n,)`` in {−1, +1} of projected inputs ``z = x Mᵀ: (n, r)``."""
        if callable(self.kind):
            y = self.kind(z)
            if y.shape != z.shape[:1]:
                raise ValueError(f"downstream function must return shape {tuple(z.shape[:1])}")
            return torch.where(y >= 0, 1.0, -1.0).to(z.dtype)
        s = z @ self.directions.to(z).T
        v = s[:, 0] if self.kind == "halfspace" else s[:, 0] * s[:, 1]
        return torch.where(v >= 0, 1.0, -1.0).to(z.dtype)


def downstream_task(kind: DownstreamKind, r: int, seed: int, index: int = 0) -> DownstreamTask:
    """The ``index``-th downstream task of ``kind`` for a given seed (fresh, not a pretraining
    direction)."""
    if callable(kind):
        return DownstreamTask(kind, torch.zeros(0, r))
    if kind not in DOWNSTREAM_KINDS:
        raise ValueError(
            f"unknown downstream task {kind!r}; allowed: {', '.join(DOWNSTREAM_KINDS)}"
        )
    if kind == "xor" and r < 2:
        raise ValueError("the xor downstream task needs r >= 2")
    g = _gen("cpu", seed, "downstream", kind, r, index)
    raw = torch.randn(r, 2, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(raw)  # orthonormal columns: θ₁ ⊥ θ₂
    k = 1 if kind == "halfspace" else 2
    return DownstreamTask(kind, q.T[:k].to(torch.float32).contiguous())


def sample_downstream(
    task: DownstreamTask, M: Tensor, n: int, seed: int, split: str, index: int = 0
) -> tuple[Tensor, Tensor]:
    """``n`` samples ``(n, d)`` and labels ``(n,)`` of a downstream task for ``split``."""
    name = task.kind if isinstance(task.kind, str) else "custom"
    g = _gen(M.device, seed, "downstream-x", name, index, split, M.shape[1])
    x = torch.randn(n, M.shape[1], generator=g, dtype=M.dtype, device=M.device)
    return x, task.labels(x @ M.T)


__all__ = [
    "DOWNSTREAM_KINDS",
    "DownstreamTask",
    "SubspaceSpec",
    "downstream_task",
    "projection",
    "sample_downstream",
    "sample_tasks",
    "task_offsets",
    "unit_directions",
]
