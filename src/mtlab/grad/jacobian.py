"""Per-task gradients of the shared parameters: the ``T × P`` Jacobian and the ``T × T`` Gramian.

Backends (all give the same Jacobian up to float rounding; tested in float64):

* ``loop`` — ``T`` backward passes, one per task loss (the reference; what most MTL code does);
* ``batched`` — one vectorised backward with ``T`` one-hot cotangents
  (``torch.autograd.grad(..., is_grads_batched=True)``, i.e. ``vmap`` over the backward pass),
  in chunks of ``chunk`` tasks to bound memory;
* ``representation`` — gradients with respect to the shared *representation* ``z`` instead of the
  parameters (as in MGDA-UB, Sener & Koltun 2018): ``T`` backward passes through the heads only.
  Its Jacobian is ``T × (batch·k)``; methods then weight the tasks from it and the trunk receives
  one backward of ``Σ_t w_t L_t`` — a cheaper approximation, not the parameter Jacobian;
* ``auto`` — measures ``loop`` and ``batched`` on the first steps of a given model and task count
  (a few extra backward passes, once) and keeps the faster one.

Task-specific parameters are not part of the Jacobian: each only affects its own task's loss,
so they receive the ordinary gradient of ``Σ_t L_t`` (see :mod:`mtlab.grad.methods`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

BACKENDS = ("loop", "batched", "representation", "auto")


@dataclass
class TaskJacobian:
    """``matrix``: ``(T, P)`` rows = per-task gradients (``P`` = shared parameters flattened, or
    ``batch·k`` for the representation backend); ``backend`` is the one that computed it."""

    matrix: Tensor
    backend: str

    @property
    def gramian(self) -> Tensor:
        """``J Jᵀ``: ``(T, T)``."""
        return self.matrix @ self.matrix.T


def _flat(grads: Sequence[Tensor | None], params: Sequence[Tensor]) -> Tensor:
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).reshape(-1)
            for g, p in zip(grads, params, strict=True)
        ]
    )


def jacobian_loop(losses: Tensor, params: Sequence[Tensor]) -> Tensor:
    """``(T, P)`` by ``T`` backward passes (the graph is retained)."""
    rows = [
        _flat(torch.autograd.grad(losses[t], params, retain_graph=True, allow_unused=True), params)
        for t in range(losses.shape[0])
    ]
    return torch.stack(rows)


def jacobian_batched(losses: Tensor, params: Sequence[Tensor], chunk: int | None = None) -> Tensor:
    """``(T, P)`` by vectorised backward passes over one-hot cotangents, ``chunk`` tasks at a time
    (``None``: all at once)."""
    T = losses.shape[0]
    chunk = chunk or T
    eye = torch.eye(T, dtype=losses.dtype, device=losses.device)
    parts = []
    for s in range(0, T, chunk):
        grads = torch.autograd.grad(
            losses,
            params,
            grad_outputs=eye[s : s + chunk],
            retain_graph=True,
            is_grads_batched=True,
            allow_unused=True,
        )
        k = min(chunk, T - s)
        parts.append(
            torch.cat(
                [
                    (
                        g
                        if g is not None
                        else torch.zeros(k, *p.shape, dtype=p.dtype, device=p.device)
                    ).reshape(k, -1)
                    for g, p in zip(grads, params, strict=True)
                ],
                dim=1,
            )
        )
    return torch.cat(parts)


def jacobian_representation(losses: Tensor, rep: Tensor) -> Tensor:
    """``(T, batch·k)``: gradients of each task loss with respect to the shared representation."""
    return jacobian_loop(losses, [rep])


class JacobianEngine:
    """Computes per-task Jacobians with a chosen backend (see module doc).

    ``chunk`` bounds the batched backend's memory (tasks per vectorised backward). With
    ``backend="auto"`` the first call for a given (task count, parameter count) times ``loop`` and
    ``batched`` on that very step and caches the winner in :attr:`choices`.
    """

    def __init__(self, backend: str = "auto", chunk: int | None = None, repeats: int = 2) -> None:
        if backend not in BACKENDS:
            raise ValueError(
                f"unknown Jacobian backend {backend!r}; allowed: {', '.join(BACKENDS)}"
            )
        if chunk is not None and chunk < 1:
            raise ValueError(f"chunk must be >= 1 or None (got {chunk})")
        self.backend = backend
        self.chunk = chunk
        self.repeats = repeats
        self.choices: dict[tuple, str] = {}
        self.timings: dict[tuple, dict[str, float]] = {}

    def __call__(
        self, losses: Tensor, params: Sequence[Tensor], rep: Tensor | None = None
    ) -> TaskJacobian:
        if losses.ndim != 1:
            raise ValueError(
                f"losses must be a vector of per-task losses (got {tuple(losses.shape)})"
            )
        if self.backend == "representation":
            if rep is None:
                raise ValueError("the representation backend needs the shared representation")
            return TaskJacobian(jacobian_representation(losses, rep), "representation")
        backend = self.backend
        if backend == "auto":
            backend = self._choose(losses, params)
        if backend == "loop":
            return TaskJacobian(jacobian_loop(losses, params), "loop")
        return TaskJacobian(jacobian_batched(losses, params, self.chunk), "batched")

    def _choose(self, losses: Tensor, params: Sequence[Tensor]) -> str:
        key = (losses.shape[0], sum(p.numel() for p in params), losses.device.type)
        if key in self.choices:
            return self.choices[key]
        times = {}
        for name, fn in (
            ("loop", lambda: jacobian_loop(losses, params)),
            ("batched", lambda: jacobian_batched(losses, params, self.chunk)),
        ):
            best = float("inf")
            try:
                for _ in range(self.repeats + 1):  # the first call warms up
                    _sync(losses)
                    t0 = time.perf_counter()
                    fn()
                    _sync(losses)
                    best = min(best, time.perf_counter() - t0)
            except (RuntimeError, NotImplementedError):  # e.g. an op without a batching rule
                best = float("inf")
            times[name] = best
        choice = min(times, key=times.__getitem__)
        self.choices[key] = choice
        self.timings[key] = times
        return choice


def _sync(t: Tensor) -> None:
    if t.device.type == "cuda":
        torch.cuda.synchronize(t.device)


__all__ = [
    "BACKENDS",
    "JacobianEngine",
    "TaskJacobian",
    "jacobian_batched",
    "jacobian_loop",
    "jacobian_representation",
]
