"""Correlations with bootstrap confidence intervals and sign agreement (``scipy.stats``), for
relating trajectory measurements (factor differences, conflict) to gaps and transfer across
tasks × settings × seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Correlation:
    """Spearman ρ and Pearson r with percentile-bootstrap intervals (pairs resampled), the
    sign-agreement rate of the two variables, and the number of finite pairs. NaN where
    undefined (fewer than ``3`` pairs, or a constant variable)."""

    n: int
    spearman: float
    spearman_lo: float
    spearman_hi: float
    pearson: float
    pearson_lo: float
    pearson_hi: float
    sign_agreement: float
    confidence: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def excludes_zero(self, kind: str = "spearman") -> bool:
        lo, hi = getattr(self, f"{kind}_lo"), getattr(self, f"{kind}_hi")
        return bool(np.isfinite(lo) and np.isfinite(hi) and (lo > 0 or hi < 0))


def finite_mean_se(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over the first axis (seeds, probes), of the finite entries only
    (NaN where fewer than one / two are finite): a diverged seed or a non-finite probe is left
    out, never averaged in."""
    n = np.isfinite(stack).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.where(np.isfinite(stack), stack, 0.0).sum(0)
        mean = np.where(n > 0, total / np.maximum(n, 1), np.nan)
        dev = np.where(np.isfinite(stack), stack - mean, 0.0)
        var = (dev**2).sum(0) / np.maximum(n - 1, 1)
        se = np.where(n > 1, np.sqrt(var / np.maximum(n, 1)), np.nan)
    return mean, se


def sign_agreement(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Fraction of pairs (both finite and non-zero) whose signs agree; NaN if none."""
    a, b = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(a) & np.isfinite(b) & (a != 0) & (b != 0)
    return float((np.sign(a[ok]) == np.sign(b[ok])).mean()) if ok.any() else math.nan


def _pearson(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    a = a - a.mean(axis, keepdims=True)
    b = b - b.mean(axis, keepdims=True)
    den = np.sqrt((a * a).sum(axis) * (b * b).sum(axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray((a * b).sum(axis) / den)


def _spearman(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    from scipy.stats import rankdata

    return _pearson(rankdata(a, axis=axis), rankdata(b, axis=axis), axis)


STATISTICS = {"spearman": _spearman, "pearson": _pearson}


def correlate(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Correlation:
    """:class:`Correlation` of the finite pairs of ``x`` and ``y``."""
    import warnings

    from scipy import stats

    a, b = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"x and y differ in shape: {a.shape} vs {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    n, nan = len(a), math.nan
    agree = sign_agreement(a, b)
    if n < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return Correlation(n, nan, nan, nan, nan, nan, nan, agree, confidence)
    out: dict[str, tuple[float, float, float]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant resamples: NaN statistics, dropped below
        for kind in ("spearman", "pearson"):
            point = float(STATISTICS[kind](a, b))
            res = stats.bootstrap(
                (a, b),
                STATISTICS[kind],
                paired=True,
                vectorized=True,
                n_resamples=n_resamples,
                confidence_level=confidence,
                method="percentile",
                rng=np.random.default_rng(seed),
            )
            lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
            out[kind] = (point, lo, hi)
    s, p = out["spearman"], out["pearson"]
    return Correlation(n, *s, *p, agree, confidence)


__all__ = ["Correlation", "correlate", "finite_mean_se", "sign_agreement"]
