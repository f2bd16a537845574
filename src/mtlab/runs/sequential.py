"""Families whose runs are not ensembled: the executor hands them one config at a time."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from mtlab.runs.config import RunConfig

Record = tuple[dict[str, Any], list[dict[str, Any]], dict[str, torch.Tensor], list[dict[str, Any]]]


class SequentialFamily:
    """Base class: subclasses implement :meth:`record` (row, curve, params, evaluation rows)."""

    batched = False  # the executor runs one config at a time

    @staticmethod
    def bytes_per_run(cfg: RunConfig) -> int:
        return 1

    def record(
        self,
        cfg: Any,
        device: torch.device | str = "cpu",
        pretrained: Callable[[str], dict] | None = None,
    ) -> Record:
        """Train and measure one run; ``pretrained(run_id)`` loads a dependency's parameters."""
        raise NotImplementedError

    def run_chunk(
        self,
        cfgs: Sequence[Any],
        pretrained: Callable[[str], dict] | None = None,
        sink: Callable[..., None] | None = None,
        device: torch.device | str = "cpu",
        max_steps: int | None = None,
    ) -> list[dict[str, Any]]:
        """Run each config; ``sink(row, curve, params, evals=...)`` receives each finished run
        (its row gets ``wall_s``)."""
        out = []
        for cfg in cfgs:
            t0 = time.perf_counter()
            row, curve, params, evals = self.record(cfg, device, pretrained)
            row["wall_s"] = time.perf_counter() - t0
            if sink is not None:
                sink(row, curve, params, evals=evals)
            out.append(row)
        return out


__all__ = ["Record", "SequentialFamily"]
