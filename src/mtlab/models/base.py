"""The model interface: stateless network *specs* evaluated on explicit parameter dictionaries.

Every parameter tensor carries a leading **run dimension** ``E``: an ensemble of ``E`` independent
networks (different seeds, data draws or scalar hyperparameters) is trained as one batched
computation, and a single run is simply ``E = 1``. Parameters are split by name into *shared*
(trunk) and *task-specific* (heads) groups; task-specific tensors have a trailing task axis or are
per-task entries, as the model documents.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

Params = dict[str, Tensor]


@runtime_checkable
class EnsembleModel(Protocol):
    """A multi-task network spec.

    * ``shared_names`` / ``task_specific_names`` — the parameter groups.
    * ``n_tasks`` — number of outputs (tasks).
    * ``forward(params, x, task)`` — ``x: (E or 1, n, d)`` → predictions ``(E, n)`` of output ``task``.
    * ``reset_readout(params, scale, generator)`` — re-initialise the task-specific parameters at
      per-run scale ``scale: (E,)`` (the PT+FT readout reset).
    * ``scale_shared(params, s)`` — multiply the shared parameters by per-run ``s: (E,)`` (rescaling).
    """

    shared_names: tuple[str, ...]
    task_specific_names: tuple[str, ...]
    n_tasks: int

    def forward(self, params: Params, x: Tensor, task: int) -> Tensor: ...

    def reset_readout(
        self, params: Params, scale: Tensor, generator: torch.Generator | None = None
    ) -> Params: ...

    def scale_shared(self, params: Params, s: Tensor) -> Params: ...


def per_run(values: Tensor, like: Tensor) -> Tensor:
    """Reshape per-run scalars ``values: (E,)`` to broadcast against ``like: (E, ...)``."""
    return values.reshape(values.shape[0], *([1] * (like.ndim - 1)))


def index_params(params: Params, idx: Tensor) -> Params:
    """The sub-ensemble ``idx`` (a long tensor of run indices) of every parameter."""
    return {k: v[idx] for k, v in params.items()}


def stack_params(parts: list[Params]) -> Params:
    """Concatenate ensembles along the run dimension."""
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
