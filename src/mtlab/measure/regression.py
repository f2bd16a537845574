"""Measurements of linear predictors against a known teacher."""

from __future__ import annotations

from torch import Tensor


def relative_distance(beta: Tensor, reference: Tensor) -> Tensor:
    """``‖β − β_ref‖ / ‖β_ref‖`` over the last axis."""
    return (beta - reference).norm(dim=-1) / reference.norm(dim=-1).clamp_min(1e-300)


def support_recall(beta: Tensor, support: Tensor) -> float:
    """Fraction of the teacher's ``support`` (indices) among the ``|support|`` largest-|β|
    coordinates of ``beta: (d,)``."""
    k = support.numel()
    if k == 0:
        return 1.0
    top = beta.abs().argsort(descending=True)[:k]
    return len(set(top.tolist()) & set(support.tolist())) / k
