"""Correlations with bootstrap confidence intervals and sign agreement (``scipy.stats``), for
relating trajectory measurements (factor differences, conflict) to gaps and transfer across
tasks × settings × seeds."""

from __future__ import annotations

import itertools
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


@dataclass(frozen=True)
class Interval:
    """A statistic with its percentile-bootstrap interval: ``n`` finite rows in ``clusters``
    resampled units (rows sharing a cluster — a run, a setting — are resampled together)."""

    point: float
    lo: float
    hi: float
    n: int
    clusters: int
    confidence: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


EXACT_BOOTSTRAP_UNITS = 6


def resample_counts(n: int, n_resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap resamples of ``n`` units (seeds, clusters) as (counts per unit, probability)
    rows. Up to :data:`EXACT_BOOTSTRAP_UNITS` units every distinct resample is listed with its
    exact multinomial probability (at most 462 of them: the bootstrap distribution itself, not a
    sample of it); beyond, ``n_resamples`` drawn at random with equal weight."""
    if n <= EXACT_BOOTSTRAP_UNITS:
        rows = []
        for pick in itertools.combinations_with_replacement(range(n), n):
            rows.append(np.bincount(pick, minlength=n))
        counts = np.array(rows)
        logp = (math.lgamma(n + 1) - np.sum([[math.lgamma(c + 1) for c in r] for r in counts], 1)
                - n * math.log(n))  # fmt: skip
        return counts, np.exp(logp)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, (n_resamples, n))
    counts = np.stack([np.bincount(d, minlength=n) for d in draws])
    return counts, np.full(n_resamples, 1.0 / n_resamples)


def weighted_interval(values: np.ndarray, weights: np.ndarray, confidence: float = 0.95
                      ) -> tuple[float, float]:  # fmt: skip
    """The percentile interval of a discrete distribution (values with probabilities): the
    smallest values whose cumulative probability reaches each tail."""
    ok = np.isfinite(values)
    v, w = values[ok], weights[ok]
    if len(v) == 0:
        return math.nan, math.nan
    order = np.argsort(v, kind="stable")
    v, cum = v[order], np.cumsum(w[order]) / w.sum()
    tail = (1 - confidence) / 2
    lo = v[min(np.searchsorted(cum, tail - 1e-12), len(v) - 1)]
    hi = v[min(np.searchsorted(cum, 1 - tail - 1e-12), len(v) - 1)]
    return float(lo), float(hi)


def cluster_bootstrap(
    columns: Sequence[Sequence[float] | np.ndarray],
    statistic: Any,
    clusters: Sequence[Any] | np.ndarray | None = None,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """``statistic(*columns)`` and its percentile interval, resampling whole clusters with
    replacement (up to :data:`EXACT_BOOTSTRAP_UNITS` clusters, every distinct resample with its
    exact probability) (``clusters``: one label per row; None: every row its own cluster, the ordinary
    bootstrap). Rows where any column is not finite are dropped first. Rows of one cluster are
    not independent (two tasks of one run share a trunk; runs of one setting share its data),
    and resampling them as if they were gives an interval that is too narrow."""
    cols = [np.asarray(c, np.float64) for c in columns]
    if len({c.shape for c in cols}) != 1:
        raise ValueError("the columns differ in length")
    labels = np.arange(len(cols[0])) if clusters is None else np.asarray(clusters)
    if len(labels) != len(cols[0]):
        raise ValueError(f"{len(labels)} cluster labels for {len(cols[0])} rows")
    ok = np.all([np.isfinite(c) for c in cols], axis=0)
    cols, labels = [c[ok] for c in cols], labels[ok]
    nan = math.nan
    if len(labels) == 0:
        return Interval(nan, nan, nan, 0, 0, confidence)
    _, groups = np.unique(labels, return_inverse=True)
    members = [np.flatnonzero(groups == g) for g in range(groups.max() + 1)]
    with np.errstate(invalid="ignore", divide="ignore"):
        point = float(statistic(*cols))
        if len(members) < 2:
            return Interval(point, nan, nan, len(labels), len(members), confidence)
        if len(members) <= EXACT_BOOTSTRAP_UNITS:  # the exact bootstrap distribution
            counts, weights = resample_counts(len(members), n_resamples, seed)
            values = np.array([statistic(*(c[np.concatenate([np.repeat(members[i], k)
                                                              for i, k in enumerate(row)])]
                                           for c in cols)) for row in counts])  # fmt: skip
            lo, hi = weighted_interval(values, weights, confidence)
            return Interval(point, lo, hi, len(labels), len(members), confidence)
        rng = np.random.default_rng(seed)
        values = np.empty(n_resamples)
        for k in range(n_resamples):
            idx = np.concatenate([members[i] for i in rng.integers(0, len(members),
                                                                   len(members))])  # fmt: skip
            values[k] = statistic(*(c[idx] for c in cols))
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return Interval(point, nan, nan, len(labels), len(members), confidence)
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return Interval(point, float(lo), float(hi), len(labels), len(members), confidence)


def mean_interval(values: Sequence[float] | np.ndarray, clusters: Any = None,
                  **kwargs: Any) -> Interval:  # fmt: skip
    """The mean and its (cluster) bootstrap interval (:func:`cluster_bootstrap`)."""
    return cluster_bootstrap([values], np.mean, clusters, **kwargs)


def correlation_interval(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
                         clusters: Any = None, kind: str = "spearman",
                         **kwargs: Any) -> Interval:  # fmt: skip
    """Spearman ρ (or Pearson r) with its (cluster) bootstrap interval; NaN for fewer than 3
    rows or a constant variable."""
    stat = STATISTICS[kind]

    def f(a: np.ndarray, b: np.ndarray) -> float:
        if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
            return math.nan
        return float(stat(a, b))

    return cluster_bootstrap([x, y], f, clusters, **kwargs)


__all__ = ["EXACT_BOOTSTRAP_UNITS", "Correlation", "Interval", "cluster_bootstrap", "correlate",
           "correlation_interval", "finite_mean_se", "mean_interval", "resample_counts",
           "sign_agreement", "weighted_interval"]  # fmt: skip
