"""Sparse linear teachers with controlled support overlap (Lippl & Lindsey 2024, §1.2).

The auxiliary teacher has ``k1`` random coordinates with coefficients ``±c(k1)``; the main teacher
reuses ``overlap`` of the auxiliary coordinates (the *first* ``overlap`` in the auxiliary support
order) and adds ``k2 − overlap`` new ones, with coefficients ``±c(k2)``. ``c(k) = 1/√k``
(``normalisation="l2"``, unit ℓ2 norm, the authors' code) or ``1/k`` (``"l1"``, unit ℓ1 norm, which
matches the authors' collated data). Shared coordinates keep the auxiliary signs unless
``main_signs="random"``.

Named settings fix (k2, overlap, main_signs) defaults:

============== ============ ============ ===========  =============================================
setting        k2           overlap      main_signs   meaning
============== ============ ============ ===========  =============================================
identical      k1           k1           same         the main task *is* the auxiliary task
nested_subset  5 (< k1)     k2           same         a sparse subset of the pretrained features
all_aux        k1           k1           random       every pretrained feature, new sign pattern
new_dims       5            0            random       disjoint support: only new features
partial_overlap k1          k2 // 2      same         half of the main support shared, half new
============== ============ ============ ===========  =============================================

``partial_overlap`` follows the authors' overlap sweep (k2 = k1, a chosen number of shared
coordinates). ``all_aux`` redraws the signs because with the paper's construction "all k1 with the same signs"
*is* ``identical``; with new signs the main task still lies in the span of the pretrained features
but is a different function of them.

The aux teacher depends only on (seed, d, k1, normalisation), never on the setting, so one
pretraining run serves every setting of a seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from mtlab._seeding import generator
from mtlab.tasks.base import Split, TaskData, rms_normalised_gaussian

Setting = Literal["identical", "nested_subset", "all_aux", "new_dims", "partial_overlap"]
SETTINGS: tuple[str, ...] = ("identical", "nested_subset", "all_aux", "new_dims", "partial_overlap")
Normalisation = Literal["l2", "l1"]


def setting_defaults(setting: str, k1: int) -> dict[str, Any]:
    """Default ``k2``, ``overlap`` and ``main_signs`` for a named setting (see module docstring)."""
    if setting == "identical":
        return {"k2": k1, "overlap": k1, "main_signs": "same"}
    if setting == "nested_subset":
        return {"k2": min(5, max(k1 - 1, 1)), "overlap": None, "main_signs": "same"}
    if setting == "all_aux":
        return {"k2": k1, "overlap": k1, "main_signs": "random"}
    if setting == "new_dims":
        return {"k2": 5, "overlap": 0, "main_signs": "random"}
    if setting == "partial_overlap":
        return {"k2": k1, "overlap": None, "main_signs": "same"}
    raise ValueError(f"unknown setting {setting!r}; allowed: {', '.join(SETTINGS)}")


def default_overlap(setting: str, k2: int) -> int:
    """The overlap a setting implies once ``k2`` is known."""
    return {"nested_subset": k2, "partial_overlap": k2 // 2}.get(setting, 0)


@dataclass(frozen=True)
class SparseTeacherSpec:
    """Geometry of an (auxiliary, main) pair of sparse linear teachers."""

    d: int
    k1: int
    k2: int
    overlap: int
    main_signs: Literal["same", "random"] = "same"
    normalisation: Normalisation = "l2"

    def __post_init__(self) -> None:
        if not (1 <= self.k1 <= self.d):
            raise ValueError(f"k1 must be in [1, d={self.d}]; got {self.k1}")
        if not (1 <= self.k2 <= self.d):
            raise ValueError(f"k2 must be in [1, d={self.d}]; got {self.k2}")
        if not (0 <= self.overlap <= min(self.k1, self.k2)):
            raise ValueError(
                f"overlap must be in [0, min(k1, k2)={min(self.k1, self.k2)}]; got {self.overlap}"
            )
        if self.k1 + self.k2 - self.overlap > self.d:
            raise ValueError(
                f"k1 + k2 - overlap = {self.k1 + self.k2 - self.overlap} coordinates do not fit in d={self.d}"
            )

    def magnitude(self, k: int) -> float:
        return 1.0 / k**0.5 if self.normalisation == "l2" else 1.0 / k


@dataclass(frozen=True)
class TeacherPair:
    """Coefficient vectors ``beta_aux, beta_main: (d,)`` and their supports (index tensors)."""

    beta_aux: Tensor
    beta_main: Tensor
    support_aux: Tensor
    support_main: Tensor


def sample_teachers(spec: SparseTeacherSpec, seed: int, setting_tag: str = "") -> TeacherPair:
    """Draw the teacher pair for ``seed``; the auxiliary teacher ignores ``setting_tag``.

    ``setting_tag`` separates the random parts of the main teacher (new coordinates, redrawn
    signs) between settings that share a seed.
    """
    g_aux = generator(seed, "aux_teacher", spec.d, spec.k1)
    perm = torch.randperm(spec.d, generator=g_aux)
    support_aux = perm[: spec.k1]
    signs_aux = torch.randint(0, 2, (spec.k1,), generator=g_aux).to(torch.float64) * 2 - 1
    beta_aux = torch.zeros(spec.d, dtype=torch.float64)
    beta_aux[support_aux] = signs_aux * spec.magnitude(spec.k1)

    g_main = generator(
        seed, "main_teacher", setting_tag, spec.d, spec.k1, spec.k2, spec.overlap, spec.main_signs
    )
    rest = perm[spec.k1 :]
    n_new = spec.k2 - spec.overlap
    new = rest[torch.randperm(rest.numel(), generator=g_main)[:n_new]]
    support_main = torch.cat([support_aux[: spec.overlap], new])
    signs_main = torch.randint(0, 2, (spec.k2,), generator=g_main).to(torch.float64) * 2 - 1
    if spec.main_signs == "same":
        signs_main[: spec.overlap] = signs_aux[: spec.overlap]
    beta_main = torch.zeros(spec.d, dtype=torch.float64)
    beta_main[support_main] = signs_main * spec.magnitude(spec.k2)
    return TeacherPair(beta_aux, beta_main, support_aux, support_main)


def task_inputs(
    seed: int, stream: str, split: str, n: int, d: int, dtype: torch.dtype = torch.float64
) -> Tensor:
    """The inputs ``(n, d)`` of one split: RMS-normalised Gaussians from stream
    ``(seed, stream, split, n, d)``. Teachers of different settings share them."""
    if n < 0:
        raise ValueError(f"sample count for split {split!r} must be >= 0; got {n}")
    return rms_normalised_gaussian(n, d, generator(seed, stream, split, n, d)).to(dtype)


def label_noise(
    seed: int, stream: str, split: str, n: int, std: float, dtype: torch.dtype = torch.float64
) -> Tensor:
    """``std · ε``, ``ε ~ N(0, I_n)``, from its own stream (zeros when ``std == 0``)."""
    if std == 0:
        return torch.zeros(n, dtype=dtype)
    g = generator(seed, stream, split, n, "noise")
    return (std * torch.randn(n, generator=g, dtype=torch.float64)).to(dtype)


def linear_task(
    name: str,
    beta: Tensor,
    seed: int,
    n: dict[str, int],
    noise: float = 0.0,
    dtype: torch.dtype = torch.float64,
    stream: str = "",
) -> TaskData:
    """A linear-teacher task ``y = xᵀβ + noise·ε`` with RMS-normalised Gaussian inputs.

    ``n`` maps split names to sample counts (``{"train": 32, "val": 1000, "test": 2000}``); each
    split's inputs come from :func:`task_inputs` with ``stream or name``.
    """
    d = beta.shape[0]
    splits = {}
    for split, n_split in n.items():
        x = task_inputs(seed, stream or name, split, n_split, d)
        y = x @ beta.to(torch.float64) + label_noise(seed, stream or name, split, n_split, noise)
        splits[split] = Split(x.to(dtype), y.to(dtype))
    return TaskData(name, splits, {"beta": beta.to(dtype)})
