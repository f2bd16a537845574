"""ReLU teacher networks with controlled feature geometry (Lippl & Lindsey 2024, §2.1).

Teachers are bias-free one-hidden-layer ReLU networks ``f(x) = Σ_j a_j·ReLU(u_jᵀx)`` on
RMS-normalised Gaussian inputs (``‖x‖² = d``). All unit vectors come from one seeded random
orthogonal ``d × d`` matrix ``Q`` (rows ``q_1 … q_d``):

* **auxiliary** teacher: units ``q_1 … q_k`` (``k = n_aux_units``, 6 in the paper), readouts
  ``±1/√k``;
* **main** teacher, ``mode="correlated"``: unit ``i`` is ``c_i·q_i + √(1 − c_i²)·q_{k+i}`` — cosine
  ``c_i`` with auxiliary unit ``i`` and orthogonal to every other auxiliary unit (``correlations``:
  one value per unit); readouts ``±1/√k`` with fresh signs;
* **main** teacher, ``mode="subset"``: the first ``n_units`` auxiliary units; ``mode="new"``:
  ``n_units`` units orthogonal to every auxiliary unit (``q_{k+1} …``); readouts ``±1/√n_units``
  with fresh signs (the nested-feature-selection family).

``magnitude`` multiplies the main teacher's output (equivalently every main unit's coefficient
``‖u_i‖·|a_i|``; the network is positively homogeneous), so the main features differ from the
auxiliary ones in magnitude by that factor. The paper does not define its "magnitude" (notes §8);
this is the documented choice.

The auxiliary teacher depends only on ``(seed, d, n_aux_units)``: one pretraining run serves every
main setting of a seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from mtlab._seeding import generator
from mtlab.tasks.sparse_teacher import task_inputs

TeacherMode = Literal["correlated", "subset", "new"]


@dataclass(frozen=True)
class ReluTeacherSpec:
    """Geometry of an (auxiliary, main) pair of ReLU teachers; see the module docstring."""

    d: int = 15
    n_aux_units: int = 6
    mode: TeacherMode = "correlated"
    correlations: tuple[float, ...] = field(default_factory=lambda: (1.0,) * 6)
    n_units: int = 6
    magnitude: float = 1.0
    main_signs: Literal["random", "same"] = "random"

    def __post_init__(self) -> None:
        k = self.n_aux_units
        if k < 1:
            raise ValueError(f"n_aux_units must be >= 1; got {k}")
        if self.mode not in ("correlated", "subset", "new"):
            raise ValueError(f"mode must be correlated, subset or new; got {self.mode!r}")
        if self.magnitude <= 0:
            raise ValueError(f"magnitude must be > 0; got {self.magnitude}")
        if self.mode == "correlated":
            if len(self.correlations) != k:
                raise ValueError(
                    f"correlations needs one value per auxiliary unit ({k}); "
                    f"got {len(self.correlations)}"
                )
            if any(not (-1.0 <= c <= 1.0) for c in self.correlations):
                raise ValueError(f"correlations must lie in [-1, 1]; got {self.correlations}")
            need = 2 * k if any(abs(c) < 1 for c in self.correlations) else k
        else:
            if self.mode == "subset" and not (1 <= self.n_units <= k):
                raise ValueError(f"mode 'subset' needs 1 <= n_units <= {k}; got {self.n_units}")
            if self.n_units < 1:
                raise ValueError(f"n_units must be >= 1; got {self.n_units}")
            need = k + (self.n_units if self.mode == "new" else 0)
        if need > self.d:
            raise ValueError(f"the teachers need {need} orthogonal directions but d = {self.d}")


@dataclass(frozen=True)
class ReluTeacherPair:
    """Unit directions (rows, unit norm) and readouts of both teachers (float64)."""

    w_aux: Tensor  # (k, d)
    a_aux: Tensor  # (k,)
    w_main: Tensor  # (k_main, d)
    a_main: Tensor  # (k_main,)

    def output(self, x: Tensor, task: str) -> Tensor:
        """Teacher output ``(n,)`` of ``task`` ∈ {aux, main} on inputs ``x: (n, d)``."""
        w, a = (self.w_aux, self.a_aux) if task == "aux" else (self.w_main, self.a_main)
        return torch.relu(x.double() @ w.T) @ a


def relu_output(x: Tensor, w: Tensor, a: Tensor) -> Tensor:
    """``Σ_j a_j ReLU(w_jᵀx)`` for ``x: (n, d)``, ``w: (k, d)``, ``a: (k,)`` → ``(n,)``."""
    return torch.relu(x @ w.T) @ a


def orthogonal_basis(seed: int, d: int) -> Tensor:
    """A seeded random orthogonal ``d × d`` matrix (Haar: QR of a Gaussian with sign fix)."""
    z = torch.randn(d, d, generator=generator(seed, "relu_teacher_basis", d), dtype=torch.float64)
    q, r = torch.linalg.qr(z)
    return (q * torch.sign(torch.diagonal(r))).T.contiguous()


def sample_relu_teachers(spec: ReluTeacherSpec, seed: int) -> ReluTeacherPair:
    """Draw the teacher pair of ``seed`` (see the module docstring for the construction)."""
    k = spec.n_aux_units
    q = orthogonal_basis(seed, spec.d)
    g_aux = generator(seed, "relu_aux_signs", spec.d, k)
    signs_aux = torch.randint(0, 2, (k,), generator=g_aux).double() * 2 - 1
    w_aux = q[:k]
    a_aux = signs_aux / k**0.5
    g_main = generator(seed, "relu_main_signs", spec.mode, spec.n_units, spec.correlations)
    if spec.mode == "correlated":
        c = torch.tensor(spec.correlations, dtype=torch.float64)
        w_main = c[:, None] * q[:k] + torch.sqrt((1 - c * c).clamp_min(0))[:, None] * q[k : 2 * k]
        k_main = k
    elif spec.mode == "subset":
        w_main = q[: spec.n_units]
        k_main = spec.n_units
    else:
        w_main = q[k : k + spec.n_units]
        k_main = spec.n_units
    signs = torch.randint(0, 2, (k_main,), generator=g_main).double() * 2 - 1
    if spec.main_signs == "same" and spec.mode != "new":
        signs = signs_aux[:k_main].clone()
    a_main = spec.magnitude * signs / k_main**0.5
    return ReluTeacherPair(w_aux.clone(), a_aux, w_main.contiguous(), a_main)


def relu_task_data(
    pair: ReluTeacherPair,
    task: str,
    seed: int,
    split: str,
    n: int,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Inputs ``(n, d)`` (RMS-normalised Gaussians from stream ``(seed, relu_<task>, split)``) and
    teacher targets ``(n,)`` of ``task`` ∈ {aux, main}."""
    if task not in ("aux", "main"):
        raise ValueError(f"task must be 'aux' or 'main'; got {task!r}")
    d = pair.w_aux.shape[1]
    x = task_inputs(seed, f"relu_{task}", split, n, d, torch.float64)
    return x.to(dtype), pair.output(x, task).to(dtype)


__all__ = [
    "ReluTeacherPair",
    "ReluTeacherSpec",
    "orthogonal_basis",
    "relu_output",
    "relu_task_data",
    "sample_relu_teachers",
]
