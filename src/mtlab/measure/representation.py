"""Representation geometry (Lippl & Lindsey 2024, §2.3 and §3.3).

* :func:`participation_ratio` — ``PR = tr(C)² / tr(C²)`` of the **uncentred** second-moment matrix
  ``C = XᵀX`` of features ``X: (N, k)``: the effective dimension of the representation.
* :func:`ensd` — the effective number of shared dimensions of two representations of the same ``N``
  inputs (Giaffar, Rullán Buxó & Aoi 2023): with trace-normalised ``c_i = C_i / tr(C_i)``,
  ``ENSD = PR₁·PR₂·tr(c₁c₂)``. ``ENSD(X, X) = PR(X)``; orthogonal feature spaces give 0.
* :func:`unit_alignment` — per student unit, its largest |cosine| to a teacher unit, and the mean of
  that weighted by the units' coefficients ``‖w_j‖·|a_j|``.
* :func:`effective_units` — the participation ratio of the unit coefficients, ``(Σc)²/Σc²``: how
  many hidden units carry the function.
* :func:`kmeans_profile` — k-means (scikit-learn) over the hidden units' input weights: inertia per
  number of clusters and an alignment score (mean over teacher units of the best |cosine| to a
  cluster centre), the measurement of the paper's Fig. 8 (no code was released; this is our
  reading of its caption).

Traces use the ``N × N`` or ``k × k`` Gram matrix, whichever is smaller; float64 throughout.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def _f64(x: Tensor | np.ndarray) -> Tensor:
    return torch.as_tensor(x).detach().to("cpu", torch.float64)


def _flat(x: Tensor | np.ndarray) -> Tensor:
    x = _f64(x)
    if x.ndim < 2:
        raise ValueError(f"features must be (N, ...) with N samples; got shape {tuple(x.shape)}")
    return x.reshape(x.shape[0], -1)


def _tr_sq(x: Tensor) -> Tensor:
    """``tr((XᵀX)²) = ‖XᵀX‖_F² = ‖XXᵀ‖_F²`` via the smaller Gram matrix."""
    g = x.T @ x if x.shape[1] <= x.shape[0] else x @ x.T
    return (g * g).sum()


def participation_ratio(x: Tensor | np.ndarray) -> float:
    """``tr(C)²/tr(C²)`` with ``C = XᵀX`` uncentred; ``x: (N, ...)`` is flattened per sample."""
    x = _flat(x)
    tr = (x * x).sum()
    if tr == 0:
        return 0.0
    return float(tr * tr / _tr_sq(x))


def ensd(x1: Tensor | np.ndarray, x2: Tensor | np.ndarray) -> float:
    """``PR₁·PR₂·tr(c₁c₂)`` for two representations ``(N, k₁)``, ``(N, k₂)`` of the same inputs.

    ``tr(C₁C₂) = ‖X₁ᵀX₂‖_F²``; the result equals ``tr(C₁)tr(C₂)·tr(C₁C₂) / (tr(C₁²)tr(C₂²))``.
    """
    a, b = _flat(x1), _flat(x2)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"ENSD needs the same inputs: {a.shape[0]} vs {b.shape[0]} samples")
    ta, tb = (a * a).sum(), (b * b).sum()
    if ta == 0 or tb == 0:
        return 0.0
    cross = a.T @ b if min(a.shape[1], b.shape[1]) <= a.shape[0] else None
    tr12 = (cross * cross).sum() if cross is not None else ((a @ a.T) * (b @ b.T)).sum()
    return float(ta * tb * tr12 / (_tr_sq(a) * _tr_sq(b)))


def _unit_rows(w: Tensor) -> Tensor:
    n = w.norm(dim=-1, keepdim=True)
    return w / torch.where(n > 0, n, torch.ones_like(n))


def unit_alignment(W: Tensor, a: Tensor | None, teacher: Tensor) -> dict[str, float | np.ndarray]:
    """Alignment of student units ``W: (m, d)`` (readouts ``a: (m,)`` or ``(T, m)``) with teacher
    units ``teacher: (k, d)``.

    Returns ``per_unit`` (m,) — each unit's largest |cos| to a teacher unit; ``weighted`` — its
    mean weighted by the unit coefficients ``‖w_j‖·‖a_j‖`` (by ``‖w_j‖`` when ``a`` is None);
    ``per_teacher`` (k,) — for each teacher unit, the coefficient-weighted fraction of student
    mass whose best match it is with |cos| ≥ 0.9."""
    W, T = _f64(W), _f64(teacher)
    cos = (_unit_rows(W) @ _unit_rows(T).T).abs()  # (m, k)
    best, which = cos.max(dim=1)
    c = W.norm(dim=-1)
    if a is not None:
        a = _f64(a)
        c = c * (a.abs() if a.ndim == 1 else a.norm(dim=0))
    tot = c.sum()
    weighted = float((c * best).sum() / tot) if tot > 0 else 0.0
    per_teacher = np.zeros(T.shape[0])
    if tot > 0:
        good = best >= 0.9
        for k in range(T.shape[0]):
            per_teacher[k] = float(c[good & (which == k)].sum() / tot)
    return {"per_unit": best.numpy(), "weighted": weighted, "per_teacher": per_teacher}


def effective_units(W: Tensor, a: Tensor) -> float:
    """``(Σ_j c_j)² / Σ_j c_j²`` with ``c_j = ‖w_j‖·‖a_j‖`` (``a: (m,)`` or ``(T, m)``)."""
    W, a = _f64(W), _f64(a)
    c = W.norm(dim=-1) * (a.abs() if a.ndim == 1 else a.norm(dim=0))
    s2 = (c * c).sum()
    return float(c.sum() ** 2 / s2) if s2 > 0 else 0.0


def kmeans_profile(
    W: Tensor,
    teacher: Tensor,
    ks: Sequence[int] = (1, 2, 3, 4, 5, 6, 7, 8),
    *,
    weights: Tensor | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """k-means over the hidden-unit input weights ``W: (m, d)`` for each ``k`` in ``ks``.

    Returns ``k``, ``inertia`` (scikit-learn's within-cluster sum of squares, optionally with
    per-unit ``weights``) and ``alignment`` — the mean over teacher units ``(t, d)`` of the largest
    |cosine| to a cluster centre."""
    from sklearn.cluster import KMeans

    X = _f64(W).numpy()
    T = _unit_rows(_f64(teacher)).numpy()
    sw = None if weights is None else _f64(weights).numpy()
    ks = [k for k in ks if 1 <= k <= X.shape[0]]
    if not ks:
        raise ValueError(f"no k in {list(ks)} fits {X.shape[0]} units")
    inertia, align = [], []
    for k in ks:
        km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(X, sample_weight=sw)
        inertia.append(float(km.inertia_))
        centres = _unit_rows(torch.from_numpy(km.cluster_centers_)).numpy()
        align.append(float(np.abs(T @ centres.T).max(axis=1).mean()))
    return {"k": np.asarray(ks), "inertia": np.asarray(inertia), "alignment": np.asarray(align)}


__all__ = [
    "effective_units",
    "ensd",
    "kmeans_profile",
    "participation_ratio",
    "unit_alignment",
]
